"""`sync`: pull what changed since the last run, for every connection and entity, into a store.

For one connection and entity the records are listed in ascending ``updatedAt`` order, filtered
to ``updatedAt`` after a *cursor*. After each page the rows and the new watermark (the page's
largest ``updatedAt``) go to the store in one atomic write; only then is the next page asked
for. The next page is asked for with the cursor moved up to just before that watermark and
``page=1`` again, rather than ``page=n+1``: records updated while we page move to the end of the
ordering, and with plain page numbers they would shift the others back so that one is skipped.
Only when a whole page shares one second (more records than a page in one second) do the page
numbers go up under the same cursor. Every run starts ``overlap`` before the stored watermark,
so that records which reach Makini late with an older ``updatedAt`` are still seen; what is read
twice is written once, because rows are keyed by ``(connection, key)``.

A collection whose records carry no ``updatedAt`` (units of measure, meter readings, exchange
rates) cannot be ordered or filtered that way: it is read whole, page after page in the server's
order, on every run, and only the rows that differ from the stored ones count as changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal

import attrs

from makini_async._errors import MakiniError, ResponseDecodeError
from makini_async._fanout import Outcome, OutcomeStatus
from makini_async._pagination import check_page, parse_page
from makini_async._transport import Timeouts, check_seconds
from makini_async.models._wire import wire_name, wire_names

from ._entities import COLLECTIONS, Collection, resolve_entity
from ._store import Row, Store, record_encoder

if TYPE_CHECKING:
    from makini_async._connection import Connection
    from makini_async._registry import ConnectionRegistry
    from makini_async._response import APIResponse

__all__ = ["EntityResult", "Progress", "SyncSummary", "sync"]

_MAX_PER_PAGE: Final = 500
_ONE_SECOND: Final = timedelta(seconds=1)
_STAMP: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
_WIRE: Final = "%Y-%m-%dT%H:%M:%SZ"
_SAFE_KEY: Final = re.compile(r"\S")
_CANONICAL: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@attrs.frozen
class Progress:
    """A step of a running sync, for progress displays.

    Attributes:
        connection_id: The connection.
        entity: The entity (``domain/name``).
        records: Records received so far for this connection and entity.
        pages: Pages received so far.
        done: True on the last event of this connection and entity.
        error: The failure, in a few words, when it failed.

    .. versionadded:: 0.1.0
    """

    connection_id: str
    entity: str
    records: int
    pages: int
    done: bool = False
    error: str | None = None


@attrs.frozen
class EntityResult:
    """How one connection's entity went.

    Attributes:
        connection_id: The connection.
        entity: The entity (``domain/name``).
        status: ``"ok"``, ``"failed"`` or ``"skipped"``.
        records: Records received (records read twice at a page boundary count once).
        changed: Records that were new or different in the store.
        deleted: Soft-deleted records among those received.
        pages: Pages received.
        watermark: The stored watermark afterwards.
        error_code: Makini's error code when it failed (or the error class when it has none).
        request_id: The failed request's id.
        reason: Why it failed or was skipped, in a sentence.

    .. versionadded:: 0.1.0
    """

    connection_id: str
    entity: str
    status: Literal["ok", "failed", "skipped"]
    records: int = 0
    changed: int = 0
    deleted: int = 0
    pages: int = 0
    watermark: str | None = None
    error_code: str | None = None
    request_id: str | None = None
    reason: str | None = None


@attrs.define
class SyncSummary:
    """What a `sync` did, per connection and entity.

    Attributes:
        results: One `EntityResult` per connection and entity, in the order they finished.
        seconds: How long the sync took.

    .. versionadded:: 0.1.0
    """

    results: list[EntityResult] = attrs.Factory(list)
    seconds: float = 0.0

    @property
    def records(self) -> int:
        """Records received in all."""
        return sum(r.records for r in self.results)

    @property
    def changed(self) -> int:
        """Records new or changed in the store, in all."""
        return sum(r.changed for r in self.results)

    @property
    def failed(self) -> list[EntityResult]:
        """The results that failed or were skipped."""
        return [r for r in self.results if r.status != "ok"]

    @property
    def failed_connections(self) -> list[str]:
        """The connections with at least one failed or skipped entity, sorted."""
        return sorted({r.connection_id for r in self.failed})

    @property
    def ok(self) -> bool:
        """True when every connection and entity synced."""
        return not self.failed

    def by_entity(self) -> dict[str, list[EntityResult]]:
        """The results grouped by entity.

        Returns:
            Entity → its results.
        """
        grouped: dict[str, list[EntityResult]] = {}
        for result in self.results:
            grouped.setdefault(result.entity, []).append(result)
        return grouped


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_STAMP)


def _normalise(value: object) -> str | None:
    """An ISO-8601 time as a `Row` stamp; the API's own ``...:SSZ`` form takes a fast path."""
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        return f"{value[:19]}.000000Z"
    moment = _parse_time(value)
    return None if moment is None else _stamp(moment)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@attrs.frozen
