"""The command line of ``makini-async``: its arguments, usage errors and exit statuses."""

from __future__ import annotations

import argparse
from typing import Any, Final, NoReturn

import makini_async
from makini_async._registry import BASE_URL_ENV, DEFAULT_BASE_URL

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "FILTER_OPS",
    "PROG",
    "CommandLineError",
    "build_parser",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
PROG: Final = "makini-async"
#: The operators of ``--filter FIELD:OP=VALUE`` (without one, the filter is equality).
FILTER_OPS: Final = ("contains", "startsWith", "endsWith", "gt", "gteq", "lt", "lteq")
_MAX_PER_PAGE: Final = 500


class CommandLineError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are `CommandLineError`s: one line, as every other mistake."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(f"{message} (see '{self.prog} --help')")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _per_page(text: str) -> int:
    value = _positive(text)
    if value > _MAX_PER_PAGE:
        raise argparse.ArgumentTypeError(f"expected at most {_MAX_PER_PAGE}, got {text!r}")
    return value


def _base_url(sub: argparse.ArgumentParser, *, from_file: bool = True) -> None:
    default = f"${BASE_URL_ENV}; else {DEFAULT_BASE_URL}"
    if from_file:  # the sandbox writes its URL into the connections file with the tokens
        default = (
            "the connections file's base_url (as 'makini-async sandbox --write-connections' "
            f"writes it); else {default}"
        )
    sub.add_argument("--base-url", metavar="URL", help=f"Makini's API origin (default: {default})")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every command but ``sandbox`` (which parses its own).

    Returns:
        The parser; ``args.command`` names the command.
    """
    parser = _Parser(
        prog=PROG, description="The Makini batch client: sync, demo, sandbox and quick looks."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {makini_async.__version__}"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests and retries")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("sync", help="pull what changed for every connection into a store")
    _connection_source(run)
    run.add_argument(
        "--entities",
        required=True,
        metavar="LIST",
        help="comma-separated entities, e.g. work-orders,assets,erp/sales-orders (a bare name "
        "is looked up in eam, then erp, then wms; see 'makini-async entities')",
    )
    _store_options(run, required=False)
    run.add_argument(
        "--concurrency",
        type=_positive,
        default=8,
        metavar="N",
        help="most connection/entity pairs synced at once (default: %(default)s)",
    )
    run.add_argument(
        "--per-page",
        type=_per_page,
        default=500,
        metavar="N",
        help=f"records per page, 1 to {_MAX_PER_PAGE} (default: %(default)s)",
    )
    run.add_argument(
        "--overlap",
        type=_positive,
        default=300,
        metavar="SECONDS",
        help="how far before the stored watermark each run reads again (default: %(default)s)",
    )
    run.add_argument("--plain", action="store_true", help="plain lines, no live display")
    _base_url(run)
    _queue_commands(commands, run)

    demo = commands.add_parser("demo", help="the main job against an embedded sandbox")
    demo.add_argument(
        "--db",
        metavar="FILE",
        help="the SQLite file to write; an earlier demo database there is replaced "
        "(default: a temporary file)",
    )
    demo.add_argument(
        "--connections",
        type=_positive,
        default=25,
        metavar="N",
        help="customer connections in the embedded sandbox, 3 or more (default: %(default)s)",
    )
    demo.add_argument("--plain", action="store_true", help="plain lines, no live display")

    commands.add_parser("sandbox", help="serve the sandbox (see: makini-async sandbox --help)")

    entities = commands.add_parser(
        "entities", help="list the entities with their paths and verbs (no token needed)"
    )
    entities.add_argument("--domain", choices=("eam", "erp", "wms"), help="only this API")
    entities.add_argument("--json", action="store_true", help="JSON out, with the attributes")

    for name in ("get", "list"):
        sub = commands.add_parser(name, help=f"{name} records with $MAKINI_TOKEN (JSON out)")
        sub.add_argument(
            "resource", help="e.g. work-orders or erp/sales-orders (see 'makini-async entities')"
        )
        if name == "get":
            sub.add_argument("key", help="the record's key")
        else:
            sub.add_argument(
                "--filter",
                action="append",
                default=[],
                metavar="FIELD[:OP]=VALUE",
                help="repeatable; FIELD=VALUE is equality, OP is one of "
                f"{', '.join(FILTER_OPS)} (e.g. updatedAt:gt=2026-01-01T00:00:00Z)",
            )
            sub.add_argument(
                "--per-page",
                type=_positive,
                default=50,
                metavar="N",
                help="records per page (default: %(default)s)",
            )
            sub.add_argument(
                "--page",
                type=_positive,
                default=1,
                metavar="N",
                help="the page to start from (default: %(default)s)",
            )
            sub.add_argument("--all", action="store_true", help="every page from --page on")
        _base_url(sub, from_file=False)
    return parser


def _connection_source(command: argparse.ArgumentParser) -> None:
    """``--connections FILE`` or ``--admin``: where a command's tokens come from."""
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--connections",
        metavar="FILE",
        help='a CSV of id,token lines, or JSON: [{"id", "token"}, ...], the same list '
        "under \"connections\" (as 'makini-async sandbox --write-connections' writes), or "
        "{id: token}",
    )
    source.add_argument(
        "--admin",
        action="store_true",
        help="every active connection, via the Admin API: $MAKINI_CLIENT_ID and "
        "$MAKINI_CLIENT_SECRET (or a bare $MAKINI_ADMIN_TOKEN)",
    )


