"""The ``makini-async`` command: incremental sync, the sandbox, the demo, and quick looks.

::

    makini-async sync --connections customers.csv --entities work-orders,assets --store sync.db
    makini-async sync --admin --entities work-orders --store sync.db   # MAKINI_CLIENT_ID/_SECRET
    makini-async demo [--db makini-demo.db]
    makini-async sandbox --port 8600 --connections 20 --write-connections sandbox.json
    makini-async entities
    makini-async sync --queue redis://host:6379/0 --connections ids.csv --entities work-orders
    makini-async worker --redis redis://host:6379/0 --connections c.csv --store postgresql://...
    makini-async status --queue redis://host:6379/0
    MAKINI_TOKEN=... makini-async list work-orders --filter updatedAt:gt=2026-01-01
    MAKINI_TOKEN=... makini-async get work-orders KEY

Exit status: 0 when everything synced, 1 when a connection failed (the reasons are listed) or a
request failed, 2 for bad input (a one-line error, never a traceback), 130 when interrupted.
The live display uses ``rich`` when it is installed (the ``cli`` extra) and the output is a
terminal; ``--plain`` or ``MAKINI_ASYNC_PLAIN=1`` forces plain lines.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO

from makini_async import AuthenticationError, MakiniError, StoreError
from makini_async.sandbox.__main__ import main as sandbox_main

from ._demo import run_demo
from ._entities import run_entities
from ._parser import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    CommandLineError,
    build_parser,
)
from ._queue import run_queue_sync, run_status, run_worker
from ._read import run_read
from ._report import Reporter
from ._sync import run_sync

__all__ = ["main"]


@contextlib.contextmanager
def _library_logging(*, verbose: bool, stream: TextIO) -> Iterator[None]:
    """Show the library's log lines with -v, hide its warnings otherwise; restore on the way out.

    Failures are in the summary already; the warnings would only repeat them.
    """
    logger = logging.getLogger("makini_async")
    level = logger.level
    handler: logging.Handler | None = None
    if verbose:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(  # noqa: PLR0911 - one exit status per kind of failure
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the ``makini-async`` command.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        stdout: Where results go (default: ``sys.stdout``).
        stderr: Where progress and errors go (default: ``sys.stderr``).

    Returns:
        The exit status: 0 ok, 1 a connection or request failed, 2 bad input, 130 interrupted.

    .. versionadded:: 0.1.0
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    if arguments[:1] == ["sandbox"]:
        return sandbox_main(arguments[1:], prog=f"{PROG} sandbox")
    try:
        args = build_parser().parse_args(arguments)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except CommandLineError as exc:
        err.write(f"{PROG}: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    if args.command == "entities":
        return run_entities(args, out)
    try:
        with _library_logging(verbose=args.verbose, stream=err):
            return asyncio.run(_dispatch(args, out, err))
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted; the next run resumes where this one stopped\n")
        return EXIT_INTERRUPTED
    except (CommandLineError, StoreError, ValueError) as exc:
        err.write(f"{PROG}: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except AuthenticationError as exc:
        what = "client credentials were" if exc.path == "/link/token" else "token was"
        err.write(f"{PROG}: error: the {what} refused ({exc.code}, {exc.request_id})\n")
        return EXIT_FAILED
    except MakiniError as exc:
        err.write(f"{PROG}: error: {_one_line(exc)}\n")
        return EXIT_FAILED
    except OSError as exc:
        err.write(f"{PROG}: error: {_one_line(exc)}\n")
        return EXIT_USAGE


async def _dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "sync" and args.queue is not None:
        return await run_queue_sync(args, Reporter(out, err, plain=args.plain))
    if args.command == "sync":
        if args.store is None:
            raise CommandLineError("the following arguments are required: --store (or --queue)")
        return await run_sync(args, Reporter(out, err, plain=args.plain))
    if args.command == "worker":
        return await run_worker(args, err)
    if args.command == "status":
        return await run_status(args, out)
    if args.command == "demo":
        return await run_demo(args, Reporter(out, err, plain=args.plain))
    return await run_read(args, out)
