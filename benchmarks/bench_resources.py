"""Typed listing speed: ``conn.eam.work_orders.list()`` against raw aiohttp, and prefetch.

Usage::

    .venv/bin/python benchmarks/bench_resources.py [--pages 2000] [--concurrency 64]
                                                   [--latency 0.05] [--rounds 2]

The sandbox runs in its own process (10,000 work orders per connection, pinned to CPU 1 when
there are two CPUs; this script to CPU 0), so server and client never share an interpreter lock.
Its connection ``c1`` serves the records as generated, ``c2`` the same records with one value
per record that does not fit its field (``dueAt: "next tuesday"``), and ``c3`` the same with a
custom field per record (``x_costCenter``). Two measurements, each in the same run:

1. Pages per second of 50 work orders at concurrency 64 (page numbers cycle over the listing):
   ``raw-json`` (aiohttp ``get`` + ``resp.json()``: the baseline), ``raw-orjson`` (the same with
   orjson), ``core-untyped`` (``conn.request("GET", ...)``: the request core and orjson, no
   models), ``makini`` (``conn.eam.work_orders.list(per_page=50, page=n, max_pages=1)``: the
   request core and the typed decode into ``Page[WorkOrder]``; with the ``speedups`` extra the
   page is decoded by msgspec straight from the bytes), ``makini-ref`` (the same with the msgspec
   path switched off: the reference path, as installs without msgspec have it),
   ``makini-dirty`` (``makini`` on ``c2``: the cost of tolerance), ``makini-custom``
   (``makini`` on ``c3``) and, for information, ``core-structs`` (``conn.request`` with the
   body decoded into plain msgspec Structs with the same fields, ``_peers.py``: what the request
   core would give if the records were Structs rather than attrs classes). Target: ``makini``
   >= 1.3x ``raw-json`` (goal 1.5x).
2. Listing all 10,000 work orders, 100 per page, page by page and with ``prefetch=8``, once with
   the sandbox answering at once and once with ``--latency`` seconds added per answer (Makini's
   own answers take tens to hundreds of milliseconds). Target: prefetch >= 2.5x page by page with
   the latency; without it both are bound by this process's CPU (there is no wait to overlap),
   and that ratio is printed for information. Each listing starts after a full collection, with
   the previous one's 10,000 records gone, so neither pays for the other's garbage.

Each variant runs ``--rounds`` times, the rounds interleaved, and the best counts. Numbers on a
shared machine are indicative.
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

from makini_async import Connection, ConnectionRegistry, RetryPolicy, _json
from makini_async.models import _fast
from makini_async.resources import EAMWorkOrders

_WORK_ORDERS: Final = 10_000
_CPUS: Final = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


_SERVER: Final = """
import asyncio, sys
from makini_async.sandbox import Sandbox

