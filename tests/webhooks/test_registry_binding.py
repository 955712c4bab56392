"""`receiver.bind(registry)`: connection events drive connection states, as a 401 would."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from makini_async import (
    APIResponse,
    Connection,
    ConnectionRegistry,
    ConnectionState,
    ReauthorizationRequiredError,
    ReconnectEvent,
    StateChange,
)
from makini_async.sandbox import Sandbox
from tests.webhooks.support import SECRET, Recorder, Serve, envelope, until

WO = "/api/eam/work-orders"
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
MakeRegistry = Callable[..., ConnectionRegistry]


def _state(connection: Connection) -> ConnectionState:
    # A call, so that the type checker does not narrow a state that webhooks change.
    return connection.state


class Hook:
    """A reconnect hook that counts its runs and returns a scripted token."""

    def __init__(self, token: Callable[[], str | None] = lambda: None) -> None:
        self.calls: list[ReconnectEvent] = []
        self._token = token

    async def __call__(self, event: ReconnectEvent) -> str | None:
        self.calls.append(event)
        return self._token()


class TestReauthorization:
    async def test_flips_state_while_requests_are_in_flight(
        self, sandbox: Sandbox, serve: Serve, make_registry: MakeRegistry
    ) -> None:
        """A reauthorization event parks the connection mid-traffic: one hook run, then no I/O."""
        hook = Hook()
        registry = make_registry(sandbox.url, on_reconnect=hook)
        connection = registry.add("c1", sandbox.connections["c1"])
        changes: list[StateChange] = []
        registry.subscribe(changes.append)
        served = await serve()
        served.receiver.bind(registry)
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        sandbox.connection("c1").latency = 0.2
        in_flight = [asyncio.create_task(connection.request("GET", WO)) for _ in range(10)]
        await until(lambda: len(sandbox.requests("c1")) >= 10)
        sandbox.change_credentials("c1")
        await until(lambda: connection.state is ConnectionState.REAUTHORIZATION_REQUIRED)
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        assert all(isinstance(r, APIResponse | ReauthorizationRequiredError) for r in results), (
            results
        )
        assert len(hook.calls) == 1
        assert hook.calls[0].connection_id == "c1"
        before = len(sandbox.requests("c1"))
        with pytest.raises(ReauthorizationRequiredError):
            await connection.request("GET", WO)
        assert len(sandbox.requests("c1")) == before  # failed fast, no I/O
        assert [(c.previous, c.current) for c in changes] == [
            (ConnectionState.ACTIVE, ConnectionState.REAUTHORIZATION_REQUIRED)
        ]

    async def test_hook_with_a_new_token_keeps_it_active(
        self, sandbox: Sandbox, serve: Serve, make_registry: MakeRegistry
    ) -> None:
        """When the reconnect hook returns a new token, the connection stays usable."""
        hook = Hook(lambda: sandbox.reconnect("c1"))
        registry = make_registry(sandbox.url, on_reconnect=hook)
        connection = registry.add("c1", sandbox.connections["c1"])
        served = await serve()
        served.receiver.bind(registry)
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        sandbox.change_credentials("c1")
        await until(lambda: len(hook.calls) == 1)
        await served.receiver.join()
        assert _state(connection) is ConnectionState.ACTIVE
        assert connection.generation == 2
        response = await connection.request("GET", WO)
        assert response.status == 200
        assert len(hook.calls) == 1

    async def test_status_event_reactivates(
        self, sandbox: Sandbox, serve: Serve, make_registry: MakeRegistry
    ) -> None:
        """A later 'active' status event brings a parked connection back; 'offline' does not."""
        registry = make_registry(sandbox.url)
        connection = registry.add("c1", sandbox.connections["c1"])
        changes: list[StateChange] = []
        registry.subscribe(changes.append)
        served = await serve()
        served.receiver.bind(registry)
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        sandbox.change_credentials("c1")
        await until(lambda: connection.state is ConnectionState.REAUTHORIZATION_REQUIRED)
        sandbox.advance(1)
        sandbox.set_status("c1", "inactive")
        await sandbox.wait_for_deliveries(2)
        await served.receiver.join()
        assert _state(connection) is ConnectionState.REAUTHORIZATION_REQUIRED
        new_token = sandbox.reconnect("c1")
        sandbox.advance(1)
        sandbox.set_status("c1", "active")
        await until(lambda: connection.state is ConnectionState.ACTIVE)
        assert changes[-1].reason == "reactivated"
        registry.update_token("c1", new_token)
        assert (await connection.request("GET", WO)).status == 200

    async def test_update_token_also_brings_it_back(
        self, sandbox: Sandbox, serve: Serve, make_registry: MakeRegistry
    ) -> None:
        """After a reauthorization event, update_token reactivates the connection."""
        registry = make_registry(sandbox.url)
        connection = registry.add("c1", sandbox.connections["c1"])
        served = await serve()
        served.receiver.bind(registry)
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        sandbox.change_credentials("c1")
        await until(lambda: connection.state is ConnectionState.REAUTHORIZATION_REQUIRED)
        registry.update_token("c1", sandbox.reconnect("c1"))
        assert _state(connection) is ConnectionState.ACTIVE
        assert (await connection.request("GET", WO)).status == 200


class TestIgnored:
    async def test_unknown_connection_is_logged(
        self, serve: Serve, make_registry: MakeRegistry, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Events for a connection the registry does not hold are logged and ignored."""
        registry = make_registry("http://127.0.0.1:9")
        connection = registry.add("c1", "token-c1")
        served = await serve()
        served.receiver.bind(registry)
        with caplog.at_level(logging.INFO, "makini_async.webhooks"):
            payload = envelope("connection.reauthorization_required", connection_id="zzz")
            assert await served.deliver(payload) == 200
            assert await served.deliver({"event": "connection.reauthorization_required"}) == 200
            await served.receiver.join()
        assert _state(connection) is ConnectionState.ACTIVE
        ignored = [r for r in caplog.records if "does not hold" in r.getMessage()]
        assert len(ignored) == 2
        assert "'zzz'" in ignored[0].getMessage()
        assert served.receiver.stats.failed == 0

    async def test_stale_status_event_is_dropped(
        self, serve: Serve, make_registry: MakeRegistry
    ) -> None:
        """An 'active' status older than the reauthorization event does not reactivate."""
        registry = make_registry("http://127.0.0.1:9")
        connection = registry.add("c1", "token-c1")
        served = await serve()
        served.receiver.bind(registry)
        reauth = envelope("connection.reauthorization_required", created_at=T0.isoformat())
        assert await served.deliver(reauth) == 200
        await served.receiver.join()
        assert _state(connection) is ConnectionState.REAUTHORIZATION_REQUIRED
        late = envelope(
            "connection.status_changed",
            created_at=(T0 - timedelta(seconds=30)).isoformat(),
            data={"previous": "offline", "current": "active"},
        )
        assert await served.deliver(late) == 200
        await served.receiver.join()
        assert _state(connection) is ConnectionState.REAUTHORIZATION_REQUIRED
        fresh = envelope(
            "connection.status_changed",
            created_at=(T0 + timedelta(seconds=30)).isoformat(),
            data={"previous": "offline", "current": "online"},
        )
        assert await served.deliver(fresh) == 200
        await served.receiver.join()
        assert _state(connection) is ConnectionState.ACTIVE

    async def test_unbind(self, serve: Serve, make_registry: MakeRegistry) -> None:
        """After unbinding, connection events no longer touch the registry; user handlers stay."""
        registry = make_registry("http://127.0.0.1:9")
        connection = registry.add("c1", "token-c1")
        served = await serve()
        recorder = Recorder()
        served.receiver.on("connection.*")(recorder)
        unbind = served.receiver.bind(registry)
        unbind()
        assert await served.deliver(envelope("connection.reauthorization_required")) == 200
        await recorder.wait_for(1)
        assert _state(connection) is ConnectionState.ACTIVE

    async def test_closed_connection_stays_closed(
        self, serve: Serve, make_registry: MakeRegistry
    ) -> None:
        """Events for a removed connection are ignored; a closed registry's ones change nothing."""
        registry = make_registry("http://127.0.0.1:9")
        registry.add("c1", "token-c1")
        connection = registry.add("c2", "token-c2")
        served = await serve()
        served.receiver.bind(registry)
        await registry.remove("c1")
        await registry.aclose()
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        for cid in ("c1", "c2"):
            assert (
                await served.deliver(
                    envelope("connection.reauthorization_required", connection_id=cid)
                )
                == 200
            )
            assert (
                await served.deliver(
                    envelope(
                        "connection.status_changed", connection_id=cid, data={"current": "active"}
                    )
                )
                == 200
            )
        await served.receiver.join()
        assert _state(connection) is ConnectionState.CLOSED
        assert served.receiver.stats.failed == 0
        assert len(recorder.events) == 4
