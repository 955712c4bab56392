"""A distributed sync survives a worker SIGKILLed mid-job: each record once, the same watermarks."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from makini_async import ConnectionRegistry
from makini_async.distributed.queue import DEFAULT_QUEUE, JobOutcome, SyncQueue
from makini_async.sandbox import Sandbox
from makini_async.sync import SQLiteStore, sync
from makini_async.sync.postgres import PostgresStore
from tests.distributed.test_queue import WAIT, connections_file, spawn, stop, worker_argv
from tests.services import RedisServer

CONNECTIONS = 200
SIZES = {"work-orders": 6, "assets": 3, "purchase-orders": 3}
ENTITIES = ["eam/work-orders", "eam/assets", "erp/purchase-orders"]
PER_PAGE = 2  # several pages per job, so that a kill lands between a job's writes


@pytest.fixture(name="sandbox_options")
def _sandbox_options() -> dict[str, Any]:
    """Two hundred small connections (seeded: every run serves the same records)."""
    return {"connections": CONNECTIONS, "seed": 29, "sizes": SIZES, "rate_limit": 100_000}


async def _kill_once_running(redis: RedisServer, victim: Any) -> float:
    """SIGKILL ``victim`` as soon as Redis shows it running a job; when (epoch seconds)."""
    name = f"{os.uname().nodename}:{victim.pid}".encode()
    client = aioredis.Redis.from_url(redis.url)
    try:
        while name not in (await client.hvals(f"{DEFAULT_QUEUE}:running")):  # noqa: ASYNC110 - another process's state
            await asyncio.sleep(0.005)
    finally:
        await client.aclose()
    victim.send_signal(signal.SIGKILL)
    return time.time()  # the clock Redis stamps outcomes with (same machine)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_worker_killed_mid_job_loses_nothing_and_writes_nothing_twice(
    redis: RedisServer, sandbox: Sandbox, postgres_dsn: str, tmp_path: Path
) -> None:
    """600 jobs, 3 workers, one SIGKILLed mid-job: its job is retried, each record stored once."""
    for connection_id in sandbox.connections:
        sandbox.configure(connection_id, latency=0.01)
    connections = connections_file(tmp_path / "c.json", sandbox)
    argv = [*worker_argv(redis, sandbox, connections, tmp_path / "unused"), "--concurrency", "4"]
    argv[argv.index("--store") + 1] = postgres_dsn
    logs = [(tmp_path / f"worker{n}.log").open("wb") for n in range(3)]
    workers = [await spawn(*argv, stderr=log) for log in logs]
    outcomes: list[JobOutcome] = []
    started = time.monotonic()
    try:
        async with SyncQueue(redis.url) as queue:
            ticket = await queue.enqueue(list(sandbox.connections), ENTITIES, per_page=PER_PAGE)
            killed_at = await asyncio.wait_for(_kill_once_running(redis, workers[0]), WAIT)
            outcomes.extend([o async for o in queue.outcomes(ticket, interval=0.05)])
            wall = time.monotonic() - started
            status = await queue.status()
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
        assert [await asyncio.wait_for(w.wait(), WAIT) for w in workers] == [-9, 0, 0]
    finally:
        for worker in workers:
            await stop(worker)
        for log in logs:
            log.close()

    victim = f"{os.uname().nodename}:{workers[0].pid}"
    retried = [o for o in outcomes if o.tries > 1]
    assert len(outcomes) == CONNECTIONS * len(ENTITIES)
    assert all(o.ok for o in outcomes), [o.result for o in outcomes if not o.ok][:3]
    assert retried, "the killed worker's job was not retried"
    assert all(o.worker != victim for o in retried)
    assert [w.alive for w in status.workers if w.name == victim] == [False]
    assert (status.queued, status.running, status.failed) == (0, 0, 0)

    async with PostgresStore(postgres_dsn) as store:
        stored = {entity: await store.rows(entity) for entity in ENTITIES}
        counts = {entity: await store.count(entity) for entity in ENTITIES}
        distributed = await store.watermarks()
    expected = {e: CONNECTIONS * SIZES[e.partition("/")[2]] for e in ENTITIES}
    assert counts == expected
    records = sum(counts.values())
    # Rows come back per (connection, key); a key stored twice would show up as a repeat.
    keys = [(e, row.key) for e, rows in stored.items() for row in rows]
    duplicates = len(keys) - len(set(keys))
    assert duplicates == 0

    # The same sandbox synced by one process gives the same watermarks.
    async with (
        ConnectionRegistry(sandbox.url) as registry,
        SQLiteStore(tmp_path / "single.db") as single,
    ):
        for connection_id, token in sandbox.connections.items():
            registry.add(connection_id, token)
        summary = await sync(
            registry, ENTITIES, single, per_page=PER_PAGE, overlap=timedelta(minutes=5)
        )
        assert summary.ok
        assert await single.watermarks() == distributed
    print(  # noqa: T201 - the figures the test exists to show (pytest -s)
        f"\ndistributed sync: {len(outcomes)} jobs, {records} records, {duplicates} duplicates, "
        f"{len(retried)} job(s) retried after the kill "
        f"(the last done {max(o.finished_ms for o in retried) / 1000 - killed_at:.1f} s after it), "
        f"wall {wall:.1f} s"
    )
