"""Distributed sync through Redis: enqueue, workers in child processes, status, Redis failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from makini_async import ConnectionRegistry, CoordinationError
from makini_async.cli import main
from makini_async.distributed.queue import (
    DEFAULT_QUEUE,
    SyncQueue,
    SyncWorker,
    job_id,
    redact_url,
)
from makini_async.sandbox import Sandbox
from makini_async.sync import SQLiteStore
from makini_async.sync.postgres import PostgresStore
from tests.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]
ENTITIES = ["eam/work-orders", "eam/assets"]
#: A loose sanity bound on each wait for a child process (the machine may be busy).
WAIT = 90.0


@pytest.fixture(name="sandbox_options")
def _sandbox_options() -> dict[str, Any]:
    """Six small connections."""
    return {"connections": 6, "seed": 11, "sizes": {"work-orders": 9, "assets": 4}}


def connections_file(path: Path, sandbox: Sandbox) -> Path:
    """Write the sandbox's connections as a JSON connections file."""
    items = [{"id": cid, "token": token} for cid, token in sandbox.connections.items()]
    path.write_text(json.dumps(items))
    return path


async def spawn(*argv: str, stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE) -> Any:
    """Start ``python -m makini_async.cli ARGV`` from the repository's root."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "makini_async.cli", *argv, cwd=ROOT, stdout=stdout, stderr=stderr
    )


async def finish(process: Any, timeout: float = WAIT) -> tuple[int, str, str]:
    """Wait (bounded) for a child; its status and output."""
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, (out or b"").decode(), (err or b"").decode()


async def stop(process: Any) -> None:
    """Kill a child still running and reap it (the ``finally`` of every test spawning one)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await asyncio.wait_for(process.communicate(), WAIT)


def worker_argv(redis: RedisServer, sandbox: Sandbox, connections: Path, store: Path) -> list[str]:
    """A worker of the test's queue, quick to notice jobs."""
    return [
        "worker",
        "--redis",
        redis.url,
        "--store",
        str(store),
        "--connections",
        str(connections),
        "--base-url",
        sandbox.url,
        "--poll",
        "0.05",
        "--lease",
        "2",
    ]


@pytest.fixture(name="queue")
async def _queue(redis: RedisServer) -> AsyncIterator[SyncQueue]:
    """The enqueuing side on the test's Redis."""
    async with SyncQueue(redis.url) as queue:
        yield queue


class TestEnqueue:
    async def test_enqueue_twice_adds_no_duplicate(
        self, queue: SyncQueue, redis: RedisServer
    ) -> None:
        """Enqueuing the same connections and entities again while queued adds no job."""
        first = await queue.enqueue(["c1", "c2", "c3"], ["work-orders", "assets"])
        second = await queue.enqueue(["c3", "c2", "c1"], ["assets", "work-orders"])
        assert (first.added, second.added) == (6, 0)
        assert sorted(first.job_ids) == sorted(second.job_ids)
        client = aioredis.Redis.from_url(redis.url)
        try:
            assert await client.zcard(DEFAULT_QUEUE) == 6
        finally:
            await client.aclose()
        status = await queue.status()
        assert (status.queued, status.running, status.done, status.failed) == (6, 0, 0, 0)

    async def test_job_ids_are_stable_and_jobs_carry_no_token(
        self, queue: SyncQueue, redis: RedisServer
    ) -> None:
        """A job id depends on the connection and entity only; Redis never holds a token."""
        token = "tok_" + "s3cr3t" * 6
        assert job_id("c1", "work-orders") == job_id("c1", "eam/work-orders")
        assert job_id("c1", "assets") != job_id("c2", "assets")
        await queue.enqueue(["c1"], ["work-orders"], per_page=7)
        client = aioredis.Redis.from_url(redis.url)
        try:
            values = [await client.dump(key) or b"" for key in await client.keys("*")]
        finally:
            await client.aclose()
        assert values
        assert not any(token.encode() in value for value in values)
        assert any(b'"per_page":7' in value for value in values)

    async def test_bad_arguments_fail_before_any_io(self) -> None:
        """A URL that is not Redis's, or an unknown entity, is refused at once."""
        with pytest.raises(ValueError, match="redis://"):
            SyncQueue("http://127.0.0.1:1")
        with pytest.raises(TypeError):
            SyncQueue(b"redis://x")  # type: ignore[arg-type]
        async with SyncQueue("redis://127.0.0.1:1/0") as queue:
            with pytest.raises(ValueError, match="no-such"):
                await queue.enqueue(["c1"], ["no-such-entity"])

    def test_redact_url_drops_the_password(self) -> None:
        """Messages name the Redis server without its credentials."""
        assert redact_url("redis://user:hunter2@h:6380/3") == "redis://h:6380/3"


