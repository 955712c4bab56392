"""Deadlines against slow servers (F10, F11 and C13 of the reliability checklist).

A slow-drip body cannot stretch an attempt or a call past its budget, retries behind a slow
server never start past the deadline (on the virtual clock), and a thousand concurrent calls with
a one-second deadline all end on it, none of them successfully after it.

The tests assert the order of events (the call ended while the server was still sending; no answer
slower than the deadline came back as a success); the real-time bounds they keep are loose sanity
limits, so that a busy machine cannot fail them. How close to its deadline a call ends is measured
by ``benchmarks/bench_deadlines.py``.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time

import pytest
from aiohttp import web

import makini_async as m
from makini_async import RetryPolicy, Timeouts
from makini_async.testing import VirtualClock
from tests.support import MakeRegistry, StartApp, StartRaw, by_deadline, read_request


class _Drip:
    """Answers with a 1,000-byte body, one byte every 100 ms (a read timer re-armed per chunk
    would never fire: the whole body takes 100 s), counting the bytes of each answer."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        answer = len(self.sent)
        self.sent.append(0)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        await writer.drain()
        for _ in range(1000):
            writer.write(b" ")
            await writer.drain()
            self.sent[answer] += 1
            await asyncio.sleep(0.1)


class TestSlowDrip:
    async def test_the_call_deadline_cuts_a_slow_drip(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """The call ends at its deadline, in the middle of the body, and is not retried."""
        drip = _Drip()
        url = await raw_server(drip)
        conn = make_registry(url, clock=None).add("c", "t")
        started = time.monotonic()
        with pytest.raises(m.RequestTimeoutError) as caught:
            await conn.request("GET", "/x", deadline=0.5)
        elapsed = time.monotonic() - started
        assert caught.value.may_have_reached_server is True
        # One answer, cut while the server was still sending it.
        assert len(drip.sent) == 1
        assert 0 < drip.sent[0] < 1000
        assert 0.5 <= elapsed < by_deadline(0.5)

    async def test_the_attempt_budget_cuts_a_slow_drip(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """Without a deadline, each attempt still ends at connect + read seconds."""
        drip = _Drip()
        url = await raw_server(drip)
        policy = RetryPolicy(attempts=2, base=0, cap=0)
        conn = make_registry(url, retry=policy, clock=None).add("c", "t")
        started = time.monotonic()
        with pytest.raises(m.RequestTimeoutError):
            await conn.request("GET", "/x", timeout=Timeouts(connect=0.1, read=0.2))
        elapsed = time.monotonic() - started
        # Two attempts, each cut while the server was still sending its body.
        assert len(drip.sent) == 2
        assert all(0 < sent < 1000 for sent in drip.sent)
        # Each attempt lasts at least its 0.2 s read budget and at most connect + read (0.3 s).
        assert 0.4 <= elapsed < by_deadline(0.6)


class TestRetriesAgainstTheBudget:
    async def test_no_retry_starts_that_would_end_past_the_deadline(
        self, app_server: StartApp, make_registry: MakeRegistry, clock: VirtualClock
    ) -> None:
        """503s that take 0.3 s each, a 1 s deadline: no attempt that would end late.

        On the virtual clock (each answer moves it 0.3 s), retries follow at once (no
        backoff): attempts start at 0, 0.3 and 0.6 s, and a fourth, at 0.9 s, would end at
        1.2 s. It is not started, and the 503 is raised then, rather than a timeout at 1 s.
        """
        starts: list[float] = []

        async def unavailable(request: web.Request) -> web.Response:
            del request
            starts.append(clock.monotonic())
            clock.advance(0.3)
            return web.json_response(
                {"error": {"code": "SYSTEM_UNAVAILABLE", "message": "down"}}, status=503
            )

        app = web.Application()
        app.router.add_get("/x", unavailable)
        url = await app_server(app)
        policy = RetryPolicy(attempts=10, base=0, cap=0)
        conn = make_registry(url, retry=policy).add("c", "t")
        began = clock.monotonic()
        with pytest.raises(m.ServiceUnavailableError):
            await conn.request("GET", "/x", deadline=1.0)
        assert [round(start - began, 6) for start in starts] == [0.0, 0.3, 0.6]
        assert round(clock.monotonic() - began, 6) == 0.9


class TestDeadlinesUnderConcurrency:
    async def test_a_thousand_calls_end_on_their_deadline(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """Answers take 0.2-2 s (a tenth of them none) and 100 sockets serve 1,000 calls, so most
        calls also wait for a socket: every call ends on its 1 s deadline (waiting included),
        and no answer the server took a second or more to give comes back as a success."""
        rng = random.Random(13)  # noqa: S311 - reproducible delays, not secrets
        # Every tenth answer comes at once, so that some calls succeed however busy the machine.
        delays = [0.0 if n % 10 == 0 else rng.uniform(0.2, 2.0) for n in range(1000)]

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(delays[int(request.query["n"])])
            return web.json_response({"data": {"n": int(request.query["n"])}})

        app = web.Application()
        app.router.add_get("/x", slow)
        url = await app_server(app)
        registry = make_registry(url, clock=None, limit=100, limit_per_connection=None)
        conns = [registry.add(f"c{i}", f"token-{i}") for i in range(10)]

        async def one(n: int) -> tuple[bool, float]:
            started = time.monotonic()
            try:
                answer = await conns[n % 10].request("GET", "/x", params={"n": n}, deadline=1.0)
            except m.RequestTimeoutError:
                return False, time.monotonic() - started
            assert answer.data == {"data": {"n": n}}
            return True, time.monotonic() - started

        # The test runner's own heap (every earlier test's leftovers) is set aside, so that a
        # full collection of it does not stall the loop for the whole one-second window.
        gc.collect()
        gc.freeze()
        try:
            results = await asyncio.gather(*(one(n) for n in range(1000)))
        finally:
            gc.unfreeze()
        succeeded = [n for n, (ok, _) in enumerate(results) if ok]
        late = sorted(elapsed - 1.0 for ok, elapsed in results if not ok)
        assert late  # most answers take longer than the deadline
        assert succeeded  # and some do not
        # A call starts before its request reaches the server, so an answer the server took a
        # second or more to give can only arrive after the deadline: it must never succeed,
        # however slow the machine.
        assert all(delays[n] < 1.0 for n in succeeded)
        assert all(not ok for n, (ok, _) in enumerate(results) if delays[n] >= 1.0)
        assert late[0] >= 0  # no call gave up early
        # A sanity limit: 900 calls time out together, within milliseconds of the deadline on a
        # quiet machine (see benchmarks/bench_deadlines.py); one that missed it would wait for
        # its answer or its socket, seconds more.
        assert late[int(len(late) * 0.99) - 1] < 1.0
