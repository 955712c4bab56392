"""What every service shares: its connection and path, listing, and decoding the answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from makini_async._errors import RequestTimeoutError, ResponseDecodeError
from makini_async._pagination import Listing, Page, parse_page
from makini_async._requester import Requester
from makini_async.models import Entity, Model, Writable
from makini_async.models._wire import RecordDecodeError, decode, decode_list, encode

from ._query import build_query

if TYPE_CHECKING:
    from makini_async._response import APIResponse
    from makini_async._transport import Timeouts
    from makini_async._types import JSON

__all__ = ["Service", "body_of", "collection_of", "decode_one", "decode_page", "listing"]

M = TypeVar("M", bound=Model)


# -- decoding ---------------------------------------------------------------------------------


def _decode_error(problem: str, response: APIResponse, call: str) -> ResponseDecodeError:
    return ResponseDecodeError(
        f"{problem} ({call})", status=response.status, request_id=response.request_id
    )


def decode_page(response: APIResponse, model: type[M], number: int, call: str) -> Page[M]:
    """Decode a list response into a `Page` of ``model`` (`parse_page` reads the envelope).

    Raises:
        ResponseDecodeError: Not a list envelope, or a record of the wrong shape (the message
            names the path, e.g. ``$.data[3].dueAt``).
    """
    page = parse_page(response, number, call)
    try:
        records = decode_list(list(page.records), model, ".data")
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


def decode_one(response: APIResponse, model: type[M], call: str) -> M:
    """Decode a ``{"data": {...}}`` response into ``model``.

    Raises:
        ResponseDecodeError: Not a record envelope, or a field of the wrong type.
    """
    body = response.data
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise _decode_error("Expected a response with a 'data' object", response, call)
    try:
        return decode(body["data"], model, ".data")
    except RecordDecodeError as exc:
        raise _decode_error(f"Unexpected value: {exc}", response, call) from None


# -- services ---------------------------------------------------------------------------------


def _check_deadline(deadline: object) -> None:
    if deadline is None:
        return
    if not isinstance(deadline, int | float) or isinstance(deadline, bool):
        raise TypeError("deadline must be a number of seconds, or None")
    if not deadline > 0:
        raise ValueError(f"deadline must be > 0 seconds, got {deadline!r}")


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
) -> Listing[M]:
    """A `Listing` of ``model`` records from ``GET path``, page after page.

    With ``deadline``, every page request shares one deadline, counted from the first request:
    each gets the time that is left, and a page asked for after it passed fails at once.

    Raises:
        TypeError: ``deadline`` is not a number.
        ValueError: ``deadline`` is not > 0.
    """
    _check_deadline(deadline)
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
        response = await connection.request(
            "GET",
            path,
            params=[*params, ("page", str(number))],
            timeout=timeout,
            deadline=remaining(),
        )
        return decode_page(response, model, number, f"GET {path}")

    return Listing(fetch, page=page, max_pages=max_pages, prefetch=prefetch)


class Service:
    """One collection of one connection (e.g. ``conn.eam.work_orders``).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_conn",)
    _path: ClassVar[str] = ""
    _model: ClassVar[type[Entity]] = Entity
    _status_field: ClassVar[str] = "status"

    def __init__(self, connection: Requester) -> None:
        self._conn = connection

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path} of {getattr(self._conn, 'id', None)!r}>"

    def _sublist(self, tail: str, model: type[M], per_page: int | None) -> Listing[M]:
        """A listing of a collection beside this one (e.g. work-order tasks)."""
        path = self._path.rsplit("/", 1)[0] + "/" + tail
        params = build_query(
            model, where=None, match=None, sort=None, modified_after=None, per_page=per_page
        )
        return listing(self._conn, path, model, params)

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
    ) -> M:
        response = await self._conn.request(
            method,
            path,
            json=body,
            idempotency_key=idempotency_key,
            timeout=timeout,
            deadline=deadline,
        )
        return decode_one(response, model, f"{method} {path}")


def body_of(body: Writable | Mapping[str, JSON]) -> JSON:
    """A write body as JSON: a model input encoded under its wire names, or a mapping."""
    if isinstance(body, Writable):
        return cast("JSON", encode(body))
    if isinstance(body, Mapping):
        return dict(body)
    raise TypeError(f"A write body is a model input or a mapping, not {type(body).__name__}")
