"""The ASGI adapter's own behaviour: lifespan, mounting patterns, and no framework dependency."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import aiohttp
import pytest

from makini_async import UsageError
from makini_async.webhooks import MemoryDedupStore, WebhookEvent, WebhookReceiver
from tests.webhooks.asgi_support import UvicornServer, fastapi_app, starlette_app
from tests.webhooks.support import SECRET, Recorder, Served, envelope, signed


class RecordingStore(MemoryDedupStore):
    """A memory store that remembers being closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


def _worker_tasks() -> list[str]:
    return sorted(
        t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("makini-webhook-")
    )


def _slow_recorder(receiver: WebhookReceiver, done: list[str]) -> None:
    @receiver.on("*")
    async def slowish(event: WebhookEvent) -> None:
        await asyncio.sleep(0.05)
        done.append(event.id)


class TestStandalone:
    async def test_lifespan_starts_and_drains(self, session: aiohttp.ClientSession) -> None:
        """As the server's app, startup starts the workers; shutdown drains and closes the store."""
        store = RecordingStore()
        receiver = WebhookReceiver(SECRET, store=store, workers=2)
        done: list[str] = []
        _slow_recorder(receiver, done)
        server = UvicornServer(receiver.asgi())
        base = await server.start()
        try:
            assert _worker_tasks() == ["makini-webhook-worker-0", "makini-webhook-worker-1"]
            payloads = [envelope() for _ in range(4)]
            for n, payload in enumerate(payloads):
                # Every path is the endpoint: the app is mounted where Makini posts.
                served = Served(receiver, f"{base}/{'x/' * n}", session)
                assert await served.deliver(payload) == 200
        finally:
            await server.stop()
        assert sorted(done) == sorted(str(p["id"]) for p in payloads)
        assert receiver.stats.abandoned == 0
        assert receiver.closing
        assert store.closed
        assert _worker_tasks() == []
        with pytest.raises(UsageError, match="closed"):
            await receiver.start()

    async def test_failed_startup_stops_the_server(self, caplog: pytest.LogCaptureFixture) -> None:
        """A receiver that cannot start (already closed) fails the lifespan startup."""
        receiver = WebhookReceiver(SECRET)
        await receiver.aclose()
        server = UvicornServer(receiver.asgi())
        with caplog.at_level(logging.ERROR), pytest.raises(SystemExit):
            await server.serve_in_place()
        assert not server.server.started
        assert any("closed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
class TestMounted:
    async def test_framework_lifespan_drains(
        self, session: aiohttp.ClientSession, framework: str
    ) -> None:
        """Mounted, the receiver is started and drained by the app's lifespan (async with)."""
        store = RecordingStore()
        receiver = WebhookReceiver(SECRET, store=store)
        done: list[str] = []
        _slow_recorder(receiver, done)
        app = starlette_app(receiver) if framework == "starlette" else fastapi_app(receiver)
        server = UvicornServer(app)
        base = await server.start()
        try:
            assert len(_worker_tasks()) == receiver.workers
            served = Served(receiver, f"{base}/hook/", session)
            payloads = [envelope() for _ in range(5)]
            assert [await served.deliver(p) for p in payloads] == [200] * 5
        finally:
            await server.stop()
        assert sorted(done) == sorted(str(p["id"]) for p in payloads)
        assert receiver.abandoned == []
        assert store.closed
        assert _worker_tasks() == []


class TestMountingPatterns:
    async def test_a_mounted_app_gets_no_lifespan(self, session: aiohttp.ClientSession) -> None:
        """Without the lifespan pattern a mounted receiver is never drained: why it is needed."""
        receiver = WebhookReceiver(SECRET)
        server = UvicornServer(fastapi_app(receiver, lifespan=False))
        base = await server.start()
        try:
            assert _worker_tasks() == []
            async with session.get(f"{base}/health") as response:
                assert response.status == 200
            # The first delivery starts the workers.
            assert await Served(receiver, f"{base}/hook/", session).deliver(envelope()) == 200
            assert len(_worker_tasks()) == receiver.workers
        finally:
            await server.stop()
        assert not receiver.closing
        await receiver.aclose()
        assert _worker_tasks() == []

    async def test_starlette_route(self, session: aiohttp.ClientSession) -> None:
        """As a Starlette POST Route the endpoint is the exact path, without a final slash."""
        receiver = WebhookReceiver(SECRET)
        recorder = Recorder()
        receiver.on("*")(recorder)
        server = UvicornServer(starlette_app(receiver, route=True))
        base = await server.start()
        try:
            assert await Served(receiver, f"{base}/hook", session).deliver(envelope()) == 200
            await recorder.wait_for(1)
            async with session.get(f"{base}/hook") as response:
                assert response.status == 405  # Starlette's own answer for the Route
        finally:
            await server.stop()
        assert receiver.closing


class TestProtocolEdges:
    async def test_websocket_is_refused(self) -> None:
        """A websocket handshake routed to the app is closed before it is accepted."""
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "websocket.connect"}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await WebhookReceiver(SECRET).asgi()({"type": "websocket"}, receive, send)
        assert [m["type"] for m in sent] == ["websocket.close"]

    async def test_unknown_scope_type(self) -> None:
        """A scope type ASGI does not define raises ValueError, as the spec asks."""

        async def receive() -> dict[str, object]:
            raise AssertionError  # pragma: no cover - never called

        async def send(message: dict[str, object]) -> None:
            raise AssertionError  # pragma: no cover - never called

        with pytest.raises(ValueError, match="scope type 'telepathy'"):
            await WebhookReceiver(SECRET).asgi()({"type": "telepathy"}, receive, send)

    def test_repr_hides_the_secret(self) -> None:
        """The app's repr names the receiver and never the secret."""
        text = repr(WebhookReceiver(SECRET).asgi())
        assert text.startswith("<WebhookASGIApp <WebhookReceiver secrets=1")
        assert SECRET not in text


def test_the_asgi_app_needs_no_framework() -> None:
    """The ASGI app serves a delivery and its lifespan with no ASGI framework or server loaded."""
    raw, headers = signed(envelope(id="evt_bare"))
    code = f"""
import asyncio, sys
from makini_async.webhooks import WebhookReceiver

async def main():
    receiver = WebhookReceiver({SECRET!r})
    app = receiver.asgi()
    inbox = [{{"type": "lifespan.startup"}}, {{"type": "lifespan.shutdown"}}]
    body = [{{"type": "http.request", "body": {raw!r}[:10], "more_body": True}},
            {{"type": "http.request", "body": {raw!r}[10:], "more_body": False}}]
    out = []
    async def send(message):
        out.append(message)
    async def lifespan_receive():
        if len(out) == 1:
            await app_http()
        return inbox.pop(0)
    async def app_http():
        async def receive():
            return body.pop(0)
        headers = [(k.lower().encode(), v.encode()) for k, v in {headers!r}.items()]
        scope = {{"type": "http", "method": "POST", "path": "/", "headers": headers}}
        await app(scope, receive, send)
    await app({{"type": "lifespan"}}, lifespan_receive, send)
    print([m.get("status", m["type"]) for m in out], out[2]["body"].decode())
    loaded = {{m.split(".")[0] for m in sys.modules}}
    print(sorted({{"starlette", "fastapi", "uvicorn", "anyio"}} & loaded))

asyncio.run(main())
"""
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    messages = (
        "['lifespan.startup.complete', 200, 'http.response.body', 'lifespan.shutdown.complete']"
    )
    assert proc.stdout.splitlines() == [f'{messages} {{"status": "accepted"}}', "[]"]
