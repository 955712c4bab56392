"""How fast does `sync` pull a fleet into SQLite, and does its memory stay flat as the fleet grows?

Part 1, speed: a full sync of ``--connections`` (50) connections x ``--records`` (2,000) work
orders from the sandbox into SQLite, with `sync` (fair fan-out, 8 connections at once, 500
records a page) against a naive loop in the same run (one connection after another, page after
page, the same registry, page size and `SQLiteStore`). Both runs start from an empty file. One after
another, the naive loop's rate does not depend on how many connections it walks, so it walks the
first ``--naive-connections`` (15) of them to keep the run short. It is
measured at each ``--latency`` added by the sandbox to every answer: 0 (loopback, where both are
CPU-bound: client and server share two cores) and simulated network and upstream round trips of
0.1 and 0.2 s (Makini answers from the customer's system, so real pages take longer). Target:
fan-out >= 4x naive with latency; the 0-latency ratio is printed for information.

Part 2, memory: peak traced memory (``tracemalloc``, this process only) during a full sync as the
fleet grows through ``--memory-connections`` (50, 150, 500 connections of ``--memory-records``
work orders each). Target: the peak at 500 stays within 1.5x of the peak at 50.

The sandbox runs in its own process (spawned; it is started once per fleet size), so it never
shares the client's interpreter lock and its data is not traced. Run it from the repository
root::

    .venv/bin/python benchmarks/bench_sync.py [--connections 50] [--records 2000]
        [--latency 0,0.1,0.2] [--memory-connections 50,150,500] [--memory-records 100]

Importing the module does nothing. It always exits 0 and prints PASS/FAIL next to each target.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import tempfile
import time
import tracemalloc
from multiprocessing.queues import Queue
from pathlib import Path

from makini_async import ConnectionRegistry
from makini_async.sync import Row, SQLiteStore, sync

ENTITY = "eam/work-orders"
PATH = "/api/eam/work-orders"
PER_PAGE = 500


def _serve(
    connections: int, records: int, latency: float, ready: Queue[tuple[str, dict[str, str]]]
) -> None:
    from makini_async.sandbox import Sandbox

    async def main() -> None:
        sizes = {"work-orders": records}
        async with Sandbox(
            connections=connections, seed=1, sizes=sizes, rate_limit=10**9
        ) as sandbox:
            for connection_id in sandbox.connections:
                sandbox.records(connection_id, ENTITY)  # generate the data before timing
                sandbox.configure(connection_id, latency=latency)
            ready.put((sandbox.url, sandbox.connections))
            await asyncio.Event().wait()

    asyncio.run(main())


class Server:
    """The sandbox in a child process."""

    def __init__(self, connections: int, records: int, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        ready: Queue[tuple[str, dict[str, str]]] = ctx.Queue()
        self.process = ctx.Process(
            target=_serve, args=(connections, records, latency, ready), daemon=True
        )
        self.process.start()
        self.url, self.tokens = ready.get(timeout=300)

    def configure_latency(self, latency: float) -> None:
        """Change every connection's latency through the control plane."""

        async def run() -> None:
            async with ConnectionRegistry(self.url) as registry:
                control = registry.add("control", "control-token")
                for connection_id in self.tokens:
                    await control.request(
                        "PATCH", f"/_sandbox/connections/{connection_id}", json={"latency": latency}
                    )

        asyncio.run(run())

    def stop(self) -> None:
        """Stop the child process."""
        self.process.terminate()
        self.process.join(10)


def _registry(server: Server) -> ConnectionRegistry:
    registry = ConnectionRegistry(server.url, limit=100)
    for connection_id, token in server.tokens.items():
        registry.add(connection_id, token)
    return registry


async def _fan_out(server: Server, db: Path, concurrency: int) -> tuple[int, float]:
    async with _registry(server) as registry, SQLiteStore(db) as store:
        started = time.perf_counter()
        summary = await sync(registry, [ENTITY], store, per_page=PER_PAGE, concurrency=concurrency)
        elapsed = time.perf_counter() - started
        assert summary.ok, summary.failed[:3]
        assert await store.count(ENTITY) == summary.records
        return summary.records, elapsed


