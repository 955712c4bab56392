"""The command line of ``makini-async``: its arguments, usage errors and exit statuses."""

from __future__ import annotations

import argparse
import os
from typing import Final

from makini_async._registry import DEFAULT_BASE_URL

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "UsageError",
    "build_parser",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
PROG: Final = "makini-async"


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _base_url(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--base-url",
        default=os.environ.get("MAKINI_BASE_URL", DEFAULT_BASE_URL),
        help="Makini's API origin (default: $MAKINI_BASE_URL or %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every command but ``sandbox`` (which parses its own).

    Returns:
        The parser; ``args.command`` names the command.
    """
    parser = argparse.ArgumentParser(
        prog=PROG, description="The Makini batch client: sync, demo, sandbox and quick looks."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests and retries")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("sync", help="pull what changed for every connection into a store")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--connections", metavar="FILE", help="JSON or CSV of id,token")
    source.add_argument(
        "--admin",
        action="store_true",
        help="every active connection, via the Admin API: $MAKINI_CLIENT_ID and "
        "$MAKINI_CLIENT_SECRET (or a bare $MAKINI_ADMIN_TOKEN)",
    )
    run.add_argument("--entities", required=True, help="e.g. work-orders,assets")
    run.add_argument("--store", required=True, help="a SQLite file, or a directory for JSON lines")
    run.add_argument("--format", choices=("auto", "sqlite", "jsonl"), default="auto")
    run.add_argument("--concurrency", type=_positive, default=8)
    run.add_argument("--per-page", type=_positive, default=500)
    run.add_argument("--overlap", type=_positive, default=300, help="seconds (default 300)")
    run.add_argument("--plain", action="store_true", help="plain lines, no live display")
    _base_url(run)

    demo = commands.add_parser("demo", help="the main job against an embedded sandbox")
    demo.add_argument("--db", help="the SQLite file to write (default: a temporary file)")
    demo.add_argument("--connections", type=_positive, default=25)
    demo.add_argument("--plain", action="store_true", help="plain lines, no live display")

    commands.add_parser("sandbox", help="serve the sandbox (see: makini-async sandbox --help)")

    for name in ("get", "list"):
        sub = commands.add_parser(name, help=f"{name} records with $MAKINI_TOKEN (JSON out)")
        sub.add_argument("resource", help="e.g. work-orders or erp/sales-orders")
        if name == "get":
            sub.add_argument("key")
        else:
            sub.add_argument("--filter", action="append", default=[], metavar="FIELD[:OP]=V")
            sub.add_argument("--per-page", type=_positive, default=50)
            sub.add_argument("--page", type=_positive, default=1)
            sub.add_argument("--all", action="store_true", help="every page")
        _base_url(sub)
    return parser