class _Wire:
    """How one model's records and query parameters name what sync reads (from the models).

    ``sort`` and ``since`` are None for a collection without ``updatedAt``: it is read whole,
    in the server's order, every time.
    """

    key: str
    updated: tuple[str, ...]
    deleted: tuple[str, ...]
    sort: str | None
    since: str | None


def _wire(collection: Collection) -> _Wire:
    model = collection.model
    updated = wire_name(model, "updated_at")
    incremental = collection.incremental
    return _Wire(
        key=wire_name(model, "key"),
        updated=wire_names(model, "updated_at"),
        deleted=wire_names(model, "deleted_at"),
        sort=f"sort[{updated}]" if incremental else None,
        since=f"filter[{updated}:gt]" if incremental else None,
    )


@attrs.define
class _Job:
    """One connection and entity being synced."""

    connection: Connection
    entity: str
    path: str
    wire: _Wire
    records: int = 0
    changed: int = 0
    deleted: int = 0
    pages: int = 0
    watermark: str | None = None


class _Syncer:
    def __init__(
        self,
        store: Store,
        *,
        per_page: int,
        overlap: timedelta,
        since_param: Literal["filter", "modified_after"],
        on_progress: Callable[[Progress], object] | None,
        timeout: Timeouts | float | None = None,
    ) -> None:
        self.store = store
        self.timeout = timeout
        self.per_page = per_page
        self.overlap = overlap
        self.since_param = since_param
        self.on_progress = on_progress
        self.jobs: dict[tuple[str, str], _Job] = {}

    def _params(self, job: _Job, cursor: datetime | None, page: int) -> list[tuple[str, object]]:
        sort, since = job.wire.sort, job.wire.since
        params: list[tuple[str, object]] = [] if sort is None else [(sort, "0")]
        params += [("per_page", self.per_page), ("page", page)]
        if cursor is not None and since is not None:
            name = "modified_after" if self.since_param == "modified_after" else since
            params.append((name, cursor.strftime(_WIRE)))
        return params

    def _rows(self, job: _Job, answer: APIResponse, number: int) -> tuple[list[Row], bool]:
        """Turn a page into rows of JSON text (the decoded page can go as soon as this returns)."""
        page = parse_page(answer, number, f"GET {job.path}")
        check_page(page.meta, number)
        rows: list[Row] = []
        append, dump, safe_key = rows.append, record_encoder(), _SAFE_KEY.search
        # Read as decoding reads: the first wire name holding a value (v3 before v4), inline
        # because this runs for every record synced.
        key_name = job.wire.key
        updated_first, *updated_rest = job.wire.updated
        deleted_first, *deleted_rest = job.wire.deleted
        for record in page.records:
            if (
                not isinstance(record, dict)
                or not isinstance(key := record.get(key_name), str)
                or not safe_key(key)
            ):
                raise ResponseDecodeError(
                    f"A record of {job.entity} has no string `{key_name}`.",
                    status=answer.status,
                    request_id=answer.request_id,
                )
            updated = record.get(updated_first)
            if updated is None:
                for name in updated_rest:
                    updated = record.get(name)
                    if updated is not None:
                        break
            deleted = record.get(deleted_first)
            if deleted is None:
                for name in deleted_rest:
                    deleted = record.get(name)
                    if deleted is not None:
                        break
            append(
                Row(
                    key,
                    None if updated is None else _normalise(updated),
                    None if deleted is None else _normalise(deleted),
                    dump(record),
                )
            )
        return rows, page.is_last or not rows

    def _start(self, connection: Connection, entity: str) -> _Job:
        found = COLLECTIONS[entity]
        job = _Job(connection, entity, found.path, _wire(found))
        self.jobs[connection.id, entity] = job
        return job

    async def run(self, connection: Connection, entity: str) -> EntityResult:
        job = self._start(connection, entity)
        stored = await self.store.watermark(connection.id, entity)
        job.watermark = stored
        start = _parse_time(stored)
        cursor = None if start is None else start - max(self.overlap, _ONE_SECOND)
        page = 1
        # Keys (and their updatedAt) already read above the cursor: read again after a restart.
        above: dict[str, str | None] = {}
        ordered = True  # the server honours sort[updatedAt]; else the watermark waits for the end
        highest = ""
        expect_from = ""  # the smallest updatedAt the next page may start with, when sorted
        # A page's write overlaps the next page's request; writes land in order (one store
        # thread), and each carries the watermark its own rows allow.
        pending: asyncio.Future[None] | None = None
        try:
            while True:
                # The decoded page is not kept: only its rows wait for the store.
                answer = await connection.request(
                    "GET", job.path, params=self._params(job, cursor, page), timeout=self.timeout
                )
                rows, last = self._rows(job, answer, page)
                del answer
                job.pages += 1
                fresh = [row for row in rows if above.get(row.key, "") != row.updated_at]
                stamps = [row.updated_at for row in rows if row.updated_at is not None]
                if ordered and (stamps != sorted(stamps) or (stamps and stamps[0] < expect_from)):
                    ordered = False
                top = max(stamps) if stamps else None
                highest = max(highest, top or "")
                ready = highest if ordered or last else ""
                watermark = ready if ready and ready > (job.watermark or "") else None
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(self._write(job, fresh, watermark))
                if last:
                    break
                seen = {**above, **{row.key: row.updated_at for row in rows}}
                moved = _parse_time(top) if ordered else None
                if moved is not None:
                    moved = (moved - _ONE_SECOND).replace(microsecond=0)
                # Restart only when that skips part of this page (else: a page of ties).
                restart = moved is not None and _stamp(moved) >= stamps[0]
                if moved is not None and restart and (cursor is None or moved > cursor):
                    cursor, page = moved, 1
                    expect_from = _stamp(moved)
                    above = {k: u for k, u in seen.items() if u is not None and u > expect_from}
                else:
                    page += 1
                    above = seen
                    expect_from = top or expect_from
            await pending
        finally:
            if pending is not None and not pending.done():
                # Let the write in flight land (it is atomic either way) before giving up.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await pending
        return EntityResult(
            connection_id=connection.id,
            entity=entity,
            status="ok",
            records=job.records,
            changed=job.changed,
            deleted=job.deleted,
            pages=job.pages,
            watermark=job.watermark,
        )

    async def _write(self, job: _Job, rows: list[Row], watermark: str | None) -> None:
        job.changed += await self.store.write(job.connection.id, job.entity, rows, watermark)
        if watermark is not None and watermark > (job.watermark or ""):
            job.watermark = watermark
        job.records += len(rows)
        job.deleted += sum(1 for row in rows if row.deleted)
        self._report(job)

    def _report(self, job: _Job, *, done: bool = False, error: str | None = None) -> None:
        if self.on_progress is not None:
            self.on_progress(
                Progress(job.connection.id, job.entity, job.records, job.pages, done, error)
            )

    def result(self, outcome: Outcome[EntityResult]) -> EntityResult:
        entity = str(outcome.item)
        if outcome.status is OutcomeStatus.OK and outcome.value is not None:
            job = self.jobs.pop((outcome.connection_id, entity), None)
            if job is not None:
                self._report(job, done=True)
            return outcome.value
        job = self.jobs.pop((outcome.connection_id, entity), None)
        error = outcome.error
        code = outcome.code or (type(error).__name__ if error is not None else None)
        reason = outcome.reason or "failed"
        if error is not None:
            reason = _describe(error)
        result = EntityResult(
            connection_id=outcome.connection_id,
            entity=entity,
            status="skipped" if outcome.status is OutcomeStatus.SKIPPED else "failed",
            records=job.records if job else 0,
            changed=job.changed if job else 0,
            deleted=job.deleted if job else 0,
            pages=job.pages if job else 0,
            watermark=job.watermark if job else None,
            error_code=code,
            request_id=outcome.request_id,
            reason=reason,
        )
        if job is not None:
            self._report(job, done=True, error=code or reason)
        elif self.on_progress is not None:
            self.on_progress(Progress(outcome.connection_id, entity, 0, 0, done=True, error=reason))
        return result


