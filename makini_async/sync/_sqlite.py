"""`SQLiteStore`: records and watermarks in one SQLite file, written on one dedicated thread."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Self, TypeVar

import attrs

from makini_async._errors import StoreError

from ._store import Row, run_on_thread

__all__ = ["SQLiteStore", "table_name"]


T = TypeVar("T")

_WATERMARKS: Final = "_makini_watermarks"
_UNSAFE: Final = re.compile(r"[^a-z0-9]+")


#: Parameters per stored row, and the most rows one INSERT statement carries.
_PARAMS_PER_ROW: Final = 6
_MAX_CHUNK: Final = 1000


@functools.lru_cache(maxsize=64)
def _upsert(table: str, count: int) -> str:
    placeholders = ", ".join(["(?, ?, ?, ?, ?, ?)"] * count)
    return (
        f'INSERT INTO "{table}" (connection, key, updated_at, deleted_at, data, synced_at) '  # noqa: S608 - a checked identifier
        f"VALUES {placeholders} ON CONFLICT (connection, key) DO UPDATE SET "
        "updated_at = excluded.updated_at, deleted_at = excluded.deleted_at, "
        "data = excluded.data, synced_at = excluded.synced_at WHERE data IS NOT excluded.data"
    )


def table_name(entity: str) -> str:
    """The table that holds an entity's records, e.g. ``eam_work_orders`` for ``eam/work-orders``.

    Args:
        entity: The entity, ``domain/name``.

    Returns:
        The table name (lowercase letters, digits and underscores).

    .. versionadded:: 0.1.0
    """
    return _UNSAFE.sub("_", entity.lower()).strip("_")


def _close_all(connections: list[sqlite3.Connection]) -> None:
    """Close connections on the thread that opened them (SQLite refuses any other)."""
    for db in connections:
        db.close()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@attrs.frozen
class _Pending:
    """A write waiting for the store thread, and the future its caller awaits."""

    connection_id: str
    entity: str
    rows: Sequence[Row]
    watermark: str | None
    future: asyncio.Future[int] = attrs.field(eq=False)


def _deliver(group: list[_Pending], outcomes: list[int | BaseException]) -> None:
    """On the event loop: hand each write of a committed group its outcome."""
    for pending, outcome in zip(group, outcomes, strict=True):
        if pending.future.done():  # its caller was cancelled; the write landed (or not) anyway
            continue
        if isinstance(outcome, BaseException):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)


class SQLiteStore:
    """A SQLite file with one table per entity and a watermark table (the default store).

    Each entity's table (see `table_name`) has the columns ``connection``, ``key``
    (the primary key together), ``updated_at``, ``deleted_at`` (set for soft-deleted records),
    ``data`` (the record's JSON) and ``synced_at``. ``_makini_watermarks`` holds one row per
    connection and entity. The file uses WAL, and every `write` is one transaction: the rows and
    the watermark are committed together or not at all. All SQLite work runs on one dedicated
    thread, never on the event loop.

    Args:
        path: The database file (created when missing).
        timeout: Seconds to wait for another process's lock before giving up.

    .. versionadded:: 0.1.0
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self._timeout = timeout
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._tables: set[str] = set()
        # Writes waiting for the store thread, and whether it is draining them (see `write`).
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._draining = False
        # Rows per INSERT: as many as the library's parameter limit allows (999 in old builds).
        self._chunk = 999 // _PARAMS_PER_ROW

    def __repr__(self) -> str:
        return f"<SQLiteStore {str(self.path)!r}>"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the thread ------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        return await run_on_thread(self._executor, fn, str(self.path))

    def _fail(self, action: str, exc: sqlite3.Error) -> StoreError:
        text = str(exc).lower()
        where = str(self.path)
        if "locked" in text or "busy" in text:
            return StoreError(f"The store {where!r} is locked by another process ({action}).")
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "corrupt" in text
        ):
            return StoreError(f"The store {where!r} is not a SQLite database or is corrupt.")
        return StoreError(f"The store {where!r} failed to {action}: {exc}")

    # -- the protocol ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the file and check it can be written.

        Raises:
            StoreError: The file is locked by another writer, corrupt, or cannot be created.

        .. versionadded:: 0.1.0
        """
        if self._executor is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="makini-sqlite")
        self._executor = executor
        opened: list[sqlite3.Connection] = []
        try:
            await self._run(lambda: opened.append(self._open()))
        except BaseException:
            self._executor = None
            # A cancelled open goes on on the thread and may yet succeed: what it opens is
            # closed there, after it (the thread's jobs run in order), without blocking the loop.
            executor.submit(_close_all, opened)
            executor.shutdown(wait=False)
            raise
        self._db = opened[0]

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._fail("open", exc) from None
        try:
            limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._chunk = max(1, min(_MAX_CHUNK, limit // _PARAMS_PER_ROW))
            db.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL survives a crash of the process; rows and watermark
            # are in one transaction, so a lost transaction loses both together.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                f'CREATE TABLE IF NOT EXISTS "{_WATERMARKS}" ('
                "connection TEXT NOT NULL, entity TEXT NOT NULL, updated_at TEXT NOT NULL, "
                "synced_at TEXT NOT NULL, PRIMARY KEY (connection, entity)) WITHOUT ROWID"
            )
            db.execute("COMMIT")
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.Error):
                raise self._fail("open", exc) from None
            raise
        return db

    async def watermark(self, connection_id: str, entity: str) -> str | None:
        """The stored watermark of a connection and entity, or None.

        Raises:
            StoreError: The store failed.

        .. versionadded:: 0.1.0
        """

        def read() -> str | None:
            db = self._require()
            try:
                row = db.execute(
                    f'SELECT updated_at FROM "{_WATERMARKS}" WHERE connection = ? AND entity = ?',  # noqa: S608
                    (connection_id, entity),
                ).fetchone()
            except sqlite3.Error as exc:
                raise self._fail("read a watermark", exc) from None
            return None if row is None else str(row[0])

        return await self._run(read)

    async def write(
        self, connection_id: str, entity: str, rows: Sequence[Row], watermark: str | None
    ) -> int:
        """Upsert the rows and move the watermark forward, in one transaction.

        The watermark never moves backwards. Writes that arrive while the store thread is busy
        are committed together, in one transaction (a group commit): each write still lands
        whole or not at all, and when the group fails its writes are retried one by one, so
        that one write's failure is never another's.

        Returns:
            How many rows were new or changed.

        Raises:
            StoreError: The store failed; the transaction was rolled back.

        .. versionadded:: 0.1.0
        """
        executor = self._executor
        if executor is None:
            raise StoreError(f"The store {str(self.path)!r} is not open; call open() first.")
        loop = asyncio.get_running_loop()
        pending = _Pending(connection_id, entity, rows, watermark, loop.create_future())
        with self._lock:
            self._queue.append(pending)
            start, self._draining = not self._draining, True
        if start:
            executor.submit(self._drain, loop)
        return await pending.future

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the store thread: commit what is queued, group after group, until none is left."""
        while True:
            with self._lock:
                group, self._queue = self._queue, []
                if not group:
                    self._draining = False
                    return
            try:
                outcomes = self._commit_group(group)
            except BaseException as exc:  # not an Exception: answer the waiters, then stop
                failed: list[int | BaseException] = [self._fail_hard(exc) for _ in group]
                with self._lock:
                    self._draining = False
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_deliver, group, failed)
                raise
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_deliver, group, outcomes)

    def _fail_hard(self, exc: BaseException) -> StoreError:
        return StoreError(
            f"The store {str(self.path)!r} stopped writing ({type(exc).__name__}); "
            "nothing of this write is guaranteed to be stored."
        )

    def _commit_group(self, group: list[_Pending]) -> list[int | BaseException]:
        if len(group) > 1:
            # A failed group is retried write by write below, to tell whose failure it was.
            with contextlib.suppress(Exception):
                counts: list[int | BaseException] = [*self._transaction(group)]
                return counts
        outcomes: list[int | BaseException] = []
        for pending in group:
            try:
                outcomes.extend(self._transaction([pending]))
            except Exception as exc:  # noqa: BLE001 - handed to the caller of that write
                outcomes.append(exc)
        return outcomes

    def _transaction(self, group: list[_Pending]) -> list[int]:
        """Write every pending write of ``group`` in one transaction; its changed-row counts."""
        db = self._require()
        now = _now()
        try:
            for pending in group:
                self._ensure_table(db, table_name(pending.entity))
            db.execute("BEGIN IMMEDIATE")
            try:
                counts = [self._write_one(db, pending, now) for pending in group]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail("write", exc) from None
        return counts

    def _write_one(self, db: sqlite3.Connection, pending: _Pending, now: str) -> int:
        connection_id, table = pending.connection_id, table_name(pending.entity)
        values = [
            (connection_id, row.key, row.updated_at, row.deleted_at, row.json, now)
            for row in pending.rows
        ]
        changed = 0
        # Many rows per statement: sqlite3 releases the GIL around every step, and each time
        # this thread has to win it back from a busy event loop thread (up to the 5 ms switch
        # interval): a page of 500 rows is one statement where the library allows it.
        size = self._chunk
        for start in range(0, len(values), size):
            chunk = values[start : start + size]
            cursor = db.execute(_upsert(table, len(chunk)), [v for value in chunk for v in value])
            changed += max(cursor.rowcount, 0)
        if pending.watermark is not None:
            db.execute(
                f'INSERT INTO "{_WATERMARKS}" (connection, entity, updated_at, synced_at) '  # noqa: S608
                "VALUES (?, ?, ?, ?) ON CONFLICT (connection, entity) DO UPDATE SET "
                "updated_at = max(updated_at, excluded.updated_at), "
                "synced_at = excluded.synced_at",
                (connection_id, pending.entity, pending.watermark, now),
            )
        return changed

    def _ensure_table(self, db: sqlite3.Connection, table: str) -> None:
        if table in self._tables:
            return
        db.execute(
            f'CREATE TABLE IF NOT EXISTS "{table}" ('
            "connection TEXT NOT NULL, key TEXT NOT NULL, updated_at TEXT, deleted_at TEXT, "
            # A rowid table: WITHOUT ROWID is slow for rows of a kilobyte or more.
            "data TEXT NOT NULL, synced_at TEXT NOT NULL, PRIMARY KEY (connection, key))"
        )
        self._tables.add(table)

    @staticmethod
    def _exists(db: sqlite3.Connection, table: str) -> bool:
        found = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        return found is not None

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"The store {str(self.path)!r} is closed.")
        return self._db

    async def aclose(self) -> None:
        """Close the file and stop the store's thread (idempotent).

        .. versionadded:: 0.1.0
        """
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_db)
        finally:
            executor.shutdown(wait=True)

    def _close_db(self) -> None:
        db, self._db = self._db, None
        _close_all([] if db is None else [db])

    # -- reading (for tests, the CLI and users) ----------------------------------------------------

    async def count(
        self, entity: str, connection_id: str | None = None, *, deleted: bool | None = None
    ) -> int:
        """How many records of an entity are stored.

        Args:
            entity: The entity, e.g. ``eam/work-orders``.
            connection_id: Only this connection's records.
            deleted: True: only soft-deleted ones; False: only live ones; None: all.

        Returns:
            The count (0 when the entity was never synced).

        Raises:
            StoreError: The store failed.

        .. versionadded:: 0.1.0
        """
        table = table_name(entity)
        conditions, args = [], []
        if connection_id:
            conditions.append("connection = ?")
            args.append(connection_id)
        if deleted is not None:
            conditions.append("deleted_at IS NOT NULL" if deleted else "deleted_at IS NULL")
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""

        def read() -> int:
            db = self._require()
            try:
                if not self._exists(db, table):
                    return 0
                found = db.execute(f'SELECT count(*) FROM "{table}" {where}', args).fetchone()  # noqa: S608 - a checked identifier and fixed conditions
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from None
            return int(found[0])

        return await self._run(read)

    async def rows(self, entity: str, connection_id: str | None = None) -> list[Row]:
        """Every stored record of an entity, ordered by connection and key.

        Args:
            entity: The entity, e.g. ``eam/work-orders``.
            connection_id: Only this connection's records.

        Returns:
            The rows (empty when the entity was never synced).

        Raises:
            StoreError: The store failed.

        .. versionadded:: 0.1.0
        """
        table = table_name(entity)

        def read() -> list[Row]:
            db = self._require()
            where, args = ("WHERE connection = ?", (connection_id,)) if connection_id else ("", ())
            try:
                if not self._exists(db, table):
                    return []
                cursor = db.execute(
                    f'SELECT key, updated_at, deleted_at, data FROM "{table}" {where} '  # noqa: S608
                    "ORDER BY connection, key",
                    args,
                )
                return [Row(k, u, d, data) for k, u, d, data in cursor]
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from None

        return await self._run(read)

    async def watermarks(self) -> dict[tuple[str, str], str]:
        """Every watermark, by ``(connection, entity)``.

        Raises:
            StoreError: The store failed.

        .. versionadded:: 0.1.0
        """

        def read() -> dict[tuple[str, str], str]:
            db = self._require()
            try:
                cursor = db.execute(
                    f'SELECT connection, entity, updated_at FROM "{_WATERMARKS}"'  # noqa: S608
                )
                return {(c, e): u for c, e, u in cursor}
            except sqlite3.Error as exc:
                raise self._fail("read the watermarks", exc) from None

        return await self._run(read)
