"""`RedisRateBudget` against a real redis-server, with the sandbox as Makini."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

import makini_async as m
from makini_async.distributed import RedisRateBudget
from makini_async.sandbox import Sandbox
from makini_async.testing import VirtualClock
from tests.services import RedisServer
from tests.support import MakeRegistry

PATH = "/api/integrations/current"


def _budget(kind: str, redis: RedisServer, **kwargs: object) -> m.RateBudget:
    clock = kwargs.pop("clock", None) or m.SystemClock()
    if kind == "local":
        return m.LocalRateBudget(clock=clock)  # type: ignore[arg-type]
    return RedisRateBudget(redis.url, clock=clock, **kwargs)  # type: ignore[arg-type]


async def _script_calls(redis: RedisServer) -> int:
    """EVALSHA/EVAL/SCRIPT commands Redis has run (its own count, from INFO commandstats)."""
    client = aioredis.Redis.from_url(redis.url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name in {"cmdstat_evalsha", "cmdstat_eval", "cmdstat_script|load", "cmdstat_script"}
    )


@pytest.mark.parametrize("kind", ["local", "redis"])
class TestLikeTheLocalBudget:
    async def test_a_429_pauses_every_call_of_the_connection(
        self, kind: str, redis: RedisServer, sandbox: Sandbox, make_registry: MakeRegistry
    ) -> None:
        """After one 429 with Retry-After, every call of that connection waits it out."""
        budget = _budget(kind, redis)
        registry = make_registry(
            sandbox.url, budget=budget, clock=m.SystemClock(), retry=m.RetryPolicy.no_retries()
        )
        conn = registry.add("c1", sandbox.connections["c1"])
        sandbox.inject(429, connection="c1", retry_after=1)
        with pytest.raises(m.RateLimitError):
            await conn.request("GET", PATH)
        assert budget.paused_for("c1") == pytest.approx(1.0, abs=0.5)
        assert budget.paused_for("c2") == 0.0
        await asyncio.gather(*(conn.request("GET", PATH) for _ in range(3)))
        first, *later = sandbox.requests("c1", path=PATH)
        assert first.status == 429
        assert [r.status for r in later] == [200, 200, 200]
        assert min(r.time for r in later) - first.time >= 0.9  # Retry-After: 1, whole seconds

    async def test_remaining_zero_pauses_until_the_reset(
        self, kind: str, redis: RedisServer
    ) -> None:
        """A 2xx saying Remaining 0 pauses until a near reset; a far one is left to the 429."""
        budget = _budget(kind, redis)
        try:
            near = datetime.fromtimestamp(time.time() + 2, UTC)
            await budget.observe("a", m.RateSignal(200, m.RateLimit(10, 0, near)))
            pause = await budget.admit("a")
            assert pause is not None
            assert pause.seconds == pytest.approx(2.0, abs=0.5)
            assert pause.cause is None
            far = datetime.fromtimestamp(time.time() + 90, UTC)
            await budget.observe("b", m.RateSignal(200, m.RateLimit(10, 0, far)))
            assert await budget.admit("b") is None
        finally:
            await budget.aclose()

    async def test_a_removed_connection_is_forgotten(self, kind: str, redis: RedisServer) -> None:
        """forget() drops what the process knows; a 503's pause ends on the clock."""
        budget = _budget(kind, redis)
        try:
            error = m.ServerError("down", status=503)
            await budget.observe("a", m.RateSignal(503, None, 30.0, error))
            assert budget.paused_for("a") == pytest.approx(30.0, abs=1.0)
            pause = await budget.admit("a")
            assert pause is not None
            assert pause.cause is error
            budget.forget("a")
            assert budget.paused_for("a") == 0.0
            await budget.observe("b", m.RateSignal(400, None, 30.0, None))
            assert await budget.admit("b") is None  # a client error pauses nothing
        finally:
            await budget.aclose()


class TestShared:
    async def test_two_registries_on_one_budget_are_held_by_one_429(
        self, redis: RedisServer, sandbox: Sandbox, make_registry: MakeRegistry
    ) -> None:
        """One budget shared by two registries: one's 429 holds the other's next call."""
        budget = RedisRateBudget(redis.url)
        first = make_registry(
            sandbox.url, budget=budget, clock=m.SystemClock(), retry=m.RetryPolicy.no_retries()
        )
        second = make_registry(sandbox.url, budget=budget, clock=m.SystemClock())
        token = sandbox.connections["c1"]
        sandbox.inject(429, connection="c1", retry_after=1)
        with pytest.raises(m.RateLimitError):
            await first.add("c1", token).request("GET", PATH)
        await second.add("c1", token).request("GET", PATH)
        blocked, served = sandbox.requests("c1", path=PATH)
        assert (blocked.status, served.status) == (429, 200)
        assert served.time - blocked.time >= 0.9

    async def test_a_pause_crosses_processes(self, redis: RedisServer) -> None:
        """A budget of another process (its own client) is paused by this one's 429."""
        here, there = RedisRateBudget(redis.url), RedisRateBudget(redis.url)
        try:
            error = m.RateLimitError("slow down", status=429)
            limit = m.RateLimit(60, 0, None)
            await here.observe("a", m.RateSignal(429, limit, 5.0, error))
            assert there.paused_for("a") == 0.0  # a hint without I/O: not seen yet
            pause = await there.admit("a")
            assert pause is not None
            assert pause.seconds == pytest.approx(5.0, abs=1.0)
            assert isinstance(pause.cause, m.RateLimitError)
            assert there.paused_for("a") == pytest.approx(5.0, abs=1.0)
        finally:
            await here.aclose()
            await there.aclose()

    async def test_two_processes_together_stay_within_the_limit(
        self, redis: RedisServer, sandbox: Sandbox, make_registry: MakeRegistry
    ) -> None:
        """Two budgets (two processes) pace one connection to its limit: no 429."""
        sandbox.configure("c1", rate_limit=6, rate_window=1.5)
        token = sandbox.connections["c1"]
        conns = [
            make_registry(
                sandbox.url,
                budget=RedisRateBudget(redis.url, window=1.5, lease=2),
                clock=m.SystemClock(),
                retry=m.RetryPolicy.no_retries(),
            ).add("c1", token)
            for _ in range(2)
        ]
        # The first answer teaches the limit.
        await conns[0].request("GET", PATH)
        await conns[1].request("GET", PATH)
        await asyncio.gather(*(conns[i % 2].request("GET", PATH) for i in range(14)))
        statuses = [r.status for r in sandbox.requests("c1", path=PATH)]
        assert statuses == [200] * 16
        times = [r.time for r in sandbox.requests("c1", path=PATH)]
        assert times[12] - times[0] >= 3.0  # 16 sends at 6 per 1.5 s need three windows

    async def test_keys_expire(self, redis: RedisServer) -> None:
        """Every key the budget writes has a TTL, so removed connections leave Redis."""
        budget = RedisRateBudget(redis.url, window=2.0)
        try:
            assert await budget.admit("gone") is None
            client = aioredis.Redis.from_url(redis.url)
            try:
                ttl = await client.pttl("makini:rate:gone")
            finally:
                await client.aclose()
            assert 0 < ttl <= 3 * 2_100
        finally:
            await budget.aclose()