async def _naive(server: Server, db: Path, connections: int) -> tuple[int, float]:
    """One connection after another, page after page, into the same kind of store."""
    async with _registry(server) as registry, SQLiteStore(db) as store:
        started = time.perf_counter()
        total = 0
        for conn in list(registry)[:connections]:
            page = 1
            while True:
                answer = await conn.request(
                    "GET", PATH, params={"per_page": PER_PAGE, "page": page}
                )
                assert isinstance(answer.data, dict)
                data = answer.data["data"]
                meta = answer.data["meta"]
                assert isinstance(data, list)
                assert isinstance(meta, dict)
                rows = [
                    Row.from_record(str(r["key"]), str(r["updatedAt"]), None, r)
                    for r in data
                    if isinstance(r, dict)
                ]
                await store.write(conn.id, ENTITY, rows, None)
                total += len(rows)
                current, last = meta["current_page"], meta["last_page"]
                assert isinstance(current, int)
                assert isinstance(last, int)
                if current >= last:
                    break
                page += 1
        return total, time.perf_counter() - started


def speed(
    connections: int, records: int, latencies: list[float], concurrency: int, naive: int
) -> None:
    """Part 1: fan-out against the naive loop, at each latency."""
    print(
        f"Speed: {connections} connections x {records} work orders, {PER_PAGE} per page; "
        f"fan-out concurrency {concurrency}; naive loop over {min(naive, connections)} connections"
    )
    server = Server(connections, records, latencies[0])
    try:
        for latency in latencies:
            server.configure_latency(latency)
            with tempfile.TemporaryDirectory() as tmp:
                count, fan_seconds = asyncio.run(
                    _fan_out(server, Path(tmp) / "fan.db", concurrency)
                )
                naive_count, naive_seconds = asyncio.run(
                    _naive(server, Path(tmp) / "naive.db", naive)
                )
            assert count == connections * records, count
            assert naive_count == min(naive, connections) * records, naive_count
            fan_rate, naive_rate = count / fan_seconds, naive_count / naive_seconds
            ratio = fan_rate / naive_rate
            target = "info" if latency == 0 else ("PASS" if ratio >= 4 else "FAIL")
            print(
                f"  latency {latency * 1000:5.0f} ms: fan-out {fan_rate:8,.0f} records/s "
                f"({fan_seconds:5.1f} s), naive {naive_rate:8,.0f} records/s "
                f"({naive_seconds:5.1f} s), ratio {ratio:5.1f}x  [target >= 4x: {target}]"
            )
    finally:
        server.stop()


async def _traced(server: Server, db: Path) -> tuple[int, int]:
    async with _registry(server) as registry, SQLiteStore(db) as store:
        gc.collect()
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            summary = await sync(registry, [ENTITY], store, per_page=100)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert summary.ok
        return summary.records, peak - baseline


def memory(fleets: list[int], records: int) -> None:
    """Part 2: the traced peak during a sync as the fleet grows."""
    print(f"Memory: peak traced during a sync, {records} work orders per connection, 100 per page")
    peaks = []
    for connections in fleets:
        server = Server(connections, records, 0.0)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                count, peak = asyncio.run(_traced(server, Path(tmp) / "m.db"))
        finally:
            server.stop()
        peaks.append(peak)
        print(
            f"  {connections:4d} connections ({count:7,d} records): "
            f"peak {peak / 1024 / 1024:6.1f} MiB"
        )
    growth = peaks[-1] / peaks[0]
    verdict = "PASS" if growth <= 1.5 else "FAIL"
    span = f"{fleets[0]} -> {fleets[-1]} connections"
    print(f"  growth {span}: {growth:.2f}x [target <= 1.5x: {verdict}]")


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    """Parse the options and run both parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8, help="sync's default is 8")
    parser.add_argument(
        "--naive-connections",
        type=int,
        default=15,
        help="connections the naive loop runs over (its rate does not depend on how many)",
    )
    parser.add_argument(
        "--latency", type=_floats, default=[0.0, 0.1, 0.2], help="seconds, e.g. 0,0.1,0.2"
    )
    parser.add_argument("--memory-connections", type=_ints, default=[50, 150, 500])
    parser.add_argument("--memory-records", type=int, default=100)
    args = parser.parse_args()
    started = time.perf_counter()
    speed(args.connections, args.records, args.latency, args.concurrency, args.naive_connections)
    memory(args.memory_connections, args.memory_records)
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
