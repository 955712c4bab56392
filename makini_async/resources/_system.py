"""The calls about the connection itself: sync state, disconnect, raw tables and passthrough."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

import attrs

from makini_async._errors import ResponseDecodeError
from makini_async._pagination import Listing
from makini_async.models import Integration, Model, SyncState
from makini_async.models._wire import RecordDecodeError, decode

from ._service import decode_one, listing

if TYPE_CHECKING:
    from makini_async._transport import Timeouts
    from makini_async._types import JSON

    from ._base import Requester

__all__ = [
    "RawRow",
    "disconnect",
    "integration",
    "passthrough",
    "raw_rows",
    "raw_tables",
    "request_sync",
    "sync_status",
]


@attrs.frozen(slots=True, kw_only=True)
class RawRow(Model):
    """One row of a raw source table: every column is in ``extra`` (and ``raw``).

    .. versionadded:: 0.1.0
    """


async def integration(
    connection: Requester, *, timeout: Timeouts | float | None, deadline: float | None
) -> Integration:
    """``GET /api/integrations/current``."""
    path = "/api/integrations/current"
    response = await connection.request("GET", path, timeout=timeout, deadline=deadline)
    return decode_one(response, Integration, f"GET {path}")


async def sync_status(
    connection: Requester, *, timeout: Timeouts | float | None, deadline: float | None
) -> SyncState:
    """``GET /api/integrations/sync/status`` (a bare object, or one wrapped in ``data``)."""
    path = "/api/integrations/sync/status"
    response = await connection.request("GET", path, timeout=timeout, deadline=deadline)
    body = response.data
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        body = body["data"]
    try:
        return decode(body, SyncState)
    except RecordDecodeError as exc:
        raise ResponseDecodeError(
            f"Unexpected value: {exc} (GET {path})",
            status=response.status,
            request_id=response.request_id,
        ) from None


async def request_sync(
    connection: Requester,
    sync_type: str,
    scopes: Sequence[str] | None,
    *,
    timeout: Timeouts | float | None,
    deadline: float | None,
) -> JSON:
    """``POST /api/integrations/sync``."""
    body: dict[str, JSON] = {"type": sync_type}
    if scopes is not None:
        body["scopes"] = list(scopes)
    response = await connection.request(
        "POST", "/api/integrations/sync", json=body, timeout=timeout, deadline=deadline
    )
    data = response.data
    return data["data"] if isinstance(data, dict) and "data" in data else data


async def disconnect(
    connection: Requester, *, timeout: Timeouts | float | None, deadline: float | None
) -> None:
    """``DELETE /api/integrations/current``."""
    await connection.request(
        "DELETE", "/api/integrations/current", timeout=timeout, deadline=deadline
    )


async def raw_tables(
    connection: Requester, *, timeout: Timeouts | float | None, deadline: float | None
) -> JSON:
    """``GET /api/raw/tables``."""
    response = await connection.request(
        "GET", "/api/raw/tables", timeout=timeout, deadline=deadline
    )
    data = response.data
    return data["data"] if isinstance(data, dict) and "data" in data else data


def raw_rows(
    connection: Requester,
    table: str,
    *,
    per_page: int | None,
    prefetch: int,
    timeout: Timeouts | float | None,
    deadline: float | None,
) -> Listing[RawRow]:
    """``GET /api/raw/tables/{table}/data``, page after page."""
    if not table:
        raise ValueError("table must be a non-empty str")
    path = f"/api/raw/tables/{quote(table, safe='')}/data"
    params = [] if per_page is None else [("per_page", str(per_page))]
    return listing(
        connection, path, RawRow, params, prefetch=prefetch, timeout=timeout, deadline=deadline
    )


async def passthrough(
    connection: Requester,
    path: str,
    method: Literal["get", "post", "put", "delete"],
    headers: Mapping[str, str] | None,
    body: JSON,
    *,
    timeout: Timeouts | float | None,
    deadline: float | None,
) -> JSON:
    """``POST /api/passthrough``."""
    payload: dict[str, JSON] = {"path": path, "method": method, "headers": dict(headers or {})}
    if body is not None:
        payload["body"] = body
    response = await connection.request(
        "POST", "/api/passthrough", json=payload, timeout=timeout, deadline=deadline
    )
    data = response.data
    return data["data"] if isinstance(data, dict) and "data" in data else data
