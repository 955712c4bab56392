"""Deduplication stores: first claim wins, ids kept at least 25 h, SQLite survives restarts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from makini_async import StoreError
from makini_async.webhooks import DEFAULT_TTL, DedupStore, MemoryDedupStore, SQLiteDedupStore
from tests.support import descriptors_of


class FakeClock:
    """A settable clock in seconds."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MakeStore = Callable[[FakeClock], DedupStore]


@pytest.fixture(name="make_store", params=["memory", "sqlite"])
async def _make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    """Build either store kind with a fake clock; all closed at teardown."""
    made: list[DedupStore] = []

    def make(clock: FakeClock) -> DedupStore:
        store: DedupStore
        if request.param == "memory":
            store = MemoryDedupStore(clock=clock)
        else:
            store = SQLiteDedupStore(tmp_path / "dedup.sqlite3", clock=clock)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


class TestBothStores:
    async def test_first_claim_wins(self, make_store: MakeStore) -> None:
        """The first claim of an id is new; the next ones are duplicates."""
        store = make_store(FakeClock())
        assert await store.claim("evt_1") is True
        assert await store.claim("evt_1") is False
        assert await store.claim("evt_2") is True

    async def test_kept_for_25_hours(self, make_store: MakeStore) -> None:
        """An id is a duplicate for 25 h and new again after that."""
        clock = FakeClock()
        store = make_store(clock)
        assert await store.claim("evt_1")
        clock.now += 24 * 3600 + 3599
        assert not await store.claim("evt_1")
        clock.now += DEFAULT_TTL
        assert await store.claim("evt_1")
        assert not await store.claim("evt_1")

    async def test_release(self, make_store: MakeStore) -> None:
        """A released id is accepted again (for events that were never processed)."""
        store = make_store(FakeClock())
        assert await store.claim("evt_1")
        await store.release("evt_1")
        await store.release("evt_unknown")
        assert await store.claim("evt_1")

    async def test_concurrent_claims(self, make_store: MakeStore) -> None:
        """Fifty concurrent claims of one id produce exactly one winner."""
        store = make_store(FakeClock())
        results = await asyncio.gather(*(store.claim("evt_same") for _ in range(50)))
        assert results.count(True) == 1

    @pytest.mark.parametrize("bad", ["", "x" * 513])
    async def test_bad_ids(self, make_store: MakeStore, bad: str) -> None:
        """Empty or overlong ids are refused."""
        store = make_store(FakeClock())
        with pytest.raises(ValueError, match="event id"):
            await store.claim(bad)

    async def test_protocol(self, make_store: MakeStore) -> None:
        """Both stores satisfy the DedupStore protocol."""
        assert isinstance(make_store(FakeClock()), DedupStore)


class TestMemoryStore:
    @pytest.mark.parametrize("ttl", [0, 60.0, 24 * 3600.0, float("nan")])
    def test_short_ttl_refused(self, ttl: float) -> None:
        """A TTL under 25 h is refused: Makini retries for 24 h."""
        with pytest.raises(ValueError, match="25 h"):
            MemoryDedupStore(ttl=ttl)

    def test_mistyped_arguments(self) -> None:
        """Non-numeric TTLs and non-positive sizes are refused."""
        with pytest.raises(TypeError):
            MemoryDedupStore(ttl="90000")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_entries"):
            MemoryDedupStore(max_entries=0)

    async def test_bounded(self, caplog: pytest.LogCaptureFixture) -> None:
        """Past max_entries the oldest ids are forgotten early, with one warning."""
        store = MemoryDedupStore(max_entries=3, clock=FakeClock())
        for n in range(5):
            assert await store.claim(f"evt_{n}")
        assert len(store) == 3
        assert await store.claim("evt_0")
        assert not await store.claim("evt_4")
        assert sum("full" in r.getMessage() for r in caplog.records) == 1

    async def test_expired_ids_are_purged(self) -> None:
        """Expired ids leave memory on the next claim."""
        clock = FakeClock()
        store = MemoryDedupStore(clock=clock)
        for n in range(10):
            await store.claim(f"evt_{n}")
        clock.now += DEFAULT_TTL + 1
        await store.claim("evt_new")
        assert len(store) == 1
        assert "ids=1" in repr(store)


class TestSQLiteStore:
    async def test_survives_a_restart(self, tmp_path: Path) -> None:
        """Ids claimed before a restart are still duplicates after it."""
        path = tmp_path / "dedup.sqlite3"
        first = SQLiteDedupStore(path)
        assert await first.claim("evt_1")
        await first.aclose()
        second = SQLiteDedupStore(path)
        try:
            assert not await second.claim("evt_1")
            assert await second.claim("evt_2")
        finally:
            await second.aclose()

    async def test_two_stores_share_a_file(self, tmp_path: Path) -> None:
        """Two stores on one file (two processes) let only one claim win."""
        path = tmp_path / "dedup.sqlite3"
        one, two = SQLiteDedupStore(path), SQLiteDedupStore(path)
        try:
            await one.claim("evt_warmup")
            results = await asyncio.gather(
                *(s.claim(f"evt_{n}") for n in range(20) for s in (one, two))
            )
            assert results.count(True) == 20
        finally:
            await one.aclose()
            await two.aclose()

    async def test_runs_off_the_event_loop(self, tmp_path: Path) -> None:
        """SQLite calls run on the store's own thread, never the event loop's."""
        store = SQLiteDedupStore(tmp_path / "dedup.sqlite3")
        threads: list[str] = []
        try:
            await store._run(lambda _db: threads.append(threading.current_thread().name))
        finally:
            await store.aclose()
        assert threads[0].startswith("makini-webhook-dedup")
        assert threads[0] != threading.current_thread().name

    @pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
    async def test_a_file_that_is_not_a_database_is_not_left_open(self, tmp_path: Path) -> None:
        """A claim on a file that is not SQLite fails and leaves no descriptor of it open."""
        path = tmp_path / "dedup.sqlite3"
        path.write_bytes(b"this is not a database" * 100)
        store = SQLiteDedupStore(path)
        try:
            with pytest.raises(StoreError, match="DatabaseError") as caught:
                await store.claim("evt_1")
            # Checked while the error (and so its traceback's frames) is still held.
            assert caught.value is not None
            assert descriptors_of(path) == []
        finally:
            await store.aclose()

    async def test_closed(self, tmp_path: Path) -> None:
        """A closed store refuses claims; closing twice is fine."""
        store = SQLiteDedupStore(tmp_path / "dedup.sqlite3")
        await store.aclose()
        await store.aclose()
        with pytest.raises(StoreError, match="closed"):
            await store.claim("evt_1")

    async def test_memory_database_and_purge(self) -> None:
        """An in-memory database works and expired rows are purged periodically."""
        clock = FakeClock()
        store = SQLiteDedupStore(":memory:", clock=clock)
        try:
            for n in range(5):
                await store.claim(f"evt_{n}")
            clock.now += DEFAULT_TTL + 1
            store._claims = 1000  # the next claim purges
            await store.claim("evt_new")
            rows = await store._run(
                lambda db: db.execute("SELECT COUNT(*) FROM makini_webhook_events").fetchone()[0]
            )
            assert rows == 1
            assert "ttl=90000s" in repr(store)
        finally:
            await store.aclose()
