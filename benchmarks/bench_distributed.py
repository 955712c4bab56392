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

Run it from the repository root (it needs the ``queue`` extra and ``redis-server``)::

    .venv/bin/python -m benchmarks.bench_distributed [--connections 100] [--records 200]
        [--per-page 100] [--workers 1,2,4] [--concurrency 4]

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

from makini_async.distributed.queue import SyncQueue
from makini_async.sandbox import Sandbox
from tests.services import postgres_server, redis_server

ROOT = Path(__file__).resolve().parents[1]
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
    asyncio.run(sync_throughput(parser.parse_args()))


if __name__ == "__main__":
    main()
