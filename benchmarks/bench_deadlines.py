"""How close to its deadline a call ends (F10 and C13 of the reliability checklist).

Usage::

    .venv/bin/python benchmarks/bench_deadlines.py [--calls 1000] [--drips 10]

In one process, against servers on 127.0.0.1 that it starts and stops itself:

(a) Slow drip (F10): a server answers with a 1,000-byte body, one byte every 100 ms, so that a
    read timer re-armed per chunk would never fire. ``--drips`` calls with a 0.5 s deadline,
    one after another: how far past the deadline each one ended (the target: at most 10 % of the
    deadline, 50 ms).
(b) Deadlines under concurrency (C13): ``--calls`` calls with a 1 s deadline over 10 connections
    and 100 sockets, answers taking 0.2-2 s (seeded): the p99 of (end - deadline) over the calls
    that timed out (target: at most 50 ms), and the calls that succeeded after their deadline
    (target: none; each end is read just after the call returns, a hair after the call's own
    clock, so the latest success is printed too).

``tests/test_deadlines.py`` checks the same behaviour with loose limits, so that a busy machine
cannot fail it; these are the precise numbers, meaningful on a quiet machine. The exit code is 0
whatever the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import random
import sys
import time
from typing import Final

from aiohttp import web

import makini_async as m

__all__ = ["main"]

TARGET_OVERSHOOT: Final = 0.05
DRIP_DEADLINE: Final = 0.5
CALL_DEADLINE: Final = 1.0


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def _measure_drips(drips: int) -> list[float]:
    """Overshoots of ``drips`` calls against the dripping server, in seconds."""
    stop = asyncio.Event()

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            for _ in range(1000):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.1)
                if stop.is_set():
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    overshoots: list[float] = []
    try:
        async with m.ConnectionRegistry(url, retry=m.RetryPolicy.no_retries()) as registry:
            conn = registry.add("c", "bench-token")
            for _ in range(drips):
                started = time.monotonic()
                with contextlib.suppress(m.RequestTimeoutError):
                    await conn.request("GET", "/x", deadline=DRIP_DEADLINE)
                overshoots.append(time.monotonic() - started - DRIP_DEADLINE)
    finally:
        stop.set()
        server.close()
        await asyncio.sleep(0.2)  # every handler sees the stop and ends
    return overshoots


async def _measure_concurrent(calls: int) -> tuple[list[float], list[float]]:
    """(end - deadline) of the calls that timed out, and of those that succeeded, sorted."""
    rng = random.Random(13)
    delays = [rng.uniform(0.2, 2.0) for _ in range(calls)]

    async def slow(request: web.Request) -> web.Response:
        n = int(request.query["n"])
        await asyncio.sleep(delays[n])
        return web.json_response({"data": {"n": n}})

    app = web.Application()
    app.router.add_get("/x", slow)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with m.ConnectionRegistry(url, limit=100, limit_per_connection=None) as registry:
            conns = [registry.add(f"c{i}", f"token-{i}") for i in range(10)]

            async def one(n: int) -> tuple[bool, float]:
                started = time.monotonic()
                try:
                    await conns[n % 10].request("GET", "/x", params={"n": n}, deadline=1.0)
                except m.RequestTimeoutError:
                    return False, time.monotonic() - started
                return True, time.monotonic() - started

            results = await asyncio.gather(*(one(n) for n in range(calls)))
    finally:
        await runner.cleanup()
    late = sorted(elapsed - CALL_DEADLINE for ok, elapsed in results if not ok)
    succeeded = sorted(elapsed - CALL_DEADLINE for ok, elapsed in results if ok)
    return late, succeeded


def _percentile(values: list[float], share: float) -> float:
    return values[max(0, int(len(values) * share) - 1)]


def main() -> int:
    """Measure and print; always returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000, help="concurrent calls in (b)")
    parser.add_argument("--drips", type=int, default=10, help="slow-drip calls in (a)")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, makini_async deadlines on 127.0.0.1")

    drips = sorted(asyncio.run(_measure_drips(args.drips)))
    worst = drips[-1]
    print(f"(a) slow drip, {len(drips)} calls with a {DRIP_DEADLINE} s deadline:")
    print(f"    overshoot median {drips[len(drips) // 2] * 1000:.1f} ms, ", end="")
    print(f"max {worst * 1000:.1f} ms (target <= 10 % = {DRIP_DEADLINE * 100:.0f} ms: ", end="")
    print(f"{_verdict(worst <= DRIP_DEADLINE * 0.1)})")

    late, succeeded = asyncio.run(_measure_concurrent(args.calls))
    after = sum(offset > 0 for offset in succeeded)
    p99 = _percentile(late, 0.99)
    print(f"(b) {args.calls} concurrent calls with a {CALL_DEADLINE} s deadline, 100 sockets:")
    p50 = _percentile(late, 0.5)
    print(f"    {len(late)} timed out: (end - deadline) p50 {p50 * 1000:.1f} ms,")
    print(f"    p99 {p99 * 1000:.1f} ms (target <= {TARGET_OVERSHOOT * 1000:.0f} ms: ", end="")
    print(f"{_verdict(p99 <= TARGET_OVERSHOOT)}), max {late[-1] * 1000:.1f} ms")
    print(f"    {len(succeeded)} succeeded, {after} of them after the deadline ", end="")
    print(f"(target 0: {_verdict(after == 0)}); the latest ended ", end="")
    print(f"{succeeded[-1] * 1000:+.1f} ms from its deadline" if succeeded else "(none)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
