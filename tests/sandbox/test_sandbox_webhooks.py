"""Webhooks (signatures, filters, retries, duplicates, entity events) and sync state."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web

from makini_async.sandbox import Sandbox
from makini_async.webhooks import sign
from tests.sandbox.support import Api

WO = "/api/eam/work-orders"


@attrs.define
class Receiver:
    """A real HTTP endpoint that records deliveries and fails the first `fail` of them."""

    url: str = ""
    fail: int = 0
    seen: list[tuple[dict[str, str], bytes]] = attrs.Factory(list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((dict(request.headers), await request.read()))
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=500)
        return web.Response(status=204)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.seen]


@pytest.fixture(name="receiver")
async def _receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield receiver
    await runner.cleanup()


class TestDeliveries:
    async def test_signed_envelope(self, sandbox: Sandbox, receiver: Receiver) -> None:
        """A delivery is the contract envelope, signed base64(HMAC-SHA256(secret, body))."""
        endpoint = sandbox.add_webhook("c1", receiver.url, secret="s3cret")
        event_id = sandbox.emit("c1", "system.error", {"code": "X", "message": "boom"})
        await sandbox.wait_for_deliveries(1)
        headers, raw = receiver.seen[0]
        expected = base64.b64encode(hmac.new(b"s3cret", raw, hashlib.sha256).digest()).decode()
        assert headers["X-Webhook-Signature"] == expected == sign(raw, secret=endpoint.secret)
        assert headers["X-Webhook-Id"] == event_id
        body = json.loads(raw)
        assert set(body) == {"id", "event", "created_at", "connection_id", "data", "body"}
        assert body["id"] == event_id
        assert body["event"] == "system.error"
        assert body["connection_id"] == "c1"
        assert body["created_at"].endswith("Z")
        assert body["data"] == {"code": "X", "message": "boom"}

    async def test_event_filter_and_connection(self, sandbox: Sandbox, receiver: Receiver) -> None:
        """Endpoints get only their connection's events that pass their filter."""
        sandbox.add_webhook("c1", receiver.url, events=["work-orders.*"])
        sandbox.emit("c1", "assets.updated", body=["1"])
        sandbox.emit("c2", "work-orders.updated", body=["2"])
        sandbox.emit("c1", "work-orders.inserted", body=["3"])
        await sandbox.wait_for_deliveries(1)
        assert [b["body"] for b in receiver.bodies()] == [["3"]]

    async def test_retries_with_backoff_keep_the_id(
        self, sandbox: Sandbox, receiver: Receiver
    ) -> None:
        """Failed deliveries are retried (30 s, 60 s, ... scaled) with the same id and body."""
        sandbox.time_scale = 0.0005
        receiver.fail = 3
        sandbox.add_webhook("c1", receiver.url)
        event_id = sandbox.emit("c1", "connection.sync_completed", {"entities": []})
        await sandbox.wait_for_deliveries(1)
        attempts = sandbox.deliveries(event_id)
        assert [d.attempt for d in attempts] == [1, 2, 3, 4]
        assert [d.status for d in attempts] == [500, 500, 500, 204]
        gaps = [b.time - a.time for a, b in itertools.pairwise(attempts)]
        assert gaps[0] < gaps[1] < gaps[2]
        assert {h["X-Webhook-Id"] for h, _ in receiver.seen} == {event_id}
        assert len({raw for _, raw in receiver.seen}) == 1

    async def test_retries_stop_after_a_day(self, sandbox: Sandbox, receiver: Receiver) -> None:
        """A receiver that never succeeds stops being retried after 24 h of backoff."""
        sandbox.time_scale = 0.00001
        receiver.fail = 10_000
        sandbox.add_webhook("c1", receiver.url)
        event_id = sandbox.emit("c1", "system.error")
        await sandbox.drain_webhooks()
        attempts = sandbox.deliveries(event_id)
        waited = sum(30 * 2**n for n in range(len(attempts) - 1))
        assert waited <= 86400 < waited + 30 * 2 ** (len(attempts) - 1)
        assert not any(d.ok for d in attempts)

    async def test_unreachable_receiver_is_logged(self, sandbox: Sandbox) -> None:
        """A receiver that refuses connections logs an error and is retried."""
        sandbox.add_webhook("c1", "http://127.0.0.1:9/nothing")
        sandbox.emit("c1", "system.error")
        await sandbox.wait_for_deliveries(2, ok=False)
        first = sandbox.deliveries()[0]
        assert first.status is None
        assert first.error

    async def test_duplicates(self, sandbox: Sandbox, receiver: Receiver) -> None:
        """With duplicates on, an event can arrive twice with one id."""
        sandbox.configure_webhooks(duplicates=1.0)
        sandbox.add_webhook("c1", receiver.url)
        event_id = sandbox.emit("c1", "system.error")
        await sandbox.wait_for_deliveries(2)
        assert [h["X-Webhook-Id"] for h, _ in receiver.seen] == [event_id, event_id]
        assert sorted(d.duplicate for d in sandbox.deliveries()) == [False, True]

    async def test_reordering(self, sandbox: Sandbox, receiver: Receiver) -> None:
        """With reordering on, every event still arrives, in some order."""
        sandbox.configure_webhooks(reorder=60.0)
        sandbox.add_webhook("c1", receiver.url)
        ids = {sandbox.emit("c1", "system.error", {"n": n}) for n in range(8)}
        await sandbox.wait_for_deliveries(8)
        assert {b["id"] for b in receiver.bodies()} == ids

    async def test_entity_events_on_writes(
        self, api: Api, sandbox: Sandbox, receiver: Receiver
    ) -> None:
        """Writes emit <entity>.inserted, .updated and .deleted with the keys in body."""
        sandbox.add_webhook("c1", receiver.url)
        created = await api.post(WO, json={"title": "new"})
        key = created.body["data"]["key"]
        await api.put(f"{WO}/{key}", json={"notes": "n"})
        sandbox.soft_delete("c1", "eam/work-orders", key)
        await sandbox.wait_for_deliveries(3)
        events = sorted((b["event"], tuple(b["body"])) for b in receiver.bodies())
        assert events == [
            ("work-orders.deleted", (key,)),
            ("work-orders.inserted", (key,)),
            ("work-orders.updated", (key,)),
        ]

    async def test_connection_events(self, sandbox: Sandbox, receiver: Receiver) -> None:
        """Credential changes and status changes emit their connection events."""
        sandbox.add_webhook("c1", receiver.url)
        sandbox.change_credentials("c1")
        sandbox.set_status("c1", "inactive")
        await sandbox.wait_for_deliveries(2)
        by_event = {b["event"]: b for b in receiver.bodies()}
        assert "connection.reauthorization_required" in by_event
        assert by_event["connection.status_changed"]["data"] == {
            "previous": "active",
            "current": "inactive",
        }

    async def test_control_plane_webhooks(
        self, api: Api, sandbox: Sandbox, receiver: Receiver
    ) -> None:
        """Webhooks can be registered, fired and inspected over /_sandbox/."""
        plane = api.as_connection(None)
        created = await plane.post(
            "/_sandbox/webhooks", json={"connection": "c1", "url": receiver.url, "secret": "k"}
        )
        assert created.body["secret"] == "k"
        fired = await plane.post(
            "/_sandbox/events", json={"connection": "c1", "event": "flow.custom", "data": {"a": 1}}
        )
        await sandbox.wait_for_deliveries(1)
        log = await plane.get("/_sandbox/deliveries", params={"event_id": fired.body["id"]})
        assert log.body[0]["status"] == 204
        tuned = await plane.request("PATCH", "/_sandbox/webhooks", json={"backoff_start": 10})
        assert tuned.body["backoff_start"] == 10
        listed = await plane.get("/_sandbox/webhooks")
        assert "secret" not in listed.body[0]
        await plane.request("DELETE", f"/_sandbox/webhooks/{created.body['id']}")
        assert sandbox.webhooks() == []


