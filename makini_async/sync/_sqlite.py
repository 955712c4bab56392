"""`SQLiteStore`: records and watermarks in one SQLite file, written on one dedicated thread."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Self, TypeVar

from ._store import Row, StoreError, run_on_thread

__all__ = ["SQLiteStore", "table_name"]


def _stdlib_dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _orjson_dumps(value: object) -> str:
    try:
        return str(orjson.dumps(value), "utf-8")
    except TypeError:  # e.g. an integer beyond 64 bits, which the standard library can write
        return _stdlib_dumps(value)


try:  # the `speedups` extra: about four times faster on records
    import orjson
except ImportError:  # pragma: no cover - depends on the install
    dump_json: Callable[[object], str] = _stdlib_dumps
else:
    dump_json = _orjson_dumps

T = TypeVar("T")

_WATERMARKS: Final = "_makini_watermarks"
_UNSAFE: Final = re.compile(r"[^a-z0-9]+")


#: Rows per INSERT statement (6 parameters each, under SQLite's old 999-parameter limit).
_CHUNK: Final = 150


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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="makini-sqlite")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    def _open(self) -> None:
        try:
            db = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._fail("open", exc) from None
        try:
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
        except sqlite3.Error as exc:
            db.close()
            raise self._fail("open", exc) from None
        self._db = db

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

        The watermark never moves backwards.

        Returns:
            How many rows were new or changed.

        Raises:
            StoreError: The store failed; the transaction was rolled back.

        .. versionadded:: 0.1.0
        """
        return await self._run(lambda: self._write(connection_id, entity, rows, watermark))

    def _write(
        self, connection_id: str, entity: str, rows: Sequence[Row], watermark: str | None
    ) -> int:
        db = self._require()
        table = table_name(entity)
        now = _now()
        try:
            self._ensure_table(db, table)
            db.execute("BEGIN IMMEDIATE")
            try:
                changed = 0
                values = [
                    (
                        connection_id,
                        row.key,
                        row.updated_at,
                        row.deleted_at,
                        dump_json(row.data),
                        now,
                    )
                    for row in rows
                ]
                # Many rows per statement: sqlite3 releases the GIL around every step, and a
                # step per row lets a busy event loop thread stall this one on each of them.
                for start in range(0, len(values), _CHUNK):
                    chunk = values[start : start + _CHUNK]
                    cursor = db.execute(
                        _upsert(table, len(chunk)), [v for value in chunk for v in value]
                    )
                    changed += max(cursor.rowcount, 0)
                if watermark is not None:
                    db.execute(
                        f'INSERT INTO "{_WATERMARKS}" (connection, entity, updated_at, synced_at) '  # noqa: S608
                        "VALUES (?, ?, ?, ?) ON CONFLICT (connection, entity) DO UPDATE SET "
                        "updated_at = max(updated_at, excluded.updated_at), "
                        "synced_at = excluded.synced_at",
                        (connection_id, entity, watermark, now),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail("write", exc) from None
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

        def close() -> None:
            db, self._db = self._db, None
            if db is not None:
                db.close()

        try:
            await asyncio.get_running_loop().run_in_executor(executor, close)
        finally:
            executor.shutdown(wait=True)

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
        rows = await self.rows(entity, connection_id)
        if deleted is None:
            return len(rows)
        return sum(1 for row in rows if row.deleted is deleted)

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
                found = db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).fetchone()
                if found is None:
                    return []
                cursor = db.execute(
                    f'SELECT key, updated_at, deleted_at, data FROM "{table}" {where} '  # noqa: S608
                    "ORDER BY connection, key",
                    args,
                )
                return [Row(k, u, d, json.loads(data)) for k, u, d, data in cursor]
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