class TestRedisFailures:
    async def test_unreachable_redis_is_a_coordination_error_without_the_password(
        self, redis: RedisServer
    ) -> None:
        """Every call on a Redis that is down raises CoordinationError naming no password."""
        redis.stop()
        url = redis.url.replace("redis://", "redis://:pw-hunter2@")
        async with SyncQueue(url) as queue:
            for call in (queue.status(), queue.enqueue(["c1"], ["assets"])):
                with pytest.raises(CoordinationError) as caught:
                    await call
                assert "hunter2" not in str(caught.value)
                assert redact_url(url) in str(caught.value)

    async def test_the_cli_reports_a_down_redis_in_one_line(self, redis: RedisServer) -> None:
        """``status`` on a Redis that is down exits 1 with one error line, no traceback."""
        redis.stop()
        code, out, err = await finish(await spawn("status", "--queue", redis.url))
        assert code == 1
        assert out == ""
        assert err.count("\n") == 1
        assert err.startswith("makini-async: error: Redis at redis://127.0.0.1:")

    async def test_a_worker_on_a_down_redis_exits_1_in_one_line(
        self, redis: RedisServer, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """A worker whose Redis cannot be reached stops with one error line, status 1."""
        redis.stop()
        connections = connections_file(tmp_path / "c.json", sandbox)
        worker = await spawn(*worker_argv(redis, sandbox, connections, tmp_path / "s.db"))
        try:
            code, _, err = await finish(worker)
        finally:
            await stop(worker)
        assert code == 1
        assert "Traceback" not in err
        assert err.splitlines()[-1].startswith("makini-async: error: Redis at ")

    async def test_redis_restarted_mid_run_fails_the_enqueuer_typed(
        self, redis: RedisServer, queue: SyncQueue
    ) -> None:
        """A Redis without persistence restarted mid-run loses the jobs: the waiter raises."""
        ticket = await queue.enqueue(["c1", "c2"], ["assets"])
        seen: list[object] = []

        async def follow() -> None:
            seen.extend([outcome async for outcome in queue.outcomes(ticket, interval=0.05)])

        follower = asyncio.ensure_future(follow())
        await asyncio.sleep(0.2)
        assert not follower.done()
        redis.stop()
        redis.start()
        with pytest.raises(CoordinationError, match=r"vanished.*restarted"):
            await asyncio.wait_for(follower, WAIT)
        assert seen == []

    async def test_redis_down_for_longer_than_the_patience_fails_the_enqueuer(
        self, redis: RedisServer, queue: SyncQueue
    ) -> None:
        """A Redis that stays away is a CoordinationError once ``patience`` has passed."""
        ticket = await queue.enqueue(["c1"], ["assets"])
        redis.stop()
        with pytest.raises(CoordinationError, match="failed to read the outcomes"):
            async for _ in queue.outcomes(ticket, interval=0.05, patience=0.3):
                pass


class TestWorkers:
    async def test_cli_sync_queue_with_a_worker_process(
        self, redis: RedisServer, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        """``sync --queue`` and a ``worker`` child sync every connection's two entities."""
        connections = connections_file(tmp_path / "c.json", sandbox)
        db = tmp_path / "s.db"
        log = (tmp_path / "worker.log").open("wb")
        # With the shared rate budget on the same Redis, as a fleet of workers would run.
        argv = [*worker_argv(redis, sandbox, connections, db), "--budget-redis"]
        worker = await spawn(*argv, stderr=log)
        enqueuer = await spawn(
            "sync",
            "--queue",
            redis.url,
            "--connections",
            str(connections),
            "--entities",
            "work-orders,assets",
            "--per-page",
            "4",
            "--plain",
        )
        try:
            code, out, err = await finish(enqueuer)
            assert code == 0, err
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(worker.wait(), WAIT) == 0
        finally:
            await stop(worker)
            await stop(enqueuer)
            log.close()
        assert "Enqueued 12 job(s)" in err
        assert "c1 eam/work-orders: 9 records, 3 pages, ok" in err
        assert "Jobs: 12 done, 0 failed, 78 records" in out
        worker_lines = (tmp_path / "worker.log").read_text()
        assert "stopped (SIGTERM" in worker_lines
        for token in sandbox.connections.values():
            assert token not in out + err + worker_lines
        async with SQLiteStore(db) as store:
            assert await store.count("eam/work-orders") == 6 * 9
            assert await store.count("eam/assets") == 6 * 4
            assert len(await store.watermarks()) == 12
        client = aioredis.Redis.from_url(redis.url)
        try:  # the workers' calls went through the shared budget
            assert await client.keys("makini:rate:*")
        finally:
            await client.aclose()

    async def test_status_while_running_and_after(
        self, redis: RedisServer, sandbox: Sandbox, tmp_path: Path, queue: SyncQueue
    ) -> None:
        """``status`` shows a worker's running jobs; a stopped worker's jobs go to the next one."""
        sandbox.configure("c1", latency=60.0)
        connections = connections_file(tmp_path / "c.json", sandbox)
        argv = worker_argv(redis, sandbox, connections, tmp_path / "s.db")
        logs = [(tmp_path / f"worker{n}.log").open("wb") for n in (1, 2)]
        first = await spawn(*argv, stderr=logs[0])
        second = None
        try:
            ticket = await queue.enqueue(list(sandbox.connections), ENTITIES, per_page=4)
            # Every job but c1's two ends; those wait on the slow source, leased by the worker.
            while (await queue.status()).done < len(ticket.job_ids) - 2:  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(0.05)
            code, during, _ = await finish(await spawn("status", "--queue", redis.url))
            assert code == 0
            first.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(first.wait(), WAIT) == 0
            sandbox.configure("c1", latency=0.0)
            second = await spawn(*argv, "--burst", stderr=logs[1])
            outcomes = [o async for o in queue.outcomes(ticket, interval=0.05)]
            assert await asyncio.wait_for(second.wait(), WAIT) == 0
            code, after, _ = await finish(await spawn("status", "--queue", redis.url))
            assert code == 0
        finally:
            for process in (first, second):
                if process is not None:
                    await stop(process)
            for log in logs:
                log.close()
        one, two = (f"{os.uname().nodename}:{p.pid}" for p in (first, second))
        assert "jobs: 0 queued, 2 running, 10 done, 0 failed" in during
        assert [one, "alive", "2", "10", "0"] in [line.split()[:5] for line in during.splitlines()]
        assert "jobs: 0 queued, 0 running, 12 done, 0 failed (78 records)" in after
        rows = [line.split()[:5] for line in after.splitlines()]
        assert [one, "gone", "0", "10", "0"] in rows
        assert [two, "gone", "0", "2", "0"] in rows
        retried = [o for o in outcomes if o.result.connection_id == "c1"]
        assert [(o.worker, o.tries) for o in retried] == [(two, 2), (two, 2)]

    async def test_a_job_for_a_connection_the_worker_lacks_fails_with_a_reason(
        self, redis: RedisServer, sandbox: Sandbox, tmp_path: Path, queue: SyncQueue
    ) -> None:
        """A connection missing from the worker's file is a failed outcome, not a lost job."""
        async with (
            ConnectionRegistry(sandbox.url) as registry,
            SQLiteStore(tmp_path / "s.db") as store,
        ):
            registry.add("c1", sandbox.connections["c1"])
            ticket = await queue.enqueue(["c1", "c9"], ["assets"])
            worker = SyncWorker(
                redis.url, registry, store, burst=True, poll_delay=0.05, handle_signals=False
            )
            await asyncio.wait_for(worker.run(), WAIT)
            outcomes = {o.result.connection_id: o async for o in queue.outcomes(ticket)}
        assert outcomes["c1"].ok
        assert outcomes["c1"].result.records == 4
        failed = outcomes["c9"].result
        assert failed.status == "failed"
        assert failed.reason == "the worker has no connection 'c9'"
        status = await queue.status()
        assert (status.done, status.failed, status.records) == (1, 1, 4)


def test_import_makini_async_imports_no_queue_extra() -> None:
    """``import makini_async`` (and its CLI) leaves arq and redis to the queue commands' module."""
    code = (
        "import sys, makini_async, makini_async.sync\n"
        "bad = [m for m in ('arq', 'redis', 'asyncpg') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import makini_async.distributed.queue\n"
        "assert 'arq' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=WAIT)  # noqa: S603 - our own interpreter


async def test_plain_sync_writes_into_postgres(
    sandbox: Sandbox, postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sync --store postgresql://...`` writes into PostgreSQL, as the workers do."""
    connections = connections_file(tmp_path / "c.json", sandbox)
    argv = ["sync", "--connections", str(connections), "--entities", "work-orders"]
    argv += ["--store", postgres_dsn, "--base-url", sandbox.url, "--plain"]
    code = await asyncio.to_thread(main, argv)
    assert code == 0, capsys.readouterr().err
    async with PostgresStore(postgres_dsn) as store:
        assert await store.count("eam/work-orders") == 6 * 9
        assert len(await store.watermarks()) == 6
