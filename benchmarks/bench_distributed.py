"""How fast is a distributed sync (``sync --queue`` + ``worker`` processes) with 1, 2 and 4 workers?

Part 1, sync throughput: ``--connections`` (100) sandbox connections x work orders and assets
(``--records`` work orders and half as many assets each, ``--per-page`` records a page) are
enqueued on a fresh redis-server, one job per connection and entity, and synced by
``--workers`` (1, 2, 4) ``makini-async worker`` processes (``--concurrency`` jobs each) into one
store: PostgreSQL when ``initdb`` and ``postgres`` are on PATH, else a SQLite file (WAL; its
writers take turns). The workers are started and registered before the clock starts; the time
is from the first enqueue to the last job's outcome. The sandbox and the enqueuing side run in
this process, so on a 2-core machine they share the cores with the workers: more workers than
cores measure contention as much as scale.

Part 2, the rate budget's cost: client CPU per request (``time.process_time`` of this process)
for small GETs whose answers carry ``X-RateLimit-*`` headers, from one registry to the benchmark
server (`benchmarks/_server.py`, its own process), with the default ``LocalRateBudget`` and with
``RedisRateBudget`` on a local redis-server, in alternating rounds; the ratio is the cost of
sharing the budget (target: at most 1.3x), with the Redis operations per request beside it.

Run it from the repository root (it needs the ``distributed`` extra and ``redis-server``)::

    .venv/bin/python -m benchmarks.bench_distributed [--connections 100] [--records 200]
        [--per-page 100] [--workers 1,2,4] [--concurrency 4] [--part sync|budget|all]
        [--requests 4000] [--rounds 5]

Importing the module does nothing. It always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from makini_async import ConnectionRegistry, LocalRateBudget, RateBudget
from makini_async.distributed import RedisRateBudget
from makini_async.distributed.queue import SyncQueue
from makini_async.sandbox import Sandbox
from tests.services import postgres_server, redis_server

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
ENTITIES = ["eam/work-orders", "eam/assets"]


@contextlib.contextmanager
def _store_dsn(directory: Path) -> Iterator[tuple[str, str]]:
    """A fresh store for each run: a PostgreSQL database when the server can be started."""
    if shutil.which("initdb") and shutil.which("postgres"):
        with postgres_server() as server:
            yield server.dsn(), "postgresql"
    else:
        yield str(directory / "sync.db"), "sqlite"


async def _fresh_database(base: str, kind: str, run: int, directory: Path) -> str:
    if kind != "postgresql":
        return str(directory / f"sync-{run}.db")
    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f'CREATE DATABASE "bench_{run}"')
    finally:
        await admin.close()
    return base.rsplit("/", 1)[0] + f"/bench_{run}"


async def _run(
    workers: int,
    *,
    store: str,
    redis_url: str,
    sandbox: Sandbox,
    args: argparse.Namespace,
    tmp: Path,
) -> tuple[int, float]:
    connections = tmp / "connections.json"
    connections.write_text(
        json.dumps([{"id": c, "token": t} for c, t in sandbox.connections.items()])
    )
    argv = [
        "-m", "makini_async.cli", "worker", "--redis", redis_url, "--store", store,
        "--connections", str(connections), "--base-url", sandbox.url,
        "--concurrency", str(args.concurrency), "--poll", "0.05",
    ]  # fmt: skip
    logs = [(tmp / f"w{workers}-{n}.log").open("wb") for n in range(workers)]
    processes: list[Any] = [
        await asyncio.create_subprocess_exec(
            sys.executable, *argv, cwd=ROOT, stdout=log, stderr=log
        )
        for log in logs
    ]
    try:
        async with SyncQueue(redis_url) as queue:
            # The workers are other processes: their registration is seen by polling Redis.
            while sum(w.alive for w in (await queue.status()).workers) < workers:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            started = time.perf_counter()
            ticket = await queue.enqueue(
                list(sandbox.connections), ENTITIES, per_page=args.per_page
            )
            records = 0
            async for outcome in queue.outcomes(ticket, interval=0.02):
                if not outcome.ok:
                    print(f"  failed: {outcome.result}")
                records += outcome.result.records
            return records, time.perf_counter() - started
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes:
            await asyncio.wait_for(process.wait(), 60)
        for log in logs:
            log.close()


async def sync_throughput(args: argparse.Namespace) -> None:
    """Part 1: records per second with each number of workers."""
    sizes = {"work-orders": args.records, "assets": max(1, args.records // 2)}
    with tempfile.TemporaryDirectory() as name, _store_dsn(Path(name)) as (base, kind):
        tmp = Path(name)
        async with Sandbox(connections=args.connections, seed=7, sizes=sizes) as sandbox:
            for connection_id in sandbox.connections:
                sandbox.configure(connection_id, rate_limit=1_000_000)
            print(
                f"distributed sync: {args.connections} connections x {', '.join(ENTITIES)} "
                f"({args.records} + {sizes['assets']} records each), {args.per_page}/page, "
                f"store {kind}, {args.concurrency} jobs per worker"
            )
            for run, workers in enumerate(args.workers):
                store = await _fresh_database(base, kind, run, tmp)
                with redis_server() as redis:
                    records, seconds = await _run(
                        workers,
                        store=store,
                        redis_url=redis.url,
                        sandbox=sandbox,
                        args=args,
                        tmp=tmp,
                    )
                print(
                    f"  {workers} worker(s): {records:,} records in {seconds:.2f} s = "
                    f"{records / seconds:,.0f} records/s"
                )


async def _cpu_per_request(url: str, budget: RateBudget, requests: int, concurrency: int) -> float:
    """Client CPU seconds per request: ``requests`` GETs, ``concurrency`` at a time."""
    from _server import RATED_PATH

    async with ConnectionRegistry(url, budget=budget) as registry:
        conn = registry.add("acme", "bench-token")
        for _ in range(200):  # warm up: the session, the budget's state
            await conn.request("GET", RATED_PATH)
        per_task = requests // concurrency

        async def loop() -> None:
            for _ in range(per_task):
                await conn.request("GET", RATED_PATH)

        started = time.process_time()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return (time.process_time() - started) / (per_task * concurrency)


async def _redis_calls(url: str) -> int:
    """Round trips the clients made: script runs (the commands inside a script are not)."""
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return sum(
        int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def budget_cost(args: argparse.Namespace) -> None:
    """Part 2: client CPU per request with the Redis budget vs the local one."""
    sys.path.insert(0, str(HERE))  # the benchmark server's module
    from _server import running_server

    local: list[float] = []
    shared: list[float] = []
    operations = 0
    with running_server() as server, redis_server() as redis:
        for _ in range(args.rounds):
            local.append(await _cpu_per_request(server.url, LocalRateBudget(), args.requests, 8))
            before = await _redis_calls(redis.url)
            budget = RedisRateBudget(redis.url)
            shared.append(await _cpu_per_request(server.url, budget, args.requests, 8))
            operations = await _redis_calls(redis.url) - before
    best_local, best_shared = min(local), min(shared)
    ratio = best_shared / best_local
    verdict = "PASS" if ratio <= 1.3 else "FAIL"
    total = args.requests // 8 * 8 + 200
    print(
        f"rate budget, client CPU per request (best of {args.rounds} rounds, "
        f"{args.requests} requests, 8 at a time):\n"
        f"  LocalRateBudget: {best_local * 1e6:7.1f} us\n"
        f"  RedisRateBudget: {best_shared * 1e6:7.1f} us = {ratio:.2f}x local "
        f"(target <= 1.3x: {verdict}); {operations / total:.3f} Redis round trips per request"
    )


def main() -> None:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--workers", type=lambda t: [int(n) for n in t.split(",")], default=[1, 2, 4]
    )
    parser.add_argument("--part", choices=("sync", "budget", "all"), default="all")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.part in {"budget", "all"}:
        asyncio.run(budget_cost(args))
    if args.part in {"sync", "all"}:
        asyncio.run(sync_throughput(args))


if __name__ == "__main__":
    main()
