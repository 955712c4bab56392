"""What every service shares: its connection and path, listing, and decoding the answers.

Records decode tolerantly unless the call, or else the connection (its registry's ``strict``),
asks for strict decoding: see the models' docstring for the rules. A list page is decoded
straight from its bytes when msgspec is installed (`makini_async.models._fast`, asked for through
`makini_async._json.use_body_decoder` around the request), and from decoded JSON otherwise or
when that path declines the page; both give the same records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from makini_async import _json
from makini_async._errors import RequestTimeoutError, ResponseDecodeError
from makini_async._pagination import Listing, Page, parse_page
from makini_async._requester import Requester, decodes_strictly
from makini_async._response import APIResponse
from makini_async._transport import check_seconds
from makini_async.models import Entity, Model, Writable
from makini_async.models._fast import TypedPage, page_decoder
from makini_async.models._tolerant import decode_record, decode_records
from makini_async.models._wire import RecordDecodeError, encode

from ._query import build_query

if TYPE_CHECKING:
    from makini_async._transport import Timeouts
    from makini_async._types import JSON

__all__ = [
    "Service",
    "body_of",
    "collection_of",
    "decode_one",
    "decode_page",
    "is_incremental",
    "listing",
    "strictness",
]

M = TypeVar("M", bound=Model)


# -- decoding ---------------------------------------------------------------------------------


def _decode_error(problem: str, response: APIResponse, call: str) -> ResponseDecodeError:
    return ResponseDecodeError(
        f"{problem} ({call})", status=response.status, request_id=response.request_id
    )


def _with_data(response: APIResponse, data: JSON) -> APIResponse:
    headers = response.headers  # the same headers, passed on
    return APIResponse(response.status, headers, response.request_id, data)  # type: ignore[arg-type]


def strictness(connection: Requester, strict: bool | None) -> bool:
    """Whether a call decodes strictly: its own ``strict``, else its connection's.

    Raises:
        TypeError: ``strict`` is neither a bool nor None (before any I/O).
    """
    if strict is None:
        return decodes_strictly(connection)
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool or None, not {type(strict).__name__}")
    return strict


def decode_page(
    response: APIResponse, model: type[M], number: int, call: str, *, strict: bool = False
) -> Page[M]:
    """Decode a list response into a `Page` of ``model`` (`parse_page` reads the envelope).

    Args:
        response: The list response; its ``data`` may be a `TypedPage` already.
        model: The records' model.
        number: The page number asked for.
        call: The request, for messages.
        strict: Raise for a value that does not fit its field instead of keeping it in the
            record's ``invalid``.

    Raises:
        ResponseDecodeError: Not a list envelope, a record that is not an object, or (strict)
            a value that does not fit (the message names the path, e.g. ``$.data[3].dueAt``).
    """
    body: object = response.data  # a TypedPage when the fast path took the page
    if isinstance(body, TypedPage):
        if body.model is model and not (strict and body.tainted):
            envelope = _with_data(response, {"data": [], "meta": body.meta, "links": body.links})
            page = parse_page(envelope, number, call)
            records = cast("list[M]", body.records)
            return Page(
                records=tuple(records),
                meta=page.meta,
                links=page.links,
                request_id=page.request_id,
            )
        # Strict and a value did not fit: the reference path raises, naming it.
        response = _with_data(response, body.json())
    page = parse_page(response, number, call)
    try:
        records = decode_records(list(page.records), model, ".data", strict=strict)
    except RecordDecodeError as exc:
        raise _decode_error(f"Unexpected value: {exc}", response, call) from None
    return Page(
        records=tuple(records), meta=page.meta, links=page.links, request_id=page.request_id
    )


def collection_of(cls: type[Service]) -> tuple[str, type[Entity]]:
    """The collection a service class serves: its path and the model of its records.

    Args:
        cls: A service class, e.g. ``EAMWorkOrders``.

    Returns:
        ``(path, model)``, e.g. ``("/api/eam/work-orders", WorkOrder)``; the path is empty for
        the base classes and mixins, which serve no collection.

    .. versionadded:: 0.1.0
    """
    return cls._path, cls._model


def is_incremental(cls: type[Service]) -> bool:
    """Whether a collection's records carry ``updatedAt``, so it can be read by what changed.

    Such a collection can be listed in ``updatedAt`` order (``sort[updatedAt]``) and filtered to
    what changed since a time (``filter[updatedAt:gt]``); Makini refuses both for the others
    (units of measure, meter readings, exchange rates), which are read whole.

    .. versionadded:: 0.1.0
    """
    return cls._incremental


def decode_one(response: APIResponse, model: type[M], call: str, *, strict: bool = False) -> M:
    """Decode a ``{"data": {...}}`` response into ``model``.

    Raises:
        ResponseDecodeError: Not a record envelope, or (strict) a field of the wrong type.
    """
    body = response.data
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise _decode_error("Expected a response with a 'data' object", response, call)
    try:
        return decode_record(body["data"], model, ".data", strict=strict)
    except RecordDecodeError as exc:
        raise _decode_error(f"Unexpected value: {exc}", response, call) from None


# -- services ---------------------------------------------------------------------------------


def listing(
    connection: Requester,
    path: str,
    model: type[M],
    params: list[tuple[str, str]],
    *,
    page: int = 1,
    max_pages: int | None = None,
    prefetch: int = 0,
    timeout: Timeouts | float | None = None,
    deadline: float | None = None,
    strict: bool | None = None,
) -> Listing[M]:
    """A `Listing` of ``model`` records from ``GET path``, page after page.

    With ``deadline``, every page request shares one deadline, counted from the first request:
    each gets the time that is left, and a page asked for after it passed fails at once.
    ``strict`` (None: the connection's) decides how values that do not fit are handled.

    Raises:
        TypeError: ``deadline`` is not a number, or ``strict`` not a bool.
        ValueError: ``deadline`` is not > 0.
    """
    if deadline is not None:
        deadline = check_seconds("deadline", deadline)
    strictly = strictness(connection, strict)
    fast = page_decoder(model)
    started: list[float] = []

    def remaining() -> float | None:
        if deadline is None:
            return None
        now = connection.clock.monotonic()
        if not started:
            started.append(now)
        left = started[0] + deadline - now
        if left <= 0:
            raise RequestTimeoutError(
                f"The listing's deadline of {deadline}s passed",
                method="GET",
                path=path,
                may_have_reached_server=False,
            )
        return left

    async def fetch(number: int) -> Page[M]:
        # The page's bytes are decoded straight into records when the fast path takes them.
        token = _json.use_body_decoder(fast)
        try:
            response = await connection.request(
                "GET",
                path,
                params=[*params, ("page", str(number))],
                timeout=timeout,
                deadline=remaining(),
            )
        finally:
            _json.reset_body_decoder(token)
        return decode_page(response, model, number, f"GET {path}", strict=strictly)

    return Listing(fetch, page=page, max_pages=max_pages, prefetch=prefetch)


class Service:
    """One collection of one connection (e.g. ``conn.eam.work_orders``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_conn",)
    _path: ClassVar[str] = ""
    _model: ClassVar[type[Entity]] = Entity
    _status_field: ClassVar[str] = "status"
    # False for a collection whose records carry no ``updatedAt`` (e.g. units of measure).
    _incremental: ClassVar[bool] = True

    def __init__(self, connection: Requester) -> None:
        self._conn = connection

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path} of {getattr(self._conn, 'id', None)!r}>"

    def _sublist(
        self, tail: str, model: type[M], per_page: int | None, strict: bool | None = None
    ) -> Listing[M]:
        """A listing of a collection beside this one (e.g. work-order tasks)."""
        path = self._path.rsplit("/", 1)[0] + "/" + tail
        params = build_query(
            model, where=None, match=None, sort=None, modified_after=None, per_page=per_page
        )
        return listing(self._conn, path, model, params, strict=strict)

    async def _write(
        self,
        method: str,
        path: str,
        body: JSON,
        model: type[M],
        *,
        idempotency_key: str | None,
        timeout: Timeouts | float | None,
        deadline: float | None,
        strict: bool | None,
    ) -> M:
        strictly = strictness(self._conn, strict)
        response = await self._conn.request(
            method,
            path,
            json=body,
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline=deadline,
        )
        return decode_one(response, model, f"{method} {path}", strict=strictly)


def body_of(body: Writable | Mapping[str, JSON]) -> JSON:
    """A write body as JSON: a model input encoded under its wire names, or a mapping."""
    if isinstance(body, Writable):
        return cast("JSON", encode(body))
    if isinstance(body, Mapping):
        return dict(body)
    raise TypeError(f"A write body is a model input or a mapping, not {type(body).__name__}")
