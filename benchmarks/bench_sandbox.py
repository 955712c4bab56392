"""Is the sandbox fast enough to never be the bottleneck of the client's benchmarks?

Measures requests/second for a 50-record work-order page at concurrency 64 against

(a) the sandbox (``makini_async.sandbox``, with auth, rate-limit accounting, the request log and
    the encoded-page cache all on), and
(b) a minimal aiohttp.web handler that returns the same pre-encoded bytes,

in the same run, each server in its own process (so it does not share a core with the client),
and prints the ratio. The target is a ratio of at least 0.5.

It also times how long the sandbox takes to generate a collection of 100,000 work orders (the
target is under five seconds), in this process, before the servers start.

Run it with ``python benchmarks/bench_sandbox.py [--requests N] [--rounds N]``. Importing the module
does nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from multiprocessing.queues import Queue

import aiohttp
from aiohttp import web

CONCURRENCY = 64
PATH = "/api/eam/work-orders?per_page=50&page=1"


def _serve_sandbox(ports: Queue[tuple[int, str]]) -> None:
    from makini_async.sandbox import Sandbox

    async def main() -> None:
        async with Sandbox(connections=1, seed=1, rate_limit=10**9) as sandbox:
            ports.put((sandbox.port, sandbox.connections["c1"]))
            await asyncio.Event().wait()

    asyncio.run(main())


def _serve_baseline(body: bytes, ports: Queue[tuple[int, str]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        del request
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/api/eam/work-orders", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.put((runner.addresses[0][1], ""))
        await asyncio.Event().wait()

    asyncio.run(main())


async def _load(url: str, token: str, requests: int) -> float:
    """Send ``requests`` GETs with 64 in flight and return requests/second."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        left = requests

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.get(url) as response:
                    await response.read()
                    assert response.status == 200, response.status

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))  # warm up connections
        left = requests
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return requests / (time.perf_counter() - start)


async def _fetch(url: str, token: str) -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        return await response.read()


def generate(count: int = 100_000) -> float:
    """Generate ``count`` work orders in a fresh sandbox and return the seconds it took."""
    from makini_async.sandbox import Sandbox

    sandbox = Sandbox(connections=1, seed=1, sizes={"work-orders": count})
    start = time.perf_counter()
    orders = sandbox.records("c1", "eam/work-orders")
    took = time.perf_counter() - start
    assert len(orders) == count, len(orders)
    return took


def run(requests: int = 3000, rounds: int = 2) -> tuple[float, float]:
    """Start both servers, measure them alternately and return the best rates.

    Args:
        requests: Requests per measurement.
        rounds: Measurements per server (the best one counts).

    Returns:
        ``(sandbox requests/s, baseline requests/s)``.
    """
    ctx = multiprocessing.get_context("spawn")
    ports: Queue[tuple[int, str]] = ctx.Queue()
    sandbox = ctx.Process(target=_serve_sandbox, args=(ports,), daemon=True)
    sandbox.start()
    baseline = None
    try:
        port, token = ports.get(timeout=60)
        sandbox_url = f"http://127.0.0.1:{port}{PATH}"
        body = asyncio.run(_fetch(sandbox_url, token))
        baseline = ctx.Process(target=_serve_baseline, args=(body, ports), daemon=True)
        baseline.start()
        base_port, _ = ports.get(timeout=60)
        baseline_url = f"http://127.0.0.1:{base_port}{PATH}"
        best_sandbox = best_baseline = 0.0
        for _ in range(rounds):
            best_baseline = max(best_baseline, asyncio.run(_load(baseline_url, token, requests)))
            best_sandbox = max(best_sandbox, asyncio.run(_load(sandbox_url, token, requests)))
        return best_sandbox, best_baseline
    finally:
        for proc in (sandbox, baseline):
            if proc is not None:
                proc.terminate()
                proc.join(10)


def main() -> None:
    """Run the benchmark and print the rates and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per server")
    parser.add_argument(
        "--work-orders", type=int, default=100_000, help="records generated in the timing"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    generated = generate(args.work_orders)
    verdict = "ok" if generated < 5.0 else "MISSED"
    print(f"generating {args.work_orders:,} work orders: {generated:.2f} s ", end="")
    print(f"(target < 5 s: {verdict})")
    sandbox_rate, baseline_rate = run(args.requests, args.rounds)
    ratio = sandbox_rate / baseline_rate
    print(f"50-record work-order page, concurrency {CONCURRENCY}, ", end="")
    print(f"{args.requests} requests x {args.rounds} rounds")
    print(f"minimal aiohttp handler: {baseline_rate:8.0f} req/s")
    print(f"makini_async sandbox:    {sandbox_rate:8.0f} req/s")
    verdict = "ok" if ratio >= 0.5 else "MISSED"
    print(f"ratio sandbox/baseline:  {ratio:8.2f} (target >= 0.5: {verdict})")
    print(f"took {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
