"""Typed listing speed: ``conn.eam.work_orders.list()`` against raw aiohttp, and prefetch.

Usage::

    .venv/bin/python benchmarks/bench_resources.py [--pages 2000] [--concurrency 64]
                                                   [--latency 0.05]

The sandbox runs in its own process (``python -m makini_async.sandbox``, 10,000 work orders,
pinned to CPU 1 when there are two CPUs; this script to CPU 0), so server and client never share
an interpreter lock. Two measurements, each in the same run:

1. Pages per second of 50 work orders at concurrency 64 (page numbers cycle over the listing):
   ``raw-json`` (aiohttp ``get`` + ``resp.json()``), ``raw-orjson`` (the same with orjson) and
   ``core-untyped`` (``conn.request("GET", ...)``: the request core and orjson, no models) and
   ``makini`` (``conn.eam.work_orders.list(per_page=50, page=n, max_pages=1)``: the request core,
   orjson and the typed decode into ``Page[WorkOrder]``). Target: ``makini`` >= 0.7x ``raw-json``.
2. Listing all 10,000 work orders, 100 per page, page by page and with ``prefetch=8``, once with
   the sandbox answering at once and once with ``--latency`` seconds added per answer (Makini's
   own answers take tens to hundreds of milliseconds). Target: prefetch >= 2.5x page by page with
   the latency; without it both are bound by this process's CPU (there is no wait to overlap),
   and that ratio is printed for information. Each listing starts after a full collection, with
   the previous one's 10,000 records gone, so neither pays for the other's garbage.

Each variant runs twice and the better run counts. Numbers on a shared machine are indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

import aiohttp
import orjson

from makini_async import ConnectionRegistry, RetryPolicy

_WORK_ORDERS: Final = 10_000
_CPUS: Final = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


@contextlib.contextmanager
def _sandbox() -> Iterator[tuple[str, str]]:
    """Start the sandbox process; yield its URL and the connection token."""
    command = [
        sys.executable,
        "-m",
        "makini_async.sandbox",
        "--port",
        "0",
        "--connections",
        "1",
        "--work-orders",
        str(_WORK_ORDERS),
        "--rate-limit",
        "100000000",
    ]

    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603 - fixed
    if _CPUS >= 2:
        os.sched_setaffinity(process.pid, {1})
    try:
        assert process.stdout is not None
        url = token = ""
        for line in process.stdout:
            if line.startswith("Makini sandbox listening on "):
                url = line.rsplit(" ", 1)[-1].strip()
            if line.startswith("connection c1: "):
                token = line.rsplit(" ", 1)[-1].strip()
                break
        yield url, token
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _run(concurrency: int, pages: int, fetch: Callable[[int], Awaitable[int]]) -> float:
    numbers = itertools.cycle(range(1, _WORK_ORDERS // 50 + 1))
    queue = [next(numbers) for _ in range(pages)]
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(queue):
            number = queue[position]
            position += 1
            await fetch(number)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return pages / (time.perf_counter() - start)


async def _throughput(url: str, token: str, pages: int, concurrency: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    path = f"{url}/api/eam/work-orders"
    results: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=100)
    async with (
        aiohttp.ClientSession(connector=connector, headers=headers) as session,
        ConnectionRegistry(url, limit_per_connection=None, retry=RetryPolicy()) as registry,
    ):
        conn = registry.add("c1", token)
        service = conn.eam.work_orders

        async def raw_json(number: int) -> int:
            params = {"per_page": "50", "page": str(number)}
            async with session.get(path, params=params) as response:
                body = await response.json()
            return len(body["data"])

        async def raw_orjson(number: int) -> int:
            params = {"per_page": "50", "page": str(number)}
            async with session.get(path, params=params) as response:
                body = await response.json(loads=orjson.loads)
            return len(body["data"])

        async def makini_untyped(number: int) -> int:
            params = {"per_page": "50", "page": str(number)}
            response = await conn.request("GET", "/api/eam/work-orders", params=params)
            return len(response.data["data"])  # type: ignore[call-overload,index,arg-type]

        async def makini(number: int) -> int:
            listing = service.list(per_page=50, page=number, max_pages=1)
            return len([record async for record in listing])

        variants = {
            "raw-json": raw_json,
            "raw-orjson": raw_orjson,
            "core-untyped": makini_untyped,
            "makini": makini,
        }
        for fetch in variants.values():  # warm the sandbox's page cache and the pools
            await _run(concurrency, min(pages, 400), fetch)
        for _ in range(2):
            for name, fetch in variants.items():
                rate = await _run(concurrency, pages, fetch)
                results[name] = max(results.get(name, 0.0), rate)
    return results


async def _listing(url: str, token: str, latency: float) -> dict[str, float]:
    results: dict[str, float] = {}
    async with aiohttp.ClientSession() as control:
        await control.patch(f"{url}/_sandbox/connections/c1", json={"latency": latency})
    async with ConnectionRegistry(url, limit_per_connection=16) as registry:
        service = registry.add("c1", token).eam.work_orders
        await service.list(per_page=100).to_list()  # warm the page cache
        for _ in range(2):
            for name, prefetch in (("page by page", 0), ("prefetch=8", 8)):
                # Each variant starts from the same heap: the previous listing (10,000 records,
                # about 100,000 objects) is gone, so that neither pays for the other's full
                # garbage collections.
                gc.collect()
                start = time.perf_counter()
                records = await service.list(per_page=100, prefetch=prefetch).to_list()
                elapsed = time.perf_counter() - start
                assert len(records) == _WORK_ORDERS, len(records)
                del records
                results[name] = min(results.get(name, float("inf")), elapsed)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print them.

    Returns:
        0 (a benchmark reports, it does not assert).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000, help="pages per throughput run")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent page requests")
    parser.add_argument("--latency", type=float, default=0.05, help="added answer latency (s)")
    args = parser.parse_args(argv)
    if _CPUS >= 2:
        os.sched_setaffinity(0, {0})
    with _sandbox() as (url, token):
        rates = asyncio.run(_throughput(url, token, args.pages, args.concurrency))
        print(f"pages of 50 work orders per second, concurrency {args.concurrency}:")
        for name, rate in rates.items():
            print(f"  {name:<12} {rate:>8,.0f} pages/s  {rate / rates['raw-json']:5.2f}x raw-json")
        verdict = "PASS" if rates["makini"] >= 0.7 * rates["raw-json"] else "FAIL"
        ratio = rates["makini"] / rates["raw-json"]
        print(f"  makini / raw-json = {ratio:.2f} (>= 0.7: {verdict})")
        for latency in (0.0, args.latency):
            times = asyncio.run(_listing(url, token, latency))
            speedup = times["page by page"] / times["prefetch=8"]
            print(f"\nlisting {_WORK_ORDERS:,} work orders, 100 per page, latency {latency}s:")
            for name, seconds in times.items():
                print(f"  {name:<13} {seconds:6.2f} s")
            # On loopback with no added latency there is no wait to overlap: both are bound by
            # the client's CPU, and the ratio is printed for information only.
            verdict = "info" if latency == 0 else ("PASS" if speedup >= 2.5 else "FAIL")
            print(f"  prefetch speed-up {speedup:.2f}x (>= 2.5: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
