"""End to end: the sandbox delivers real signed webhooks over HTTP to a receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from makini_async.sandbox import Sandbox
from makini_async.webhooks import (
    EntityEvent,
    FlowEvent,
    ReauthorizationRequiredEvent,
    StatusChangedEvent,
    SyncCompletedEvent,
    SyncFailedEvent,
    SystemErrorEvent,
    UnknownEvent,
    WebhookEvent,
    WebhookReceiver,
)
from tests.webhooks.support import OLD_SECRET, SECRET, Recorder, Serve, until

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answered(sandbox: Sandbox, event_id: str) -> int:
    """How many deliveries of the event have their final status (or failed) in the log."""
    return sum(d.status is not None or d.error is not None for d in sandbox.deliveries(event_id))


class TestEveryEventType:
    async def test_all_contract_events(self, sandbox: Sandbox, serve: Serve) -> None:
        """Each event of the contract arrives verified and typed, with its fields."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        emitted = [
            sandbox.emit(
                "c1",
                "connection.sync_completed",
                {
                    "entities": ["assets"],
                    "counts": {"assets": 4},
                    "finished_at": "2026-01-01T00:00:00Z",
                },
            ),
            sandbox.emit(
                "c1", "connection.sync_failed", {"code": "SYSTEM_UNAVAILABLE", "message": "m"}
            ),
            sandbox.emit(
                "c1", "connection.reauthorization_required", {"reason": "credentials_changed"}
            ),
            sandbox.emit(
                "c1", "connection.status_changed", {"previous": "online", "current": "offline"}
            ),
            sandbox.emit("c1", "system.error", {"code": "E", "message": "boom"}),
            sandbox.emit("c1", "assets.inserted", body=["A1"]),
            sandbox.emit("c1", "work-orders.updated", body=["WO-1", "WO-2"]),
            sandbox.emit("c1", "purchase-orders.deleted", body=["PO-9"]),
            sandbox.emit("c1", "flow.low_stock", {"sku": "S-1"}),
            sandbox.emit("c1", "brand.new_event", {"x": 1}),
        ]
        await recorder.wait_for(len(emitted))
        by_id = {e.id: e for e in recorder.events}
        assert set(by_id) == set(emitted)
        events = [by_id[i] for i in emitted]
        kinds = [
            SyncCompletedEvent,
            SyncFailedEvent,
            ReauthorizationRequiredEvent,
            StatusChangedEvent,
            SystemErrorEvent,
            EntityEvent,
            EntityEvent,
            EntityEvent,
            FlowEvent,
            UnknownEvent,
        ]
        assert [type(e) for e in events] == kinds
        assert all(e.connection_id == "c1" and e.created_at is not None for e in events)
        sync = events[0]
        assert isinstance(sync, SyncCompletedEvent)
        assert sync.counts == {"assets": 4}
        status = events[3]
        assert isinstance(status, StatusChangedEvent)
        assert (status.previous, status.current, status.healthy) == ("online", "offline", False)
        updated = events[6]
        assert isinstance(updated, EntityEvent)
        assert (updated.entity, updated.action, updated.keys) == (
            "work-orders",
            "updated",
            ("WO-1", "WO-2"),
        )
        assert events[9].data == {"x": 1}
        await sandbox.wait_for_deliveries(len(emitted))
        assert [d.status for d in sandbox.deliveries()] == [200] * len(emitted)

    async def test_sync_completed_from_a_real_sync(self, sandbox: Sandbox, serve: Serve) -> None:
        """A sync the sandbox runs ends in a connection.sync_completed event we decode."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on(SyncCompletedEvent)(recorder)
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        sandbox.start_sync("c1", "full", ["work-orders"])
        await recorder.wait_for(1)
        event = recorder.events[0]
        assert isinstance(event, SyncCompletedEvent)
        assert event.entities == ("work-orders",)
        assert event.finished_at is not None


class TestRotationEndToEnd:
    async def test_old_and_new_secrets(self, sandbox: Sandbox, serve: Serve) -> None:
        """While rotating, endpoints signing with either secret are accepted; then only new."""
        served = await serve(WebhookReceiver([SECRET, OLD_SECRET]))
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        new = sandbox.add_webhook("c1", served.url, secret=SECRET)
        old = sandbox.add_webhook("c1", served.url, secret=OLD_SECRET)
        first = sandbox.emit("c1", "system.error")
        # A delivery is logged before its POST is answered: wait for both answers.
        await until(lambda: _answered(sandbox, first) == 2, timeout=30)
        await served.receiver.join()
        assert {d.status for d in sandbox.deliveries(first)} == {200}
        assert len(recorder.events) == 1  # the same event through two endpoints runs once
        served.receiver.rotate(SECRET)
        sandbox.configure_webhooks(max_age=0)  # no retries for the refused delivery
        second = sandbox.emit("c1", "system.error")
        await until(lambda: _answered(sandbox, second) == 2, timeout=30)
        statuses = {d.endpoint_id: d.status for d in sandbox.deliveries(second)}
        assert statuses == {new.id: 200, old.id: 401}


class TestRedeliveries:
    async def test_duplicates_run_once(self, sandbox: Sandbox, serve: Serve) -> None:
        """With the sandbox sending every event twice, handlers still run once per event."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        sandbox.configure_webhooks(duplicates=1.0)
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        ids = [sandbox.emit("c1", "assets.updated", body=[str(n)]) for n in range(10)]
        await sandbox.wait_for_deliveries(20)
        await served.receiver.join()
        assert sorted(recorder.ids) == sorted(ids)
        assert served.receiver.stats.duplicates == 10

    async def test_retried_after_500(self, sandbox: Sandbox, serve: Serve) -> None:
        """A delivery answered 500 in front of the receiver is retried and processed once."""
        failures = {"left": 2}

        @web.middleware
        async def flaky(request: web.Request, handler: Handler) -> web.StreamResponse:
            if failures["left"] > 0:
                failures["left"] -= 1
                return web.Response(status=500)
            return await handler(request)

        served = await serve(middlewares=(flaky,))
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        event_id = sandbox.emit("c1", "system.error", {"code": "X"})
        await sandbox.wait_for_deliveries(1)
        await served.receiver.join()
        assert [d.status for d in sandbox.deliveries(event_id)] == [500, 500, 200]
        assert recorder.ids == [event_id]

    async def test_retried_after_a_timeout(self, serve: Serve) -> None:
        """A delivery accepted but answered too late is retried; the retry is a duplicate."""
        slow_once = {"left": 1}

        @web.middleware
        async def late(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await handler(request)
            if slow_once["left"] > 0:
                slow_once["left"] -= 1
                await asyncio.sleep(0.6)
            return response

        served = await serve(middlewares=(late,))
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        async with Sandbox(connections=1, time_scale=0.001, webhook_timeout=0.2) as sandbox:
            sandbox.add_webhook("c1", served.url, secret=SECRET)
            event_id = sandbox.emit("c1", "connection.sync_failed", {"code": "X"})
            await sandbox.wait_for_deliveries(1)
            attempts = sandbox.deliveries(event_id)
        await served.receiver.join()
        assert attempts[0].status is None
        assert attempts[0].error
        assert attempts[-1].status == 200
        assert recorder.ids == [event_id]
        assert served.receiver.stats.duplicates == len(attempts) - 1

    async def test_reordered_status_events(self, sandbox: Sandbox, serve: Serve) -> None:
        """Reordered deliveries all arrive once; created_at tells their real order."""
        served = await serve()
        recorder = Recorder()
        served.receiver.on(StatusChangedEvent)(recorder)
        sandbox.configure_webhooks(reorder=20.0)  # up to 20 ms at this time scale
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        for n in range(8):
            sandbox.emit(
                "c1", "connection.status_changed", {"previous": str(n), "current": str(n + 1)}
            )
            sandbox.advance(1)
        await recorder.wait_for(8)
        ordered = sorted(recorder.events, key=lambda e: e.created_at or 0)
        assert [e.current for e in ordered if isinstance(e, StatusChangedEvent)] == [
            str(n + 1) for n in range(8)
        ]


@pytest.mark.parametrize("events", [("work-orders.*",), ("connection.*", "system.error")])
async def test_endpoint_filters_pass_through(
    sandbox: Sandbox, serve: Serve, events: tuple[str, ...]
) -> None:
    """Whatever the endpoint's filter lets through is verified and handled once."""
    served = await serve()
    recorder = Recorder()
    served.receiver.on("*")(recorder)
    sandbox.add_webhook("c1", served.url, events=events, secret=SECRET)
    sandbox.emit("c1", "work-orders.updated", body=["1"])
    sandbox.emit("c1", "system.error")
    await sandbox.wait_for_deliveries(1)
    await served.receiver.join()
    assert len(recorder.events) == 1
    event: WebhookEvent = recorder.events[0]
    assert event.type in {"work-orders.updated", "system.error"}
