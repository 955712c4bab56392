"""``makini-async get`` and ``makini-async list``: records as JSON, with ``$MAKINI_TOKEN``."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, TextIO
from urllib.parse import quote

from makini_async import Connection, ConnectionRegistry, Listing, Page
from makini_async._pagination import parse_page
from makini_async._registry import resolve_base_url
from makini_async.sync._entities import collection

from ._connections import add_connection, env_token
from ._parser import EXIT_OK, FILTER_OPS, CommandLineError

if TYPE_CHECKING:
    from makini_async.typing import JSON

__all__ = ["run_read"]


def _filters(items: list[str]) -> list[tuple[str, object]]:
    """``filter[FIELD]`` and ``filter[FIELD:OP]`` parameters; a bad one is a usage error."""
    params: list[tuple[str, object]] = []
    for item in items:
        target, sep, value = item.partition("=")
        field, colon, op = target.partition(":")
        if not sep or not field.strip() or any(c in field for c in "[]"):
            raise CommandLineError(f"--filter {item!r}: use FIELD=VALUE or FIELD:OP=VALUE")
        if colon and op not in FILTER_OPS:
            raise CommandLineError(
                f"--filter {item!r}: unknown operator {op!r}; use one of {', '.join(FILTER_OPS)}"
            )
        params.append((f"filter[{target}]", value))
    return params


def _listing(
    conn: Connection, path: str, params: list[tuple[str, object]], args: argparse.Namespace
) -> Listing[JSON]:
    """The records of ``path`` from ``--page`` on: that page alone, or every page with --all."""
    call = f"GET {path}"

    async def fetch(number: int) -> Page[JSON]:
        answer = await conn.request("GET", path, params=[*params, ("page", number)])
        return parse_page(answer, number, call)

    return Listing(fetch, page=args.page, max_pages=None if args.all else 1)


async def run_read(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``makini-async get`` or ``makini-async list`` and print the JSON.

    Args:
        args: The parsed command line.
        out: Where the JSON goes.

    Returns:
        The exit status, 0.

    Raises:
        CommandLineError: An unknown resource, no ``$MAKINI_TOKEN``, or a malformed ``--filter``.
        ValueError: A bad ``--base-url`` or ``$MAKINI_BASE_URL``.
        MakiniError: A request failed.
    """
    try:
        path = collection(args.resource).path
    except ValueError as exc:
        raise CommandLineError(str(exc)) from None
    filters = _filters(args.filter) if args.command == "list" else []
    base_url = resolve_base_url(args.base_url)
    token = env_token("MAKINI_TOKEN")
    async with ConnectionRegistry(base_url) as registry:
        add_connection(registry, "cli", token, "MAKINI_TOKEN")
        conn = registry["cli"]
        result: object
        if args.command == "get":
            answer = await conn.request("GET", f"{path}/{quote(args.key, safe='')}")
            result = answer.data.get("data") if isinstance(answer.data, dict) else None
        else:
            params = [("per_page", args.per_page), *filters]
            result = await _listing(conn, path, params, args).to_list()
    out.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    out.flush()
    return EXIT_OK
