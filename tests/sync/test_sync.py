"""`sync` end to end against the sandbox: faults, interruptions, watermarks, deletes, stores."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from makini_async import ConnectionRegistry, ReconnectEvent, RetryPolicy
from makini_async.sandbox import Sandbox
from makini_async.sync import (
    JsonLinesStore,
    Progress,
    Row,
    SQLiteStore,
    Store,
    StoreError,
    entities_from,
    resolve_entity,
    sync,
)
from tests.support import ZERO_WAIT
from tests.sync.helpers import dump

ENTITIES = ["eam/work-orders", "eam/assets"]


def _keys(sandbox: Sandbox, connection_id: str, entity: str) -> list[str]:
    return sorted(str(r["key"]) for r in sandbox.records(connection_id, entity))


async def _stored_keys(store: SQLiteStore, connection_id: str, entity: str) -> list[str]:
    return [row.key for row in await store.rows(entity, connection_id)]


def _no_duplicates(path: Path, table: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        total, distinct = db.execute(
            f"SELECT count(*), count(DISTINCT connection || '/' || key) FROM {table}"  # noqa: S608
        ).fetchone()
    assert total == distinct


class TestFaults:
    async def test_fifty_connections_with_faults(self, tmp_path: Path) -> None:
        """Every record of every healthy connection is stored exactly once despite the faults."""
        sizes = {"work-orders": 150, "assets": 30}
        async with Sandbox(connections=50, seed=11, sizes=sizes, time_scale=0.01) as sandbox:
            hooked: list[str] = []

            async def reconnect(event: ReconnectEvent) -> str | None:
                hooked.append(event.connection_id)
                if event.connection_id == "c6":
                    return None  # this customer has not reconnected yet
                return sandbox.reconnect(event.connection_id)

            sandbox.change_credentials("c5")  # 401, and the hook gets a new token
            sandbox.change_credentials("c6")  # 401, and nobody can help
            sandbox.inject(429, retry_after=1, times=2, connection="c7")
            sandbox.inject(503, times=2, connection="c8")  # a burst within the retries
            sandbox.inject(503, times=None, connection="c9", path="/api/eam/assets")  # down
            sandbox.inject(kind="drop", times=2, connection="c10")
            sandbox.inject(kind="reset", times=2, connection="c11", path="/api/eam/assets")
            async with (
                ConnectionRegistry(
                    sandbox.url, retry=ZERO_WAIT, on_reconnect=reconnect
                ) as registry,
                SQLiteStore(tmp_path / "s.db") as store,
            ):
                for connection_id, token in sandbox.connections.items():
                    registry.add(connection_id, token)
                summary = await sync(registry, ["work-orders", "assets"], store, per_page=40)
                assert sorted(hooked) == ["c5", "c6"]
                assert summary.failed_connections == ["c6", "c9"]
                by_pair = {(r.connection_id, r.entity): r for r in summary.results}
                assert len(by_pair) == 100
                c9 = by_pair["c9", "eam/assets"]
                assert c9.status == "failed"
                assert c9.error_code == "SYSTEM_UNAVAILABLE"
                assert c9.request_id is not None
                assert by_pair["c9", "eam/work-orders"].status == "ok"
                c6 = {by_pair["c6", e].status for e in ENTITIES}
                assert c6 <= {"failed", "skipped"}
                unhealthy = {("c9", "eam/assets"), ("c6", "eam/assets"), ("c6", "eam/work-orders")}
                for connection_id in sandbox.connections:
                    for entity in ENTITIES:
                        if (connection_id, entity) in unhealthy:
                            continue
                        expected = _keys(sandbox, connection_id, entity)
                        assert await _stored_keys(store, connection_id, entity) == expected
                        assert by_pair[connection_id, entity].records == len(expected)
            for table in ("eam_work_orders", "eam_assets"):
                _no_duplicates(tmp_path / "s.db", table)

    async def test_unknown_entities_fail_before_any_io(
        self, registry: ConnectionRegistry, store: SQLiteStore, sandbox: Sandbox
    ) -> None:
        """A misspelt entity raises ValueError naming it, and nothing is requested."""
        sandbox.clear_requests()
        with pytest.raises(ValueError, match="work-order'"):
            await sync(registry, ["work-order"], store)
        with pytest.raises(ValueError, match="per_page"):
            await sync(registry, ["work-orders"], store, per_page=501)
        with pytest.raises(ValueError, match="at least one"):
            await sync(registry, [], store)
        assert sandbox.requests() == []

    def test_entity_names_resolve(self) -> None:
        """Bare names resolve to EAM, prefixed names to their domain."""
        assert resolve_entity("work-orders") == "eam/work-orders"
        assert resolve_entity("/api/erp/sales-orders") == "erp/sales-orders"
        assert resolve_entity("shipment-orders") == "wms/shipment-orders"
        assert entities_from("work-orders, assets,work-orders") == [
            "eam/work-orders",
            "eam/assets",
        ]
        with pytest.raises(ValueError, match="Unknown entity"):
            resolve_entity("eam/nope")
        with pytest.raises(ValueError, match="at least one"):
            entities_from(" , ")


class TestInterruption:
    async def test_cancelled_then_rerun_equals_uninterrupted(
        self, registry: ConnectionRegistry, tmp_path: Path
    ) -> None:
        """A sync cancelled mid-way and run again ends identical to one that ran through."""
        pages = 0
        task: asyncio.Task[object] | None = None

        def stop_after_some_pages(progress: Progress) -> None:
            nonlocal pages
            pages += 1
            if pages == 12 and task is not None:
                task.cancel()

        async with SQLiteStore(tmp_path / "cut.db") as cut:
            task = asyncio.ensure_future(
                sync(registry, ENTITIES, cut, per_page=25, on_progress=stop_after_some_pages)
            )
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert task.cancelled()
            partial = await cut.count("eam/work-orders")
            assert 0 < partial < 1200
            rerun = await sync(registry, ENTITIES, cut, per_page=25)
            assert rerun.ok
            interrupted = await dump(cut, ENTITIES)
            marks = await cut.watermarks()
        async with SQLiteStore(tmp_path / "whole.db") as whole:
            assert (await sync(registry, ENTITIES, whole, per_page=25)).ok
            assert await dump(whole, ENTITIES) == interrupted
            assert await whole.watermarks() == marks
        assert len(interrupted["eam/work-orders"]) == 1200
        _no_duplicates(tmp_path / "cut.db", "eam_work_orders")

    async def test_a_deadline_cuts_the_run_and_the_next_run_resumes(
        self, registry: ConnectionRegistry, sandbox: Sandbox, store: SQLiteStore
    ) -> None:
        """Past the deadline the running entity fails, the next is skipped; a rerun ends the job."""
        sandbox.configure("c1", latency=0.05)
        entities = ["work-orders", "assets"]
        cut = await sync(
            registry, entities, store, connections=["c1"], per_page=10, concurrency=1, deadline=0.2
        )
        by_entity = {result.entity: result for result in cut.results}
        assert by_entity["eam/work-orders"].status == "failed"
        assert by_entity["eam/work-orders"].error_code == "RequestTimeoutError"
        assert by_entity["eam/assets"].status == "skipped"
        assert by_entity["eam/assets"].reason == "the deadline passed"
        partial = await store.count("eam/work-orders")
        assert partial < 120
        sandbox.configure("c1", latency=0.0)
        rerun = await sync(registry, entities, store, connections=["c1"], per_page=10)
        assert rerun.ok
        assert await store.count("eam/work-orders") == 120
        assert await store.count("eam/assets") == 40

    async def test_bad_limits_fail_before_any_io(
        self, registry: ConnectionRegistry, store: SQLiteStore, sandbox: Sandbox
    ) -> None:
        """A timeout or deadline that is no positive number is refused before anything is sent."""
        sandbox.clear_requests()
        with pytest.raises(ValueError, match="deadline"):
            await sync(registry, ["work-orders"], store, deadline=0)
        with pytest.raises(TypeError, match="timeout"):
            await sync(registry, ["work-orders"], store, timeout="5")  # type: ignore[arg-type]
        assert sandbox.requests() == []

    async def test_a_failing_store_keeps_the_watermark_behind_the_records(
        self, registry: ConnectionRegistry, tmp_path: Path, sandbox: Sandbox
    ) -> None:
        """When a write fails, the watermark stays at the last records that were written."""

        class Flaky(SQLiteStore):
            writes = 0

            async def write(
                self, connection_id: str, entity: str, rows: Sequence[Row], watermark: str | None
            ) -> int:
                Flaky.writes += 1
                if Flaky.writes == 3:
                    raise StoreError("disk full")
                return await super().write(connection_id, entity, rows, watermark)

        async with Flaky(tmp_path / "f.db") as store:
            summary = await sync(registry, ["work-orders"], store, connections=["c1"], per_page=30)
            assert summary.failed_connections == ["c1"]
            assert summary.failed[0].reason == "StoreError: disk full"
            await _assert_watermarks_behind_records(store, sandbox, ["c1"], "eam/work-orders")
            # Two pages were written (a record at the page boundary is read twice, stored once).
            assert 30 < await store.count("eam/work-orders") <= 60


async def _assert_watermarks_behind_records(
    store: SQLiteStore, sandbox: Sandbox, connections: list[str], entity: str
) -> None:
    """Every source record updated at or before the watermark is in the store."""
    for connection_id in connections:
        mark = await store.watermark(connection_id, entity)
        assert mark is not None
        stored = set(await _stored_keys(store, connection_id, entity))
        for record in sandbox.records(connection_id, entity):
            if str(record["updatedAt"]) <= mark[:19] + "Z":
                assert str(record["key"]) in stored


class TestWatermarks:
    async def test_a_failure_mid_listing_leaves_a_safe_watermark(
        self, registry: ConnectionRegistry, store: SQLiteStore, sandbox: Sandbox
    ) -> None:
        """A source that goes down after two pages leaves the watermark behind what was written."""
        seen = 0

        def outage(progress: Progress) -> None:
            nonlocal seen
            seen += 1
            if seen == 2:
                sandbox.inject(503, times=None, connection="c1")

        summary = await sync(
            registry, ["work-orders"], store, connections=["c1"], per_page=20, on_progress=outage
        )
        assert not summary.ok
        assert 20 < await store.count("eam/work-orders", "c1") < 120
        await _assert_watermarks_behind_records(store, sandbox, ["c1"], "eam/work-orders")
        sandbox.clear_faults()
        assert (await sync(registry, ["work-orders"], store, connections=["c1"])).ok
        assert await _stored_keys(store, "c1", "eam/work-orders") == _keys(
            sandbox, "c1", "eam/work-orders"
        )

    async def test_records_updated_while_paging_are_not_skipped(
        self, registry: ConnectionRegistry, store: SQLiteStore, sandbox: Sandbox
    ) -> None:
        """Updates that reorder the listing during a sync cost no record."""
        conn = registry["c2"]
        records = sandbox.records("c2", "eam/work-orders")
        ordered = sorted(records, key=lambda r: str(r["updatedAt"]))
        targets = [str(r["key"]) for r in ordered[:40:4]]
        updates: list[asyncio.Task[object]] = []

        async def move(key: str) -> object:
            return await conn.request(
                "PUT", f"/api/eam/work-orders/{key}", json={"title": f"moved {key}"}
            )

        def update_early_records(progress: Progress) -> None:
            if not updates:
                updates.extend(asyncio.ensure_future(move(key)) for key in targets)

        summary = await sync(
            registry,
            ["work-orders"],
            store,
            connections=["c2"],
            per_page=15,
            on_progress=update_early_records,
        )
        await asyncio.gather(*updates)
        assert summary.ok
        assert await _stored_keys(store, "c2", "eam/work-orders") == _keys(
            sandbox, "c2", "eam/work-orders"
        )
        await _assert_watermarks_behind_records(store, sandbox, ["c2"], "eam/work-orders")
        # The next run picks up the final versions of the moved records.
        await sync(registry, ["work-orders"], store, connections=["c2"])
        stored = {r.key: r.data for r in await store.rows("eam/work-orders", "c2")}
        assert all(stored[key]["title"] == f"moved {key}" for key in targets)

    async def test_incremental_runs_read_only_what_changed(
        self, registry: ConnectionRegistry, store: SQLiteStore, sandbox: Sandbox
    ) -> None:
        """A second run changes only the written and soft-deleted records."""
        first = await sync(registry, ["work-orders"], store, connections=["c3", "c4"])
        assert first.changed == 240
        conn = registry["c3"]
        created = await conn.request(
            "POST", "/api/eam/work-orders", json={"title": "New"}, idempotency_key="k-new"
        )
        assert isinstance(created.data, dict)
        victim = str(sandbox.records("c4", "eam/work-orders")[5]["key"])
        sandbox.soft_delete("c4", "eam/work-orders", victim)
        second = await sync(registry, ["work-orders"], store, connections=["c3", "c4"])
        assert second.changed == 2
        assert second.records < 10
        assert await store.count("eam/work-orders") == 241
        rows = {r.key: r for r in await store.rows("eam/work-orders", "c4")}
        assert rows[victim].deleted
        assert rows[victim].deleted_at is not None
        deleted_at_source = sum(
            1 for r in sandbox.records("c4", "eam/work-orders") if r.get("deletedAt")
        )
        assert await store.count("eam/work-orders", "c4", deleted=True) == deleted_at_source

    async def test_modified_after_and_v4_records(
        self, registry: ConnectionRegistry, store: SQLiteStore, sandbox: Sandbox
    ) -> None:
        """The modified_after alias and v4-shaped records sync the same records."""
        sandbox.configure("c5", v4=True)
        first = await sync(
            registry, ["assets"], store, connections=["c5"], since_param="modified_after"
        )
        assert first.ok
        second = await sync(
            registry, ["assets"], store, connections=["c5"], since_param="modified_after"
        )
        assert second.changed == 0
        assert await _stored_keys(store, "c5", "eam/assets") == _keys(sandbox, "c5", "eam/assets")
        assert any("modified_after" in dict(r.query) for r in sandbox.requests(connection="c5"))


class TestWholeReads:
    WHOLE = ("eam/uom", "eam/meter-readings", "erp/exchange-rates")

    async def test_collections_without_updated_at_are_read_whole_every_run(
        self, registry: ConnectionRegistry, store: SQLiteStore, sandbox: Sandbox
    ) -> None:
        """Units, meter readings and rates sync without sort or filter; reruns change nothing."""
        first = await sync(registry, self.WHOLE, store, connections=["c1"], per_page=7)
        assert first.ok, first.failed
        for entity in self.WHOLE:
            assert await _stored_keys(store, "c1", entity) == _keys(sandbox, "c1", entity)
            assert await store.watermark("c1", entity) is None
        paths = {f"/api/{entity}" for entity in self.WHOLE}
        asked = [r for r in sandbox.requests(connection="c1") if r.path in paths]
        pages = sum(result.pages for result in first.results)
        assert len(asked) == pages > len(self.WHOLE)  # several pages each
        assert all(not name.startswith(("sort", "filter")) for r in asked for name, _ in r.query)

        again = await sync(registry, self.WHOLE, store, connections=["c1"], per_page=7)
        assert again.ok
        assert (again.records, again.changed) == (first.records, 0)

        sandbox.configure("c1", custom_fields={"exchange-rates": {"x_desk": "treasury"}})
        changed = await sync(registry, self.WHOLE, store, connections=["c1"], per_page=7)
        rates = len(sandbox.records("c1", "erp/exchange-rates"))
        assert changed.changed == rates > 0
        stored = await store.rows("erp/exchange-rates", "c1")
        assert all(json.loads(row.json)["x_desk"] == "treasury" for row in stored)


class TestStores:
    async def test_json_lines_store_holds_each_record_once(
        self, registry: ConnectionRegistry, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """The JSON-lines store syncs, resumes and compacts to one line per key."""
        directory = tmp_path / "lines"
        store: Store
        async with JsonLinesStore(directory) as store:
            assert (await sync(registry, ["work-orders"], store, connections=["c1"])).ok
            assert (await sync(registry, ["work-orders"], store, connections=["c1"])).changed == 0
        path = directory / "eam_work_orders" / "c1.jsonl"
        with path.open("ab") as handle:
            handle.write(b'{"key": "cut sh')  # a crash in the middle of a line
        async with JsonLinesStore(directory) as store:
            conn = registry["c1"]
            await conn.request(
                "PUT",
                f"/api/eam/work-orders/{sandbox.records('c1', 'eam/work-orders')[0]['key']}",
                json={"title": "again"},
            )
            second = await sync(registry, ["work-orders"], store, connections=["c1"])
            assert second.changed == 1
            rows = await store.rows("eam/work-orders", "c1")
        assert [r.key for r in rows] == _keys(sandbox, "c1", "eam/work-orders")
        lines = path.read_bytes().splitlines()
        assert len(lines) == 120
        assert len({json.loads(line)["key"] for line in lines}) == 120
        marks = json.loads((directory / "_watermarks.json").read_text())
        assert set(marks["c1"]) == {"eam/work-orders"}

    async def test_corrupt_and_locked_stores_fail_typed(self, tmp_path: Path) -> None:
        """A file that is not SQLite, or one another process holds, raises StoreError."""
        bad = tmp_path / "bad.db"
        bad.write_bytes(b"this is not a database" * 100)
        with pytest.raises(StoreError, match="not a SQLite database"):
            await SQLiteStore(bad).open()
        locked = tmp_path / "locked.db"
        holder = sqlite3.connect(locked, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StoreError, match="locked"):
                await SQLiteStore(locked, timeout=0.1).open()
        finally:
            holder.close()
        corrupt = tmp_path / "lines"
        corrupt.mkdir()
        (corrupt / "_watermarks.json").write_text("[1, 2")
        with pytest.raises(StoreError, match="corrupt"):
            await JsonLinesStore(corrupt).open()

    async def test_a_closed_store_refuses_work(self, tmp_path: Path) -> None:
        """Using a store before open or after close raises StoreError, and close is idempotent."""
        store = SQLiteStore(tmp_path / "x.db")
        with pytest.raises(StoreError, match="not open"):
            await store.watermark("c1", "eam/assets")
        await store.open()
        await store.open()
        assert await store.rows("eam/assets") == []
        await store.aclose()
        await store.aclose()
        assert "x.db" in repr(store)

    async def test_stores_follow_the_protocol(self, tmp_path: Path) -> None:
        """Both stores are `Store`s."""
        assert isinstance(SQLiteStore(tmp_path / "a.db"), Store)
        assert isinstance(JsonLinesStore(tmp_path / "b"), Store)

    async def test_retries_exhausted_are_reported_with_codes(
        self, sandbox: Sandbox, store: SQLiteStore
    ) -> None:
        """A connection whose source stays down is listed with its code, the others are not."""
        sandbox.inject(503, times=None, connection="c2", path="/api/eam/work-orders")
        policy = RetryPolicy(attempts=2, base=0.0, cap=0.0)
        async with ConnectionRegistry(sandbox.url, retry=policy) as registry:
            for connection_id, token in sandbox.connections.items():
                registry.add(connection_id, token)
            summary = await sync(registry, ["work-orders", "purchase-orders"], store)
        assert [(r.connection_id, r.entity, r.error_code) for r in summary.failed] == [
            ("c2", "eam/work-orders", "SYSTEM_UNAVAILABLE")
        ]
        assert summary.records == 9 * 120 + 10 * 20
        assert set(summary.by_entity()) == {"eam/work-orders", "eam/purchase-orders"}
