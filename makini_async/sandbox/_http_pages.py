"""The contract's paginated list envelope: ``data``, ``links`` and ``meta``."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from aiohttp import web

from makini_async.sandbox._data import Record
from makini_async.sandbox._errors import SandboxError, dumps
from makini_async.sandbox._http_common import json_response
from makini_async.sandbox._query import QueryError, parse_query

__all__ = ["page_of", "paginated", "simple_page"]


def page_of(items: list[Record], page: int, per_page: int) -> list[Record]:
    """The items of one page (pages count from 1)."""
    start = (page - 1) * per_page
    return items[start : start + per_page]


def paginated(
    request: web.Request, data: list[Record], total: int, page: int, per_page: int
) -> dict[str, object]:
    """Wrap one page of ``total`` items in the envelope, links built from the request's URL."""
    last = max(1, math.ceil(total / per_page))
    base = f"{request.scheme}://{request.host}{request.path}"
    others = [(k, v) for k, v in request.query.items() if k != "page"]

    def link(number: int) -> str:
        return f"{base}?{urlencode([*others, ('page', str(number))])}"

    start = (page - 1) * per_page
    return {
        "data": data,
        "links": {
            "first": link(1),
            "last": link(last),
            "prev": link(page - 1) if page > 1 else None,
            "next": link(page + 1) if page < last else None,
        },
        "meta": {
            "current_page": page,
            "from": start + 1 if data else None,
            "last_page": last,
            "path": base,
            "per_page": per_page,
            "to": start + len(data) if data else None,
            "total": total,
        },
    }


def simple_page(request: web.Request, headers: dict[str, str], items: list[Record]) -> web.Response:
    """Answer with a page of ``items``, honouring only ``page`` and ``per_page``.

    Raises:
        SandboxError: ``page`` or ``per_page`` is not valid.
    """
    try:
        query = parse_query(
            [(k, v) for k, v in request.query.items() if k in {"page", "per_page"}], {}
        )
    except QueryError as exc:
        raise SandboxError(
            "INVALID_REQUEST", str(exc), details={"parameter": exc.parameter}
        ) from None
    data = page_of(items, query.page, query.per_page)
    body = paginated(request, data, len(items), query.page, query.per_page)
    return json_response(200, dumps(body), headers)
