"""Run the sandbox from the shell: ``makini-async sandbox --port 8600``.

It prints the URL, the OAuth client credentials, the admin token and every connection's token,
optionally writes the connections to a file that ``makini-async sync --connections`` reads as
is, then serves until SIGINT or SIGTERM, and shuts down cleanly. ``python -m
makini_async.sandbox`` is the same command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Final, TextIO

from makini_async.sandbox._server import Sandbox

__all__ = ["main"]

_EXIT_USAGE: Final = 2
_MAX_PORT: Final = 65535


class _StartError(Exception):
    """The sandbox cannot start as asked: one line for the user, exit status 2."""


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Serve a local Makini sandbox.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=_port, default=8600, help="port (0: a free one)")
    parser.add_argument("--connections", type=_count, default=3, help="connections to create")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--provider", default="sandbox", help="provider slug of the connections")
    parser.add_argument(
        "--work-orders", type=_count, default=None, help="work orders per connection"
    )
    parser.add_argument("--v4", action="store_true", help="answer with v4 standard fields")
    parser.add_argument("--read-only", action="store_true", help="writes succeed without change")
    parser.add_argument("--rate-limit", type=_count, default=600, help="requests per minute")
    parser.add_argument("--time-scale", type=float, default=1.0, help="factor on simulated waits")
    parser.add_argument(
        "--max-body", type=_count, default=1024 * 1024, help="largest request body (bytes)"
    )
    parser.add_argument(
        "--log-body-limit",
        type=_count,
        default=64 * 1024,
        help="bytes of each request body the request log keeps (0: none)",
    )
    parser.add_argument(
        "--write-connections",
        metavar="FILE",
        help="once listening, write the connections (id and token) to FILE as JSON, for "
        "'makini-async sync --connections FILE --base-url URL'",
    )
    return parser


def _count(text: str) -> int:
    """A whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _count(text)
    if value > _MAX_PORT:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to {_MAX_PORT}, got {text!r}")
    return value


def _check_target(path: Path) -> None:
    """Refuse a connections file that cannot be written, before the sandbox starts."""
    if path.is_dir():
        raise _StartError(f"--write-connections {str(path)!r} is a directory")
    if not path.parent.is_dir():
        raise _StartError(f"--write-connections {str(path)!r}: its directory does not exist")


def _write_connections(path: Path, sandbox: Sandbox) -> None:
    """Write the connections file whole or not at all: a reader never sees half of it."""
    content = {
        "base_url": sandbox.url,
        "connections": [{"id": cid, "token": token} for cid, token in sandbox.connections.items()],
    }
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(content, file, indent=2)
            file.write("\n")
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _sandbox(args: argparse.Namespace) -> Sandbox:
    sizes = {"work-orders": args.work_orders} if args.work_orders is not None else None
    return Sandbox(
        connections=args.connections,
        seed=args.seed,
        host=args.host,
        port=args.port,
        provider=args.provider,
        sizes=sizes,
        v4=args.v4,
        read_only=args.read_only,
        rate_limit=args.rate_limit,
        time_scale=args.time_scale,
        max_body=args.max_body,
        log_body_limit=args.log_body_limit,
    )


async def _serve(args: argparse.Namespace, out: TextIO) -> None:
    target = Path(args.write_connections) if args.write_connections else None
    if target is not None:
        _check_target(target)
    try:
        sandbox = _sandbox(args)
    except ValueError as exc:
        raise _StartError(str(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await sandbox.start()
        except OSError as exc:
            # asyncio's own strerror repeats the address: the errno's text says it once.
            reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            raise _StartError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
        out.write(f"Makini sandbox listening on {sandbox.url}\n")
        out.write(f"client_id={sandbox.client_id} client_secret={sandbox.client_secret}\n")
        out.write(f"admin token: {sandbox.admin_token}\n")
        out.writelines(
            f"connection {connection_id}: {token}\n"
            for connection_id, token in sandbox.connections.items()
        )
        if target is not None:
            try:
                _write_connections(target, sandbox)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise _StartError(f"cannot write {str(target)!r}: {reason}") from None
            out.write(f"connections written to {target}\n")
        out.flush()
        await stop.wait()
    finally:
        await sandbox.aclose()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    out.write("Makini sandbox stopped\n")
    out.flush()


def main(argv: list[str] | None = None, *, prog: str = "python -m makini_async.sandbox") -> int:
    """Parse arguments and serve until interrupted.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
        prog: The command's name in its usage and error lines.

    Returns:
        The process exit status: 0 after a clean stop, 2 when the sandbox cannot start (a busy
        port, an unwritable ``--write-connections`` file), reported in one line.
    """
    args = _parser(prog).parse_args(argv)
    try:
        asyncio.run(_serve(args, sys.stdout))
    except _StartError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        sys.stderr.flush()
        return _EXIT_USAGE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
