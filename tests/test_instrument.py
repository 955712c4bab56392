"""Instrumentation hooks: every step of a call reaches the observer, in order, field by field."""

from __future__ import annotations

import logging

import pytest

import makini_async as m
from makini_async.testing import VirtualClock
from tests.support import MakeRegistry, Reply, ScriptedApp, error_reply


class Recorder(m.CallObserver):
    """Keeps every event of every call it is handed."""

    def __init__(self, log: list[object]) -> None:
        self.log = log

    def attempt_sent(self, event: m.AttemptSent) -> None:
        self.log.append(event)

    def response_received(self, event: m.ResponseReceived) -> None:
        self.log.append(event)

    def retry_scheduled(self, event: m.RetryScheduled) -> None:
        self.log.append(event)

    def gate_wait(self, event: m.GateWait) -> None:
        self.log.append(event)

    def reconnect_fired(self, event: m.ReconnectFired) -> None:
        self.log.append(event)

    def call_ended(self, event: m.CallEnded) -> None:
        self.log.append(event)


class Instrument:
    def __init__(self) -> None:
        self.log: list[object] = []

    def call_started(self, event: m.CallStarted) -> m.CallObserver | None:
        self.log.append(event)
        return Recorder(self.log)


def kinds(log: list[object]) -> list[str]:
    return [type(event).__name__ for event in log]


class TestEvents:
    async def test_a_retried_and_reconnected_call(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A 503, then a 401 and a reconnect, then a 200: every step, in order, with its fields."""
        app, url = scripted
        app.script.extend(
            [error_reply(503, "SYSTEM_UNAVAILABLE"), error_reply(401, "TOKEN_EXPIRED")]
        )
        app.default = Reply(headers={"X-Request-Id": "req_ok"})
        instrument = Instrument()

        async def renew(event: m.ReconnectEvent) -> str:
            return "fresh"

        registry = make_registry(url, instruments=[instrument], on_reconnect=renew)
        conn = registry.add("acme", "stale")
        response = await conn.request("GET", "/api/eam/work-orders", deadline=30)
        assert response.status == 200
        log = instrument.log
        assert kinds(log) == [
            "CallStarted",
            "AttemptSent",
            "ResponseReceived",
            "RetryScheduled",
            "AttemptSent",
            "ResponseReceived",
            "ReconnectFired",
            "AttemptSent",
            "ResponseReceived",
            "CallEnded",
        ]
        assert log[0] == m.CallStarted(
            "acme", "GET", "/api/eam/work-orders", f"{url}/api/eam/work-orders", 30
        )
        assert log[1] == m.AttemptSent(attempt=1, generation=1)
        first = log[2]
        assert isinstance(first, m.ResponseReceived)
        assert (first.attempt, first.status, first.request_id) == (1, 503, "req_e")
        retry = log[3]
        assert isinstance(retry, m.RetryScheduled)
        assert (retry.attempt, retry.wait) == (1, 0.0)
        assert retry.reason == "ServiceUnavailableError SYSTEM_UNAVAILABLE"
        assert isinstance(retry.error, m.ServiceUnavailableError)
        assert log[4] == m.AttemptSent(attempt=2, generation=1)
        assert log[6] == m.ReconnectFired(refused_generation=1, generation=2)
        assert log[7] == m.AttemptSent(attempt=3, generation=2)
        ended = log[9]
        assert isinstance(ended, m.CallEnded)
        assert (ended.attempts, ended.status, ended.request_id, ended.error) == (
            3,
            200,
            "req_ok",
            None,
        )
        assert [seen.token for seen in app.seen] == ["stale", "stale", "fresh"]

    async def test_a_rate_limit_pause(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, clock: VirtualClock
    ) -> None:
        """A call held by a 429's Retry-After reports the wait and its cause."""
        app, url = scripted
        app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "7"}))
        instrument = Instrument()
        conn = make_registry(url, instruments=[instrument]).add("acme", "t")
        await conn.request("GET", "/x")
        waits = [event for event in instrument.log if isinstance(event, m.GateWait)]
        assert len(waits) == 1
        assert 7.0 <= waits[0].seconds <= 7.0 + 1.0
        assert isinstance(waits[0].cause, m.RateLimitError)
        assert clock.sleeps[-1] == pytest.approx(waits[0].seconds)

    async def test_a_failed_call_ends_with_its_error(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """The end event of a failed call carries the typed error and the final status."""
        app, url = scripted
        app.default = error_reply(404, "NOT_FOUND")
        instrument = Instrument()
        conn = make_registry(url, instruments=[instrument]).add("acme", "t")
        with pytest.raises(m.NotFoundError) as info:
            await conn.request("GET", "/x")
        ended = instrument.log[-1]
        assert isinstance(ended, m.CallEnded)
        assert (ended.attempts, ended.status, ended.request_id) == (1, 404, "req_e")
        assert ended.error is info.value

    async def test_the_tokenless_channel_has_no_connection_id(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Calls without a token are reported without a connection id and generation 0."""
        _, url = scripted
        instrument = Instrument()
        await make_registry(url, instruments=[instrument]).tokenless().request("GET", "/x")
        started = instrument.log[0]
        assert isinstance(started, m.CallStarted)
        assert started.connection_id is None
        assert instrument.log[1] == m.AttemptSent(attempt=1, generation=0)


class TestRobustness:
    async def test_a_failing_observer_never_breaks_the_call(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An observer that raises is logged; the call and the other instruments go on."""
        _, url = scripted

        class Broken(m.CallObserver):
            def attempt_sent(self, event: m.AttemptSent) -> None:
                raise RuntimeError(f"boom at attempt {event.attempt}")

        class BrokenInstrument:
            def call_started(self, event: m.CallStarted) -> m.CallObserver | None:
                del event
                return Broken()

        class Refusing:
            def call_started(self, event: m.CallStarted) -> m.CallObserver | None:
                raise RuntimeError(f"no {event.path}")

        healthy = Instrument()
        registry = make_registry(url, instruments=[BrokenInstrument(), Refusing(), healthy])
        with caplog.at_level(logging.WARNING, logger="makini_async"):
            response = await registry.add("acme", "t").request("GET", "/x")
        assert response.status == 200
        assert kinds(healthy.log)[-1] == "CallEnded"
        assert "attempt_sent hook failed" in caplog.text
        assert "call_started hook failed" in caplog.text

    async def test_an_instrument_may_ignore_a_call(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """An instrument returning None for a call hears nothing more of it."""
        _, url = scripted
        seen: list[m.CallStarted] = []

        class Sampler:
            def call_started(self, event: m.CallStarted) -> m.CallObserver | None:
                seen.append(event)
                return None

        conn = make_registry(url, instruments=[Sampler()]).add("acme", "t")
        await conn.request("GET", "/x")
        await conn.request("GET", "/y")
        assert [event.path for event in seen] == ["/x", "/y"]
