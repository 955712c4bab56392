"""Page-number pagination: `Page`, and `Listing`, the async iterator that follows pages to the end.

Makini lists are Laravel paginators: ``page`` (1-based) and ``per_page`` in the query, ``meta``
with ``current_page`` and ``last_page`` in the answer; iteration ends when ``current_page >=
last_page``. `Listing` follows them with these guards:

- an empty page before the last is followed (records can vanish between two requests);
- a page whose ``current_page`` is not the page asked for raises `PaginationError` (a server that
  does not advance would otherwise loop for ever);
- when ``total`` changes underneath (records added or deleted while listing), the new
  ``last_page`` is followed and a warning is logged: records may then be skipped or repeated, so
  incremental pulls should sort by ``updatedAt`` and filter ``updatedAt >= watermark``, and dedupe
  by key;
- ``max_pages`` stops after that many pages, whatever ``last_page`` says.

With ``prefetch=n`` (n >= 2), once the first page tells ``last_page`` the next pages are fetched
concurrently, at most ``n`` at a time, and still yielded in order. The connection's concurrency
limit and rate-limit gate apply to every fetch, and leaving the loop early (``break``, an error,
cancellation) cancels the fetches still in flight.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final, Generic, TypeVar

import attrs

from ._errors import PaginationError, ResponseDecodeError

if TYPE_CHECKING:
    from ._response import APIResponse
    from ._types import JSON

__all__ = ["Listing", "Page", "PageMeta", "check_page", "parse_page"]

logger: Final = logging.getLogger("makini_async")
#: Longest numeric string read as a paginator number (``int()`` of more is slow or refused).
_MAX_DIGITS: Final = 20

T = TypeVar("T")


@attrs.frozen(slots=True, kw_only=True)
class PageMeta:
    """The paginator fields of one list response.

    Attributes:
        current_page: This page's number (1-based).
        last_page: The number of the last page.
        per_page: Records per page, when the server said.
        total: Records in the whole listing, when the server said.
        first_index: The 1-based position of this page's first record (``from``), or None.
        last_index: The position of its last record (``to``), or None.

    .. versionadded:: 0.1.0
    """

    current_page: int
    last_page: int
    per_page: int | None = None
    total: int | None = None
    first_index: int | None = None
    last_index: int | None = None


@attrs.frozen(slots=True, kw_only=True)
class Page(Generic[T]):
    """One page of a listing.

    Attributes:
        records: The page's records, in order.
        meta: Its paginator fields.
        links: The ``first``/``last``/``prev``/``next`` URLs, when the server sent them.
        request_id: The ``X-Request-Id`` of the response.

    .. versionadded:: 0.1.0
    """

    records: tuple[T, ...]
    meta: PageMeta
    links: Mapping[str, str | None] = attrs.field(factory=dict, eq=False, repr=False)
    request_id: str | None = None

    @property
    def is_last(self) -> bool:
        """True when no page follows this one."""
        return self.meta.current_page >= self.meta.last_page

    def __len__(self) -> int:
        return len(self.records)


FetchPage = Callable[[int], Awaitable[Page[T]]]


class Listing(Generic[T]):
    """An async iterator over every record of a listing, page after page.

    ``async for record in listing`` yields records; ``async for page in listing.pages()``
    yields `Page` objects with their ``meta``. Each iteration starts again from ``page``.

    Args:
        fetch: ``async (page number) -> Page``.
        page: The page to start from (resume a listing by passing the next page number).
        max_pages: Most pages to fetch (None: all).
        prefetch: How many pages to fetch concurrently once ``last_page`` is known (0 or 1:
            one after the other).

    Raises:
        ValueError: ``page``, ``max_pages`` or ``prefetch`` out of range.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_fetch", "_max_pages", "_prefetch", "_start")

    def __init__(
        self,
        fetch: FetchPage[T],
        *,
        page: int = 1,
        max_pages: int | None = None,
        prefetch: int = 0,
    ) -> None:
        if type(page) is not int or page < 1:
            raise ValueError(f"page must be an int >= 1, got {page!r}")
        if max_pages is not None and (type(max_pages) is not int or max_pages < 1):
            raise ValueError(f"max_pages must be an int >= 1 or None, got {max_pages!r}")
        if type(prefetch) is not int or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0, got {prefetch!r}")
        self._fetch = fetch
        self._start = page
        self._max_pages = max_pages
        self._prefetch = prefetch

    def __aiter__(self) -> AsyncIterator[T]:
        return self._records()

    async def _records(self) -> AsyncGenerator[T, None]:
        # No explicit aclose of the pages here: if this generator is dropped, the pages one is
        # dropped with it and the event loop closes it (cancelling its prefetches); closing it
        # from here as well would race the loop's own shutdown of abandoned generators.
        async for page in self._pages():
            for record in page.records:
                yield record

    def pages(self) -> AsyncIterator[Page[T]]:
        """Iterate page by page.

        Returns:
            An async iterator over `Page` objects.

        Raises:
            PaginationError: A page answered for another page number.

        .. versionadded:: 0.1.0
        """
        return self._pages()

    async def to_list(self) -> list[T]:
        """Fetch every page and return all the records.

        Returns:
            The records, in order.

        .. versionadded:: 0.1.0
        """
        return [record async for record in self]

    async def first(self) -> T | None:
        """Fetch the first page only and return its first record, or None.

        Returns:
            The first record, or None for an empty listing.

        .. versionadded:: 0.1.0
        """
        page = await self._fetch(self._start)
        return page.records[0] if page.records else None

    def _room(self, fetched: int) -> bool:
        return self._max_pages is None or fetched < self._max_pages

    async def _pages(self) -> AsyncGenerator[Page[T], None]:  # noqa: C901 - one loop, two modes
        first = await self._fetch(self._start)
        _check(first, self._start)
        if self._prefetch < 2:  # noqa: PLR2004 - one page in flight is sequential
            yield first
            page, fetched = first, 1
            total, last = first.meta.total, first.meta.last_page
            while page.meta.current_page < last and self._room(fetched):
                number = page.meta.current_page + 1
                page = await self._fetch(number)
                fetched += 1
                _check(page, number)
                total, last = _follow_total(total, last, page)
                yield page
            return
        pending: collections.deque[tuple[int, asyncio.Task[Page[T]]]] = collections.deque()
        dropped: list[asyncio.Task[Page[T]]] = []
        total, last = first.meta.total, first.meta.last_page
        following = first.meta.current_page + 1
        fetched = 1
        current: Page[T] | None = first
        try:
            while True:
                while (
                    len(pending) < self._prefetch
                    and following <= last
                    and self._room(fetched + len(pending))
                ):
                    task = asyncio.ensure_future(self._fetch(following))
                    pending.append((following, task))
                    following += 1
                if current is not None:  # the next pages load while the caller reads this one
                    yield current
                if not pending:
                    return
                number, task = pending.popleft()
                current = await task
                fetched += 1
                _check(current, number)
                total, new_last = _follow_total(total, last, current)
                if new_last < last:
                    while pending and pending[-1][0] > new_last:
                        dropped.append(pending.pop()[1])
                        dropped[-1].cancel()
                    following = min(following, new_last + 1)
                last = new_last
        finally:
            tasks = [task for _, task in pending] + dropped
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)