class TestUnavailable:
    async def test_falls_back_to_local_and_comes_back(
        self,
        redis: RedisServer,
        sandbox: Sandbox,
        make_registry: MakeRegistry,
        clock: VirtualClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Redis stopped: calls go on with a local budget and one warning; restarted: used again."""
        budget = RedisRateBudget(redis.url, clock=clock)
        conn = make_registry(sandbox.url, budget=budget).add("c1", sandbox.connections["c1"])
        await conn.request("GET", PATH)
        redis.stop()
        caplog.set_level(logging.INFO, logger="makini_async")
        for _ in range(12):  # more than a lease: Redis is asked, and fails
            await conn.request("GET", PATH)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "unavailable" in warnings[0].getMessage()
        assert redis.url not in caplog.text
        assert "local fallback" in repr(budget)
        redis.start()
        clock.advance(60.0)  # past the back-off
        for _ in range(2):
            await conn.request("GET", PATH)
        assert "available again" in caplog.text
        assert "local fallback" not in repr(budget)
        assert await _script_calls(redis) >= 1

    async def test_raise_gives_a_coordination_error(
        self, redis: RedisServer, sandbox: Sandbox, make_registry: MakeRegistry
    ) -> None:
        """With on_unavailable="raise", a stopped Redis fails the call with CoordinationError."""
        budget = RedisRateBudget(redis.url, on_unavailable="raise")
        conn = make_registry(sandbox.url, budget=budget).add("c1", sandbox.connections["c1"])
        redis.stop()
        with pytest.raises(m.CoordinationError) as info:
            await conn.request("GET", PATH)
        assert "127.0.0.1" not in str(info.value)
        assert sandbox.requests("c1", path=PATH) == []


@pytest.mark.parametrize(
    ("limit", "most"),
    [
        (600, 1 / 4 + 0.09),  # 600/min: 600/16 = 37 sends a round trip at first, 4 near the end
        (60, 1 / 4 + 0.09),  # a small limit: the default lease of 4
        (1_000_000, 1 / 64 + 0.02),  # plenty left: up to max_lease (64) a round trip
    ],
)
async def test_redis_round_trips_per_request(
    redis: RedisServer, sandbox: Sandbox, make_registry: MakeRegistry, limit: int, most: float
) -> None:
    """A busy connection costs a fraction of a script per request: fewer with more budget left."""
    sandbox.configure("c1", rate_limit=limit)
    budget = RedisRateBudget(redis.url)
    conn = make_registry(sandbox.url, budget=budget).add("c1", sandbox.connections["c1"])
    await conn.request("GET", PATH)
    before = await _script_calls(redis)
    requests = 50
    for _ in range(requests // 10):
        await asyncio.gather(*(conn.request("GET", PATH) for _ in range(10)))
    per_request = (await _script_calls(redis) - before) / requests
    print(f"limit {limit}: Redis scripts per request {per_request:.3f}")  # noqa: T201
    assert 0 < per_request <= most


def test_importing_the_package_imports_no_redis() -> None:
    """`import makini_async` leaves redis unimported; the distributed package imports it."""
    code = (
        "import sys, makini_async; assert 'redis' not in sys.modules; "
        "import makini_async.distributed; assert 'redis' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603


def test_arguments_are_checked_before_any_io() -> None:
    """Bad arguments fail at once, without echoing the URL."""
    with pytest.raises(ValueError, match="redis://") as info:
        RedisRateBudget("http://user:hunter2@example.com")
    assert "hunter2" not in str(info.value)
    with pytest.raises(TypeError):
        RedisRateBudget(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window"):
        RedisRateBudget("redis://127.0.0.1:1", window=0)
    with pytest.raises(ValueError, match="lease"):
        RedisRateBudget("redis://127.0.0.1:1", lease=0)
    with pytest.raises(ValueError, match="max_lease"):
        RedisRateBudget("redis://127.0.0.1:1", lease=8, max_lease=4)
    with pytest.raises(ValueError, match="on_unavailable"):
        RedisRateBudget("redis://127.0.0.1:1", on_unavailable="ignore")  # type: ignore[arg-type]
