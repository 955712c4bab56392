"""The stores on their own: rows as JSON text, group commits, counting and the JSON-lines format."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from makini_async.sync import JsonLinesStore, Row, SQLiteStore, StoreError
from tests.support import descriptors_of

ENTITY = "eam/work-orders"


def _row(key: str, *, deleted: bool = False, title: str = "Check pump") -> Row:
    stamp = "2025-01-02T03:04:05.000000Z"
    record = {"key": key, "title": title, "tags": ["é", 1.5], "updatedAt": "2025-01-02T03:04:05Z"}
    return Row.from_record(key, stamp, stamp if deleted else None, record)


class TestRow:
    def test_a_row_carries_compact_json_text_and_decodes_it_afresh(self) -> None:
        row = _row("WO-1")
        assert row.json == (
            '{"key":"WO-1","title":"Check pump","tags":["é",1.5],'
            '"updatedAt":"2025-01-02T03:04:05Z"}'
        )
        decoded = row.data
        decoded["title"] = "changed"
        assert row.data["title"] == "Check pump"
        assert "Check pump" not in repr(row)
        assert row == _row("WO-1")
        assert row != _row("WO-1", title="Other")

    def test_a_record_json_cannot_hold_is_refused(self) -> None:
        with pytest.raises(TypeError):
            Row.from_record("WO-1", None, None, {"when": object()})


class TestSQLiteStore:
    async def test_count_filters_in_sql(self, tmp_path: Path) -> None:
        async with SQLiteStore(tmp_path / "s.db") as store:
            assert await store.count(ENTITY) == 0
            await store.write("c1", ENTITY, [_row("A"), _row("B", deleted=True)], None)
            await store.write("c2", ENTITY, [_row("A")], None)
            assert await store.count(ENTITY) == 3
            assert await store.count(ENTITY, "c1") == 2
            assert await store.count(ENTITY, "c1", deleted=True) == 1
            assert await store.count(ENTITY, deleted=False) == 2
            assert await store.count("eam/assets") == 0
            stored = await store.rows(ENTITY, "c1")
            assert [(r.key, r.deleted) for r in stored] == [("A", False), ("B", True)]
            assert stored[0].json == _row("A").json

    async def test_writes_that_queue_up_commit_together_and_fail_alone(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "s.db"
        async with SQLiteStore(path, timeout=10) as store:
            # Another process holds the write lock: the first write waits for it on the store
            # thread while the next ones queue up behind it, to be committed as one group.
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            first = asyncio.ensure_future(store.write("c0", ENTITY, [_row("K0")], "2025-01-01"))
            await asyncio.sleep(0.2)
            bad = Row("broken", None, None, None)  # type: ignore[arg-type] # NOT NULL data
            queued = [
                asyncio.ensure_future(
                    store.write(f"c{i}", ENTITY, [_row(f"K{i}")] + ([bad] if i == 3 else []), "W")
                )
                for i in range(1, 6)
            ]
            await asyncio.sleep(0.2)
            assert not first.done()
            blocker.execute("COMMIT")
            blocker.close()
            assert await first == 1
            results = await asyncio.gather(*queued, return_exceptions=True)
            assert results[:2] == [1, 1]
            assert results[3:] == [1, 1]
            assert isinstance(results[2], StoreError)
            assert "NOT NULL" in str(results[2])
            # The failed write left nothing behind; the others landed whole.
            assert await store.count(ENTITY, "c3") == 0
            assert await store.count(ENTITY) == 5
            marks = await store.watermarks()
            assert ("c3", ENTITY) not in marks
            assert marks[("c1", ENTITY)] == "W"

    @pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
    async def test_a_cancelled_open_leaves_no_file_open(self, tmp_path: Path) -> None:
        """An open cancelled while it waits for another process's lock closes what it opened.

        The open goes on on the store's thread and succeeds once the lock is given up; the
        cancelled call returns at once, without waiting for it.
        """
        path = tmp_path / "s.db"
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        released: list[bool] = []

        def release() -> None:
            holder.execute("COMMIT")
            holder.close()
            released.append(True)

        store = SQLiteStore(path, timeout=60)
        opening = asyncio.ensure_future(store.open())
        await asyncio.sleep(0)  # the open is now on the store's thread
        # Another thread gives the lock up a second later, even if this one is blocked.
        releaser = threading.Timer(1.0, release)
        releaser.start()
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert released == []  # the cancelled open did not wait for the lock
        await asyncio.to_thread(releaser.join)
        async with asyncio.timeout(30):
            while descriptors_of(path):  # noqa: ASYNC110 - the store's thread has no event
                await asyncio.sleep(0.01)
        with pytest.raises(StoreError, match="not open"):
            await store.count(ENTITY)

    async def test_a_cancelled_writer_does_not_lose_the_others(self, tmp_path: Path) -> None:
        async with SQLiteStore(tmp_path / "s.db") as store:
            tasks = [
                asyncio.ensure_future(store.write(f"c{i}", ENTITY, [_row("K")], None))
                for i in range(4)
            ]
            tasks[1].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert isinstance(results[1], asyncio.CancelledError)
            assert [results[0], results[2], results[3]] == [1, 1, 1]
            # The cancelled caller stopped waiting; its write is atomic either way.
            assert await store.count(ENTITY) in {3, 4}


class TestJsonLinesStore:
    async def test_lines_keep_their_format(self, tmp_path: Path) -> None:
        async with JsonLinesStore(tmp_path / "j") as store:
            await store.write("c1", ENTITY, [_row("A"), _row("B", deleted=True)], "W")
            assert await store.write("c1", ENTITY, [_row("A")], None) == 0
            assert await store.write("c1", ENTITY, [_row("A", title="New")], None) == 1
        files = list((tmp_path / "j").rglob("*.jsonl"))
        assert len(files) == 1
        lines = [json.loads(line) for line in files[0].read_text("utf-8").splitlines()]
        assert [(item["key"], item["deleted_at"] is not None) for item in lines] == [
            ("A", False),
            ("B", True),
        ]
        assert lines[0]["data"]["title"] == "New"
        assert lines[0]["data"]["tags"] == ["é", 1.5]
        async with JsonLinesStore(tmp_path / "j") as again:
            rows = await again.rows(ENTITY, "c1")
            assert [row.data["title"] for row in rows] == ["New", "Check pump"]
            assert await again.write("c1", ENTITY, [_row("A", title="New")], None) == 0


class _Bomb:
    """A row whose text cannot be read: the store thread stops with a non-Exception."""

    key = "K"
    updated_at = None
    deleted_at = None

    @property
    def json(self) -> str:
        raise SystemExit(3)


async def test_a_store_thread_stopped_by_a_base_exception_answers_its_waiters(
    tmp_path: Path,
) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        bad = [_Bomb()]
        with pytest.raises(StoreError, match="stopped writing \\(SystemExit\\)"):
            await store.write("c1", ENTITY, bad, None)  # type: ignore[arg-type]
        # The next write starts a new drain and lands.
        assert await store.write("c1", ENTITY, [_row("A")], "W") == 1
        assert await store.count(ENTITY) == 1
