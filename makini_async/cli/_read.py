"""``makini-async get`` and ``makini-async list``: records as JSON, with ``$MAKINI_TOKEN``."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, TextIO
from urllib.parse import quote

from makini_async import Connection, ConnectionRegistry, Listing, Page
from makini_async._pagination import parse_page
from makini_async.sync._entities import collection

from ._connections import add_connection, env_token
from ._parser import EXIT_OK, UsageError

if TYPE_CHECKING:
    from makini_async.typing import JSON

__all__ = ["run_read"]


def _filters(items: list[str]) -> list[tuple[str, object]]:
    params: list[tuple[str, object]] = []
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise UsageError(f"--filter {item!r}: use FIELD=VALUE or FIELD:OP=VALUE")
        params.append((f"filter[{field}]", value))
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
        UsageError: An unknown resource, no ``$MAKINI_TOKEN``, or a malformed ``--filter``.
        MakiniError: A request failed.
    """
    try:
        path = collection(args.resource).path
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    token = env_token("MAKINI_TOKEN")
    async with ConnectionRegistry(args.base_url) as registry:
        add_connection(registry, "cli", token, "MAKINI_TOKEN")
        conn = registry.get("cli")
        result: object
        if args.command == "get":
            answer = await conn.request("GET", f"{path}/{quote(args.key, safe='')}")
            result = answer.data.get("data") if isinstance(answer.data, dict) else None
        else:
            params = [("per_page", args.per_page), *_filters(args.filter)]
            result = await _listing(conn, path, params, args).to_list()
    out.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    out.flush()
    return EXIT_OK