def _store_options(command: argparse.ArgumentParser, *, required: bool) -> None:
    """``--store`` and ``--format``: where a command writes the records."""
    command.add_argument(
        "--store",
        required=required,
        metavar="STORE",
        help="a SQLite file, a directory for JSON lines (created when missing; checked "
        "writable before any request), or a postgresql:// DSN (the postgres extra)"
        + ("" if required else "; required, except with --queue"),
    )
    command.add_argument(
        "--format",
        choices=("auto", "sqlite", "jsonl"),
        default="auto",
        help="the format of a --store that is not a DSN; auto: JSON lines when --store is a "
        "directory or ends in '/', SQLite otherwise (default: %(default)s)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _queue_commands(
    commands: argparse._SubParsersAction[Any], run: argparse.ArgumentParser
) -> None:
    """``sync --queue``, ``worker`` and ``status``: a sync shared by workers through Redis."""
    run.add_argument(
        "--queue",
        metavar="REDIS_URL",
        help="enqueue one job per connection and entity on this Redis (arq) instead of syncing "
        "here, then follow them until done; jobs carry connection ids only, never tokens: "
        "each worker reads tokens from its own --connections FILE or --admin",
    )
    run.add_argument("--no-wait", action="store_true", help="with --queue: enqueue and return")
    run.add_argument("--queue-name", metavar="NAME", help=argparse.SUPPRESS)

    worker = commands.add_parser(
        "worker", help="run queued sync jobs (see: sync --queue) into a store"
    )
    _connection_source(worker)  # the worker's own tokens: jobs carry none
    worker.add_argument("--redis", required=True, metavar="REDIS_URL", help="the queue's Redis")
    _store_options(worker, required=True)
    worker.add_argument(
        "--concurrency",
        type=_positive,
        default=4,
        metavar="N",
        help="jobs run at once (default: %(default)s)",
    )
    worker.add_argument(
        "--lease",
        type=_seconds,
        default=15.0,
        metavar="SECONDS",
        help="a running job's lease, renewed while it runs: when a worker dies, another one "
        "retries its jobs within this delay plus --poll (default: %(default)s)",
    )
    worker.add_argument(
        "--job-timeout",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="most time one connection/entity job may take (default: %(default)s)",
    )
    worker.add_argument(
        "--poll",
        type=_seconds,
        default=0.5,
        metavar="SECONDS",
        help="seconds between looks at the queue (default: %(default)s)",
    )
    worker.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    worker.add_argument(
        "--budget-redis",
        action="store_true",
        help="share the rate-limit budget with the other workers through the same Redis",
    )
    worker.add_argument("--queue-name", metavar="NAME", help=argparse.SUPPRESS)
    _base_url(worker)

    status = commands.add_parser("status", help="the queue's jobs and workers (see: sync --queue)")
    status.add_argument("--queue", required=True, metavar="REDIS_URL", help="the queue's Redis")
    status.add_argument("--queue-name", metavar="NAME", help=argparse.SUPPRESS)