def _check(page: Page[T], requested: int) -> None:
    check_page(page.meta, requested)


def check_page(meta: PageMeta, requested: int) -> None:
    """Make sure a page is the one asked for, so that a server that does not advance stops a loop.

    Args:
        meta: The page's paginator fields (from `parse_page`).
        requested: The page number asked for.

    Raises:
        PaginationError: The server answered with another ``current_page``.

    .. versionadded:: 0.1.0
    """
    received = meta.current_page
    if received != requested:
        raise PaginationError(
            f"Asked for page {requested} and got page {received}: the listing does not advance.",
            requested=requested,
            received=received,
        )


def parse_page(response: APIResponse, requested: int, call: str) -> Page[JSON]:
    """Read a list response: its records as decoded JSON, its paginator fields and its links.

    This is the one reader of Makini's list envelope, a Laravel paginator. ``data`` is the array
    of records. ``meta`` (both the v3 and the v4 shape) holds ``current_page``, ``last_page``,
    ``per_page``, ``total``, ``from`` and ``to``, as integers or numeric strings. ``links``
    (v3 only) holds the ``first``/``last``/``prev``/``next`` URLs. A missing or unreadable
    ``current_page`` is taken as the page asked for, and a missing ``last_page`` as this page,
    so an answer without ``meta`` is the only page. The records themselves are not looked at:
    callers turn them into models or rows.

    Args:
        response: The list response.
        requested: The page number asked for.
        call: The request, for messages (``GET /api/eam/assets``).

    Returns:
        A `Page` of the raw records, with its `PageMeta`, links and request id.

    Raises:
        ResponseDecodeError: The body is not a JSON object with a ``data`` array.

    .. versionadded:: 0.1.0
    """
    body = response.data
    if not isinstance(body, dict) or not isinstance(data := body.get("data"), list):
        raise ResponseDecodeError(
            f"Expected a list response with a 'data' array ({call})",
            status=response.status,
            request_id=response.request_id,
        )
    raw_meta = body.get("meta")
    fields: Mapping[str, JSON] = raw_meta if isinstance(raw_meta, dict) else {}
    current = _number(fields.get("current_page")) or requested
    meta = PageMeta(
        current_page=current,
        last_page=_number(fields.get("last_page")) or current,
        per_page=_number(fields.get("per_page")),
        total=_number(fields.get("total")),
        first_index=_number(fields.get("from")),
        last_index=_number(fields.get("to")),
    )
    raw_links = body.get("links")
    links = (
        {str(k): v if isinstance(v, str) else None for k, v in raw_links.items()}
        if isinstance(raw_links, dict)
        else {}
    )
    return Page(records=tuple(data), meta=meta, links=links, request_id=response.request_id)


def _number(value: object) -> int | None:
    """A paginator number: an integer (not a bool) or a string of digits; else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdecimal() and len(text) <= _MAX_DIGITS:
            return int(text)
    return None


def _follow_total(total: int | None, last: int, page: Page[T]) -> tuple[int | None, int]:
    if page.meta.total != total:
        logger.warning(
            "The listing changed while paging (total %s -> %s, last page %d -> %d); "
            "records may be skipped or repeated",
            total,
            page.meta.total,
            last,
            page.meta.last_page,
        )
    return page.meta.total, page.meta.last_page
