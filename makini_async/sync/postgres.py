"""`PostgresStore`: records and watermarks in PostgreSQL, written through an asyncpg pool.

::

    from makini_async.sync import sync
    from makini_async.sync.postgres import PostgresStore

    async with PostgresStore("postgresql://sync@db.internal/makini") as store:
        await sync(registry, ["work-orders", "assets"], store)

This module needs the ``postgres`` extra (``pip install "makini-async[postgres]"``);
``makini_async.sync`` does not import it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import Final, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg

from makini_async._errors import StoreError
from makini_async._redact import one_line
from makini_async._transport import check_seconds

from ._store import Row

__all__ = ["PostgresStore"]

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: Rows per INSERT statement within a write's transaction (arrays of this many rows per query).
_CHUNK: Final = 5000
#: Attempts of a write that PostgreSQL rolled back to break a deadlock or a serialization conflict.
_ATTEMPTS: Final = 3
#: Longest driver message kept in a `StoreError` (a bad value can make asyncpg quote a whole page).
_MESSAGE_LIMIT: Final = 300
# Everything the driver or the socket may raise; each becomes a StoreError naming the action.
# (asyncpg raises InternalClientError when a connection dies in the middle of an exchange.)
_FAILURES: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
    ValueError,
)
# The connection was lost: a pooled connection may be stale after a server restart.
_LOST: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    ConnectionError,
)


def _secrets_of(dsn: str) -> tuple[str, ...]:
    """The passwords a DSN carries (in its user info or as ``?password=``), raw and decoded."""
    found: list[str] = []
    try:
        parts = urlsplit(dsn)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [value for name, value in parse_qsl(parts.query) if name == "password"]
    except ValueError:
        pass
    return tuple(sorted({secret for secret in found if secret}, key=len, reverse=True))


def _where(dsn: str) -> str:
    """The DSN without user name, password or options: ``postgresql://host:port/database``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "(an unreadable DSN)"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class PostgresStore:
    r"""A PostgreSQL store: two tables in one schema, shared safely by many writers and processes.

    The tables are created on first use (`open`), under a transaction-scoped advisory lock so
    that workers starting together do not race; when both exist nothing is created, so a role
    with no CREATE privilege can use tables made beforehand::

        CREATE SCHEMA IF NOT EXISTS makini;
        CREATE TABLE makini.records (
            entity        text COLLATE "C" NOT NULL,   -- e.g. 'eam/work-orders', as given
            connection_id text COLLATE "C" NOT NULL,
            key           text COLLATE "C" NOT NULL,
            updated_at    text COLLATE "C",           -- 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (`Row`)
            deleted_at    text COLLATE "C",           -- set for soft-deleted records
            data          text NOT NULL,               -- the record's JSON, as received
            synced_at     timestamptz NOT NULL,        -- when this version was written
            PRIMARY KEY (entity, connection_id, key)
        );
        CREATE TABLE makini.watermarks (
            connection_id text COLLATE "C" NOT NULL,
            entity        text COLLATE "C" NOT NULL,
            updated_at    text COLLATE "C" NOT NULL,  -- the largest updatedAt stored
            synced_at     timestamptz NOT NULL,
            PRIMARY KEY (connection_id, entity)
        );

    The primary key is the only index of ``records``: it serves the upsert, and its column order
    makes counting and listing an entity (or one connection's share of it) a prefix scan. The
    ``"C"`` collation orders keys and timestamps by code point, as SQLite does. ``data`` is text,
    not ``jsonb``: it keeps the record byte for byte as `SQLiteStore` does (``jsonb`` reorders
    keys and refuses ``\u0000``, which would stop a sync on one odd record), it is cheaper to
    write, and ``data::jsonb`` makes it queryable (an expression index can serve such queries).

    Every `write` is one transaction: the rows are upserted in key order (so concurrent writers
    of overlapping rows cannot deadlock), only rows new or different from the stored ones are
    counted and rewritten, and the watermark moves only forward (``GREATEST``). Many workers
    writing at once, a retried page or a page replayed after a crash therefore store nothing
    twice and never move a watermark back. A write that PostgreSQL rolls back to break a deadlock
    is retried; one whose connection is lost fails with `StoreError` (nothing of it is stored),
    and the next write takes a fresh connection from the pool.

    Args:
        dsn: ``postgresql://user:password@host:port/database``. Its password never appears in
            reprs or errors.
        pool: Instead of a DSN, an asyncpg pool you own: the store writes through it and
            `aclose` leaves it open (``pool_size`` and the timeouts are then the pool's).
        schema: The schema holding the tables (letters, digits and underscores).
        pool_size: Most connections the store's pool opens.
        command_timeout: Seconds a statement may take before the write fails.
        connect_timeout: Seconds to wait for a new connection.

    Raises:
        TypeError: Neither or both of ``dsn`` and ``pool``.
        ValueError: A schema that is not a plain identifier, or a size or timeout out of range.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        schema: str = "makini",
        pool_size: int = 4,
        command_timeout: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise TypeError("Give PostgresStore either a dsn or a pool, not both or neither.")
        if dsn is not None and not dsn:
            raise ValueError("dsn must be a postgresql:// URL, got an empty string")
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(
                f"schema must be letters, digits and underscores (at most 63), got {schema!r}"
            )
        if type(pool_size) is not int or pool_size < 1:
            raise ValueError(f"pool_size must be an int of at least 1, got {pool_size!r}")
        self.schema = schema
        self._dsn = dsn
        self._secrets = () if dsn is None else _secrets_of(dsn)
        self._place = "(a given pool)" if dsn is None else _where(dsn)
        self._pool_size = pool_size
        self._command_timeout = check_seconds("command_timeout", command_timeout)
        self._connect_timeout = check_seconds("connect_timeout", connect_timeout)
        self._given = pool
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        records, watermarks = f'"{schema}".records', f'"{schema}".watermarks'
        self._records, self._watermarks = records, watermarks
        self._upsert = (
            f"INSERT INTO {records} AS r "  # noqa: S608 - a checked identifier
            "(entity, connection_id, key, updated_at, deleted_at, data, synced_at) "
            "SELECT $1, $2, k, u, d, j, now() "
            "FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS t (k, u, d, j) "
            "ON CONFLICT (entity, connection_id, key) DO UPDATE SET "
            "updated_at = excluded.updated_at, deleted_at = excluded.deleted_at, "
            "data = excluded.data, synced_at = excluded.synced_at "
            "WHERE r.data IS DISTINCT FROM excluded.data"
        )
        self._advance = (
            f"INSERT INTO {watermarks} AS w (connection_id, entity, updated_at, synced_at) "  # noqa: S608
            "VALUES ($1, $2, $3, now()) ON CONFLICT (connection_id, entity) DO UPDATE SET "
            "updated_at = GREATEST(w.updated_at, excluded.updated_at), "
            "synced_at = excluded.synced_at"
        )

    def __repr__(self) -> str:
        return f"<PostgresStore {self._place} schema={self.schema!r}>"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- errors ----------------------------------------------------------------------------------

    def _fail(self, action: str, exc: BaseException) -> StoreError:
        text = str(exc)
        if self._dsn is not None:
            text = text.replace(self._dsn, self._place)
        text = one_line(text, self._secrets, _MESSAGE_LIMIT) or type(exc).__name__
        return StoreError(
            f"The PostgreSQL store {self._place} (schema {self.schema!r}) failed to {action}: "
            f"{type(exc).__name__}: {text}"
        )

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(f"The PostgreSQL store {self._place} is not open; call open() first.")
        return self._pool

    # -- the protocol ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and create the schema, tables and indexes when missing (idempotent).

        Raises:
            StoreError: The server cannot be reached, refuses the credentials, or the tables
                cannot be created.

        .. versionadded:: 0.1.0
        """
        async with self._opening:
            if self._pool is not None:
                return
            pool = self._given
            try:
                if pool is None:
                    pool = await self._connect()
                try:
                    await self._create(pool)
                except BaseException:
                    if self._given is None:
                        pool.terminate()
                    raise
            except _FAILURES as exc:
                raise self._fail("open", exc) from None
            self._pool = pool

    async def _connect(self) -> asyncpg.Pool:
        assert self._dsn is not None  # noqa: S101 - only a store made from a DSN connects
        pool: asyncpg.Pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            command_timeout=self._command_timeout,
            timeout=self._connect_timeout,
            server_settings={"application_name": "makini_async"},
        )
        return pool

    async def _create(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as db:
            found = await db.fetchval(
                "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                self._records,
                self._watermarks,
            )
            if found:
                return
            async with db.transaction():
                # Workers starting together: one creates, the others wait and find it done.
                await db.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    f"makini_async.sync.postgres:{self.schema}",
                )
                await db.execute(
                    f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"; '
                    f"CREATE TABLE IF NOT EXISTS {self._records} ("
                    'entity text COLLATE "C" NOT NULL, connection_id text COLLATE "C" NOT NULL, '
                    'key text COLLATE "C" NOT NULL, updated_at text COLLATE "C", '
                    'deleted_at text COLLATE "C", data text NOT NULL, '
                    "synced_at timestamptz NOT NULL, PRIMARY KEY (entity, connection_id, key)); "
                    f"CREATE TABLE IF NOT EXISTS {self._watermarks} ("
                    'connection_id text COLLATE "C" NOT NULL, entity text COLLATE "C" NOT NULL, '
                    'updated_at text COLLATE "C" NOT NULL, synced_at timestamptz NOT NULL, '
                    "PRIMARY KEY (connection_id, entity))"
                )

    async def watermark(self, connection_id: str, entity: str) -> str | None:
        """The stored watermark of a connection and entity, or None.

        Raises:
            StoreError: The store failed or is not open.

        .. versionadded:: 0.1.0
        """
        pool = self._require()
        try:
            found = await pool.fetchval(
                f"SELECT updated_at FROM {self._watermarks} "  # noqa: S608
                "WHERE connection_id = $1 AND entity = $2",
                connection_id,
                entity,
            )
        except _FAILURES as exc:
            raise self._fail("read a watermark", exc) from None
        return None if found is None else str(found)

    async def write(
        self, connection_id: str, entity: str, rows: Sequence[Row], watermark: str | None
    ) -> int:
        """Upsert the rows and move the watermark forward, in one transaction.

        A key given twice in one write is stored once, with its last row. The watermark never
        moves backwards.

        Returns:
            How many rows were new or changed.

        Raises:
            StoreError: The store failed or is not open; the transaction was rolled back.

        .. versionadded:: 0.1.0
        """
        pool = self._require()
        latest = {row.key: row for row in rows}
        ordered = [latest[key] for key in sorted(latest)]  # one lock order for every writer
        stale = True  # the first failure at BEGIN may be a pooled connection the server dropped
        for attempt in range(_ATTEMPTS):
            try:
                async with pool.acquire() as db:
                    transaction = db.transaction()
                    try:
                        await transaction.start()
                    except _LOST:
                        if not stale:
                            raise
                        stale = False
                        continue
                    try:
                        changed = await self._write(db, connection_id, entity, ordered, watermark)
                    except BaseException:
                        # A lost or busy connection cannot roll back; the pool resets or
                        # drops it on release, and the server rolls back what it held.
                        with contextlib.suppress(Exception):
                            await transaction.rollback()
                        raise
                    await transaction.commit()
                    return changed
            except asyncpg.TransactionRollbackError as exc:
                if attempt + 1 == _ATTEMPTS:
                    raise self._fail("write", exc) from None
            except _FAILURES as exc:
                raise self._fail("write", exc) from None
        raise StoreError(
            f"The PostgreSQL store {self._place} failed to write: no usable connection."
        )

    async def _write(
        self,
        db: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
        connection_id: str,
        entity: str,
        rows: list[Row],
        watermark: str | None,
    ) -> int:
        changed = 0
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            status = await db.execute(
                self._upsert,
                entity,
                connection_id,
                [row.key for row in chunk],
                [row.updated_at for row in chunk],
                [row.deleted_at for row in chunk],
                [row.json for row in chunk],
            )
            changed += int(status.rpartition(" ")[2])  # "INSERT 0 <rows inserted or updated>"
        if watermark is not None:
            await db.execute(self._advance, connection_id, entity, watermark)
        return changed

    async def aclose(self) -> None:
        """Close the store's pool (idempotent; a pool given to the store stays open).

        .. versionadded:: 0.1.0
        """
        pool, self._pool = self._pool, None
        if pool is None or pool is self._given:
            return
        try:
            await asyncio.wait_for(pool.close(), self._connect_timeout)
        except (*_FAILURES, asyncio.CancelledError):
            pool.terminate()
            raise

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
            StoreError: The store failed or is not open.

        .. versionadded:: 0.1.0
        """
        pool = self._require()
        conditions, args = ["entity = $1"], [entity]
        if connection_id:
            args.append(connection_id)
            conditions.append(f"connection_id = ${len(args)}")
        if deleted is not None:
            conditions.append("deleted_at IS NOT NULL" if deleted else "deleted_at IS NULL")
        try:
            found = await pool.fetchval(
                f"SELECT count(*) FROM {self._records} WHERE {' AND '.join(conditions)}",  # noqa: S608 - fixed conditions
                *args,
            )
        except _FAILURES as exc:
            raise self._fail("read", exc) from None
        return int(found)

    async def rows(self, entity: str, connection_id: str | None = None) -> list[Row]:
        """Every stored record of an entity, ordered by connection and key.

        Args:
            entity: The entity, e.g. ``eam/work-orders``.
            connection_id: Only this connection's records.

        Returns:
            The rows (empty when the entity was never synced).

        Raises:
            StoreError: The store failed or is not open.

        .. versionadded:: 0.1.0
        """
        pool = self._require()
        where, args = ("entity = $1", [entity])
        if connection_id:
            where, args = ("entity = $1 AND connection_id = $2", [entity, connection_id])
        try:
            found = await pool.fetch(
                f"SELECT key, updated_at, deleted_at, data FROM {self._records} "  # noqa: S608
                f"WHERE {where} ORDER BY connection_id, key",
                *args,
            )
        except _FAILURES as exc:
            raise self._fail("read", exc) from None
        return [Row(r[0], r[1], r[2], r[3]) for r in found]

    async def watermarks(self) -> dict[tuple[str, str], str]:
        """Every watermark, by ``(connection, entity)``.

        Raises:
            StoreError: The store failed or is not open.

        .. versionadded:: 0.1.0
        """
        pool = self._require()
        try:
            found = await pool.fetch(
                f"SELECT connection_id, entity, updated_at FROM {self._watermarks}"  # noqa: S608
            )
        except _FAILURES as exc:
            raise self._fail("read the watermarks", exc) from None
        return {(r[0], r[1]): r[2] for r in found}
