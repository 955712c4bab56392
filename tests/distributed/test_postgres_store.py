"""`PostgresStore` against a real PostgreSQL: the store contract, concurrent writers, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import struct
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from makini_async import ConnectionRegistry, MakiniError
from makini_async.sandbox import Sandbox
from makini_async.sync import Row, SQLiteStore, StoreError, sync
from makini_async.sync.postgres import PostgresStore
from tests.services import PostgresServer
from tests.support import ZERO_WAIT

ENTITY = "eam/work-orders"
PASSWORD = "Wr0ng-Pa55word-Xyz"  # a test secret that must never be shown
# A bound on every wait for the server (a loose sanity limit, not a measurement).
WITHIN = 30


def _row(key: str, *, stamp: str = "2025-01-02T03:04:05.000000Z", title: str = "t") -> Row:
    record = {"key": key, "title": title, "tags": ["é", 1.5], "updatedAt": stamp}
    return Row.from_record(key, stamp, None, record)


def _deleted(key: str) -> Row:
    stamp = "2025-01-03T00:00:00.000000Z"
    return Row.from_record(key, stamp, stamp, {"key": key, "deletedAt": stamp})


async def _accepting(dsn: str) -> None:
    """Wait until a restarted server answers queries (it may be recovering from its log)."""
    while True:
        with contextlib.suppress(asyncpg.CannotConnectNowError, OSError):
            db = await asyncpg.connect(dsn)
            await db.close()
            return
        await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
async def _postgres_ready(postgres: PostgresServer) -> None:
    """Wait until the server answers queries: it listens a moment before it is ready."""
    await asyncio.wait_for(_accepting(postgres.dsn()), WITHIN)


@pytest.fixture(name="store")
async def _store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    """An open PostgresStore on an empty database."""
    async with PostgresStore(postgres_dsn, pool_size=2) as store:
        yield store


class TestContract:
    async def test_changed_counts_deleted_rows_and_reads(self, store: PostgresStore) -> None:
        """Only new or different rows count; soft-deleted rows are stored and counted apart."""
        assert await store.count(ENTITY) == 0
        assert await store.rows(ENTITY) == []
        assert await store.write("c1", ENTITY, [_row("B"), _row("A"), _deleted("D")], None) == 3
        assert await store.write("c1", ENTITY, [_row("A"), _row("B")], None) == 0
        assert await store.write("c1", ENTITY, [_row("A", title="new"), _row("C")], None) == 2
        assert await store.write("c2", ENTITY, [_row("A")], None) == 1
        assert await store.count(ENTITY) == 5
        assert await store.count(ENTITY, "c1") == 4
        assert await store.count(ENTITY, "c1", deleted=True) == 1
        assert await store.count(ENTITY, deleted=False) == 4
        assert await store.count("eam/assets") == 0
        stored = await store.rows(ENTITY, "c1")
        assert [(r.key, r.deleted) for r in stored] == [
            ("A", False),
            ("B", False),
            ("C", False),
            ("D", True),
        ]
        assert stored[0].json == _row("A", title="new").json  # the text, byte for byte
        assert stored[1] == _row("B")
        assert [r.key for r in await store.rows(ENTITY)] == ["A", "B", "C", "D", "A"]

    async def test_the_watermark_only_moves_forward(self, store: PostgresStore) -> None:
        """An older watermark, or none, leaves the stored one; a newer one replaces it."""
        assert await store.watermark("c1", ENTITY) is None
        await store.write("c1", ENTITY, [_row("A")], "2025-02-01T00:00:00.000000Z")
        await store.write("c1", ENTITY, [_row("B")], "2025-01-01T00:00:00.000000Z")
        await store.write("c1", ENTITY, [_row("C")], None)
        assert await store.watermark("c1", ENTITY) == "2025-02-01T00:00:00.000000Z"
        await store.write("c1", ENTITY, [], "2025-03-01T00:00:00.000000Z")
        assert await store.watermarks() == {("c1", ENTITY): "2025-03-01T00:00:00.000000Z"}
        assert await store.watermark("c2", ENTITY) is None

    async def test_a_failing_write_stores_nothing(self, store: PostgresStore) -> None:
        """A row PostgreSQL refuses fails the whole write: no row and no watermark of it remain."""
        await store.write("c1", ENTITY, [_row("A")], "2025-01-01T00:00:00.000000Z")
        bad = [_row("B"), _row("C"), _row("Z\x00")]  # text cannot hold NUL
        with pytest.raises(StoreError, match="failed to write") as caught:
            await store.write("c1", ENTITY, bad, "2025-09-09T00:00:00.000000Z")
        assert caught.value.__cause__ is None
        assert [r.key for r in await store.rows(ENTITY)] == ["A"]
        assert await store.watermark("c1", ENTITY) == "2025-01-01T00:00:00.000000Z"
        assert await store.write("c1", ENTITY, [_row("B")], None) == 1

    async def test_odd_entity_names_are_kept_apart(self, store: PostgresStore) -> None:
        """Entity names are stored as given: quotes, SQL, slashes and accents are data."""
        names = [
            ENTITY,
            "eam_work_orders",
            "EAM/Work-Orders",
            'x"; DROP TABLE makini.records; --',
            "ünï/çødé 🚀",
            "",
        ]
        for number, name in enumerate(names):
            rows = [_row(f"K{i}") for i in range(number + 1)]
            assert await store.write("c1", name, rows, f"W{number}") == number + 1
        for number, name in enumerate(names):
            assert await store.count(name) == number + 1
            assert await store.watermark("c1", name) == f"W{number}"
        assert len(await store.watermarks()) == len(names)

    async def test_big_pages_and_keys_repeated_within_a_page(self, store: PostgresStore) -> None:
        """A page of 12,000 rows lands whole; a key given twice in a page is stored once, last."""
        rows = [_row(f"K{i:05d}") for i in range(12_000)]
        assert await store.write("c1", ENTITY, rows, "W") == 12_000
        assert await store.write("c1", ENTITY, rows, "W") == 0
        assert await store.count(ENTITY) == 12_000
        twice = [_row("X", title="first"), _row("Y"), _row("X", title="last")]
        assert await store.write("c1", ENTITY, twice, None) == 2
        assert (await store.rows(ENTITY))[-2].data["title"] == "last"

    async def test_lifecycle_repr_and_arguments(self, postgres_dsn: str) -> None:
        """Open and close are idempotent, a closed store refuses, bad arguments fail at once."""
        dsn = postgres_dsn.replace("postgres@", f"postgres:{PASSWORD}@")  # trust: ignored
        store = PostgresStore(dsn)
        assert PASSWORD not in repr(store)
        assert "127.0.0.1" in repr(store)
        with pytest.raises(StoreError, match="not open"):
            await store.write("c1", ENTITY, [], None)
        await store.open()
        await store.open()
        await store.write("c1", ENTITY, [_row("A")], None)
        await store.aclose()
        await store.aclose()
        with pytest.raises(StoreError, match="not open"):
            await store.count(ENTITY)
        async with store:  # reopening finds the tables made before
            assert await store.count(ENTITY) == 1
        with pytest.raises(ValueError, match="schema"):
            PostgresStore(dsn, schema='a"b')
        with pytest.raises(TypeError):
            PostgresStore()
        with pytest.raises(ValueError, match="pool_size"):
            PostgresStore(dsn, pool_size=0)
        with pytest.raises(ValueError, match="command_timeout"):
            PostgresStore(dsn, command_timeout=0)

    async def test_a_given_pool_stays_open_and_schemas_are_apart(self, postgres_dsn: str) -> None:
        """A store on your pool leaves it open; stores in two schemas do not see each other."""
        pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
        try:
            async with PostgresStore(pool=pool, schema="tenant_a") as a:
                await a.write("c1", ENTITY, [_row("A")], "W")
            async with PostgresStore(pool=pool, schema="tenant_b") as b:
                assert await b.count(ENTITY) == 0
                assert await b.watermarks() == {}
            assert await pool.fetchval("SELECT count(*) FROM tenant_a.records") == 1
        finally:
            await pool.close()

    async def test_many_stores_opening_at_once_create_the_tables_once(
        self, postgres_dsn: str
    ) -> None:
        """Eight stores opening together on an empty database all succeed."""
        stores = [PostgresStore(postgres_dsn, pool_size=1) for _ in range(8)]
        try:
            await asyncio.gather(*(store.open() for store in stores))
            await stores[3].write("c1", ENTITY, [_row("A")], None)
            assert await stores[5].count(ENTITY) == 1
        finally:
            for store in stores:
                await store.aclose()


async def test_concurrent_writers_store_every_key_once(postgres_dsn: str) -> None:
    """Eight tasks over two pools write overlapping pages: each key is new to exactly one of them.

    The pages overlap in shuffled orders, and each carries a watermark, in shuffled order too:
    the rows stored are the distinct keys, the changed counts add up to their number, and the
    watermark ends at the largest one written.
    """
    shuffle = random.Random(7)  # noqa: S311 - a fixed test order, not a secret
    keys = [f"K{i:04d}" for i in range(1200)]
    pages: list[tuple[list[Row], str]] = []
    for task in range(8):
        chosen = shuffle.sample(keys, 700)
        stamp = f"2025-01-{task + 10:02d}T00:00:00.000000Z"
        pages += [([_row(k) for k in chosen[at : at + 100]], stamp) for at in range(0, 700, 100)]
    shuffle.shuffle(pages)
    expected = {row.key for rows, _ in pages for row in rows}
    async with (
        PostgresStore(postgres_dsn, pool_size=4) as one,
        PostgresStore(postgres_dsn, pool_size=4) as two,
    ):
        queue: asyncio.Queue[tuple[list[Row], str]] = asyncio.Queue()
        for page in pages:
            queue.put_nowait(page)

        async def writer(store: PostgresStore) -> int:
            changed = 0
            while not queue.empty():
                rows, stamp = queue.get_nowait()
                changed += await store.write("c1", ENTITY, rows, stamp)
            return changed

        counts = await asyncio.wait_for(
            asyncio.gather(*(writer(one if i % 2 else two) for i in range(8))), WITHIN
        )
        assert sum(counts) == len(expected)
        assert await one.count(ENTITY) == len(expected)
        assert [r.key for r in await two.rows(ENTITY)] == sorted(expected)
        assert await one.watermark("c1", ENTITY) == "2025-01-17T00:00:00.000000Z"
        # A replay of every page after a crash stores nothing twice.
        again = await asyncio.gather(*(one.write("c1", ENTITY, r, s) for r, s in pages[:10]))
        assert again == [0] * 10


@pytest.fixture(name="sandbox_options")
def _sandbox_options() -> dict[str, Any]:
    """Four connections with a few pages of work orders and assets each (seed 3)."""
    sizes = {"work-orders": 120, "assets": 40}
    return {"connections": 4, "seed": 3, "sizes": sizes, "time_scale": 0.01}


async def test_sync_into_postgres_matches_sqlite(
    sandbox: Sandbox, postgres_dsn: str, tmp_path: Path
) -> None:
    """`sync` from the sandbox stores the same rows and watermarks in PostgreSQL as in SQLite."""
    victim = str(sandbox.records("c2", ENTITY)[3]["key"])
    sandbox.soft_delete("c2", ENTITY, victim)
    entities = [ENTITY, "eam/assets"]
    async with (
        ConnectionRegistry(sandbox.url, retry=ZERO_WAIT) as registry,
        SQLiteStore(tmp_path / "s.db") as lite,
        PostgresStore(postgres_dsn) as pg,
    ):
        for connection_id, token in sandbox.connections.items():
            registry.add(connection_id, token)
        first = await sync(registry, ["work-orders", "assets"], pg, per_page=50)
        assert first.ok
        assert first.changed == 4 * (120 + 40)
        assert (await sync(registry, ["work-orders", "assets"], lite, per_page=50)).ok
        assert await pg.watermarks() == await lite.watermarks()
        for entity in entities:
            for connection_id in sandbox.connections:
                assert await pg.rows(entity, connection_id) == await lite.rows(
                    entity, connection_id
                )
        assert await pg.count(ENTITY, "c2", deleted=True) >= 1
        again = await sync(registry, ["work-orders", "assets"], pg, per_page=50)
        assert again.ok
        assert again.changed == 0


async def _backend_waits_for_a_lock(admin: asyncpg.Connection) -> None:
    while not await admin.fetchval(  # noqa: ASYNC110 - the server has no event to wait on
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'makini_async' AND wait_event_type = 'Lock'"
    ):
        await asyncio.sleep(0.02)


def _shut_down(postgres: PostgresServer, how: str) -> None:
    """Stop the server the way a crash (SIGKILL) or ``pg_ctl restart`` (fast: SIGINT) does."""
    if how == "crash":
        postgres.kill()
        return
    process = postgres.process
    assert process is not None
    process.send_signal(signal.SIGINT)
    process.wait(WITHIN)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["crash", "fast shutdown"])
async def test_a_restart_fails_the_write_in_flight_and_the_next_one_lands(
    postgres: PostgresServer, postgres_dsn: str, how: str
) -> None:
    """A write caught by a restart lands whole or not at all (StoreError); the next one lands.

    The write in flight has inserted some of its rows and waits for a row another session
    holds when the server goes down.
    """
    async with PostgresStore(postgres_dsn, pool_size=2) as store:
        await store.write("c1", ENTITY, [_row("K5")], "2025-01-01T00:00:00.000000Z")
        holder = await asyncpg.connect(postgres_dsn)
        try:
            # The fixture's server commits asynchronously (synchronous_commit=off): make what
            # came before durable, so that a crash loses only the write in flight.
            await holder.execute("CHECKPOINT")
            await holder.execute("BEGIN")
            await holder.execute("SELECT * FROM makini.records WHERE key = 'K5' FOR UPDATE")
            page = [_row(f"K{i}", title="new") for i in range(10)]
            in_flight = asyncio.ensure_future(
                store.write("c1", ENTITY, page, "2025-06-01T00:00:00.000000Z")
            )
            await asyncio.wait_for(_backend_waits_for_a_lock(holder), WITHIN)
            await asyncio.to_thread(_shut_down, postgres, how)
            failed: StoreError | None = None
            try:
                await asyncio.wait_for(in_flight, WITHIN)
            except StoreError as exc:
                failed = exc
        finally:
            holder.terminate()
            await asyncio.to_thread(postgres.start)
            await asyncio.wait_for(_accepting(postgres_dsn), WITHIN)
        before = (["K5"], "2025-01-01T00:00:00.000000Z")
        whole = ([f"K{i}" for i in range(10)], "2025-06-01T00:00:00.000000Z")
        stored = ([r.key for r in await store.rows(ENTITY)], await store.watermark("c1", ENTITY))
        # The holder's session ends with the server too, so the write may get the row and
        # commit before its own session ends, its answer lost or not: it almost always fails
        # with the server, but either way it lands whole or not at all.
        assert failed is None or "failed to write" in str(failed)
        assert stored == whole if failed is None else stored in (before, whole)
        changed = await store.write("c1", ENTITY, page, "2025-06-01T00:00:00.000000Z")
        assert changed == (10 if stored == before else 0)
        assert await store.count(ENTITY) == 10


async def _refuse_the_password(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, heard: list[bytes]
) -> None:
    """Speak just enough of PostgreSQL's protocol to ask for a password and refuse it, echoed."""
    length = struct.unpack("!i", await reader.readexactly(4))[0]
    body = await reader.readexactly(length - 4)
    if struct.unpack("!i", body[:4])[0] == 80877103:  # SSLRequest: no TLS here
        writer.write(b"N")
        length = struct.unpack("!i", await reader.readexactly(4))[0]
        await reader.readexactly(length - 4)
    writer.write(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
    await writer.drain()
    kind, length = struct.unpack("!ci", await reader.readexactly(5))
    password = (await reader.readexactly(length - 4)).rstrip(b"\x00")
    heard.append(kind + password)
    fields = b"".join(
        code + text + b"\x00"
        for code, text in [
            (b"S", b"FATAL"),
            (b"V", b"FATAL"),
            (b"C", b"28P01"),
            (b"M", b'password authentication failed for user "sync": got ' + password),
        ]
    )
    writer.write(b"E" + struct.pack("!i", len(fields) + 5) + fields + b"\x00")
    await writer.drain()
    writer.close()


def _no_password_in(error: BaseException) -> None:
    shown = "".join(traceback.format_exception(error)) + repr(error) + str(error)
    assert PASSWORD not in shown
    assert error.__cause__ is None
    assert error.__suppress_context__


class TestRefusals:
    async def test_a_wrong_password_fails_without_showing_it(self) -> None:
        """A server refusing the password (and echoing it) gives a StoreError that hides it."""
        heard: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await _refuse_the_password(reader, writer, heard)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            store = PostgresStore(f"postgresql://sync:{PASSWORD}@127.0.0.1:{port}/db")
            with pytest.raises(StoreError, match="failed to open: InvalidPasswordError") as caught:
                await store.open()
        finally:
            server.close()
            await server.wait_closed()
        assert heard[0] == b"p" + PASSWORD.encode()  # the password was really sent
        assert isinstance(caught.value, MakiniError)
        assert "[REDACTED]" in str(caught.value)
        _no_password_in(caught.value)

    @pytest.mark.parametrize("target", ["no database", "no role", "nobody listening"])
    async def test_unusable_dsns_fail_with_store_error(
        self, postgres: PostgresServer, target: str
    ) -> None:
        """A missing database or role, or no server at all: StoreError without the password."""
        dsn = {
            "no database": f"postgresql://postgres:{PASSWORD}@127.0.0.1:{postgres.port}/nope",
            "no role": f"postgresql://nobody_here:{PASSWORD}@127.0.0.1:{postgres.port}/postgres",
            "nobody listening": f"postgresql://u:{PASSWORD}@127.0.0.1:1/db",
        }[target]
        store = PostgresStore(dsn, connect_timeout=WITHIN)
        with pytest.raises(StoreError, match="failed to open") as caught:
            await store.open()
        _no_password_in(caught.value)
        with pytest.raises(StoreError, match="not open"):
            await store.watermarks()


def test_importing_the_sync_package_does_not_import_asyncpg() -> None:
    """``import makini_async.sync`` leaves asyncpg out; the postgres submodule brings it in."""
    probe = (
        "import sys, makini_async, makini_async.sync\n"
        "print('asyncpg' in sys.modules)\n"
        "import makini_async.sync.postgres\n"
        "print('asyncpg' in sys.modules)\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["False", "True"]
