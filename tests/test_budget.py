"""The rate-budget seam: asked before every attempt, told every answer; the local default."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import makini_async as m
from makini_async.testing import VirtualClock
from tests.support import MakeRegistry, Reply, ScriptedApp, error_reply


class Recording(m.LocalRateBudget):
    """The local budget, keeping a log of what the engine asked and told it."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock=clock)
        self.log: list[tuple[str, str, object]] = []

    async def admit(self, key: str) -> m.Pause | None:
        pause = await super().admit(key)
        self.log.append(("admit", key, pause))
        return pause

    async def observe(self, key: str, signal: m.RateSignal) -> None:
        self.log.append(("observe", key, signal))
        await super().observe(key, signal)


class TestSeam:
    async def test_asked_before_each_attempt_and_told_each_answer(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, clock: VirtualClock
    ) -> None:
        """A 429 with Retry-After is observed, the next attempt is held, then admitted."""
        app, url = scripted
        app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "5"}))
        app.default = Reply(headers={"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59"})
        budget = Recording(clock)
        conn = make_registry(url, budget=budget).add("acme", "t")
        await conn.request("GET", "/x")
        steps = [(step, key) for step, key, _ in budget.log]
        assert steps == [
            ("admit", "acme"),
            ("observe", "acme"),
            ("admit", "acme"),
            ("admit", "acme"),
            ("observe", "acme"),
        ]
        told = budget.log[1][2]
        assert isinstance(told, m.RateSignal)
        assert (told.status, told.retry_after) == (429, 5.0)
        assert isinstance(told.error, m.RateLimitError)
        held = budget.log[2][2]
        assert isinstance(held, m.Pause)
        assert held.seconds == pytest.approx(5.0)
        assert budget.log[3][2] is None  # admitted after the wait, on the virtual clock
        last = budget.log[4][2]
        assert isinstance(last, m.RateSignal)
        assert last.rate_limit == m.RateLimit(limit=60, remaining=59, reset=None)
        assert app.seen[1].at - app.seen[0].at >= 5.0

    async def test_a_pause_longer_than_the_policy_allows_fails_without_sending(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, clock: VirtualClock
    ) -> None:
        """A budget pausing a connection for longer than max_retry_after raises at once, typed."""
        app, url = scripted

        class Closed(m.LocalRateBudget):
            async def admit(self, key: str) -> m.Pause | None:
                del key
                return m.Pause(3600.0)

        conn = make_registry(url, budget=Closed(clock=clock)).add("acme", "t")
        with pytest.raises(m.RateLimitError) as info:
            await conn.request("GET", "/x")
        assert info.value.retry_after == 3600.0
        assert info.value.code == "RATE_LIMIT_EXCEEDED"
        assert app.seen == []

    async def test_a_shared_budget_pauses_every_registry(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, clock: VirtualClock
    ) -> None:
        """Two registries on one budget (two processes on one store): one 429 holds both."""
        app, url = scripted
        app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "9"}))
        budget = m.LocalRateBudget(clock=clock, max_pause=60)
        first = make_registry(url, budget=budget, retry=m.RetryPolicy.no_retries())
        second = make_registry(url, budget=budget)
        with pytest.raises(m.RateLimitError):
            await first.add("acme", "t").request("GET", "/x")
        assert budget.paused_for("acme") == pytest.approx(9.0)
        await second.add("acme", "t").request("GET", "/y")
        assert app.seen[1].at - app.seen[0].at >= 9.0


class TestLocalBudget:
    async def test_an_exhausted_budget_pauses_until_the_reset(self, clock: VirtualClock) -> None:
        """A 2xx with Remaining 0 pauses until X-RateLimit-Reset, if that is near enough."""
        budget = m.LocalRateBudget(clock=clock, max_pause=60)
        reset = datetime.fromtimestamp(clock.time() + 30, UTC)
        spent = m.RateLimit(limit=10, remaining=0, reset=reset)
        await budget.observe("a", m.RateSignal(200, spent))
        pause = await budget.admit("a")
        assert pause is not None
        assert pause.seconds == pytest.approx(30.0)
        assert pause.cause is None
        far = m.RateLimit(
            limit=10, remaining=0, reset=datetime.fromtimestamp(clock.time() + 90, UTC)
        )
        await budget.observe("b", m.RateSignal(200, far))
        assert await budget.admit("b") is None  # beyond max_pause: left to the server's 429

    async def test_pauses_end_and_can_be_forgotten(self, clock: VirtualClock) -> None:
        """A pause ends on the clock; a longer one wins over a shorter; forget drops it."""
        budget = m.LocalRateBudget(clock=clock)
        error = m.RateLimitError("slow down", status=429)
        await budget.observe("a", m.RateSignal(429, None, 10.0, error))
        await budget.observe("a", m.RateSignal(503, None, 2.0, None))
        assert budget.paused_for("a") == pytest.approx(10.0)
        clock.advance(10.0)
        assert await budget.admit("a") is None
        await budget.observe("a", m.RateSignal(429, None, 5.0, error))
        budget.forget("a")
        assert budget.paused_for("a") == 0.0

    async def test_a_retry_after_on_a_client_error_pauses_nothing(
        self, clock: VirtualClock
    ) -> None:
        """Only statuses that mean "come back later" pause a connection."""
        budget = m.LocalRateBudget(clock=clock)
        await budget.observe("a", m.RateSignal(400, None, 30.0, None))
        assert await budget.admit("a") is None