async def main():
    sizes = {"work-orders": int(sys.argv[1])}
    async with Sandbox(connections=3, sizes=sizes, rate_limit=100_000_000) as sandbox:
        sandbox.configure("c2", custom_fields={"work-orders": {"dueAt": "next tuesday"}})
        sandbox.configure("c3", custom_fields={"work-orders": {"x_costCenter": "CC-7"}})
        print("Makini sandbox listening on", sandbox.url, flush=True)
        for cid, token in sandbox.connections.items():
            print(f"connection {cid}: {token}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@contextlib.contextmanager
def _sandbox() -> Iterator[tuple[str, dict[str, str]]]:
    """Start the sandbox process; yield its URL and the connections' tokens."""
    command = [sys.executable, "-c", _SERVER, str(_WORK_ORDERS)]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    if _CPUS >= 2:
        os.sched_setaffinity(process.pid, {1})
    try:
        assert process.stdout is not None
        url = ""
        tokens: dict[str, str] = {}
        for line in process.stdout:
            if line.startswith("Makini sandbox listening on "):
                url = line.rsplit(" ", 1)[-1].strip()
            if line.startswith("connection c"):
                name, token = line.split(": ", 1)
                tokens[name.removeprefix("connection ")] = token.strip()
                if len(tokens) == 3:  # c1, c2, c3
                    break
        yield url, tokens
    finally:
        if process.stdin is not None:
            process.stdin.close()
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


def _core_variants(conn: Connection) -> dict[str, Callable[[int], Awaitable[int]]]:
    """The request core without the models: dicts (orjson), and plain msgspec Structs."""
    from _peers import peer_models

    path = "/api/eam/work-orders"

    async def untyped(number: int) -> int:
        params = {"per_page": "50", "page": str(number)}
        response = await conn.request("GET", path, params=params)
        return len(response.data["data"])  # type: ignore[call-overload,index,arg-type]

    variants: dict[str, Callable[[int], Awaitable[int]]] = {"core-untyped": untyped}
    structs = peer_models().get("msgspec")
    if structs is not None:

        async def core_structs(number: int) -> int:
            params = {"per_page": "50", "page": str(number)}
            token = _json.use_body_decoder(structs)
            try:
                response = await conn.request("GET", path, params=params)
            finally:
                _json.reset_body_decoder(token)
            return len(response.data.data)  # type: ignore[union-attr]

        variants["core-structs"] = core_structs
    return variants


async def _throughput(
    url: str, tokens: dict[str, str], pages: int, concurrency: int, rounds: int
) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {tokens['c1']}", "Accept": "application/json"}
    path = f"{url}/api/eam/work-orders"
    results: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=100)
    async with (
        aiohttp.ClientSession(connector=connector, headers=headers) as session,
        ConnectionRegistry(url, limit_per_connection=None, retry=RetryPolicy()) as registry,
    ):
        conn = registry.add("c1", tokens["c1"])
        service = conn.eam.work_orders
        dirty = registry.add("c2", tokens["c2"]).eam.work_orders
        custom = registry.add("c3", tokens["c3"]).eam.work_orders

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

        def typed(target: EAMWorkOrders) -> Callable[[int], Awaitable[int]]:
            async def fetch(number: int) -> int:
                listing = target.list(per_page=50, page=number, max_pages=1)
                return len([record async for record in listing])

            return fetch

        async def reference(number: int) -> int:
            with _reference_path():
                return await typed(service)(number)

        variants = {
            "raw-json": raw_json,
            "raw-orjson": raw_orjson,
            **_core_variants(conn),
            "makini": typed(service),
            "makini-ref": reference,
            "makini-dirty": typed(dirty),
            "makini-custom": typed(custom),
        }
        for fetch in variants.values():  # warm the sandbox's page cache and the pools
            await _run(concurrency, min(pages, 400), fetch)
        for _ in range(rounds):
            for name, fetch in variants.items():
                rate = await _run(concurrency, pages, fetch)
                results[name] = max(results.get(name, 0.0), rate)
    return results


@contextlib.contextmanager
def _reference_path() -> Iterator[None]:
    """Switch the msgspec path off: the pages take the reference path, as without msgspec."""
    _fast.set_enabled(False)
    try:
        yield
    finally:
        _fast.set_enabled(True)


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
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per variant")
    args = parser.parse_args(argv)
    if _CPUS >= 2:
        os.sched_setaffinity(0, {0})
    with _sandbox() as (url, tokens):
        rates = asyncio.run(_throughput(url, tokens, args.pages, args.concurrency, args.rounds))
        print(f"pages of 50 work orders per second, concurrency {args.concurrency}:")
        for name, rate in rates.items():
            print(f"  {name:<14} {rate:>8,.0f} pages/s  {rate / rates['raw-json']:5.2f}x raw-json")
        ratio = rates["makini"] / rates["raw-json"]
        verdict = "PASS" if ratio >= 1.3 else "FAIL"
        print(f"  makini / raw-json = {ratio:.2f} (>= 1.3, goal 1.5: {verdict})")
        print(f"  makini / makini-ref = {rates['makini'] / rates['makini-ref']:.2f} (info)")
        for name in ("makini-dirty", "makini-custom"):
            print(f"  {name} / makini = {rates[name] / rates['makini']:.2f} (info)")
        token = tokens["c1"]
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