class TestSync:
    async def test_sync_moves_to_done_and_emits(
        self, api: Api, sandbox: Sandbox, receiver: Receiver
    ) -> None:
        """POST /api/integrations/sync goes inprogress, then done, and emits sync_completed."""
        # The sync's five simulated seconds last half a real one: long enough to be seen in
        # progress on a busy machine (at the suite's scale they would last 5 ms).
        sandbox.time_scale = 0.1
        sandbox.add_webhook("c1", receiver.url)
        before = await api.get("/api/integrations/sync/status")
        assert before.body["status"] == "done"
        started = await api.post(
            "/api/integrations/sync", json={"type": "incremental", "scopes": ["work-orders"]}
        )
        assert started.status == 200
        assert started.body["data"]["status"] == "inprogress"
        during = await api.get("/api/integrations/current")
        assert during.body["data"]["sync_status"] == "inprogress"
        await sandbox.wait_for_deliveries(1)
        after = await api.get("/api/integrations/sync/status")
        assert after.body["status"] == "done"
        assert after.body["last_synced_at"]
        assert after.body["error"] is None
        event = receiver.bodies()[0]
        assert event["event"] == "connection.sync_completed"
        assert event["data"]["entities"] == ["work-orders"]
        assert event["data"]["counts"] == {"work-orders": 120}

    async def test_full_sync_ends_fulldone(
        self, api: Api, sandbox: Sandbox, receiver: Receiver
    ) -> None:
        """A full sync ends in fulldone."""
        sandbox.add_webhook("c1", receiver.url)
        await api.post("/api/integrations/sync", json={"type": "full"})
        await sandbox.wait_for_deliveries(1)
        current = await api.get("/api/integrations/current")
        assert current.body["data"]["sync_status"] == "fulldone"

    @pytest.mark.parametrize("status", ["error", "fail"])
    async def test_failed_sync(
        self, api: Api, sandbox: Sandbox, receiver: Receiver, status: str
    ) -> None:
        """A sync set to fail ends in error or fail and emits sync_failed with the code."""
        sandbox.add_webhook("c1", receiver.url)
        sandbox.fail_next_sync("c1", status=status)
        await api.post("/api/integrations/sync", json={"type": "incremental"})
        await sandbox.wait_for_deliveries(1)
        state = await api.get("/api/integrations/sync/status")
        assert state.body["status"] == status
        assert state.body["error"]["code"]
        event = receiver.bodies()[0]
        assert event["event"] == "connection.sync_failed"
        assert event["data"]["code"] == state.body["error"]["code"]

    async def test_sync_needs_a_type(self, api: Api) -> None:
        """POST /api/integrations/sync without a type answers 422."""
        reply = await api.post("/api/integrations/sync", json={})
        assert reply.status == 422
        assert "type" in reply.body["error"]["details"]["fields"]

    async def test_raw_tables_and_passthrough(self, api: Api) -> None:
        """Raw tables list and page, and passthrough echoes a valid call."""
        tables = await api.get("/api/raw/tables")
        names = [t["name"] for t in tables.body["data"]]
        assert "work_orders" in names
        rows = await api.get("/api/raw/tables/work_orders/data", params={"per_page": "5"})
        assert len(rows.body["data"]) == 5
        assert rows.body["meta"]["total"] == 120
        missing = await api.get("/api/raw/tables/nope/data")
        assert missing.status == 404
        echoed = await api.post("/api/passthrough", json={"path": "/x", "method": "get"})
        assert echoed.body["data"]["status"] == 200
        bad = await api.post("/api/passthrough", json={"method": "fly"})
        assert set(bad.body["error"]["details"]["fields"]) == {"path", "method"}