def _describe(error: Exception) -> str:
    if isinstance(error, MakiniError):
        message = getattr(error, "message", None) or str(error)
        code = getattr(error, "code", None)
        text = f"{code}: {message}" if code else f"{type(error).__name__}: {message}"
    else:
        text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300] if text else type(error).__name__


def _check_limits(timeout: object, deadline: object) -> None:
    """Refuse a bad ``timeout`` or ``deadline`` before the store is opened."""
    if timeout is not None and not isinstance(timeout, Timeouts):
        check_seconds("timeout", timeout)
    if deadline is not None:
        check_seconds("deadline", deadline)


async def sync(
    registry: ConnectionRegistry,
    entities: Iterable[str],
    store: Store,
    *,
    connections: Iterable[Connection | str] | None = None,
    concurrency: int = 8,
    per_connection: int = 1,
    per_page: int = _MAX_PER_PAGE,
    overlap: timedelta = timedelta(minutes=5),
    since_param: Literal["filter", "modified_after"] = "filter",
    on_progress: Callable[[Progress], object] | None = None,
    timeout: Timeouts | float | None = None,
    deadline: float | None = None,
) -> SyncSummary:
    """Pull every record changed since the last run, for each connection and entity, into a store.

    Connections are worked on fairly and concurrently (`ConnectionRegistry.map`); a connection that
    fails or must be reauthorized is reported in the summary and never stops the others. The store's
    watermark for a connection and entity moves only after the records below it are written, so a
    crash or a cancellation at any point loses nothing: the next run resumes from there, and rows
    are keyed by ``(connection, key)`` so nothing is stored twice. Soft-deleted records
    (``deletedAt`` set) are stored with ``deleted_at``.

    The store is opened if needed and left open; close it yourself (``async with store``).

    Args:
        registry: The registry holding the connections.
        entities: Entity names, e.g. ``["work-orders", "assets", "erp/sales-orders"]``.
        store: Where records and watermarks go, e.g. `SQLiteStore` or `JsonLinesStore`.
        connections: Connections or ids to sync (default: every registered connection).
        concurrency: Most connections and entities synced at once.
        per_connection: Most entities of one connection synced at once.
        per_page: Records per page (1 to 500).
        overlap: How far before the stored watermark each run starts reading again.
        since_param: ``"filter"`` sends ``filter[updatedAt:gt]=``; ``"modified_after"`` sends
            Makini's FAQ alias ``modified_after=``.
        on_progress: Called with a `Progress` after every page and when each entity ends.
        timeout: Per-request timeout (a `Timeouts`, or seconds for each attempt).
        deadline: Seconds for the whole run, on the registry's clock. An entity still syncing
            then is cancelled and reported failed (``RequestTimeoutError``), keeping what it
            wrote; one not started is reported skipped. The next run resumes from the stored
            watermarks.

    Returns:
        The `SyncSummary`.

    Raises:
        ValueError: An unknown entity, or an argument out of range.
        StoreError: The store cannot be opened.

    .. versionadded:: 0.1.0
    """
    names = list(dict.fromkeys(resolve_entity(name) for name in entities))
    if not names:
        raise ValueError("Give at least one entity to sync, e.g. work-orders.")
    if type(per_page) is not int or not 1 <= per_page <= _MAX_PER_PAGE:
        raise ValueError(f"per_page must be an int from 1 to {_MAX_PER_PAGE}, got {per_page!r}")
    if overlap < timedelta(0):
        raise ValueError("overlap must not be negative")
    _check_limits(timeout, deadline)
    await store.open()
    syncer = _Syncer(
        store,
        per_page=per_page,
        overlap=overlap,
        since_param=since_param,
        on_progress=on_progress,
        timeout=timeout,
    )
    summary = SyncSummary()
    started = time.monotonic()
    async with registry.map(
        syncer.run,
        connections,
        items=names,
        concurrency=concurrency,
        per_connection=per_connection,
        deadline=deadline,
    ) as outcomes:
        async for outcome in outcomes:
            summary.results.append(syncer.result(outcome))
    summary.seconds = time.monotonic() - started
    return summary
