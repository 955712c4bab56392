"""Verified, parsed events per second through `WebhookReceiver`, next to a bare aiohttp handler.

Usage::

    .venv/bin/python benchmarks/bench_webhooks.py [--seconds 3] [--rounds 3] [--concurrency 32]

A server process (this script with ``--serve``, pinned to CPU 1 when there are two) runs one
aiohttp.web app on 127.0.0.1 with two routes on the same event loop:

- ``POST /bare``: reads the body and answers ``{"status": "accepted"}``: the baseline;
- ``POST /hook``: a `WebhookReceiver` (size cap, HMAC-SHA256 verify, parse into a typed event,
  in-memory dedup, queue) with a no-op handler on ``"*"``, so every event is also dispatched.

The client (this process, pinned to CPU 0) posts pre-signed, distinct events (every one a new
id, so nothing is a duplicate) at a fixed concurrency for ``--seconds`` per round, alternating
the two routes for ``--rounds`` rounds; the best round of each counts. It then checks the
receiver's counters (every event accepted, every handler run, nothing refused) and prints both
rates and their ratio. The run takes about ``2 * rounds * seconds`` plus a second or two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import web

from makini_async.webhooks import WebhookEvent, WebhookReceiver, sign

SECRET: Final = "whsec_benchmark_secret_0123456789"  # noqa: S105 - a fake secret
ROUTES: Final = ("bare", "hook")
_LABELS: Final = {"bare": "bare aiohttp handler", "hook": "WebhookReceiver"}


# -- server side ---------------------------------------------------------------------------------


async def _serve() -> None:
    receiver = WebhookReceiver(SECRET, workers=8, queue_size=8192)

    @receiver.on("*")
    async def handled(event: WebhookEvent) -> None:
        del event

    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "accepted"})

    async def stats(request: web.Request) -> web.Response:
        del request
        await receiver.join()
        s = receiver.stats
        return web.json_response(
            {
                "accepted": s.accepted,
                "duplicates": s.duplicates,
                "rejected": s.rejected,
                "unavailable": s.unavailable,
                "handler_runs": s.handler_runs,
                "failed": s.failed,
            }
        )

    async def cpu(request: web.Request) -> web.Response:
        del request
        await receiver.join()  # handlers run after the answers: count their CPU too
        return web.json_response({"cpu": time.process_time()})

    app = web.Application()
    app.router.add_get("/cpu", cpu)
    app.router.add_post("/bare", bare)
    app.router.add_get("/stats", stats)
    receiver.setup(app, "/hook")
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    loop = asyncio.get_running_loop()
    # Stop when the parent closes our standard input.
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


def _pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def _server() -> Iterator[str]:
    process = subprocess.Popen(  # noqa: S603 - this very script
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- client side ---------------------------------------------------------------------------------


def _deliveries() -> Iterator[tuple[bytes, dict[str, str]]]:
    """Endless distinct signed events shaped like Makini's (entity changes and sync results).

    Made on the fly, identically for both routes, on the client's own CPU.
    """
    n = 0
    prefix = uuid.uuid4().hex[:12]
    while True:
        n += 1
        event_id = f"evt_{prefix}{n:012d}"
        payload: dict[str, object] = {
            "id": event_id,
            "event": "work-orders.updated" if n % 2 else "connection.sync_completed",
            "created_at": "2026-01-01T00:00:00Z",
            "connection_id": f"c{n % 50}",
            "data": {}
            if n % 2
            else {
                "entities": ["work-orders", "assets"],
                "counts": {"work-orders": 120, "assets": 48},
                "finished_at": "2026-01-01T00:00:00Z",
            },
            "body": [f"WO-{n}", f"WO-{n + 1}", f"WO-{n + 2}"] if n % 2 else [],
        }
        raw = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Id": event_id,
            "X-Webhook-Signature": sign(raw, secret=SECRET),
        }
        yield raw, headers


async def _server_cpu(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/cpu") as response:
        return float((await response.json())["cpu"])


async def _round(
    session: aiohttp.ClientSession,
    url: str,
    route: str,
    pool: Iterator[tuple[bytes, dict[str, str]]],
    *,
    seconds: float,
    concurrency: int,
) -> Result:
    sent = 0
    statuses: dict[int, int] = {}
    target = f"{url}/{route}"
    cpu_before = await _server_cpu(session, url)
    began = time.perf_counter()
    stop = began + seconds

    async def client() -> None:
        nonlocal sent
        while time.perf_counter() < stop:
            raw, headers = next(pool)
            async with session.post(target, data=raw, headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            sent += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    cpu = await _server_cpu(session, url) - cpu_before
    if set(statuses) != {200}:
        print(f"  unexpected statuses: {statuses}", file=sys.stderr)
    return Result(sent / elapsed, cpu / sent * 1e6 if sent else 0.0, sent)


@dataclass
class Result:
    """One round of one route."""

    rate: float  # events/s as seen by the client
    cpu_us: float  # server CPU microseconds per event (handlers included)
    sent: int


async def _bench(url: str, seconds: float, rounds: int, concurrency: int) -> int:
    pool = _deliveries()
    rates: dict[str, list[float]] = {route: [] for route in ROUTES}
    costs: dict[str, list[float]] = {route: [] for route in ROUTES}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for route in ROUTES:  # warm up both routes and the keep-alive pool
            await _round(session, url, route, pool, seconds=0.3, concurrency=concurrency)
        for number in range(1, rounds + 1):
            for route in ROUTES:
                result = await _round(
                    session, url, route, pool, seconds=seconds, concurrency=concurrency
                )
                rates[route].append(result.rate)
                costs[route].append(result.cpu_us)
                print(
                    f"round {number} {_LABELS[route]:>20}: {result.rate:7.0f} events/s, "
                    f"server {result.cpu_us:6.1f} us CPU/event"
                )
        async with session.get(f"{url}/stats") as response:
            stats = await response.json()
    # Best round of each: the least disturbed by whatever else the machine was doing.
    rate = {route: max(rates[route]) for route in ROUTES}
    cost = {route: min(costs[route]) for route in ROUTES}
    print()
    print(f"{'route':>20}  {'best events/s':>13}  {'server us/event':>15}  {'server max/s':>12}")
    for route in ROUTES:
        print(
            f"{_LABELS[route]:>20}  {rate[route]:13.0f}  {cost[route]:15.1f}  "
            f"{1e6 / cost[route]:12.0f}"
        )
    print(
        f"\nratio receiver / bare: {rate['hook'] / rate['bare']:.2f} in events/s over loopback "
        f"(client-bound); {cost['bare'] / cost['hook']:.2f} in server capacity "
        f"({cost['hook'] - cost['bare']:.1f} us more server CPU per event)"
    )
    print(
        f"receiver counters: accepted={stats['accepted']} handler_runs={stats['handler_runs']} "
        f"failed={stats['failed']} duplicates={stats['duplicates']} rejected={stats['rejected']} "
        f"unavailable={stats['unavailable']}"
    )
    ok = (
        stats["accepted"] == stats["handler_runs"]
        and not stats["rejected"]
        and not stats["duplicates"]
        and not stats["unavailable"]
    )
    print("check:", "every event verified, parsed and handled once" if ok else "MISMATCH")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--serve``, the server half of it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _pin(1)
        asyncio.run(_serve())
        return 0
    _pin(0)
    print(
        f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, "
        f"{os.cpu_count()} CPUs, concurrency {args.concurrency}, "
        f"{args.rounds} rounds x {args.seconds:.1f}s per route"
    )
    with _server() as url:
        return asyncio.run(_bench(url, args.seconds, args.rounds, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
