"""One receiver, three frameworks: aiohttp.web, and Starlette and FastAPI under uvicorn.

Every case is sent over real HTTP to each, and the three must give the same answer: status,
body and headers.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from makini_async.sandbox import Sandbox
from makini_async.webhooks import WebhookEvent
from tests.webhooks.asgi_support import FRAMEWORKS
from tests.webhooks.support import (
    OLD_SECRET,
    SECRET,
    Recorder,
    Served,
    ServeOn,
    envelope,
    signed,
    until,
)

CAP = 1000
# A loose bound on reading one raw answer: it only turns a hang into a failure.
ANSWER_LIMIT = 30.0

Request = tuple[bytes, dict[str, str] | list[tuple[str, str]]]


def _cases() -> list[tuple[str, Request, int, str]]:
    """(name, request, expected status, expected code), in the order they are sent."""
    valid = signed(envelope(id="evt_same_everywhere"))
    raw = json.dumps(envelope()).encode()
    good_signature = signed(raw)[1]["X-Webhook-Signature"]
    return [
        ("valid", valid, 200, "accepted"),
        ("duplicate", valid, 200, "duplicate"),
        ("wrong secret", signed(envelope(), "whsec_wrong"), 401, "signature_mismatch"),
        ("old secret", signed(envelope(), OLD_SECRET), 401, "signature_mismatch"),
        ("no signature", (raw, {"Content-Type": "application/json"}), 401, "missing_signature"),
        ("empty signature", (raw, {"X-Webhook-Signature": ""}), 401, "empty_signature"),
        ("not base64", (raw, {"X-Webhook-Signature": "%%%"}), 401, "malformed_signature"),
        (
            "two signatures",
            (raw, [("X-Webhook-Signature", good_signature)] * 2),
            401,
            "duplicate_signature",
        ),
        ("oversize", signed(b'{"pad": "' + b"x" * (2 * CAP) + b'"}'), 413, "body_too_large"),
        ("text/plain", signed(envelope(), **{"Content-Type": "text/plain"}), 415, "not_json"),
        (
            "form",
            signed(envelope(), **{"Content-Type": "application/x-www-form-urlencoded"}),
            415,
            "not_json",
        ),
        (
            "gzip",
            signed(gzip.compress(raw), **{"Content-Encoding": "gzip"}),
            415,
            "encoded_body",
        ),
        (
            "charset",
            signed(envelope(), **{"Content-Type": "application/json; charset=utf-8"}),
            200,
            "accepted",
        ),
        (
            "+json",
            signed(envelope(), **{"Content-Type": "application/cloudevents+json"}),
            200,
            "accepted",
        ),
        (
            "octet-stream",
            signed(envelope(), **{"Content-Type": "application/octet-stream"}),
            200,
            "accepted",
        ),
        ("unparsable type", signed(envelope(), **{"Content-Type": "json"}), 200, "accepted"),
        ("not json", signed(b"not json"), 400, "invalid_json"),
        ("a list", signed(b"[1, 2]"), 400, "malformed_payload"),
        ("bad event", signed(b'{"id": "evt_x", "event": 1}'), 400, "malformed_payload"),
        (
            "id mismatch",
            signed(envelope(id="evt_a"), **{"X-Webhook-Id": "evt_b"}),
            400,
            "id_mismatch",
        ),
        ("non-ASCII id", signed(envelope(), **{"X-Webhook-Id": "evt_\u00e9"}), 400, "malformed_id"),
        (
            "two ids",
            (valid[0], [*valid[1].items(), ("X-Webhook-Id", "evt_same_everywhere")]),
            400,
            "duplicate_id",
        ),
        (
            "overlong id",
            signed(b'{"event": "a.updated"}', event_id="e" * 300),
            400,
            "malformed_payload",
        ),
    ]


async def _answer(served: Served, request: Request) -> tuple[object, ...]:
    """Everything of an answer that must not depend on the framework."""
    body, headers = request
    async with served.session.post(served.url, data=body, headers=headers) as response:
        return (
            response.status,
            await response.read(),
            response.headers.get("Content-Type"),
            response.headers.get("Retry-After"),
        )


class TestSameAnswers:
    async def test_every_case_everywhere(self, serve_on: ServeOn) -> None:
        """aiohttp.web, Starlette and FastAPI answer every case alike, with the expected code."""
        cases = _cases()
        answers: dict[str, list[tuple[object, ...]]] = {}
        for framework in FRAMEWORKS:
            served = await serve_on(framework, max_body_size=CAP)
            answers[framework] = [await _answer(served, request) for _, request, _, _ in cases]
            await served.receiver.join()
            assert served.receiver.stats.accepted == 5
        assert answers["starlette"] == answers["aiohttp"]
        assert answers["fastapi"] == answers["aiohttp"]
        got = [
            (name, a[0], json.loads(a[1]).get("status") or json.loads(a[1])["error"]["code"])  # type: ignore[arg-type]
            for (name, *_), a in zip(cases, answers["aiohttp"], strict=True)
        ]
        assert got == [(name, status, code) for name, _, status, code in cases]
        assert {a[2] for a in answers["aiohttp"]} == {"application/json"}

    @pytest.mark.parametrize("framework", FRAMEWORKS)
    async def test_repeated_content_type(self, serve_on: ServeOn, framework: str) -> None:
        """Two Content-Type headers get 400 (aiohttp.web's parser, or the receiver behind ASGI)."""
        served = await serve_on(framework)
        raw, headers = signed(envelope())
        pairs = [*headers.items(), ("Content-Type", "application/json")]
        assert (await served.post(raw, pairs))[0] == 400
        assert served.receiver.stats.accepted == 0

    @pytest.mark.parametrize("framework", FRAMEWORKS)
    async def test_only_post(self, serve_on: ServeOn, framework: str) -> None:
        """A GET is refused with 405, naming POST as the method allowed."""
        served = await serve_on(framework)
        async with served.session.get(served.url) as response:
            assert response.status == 405
            assert response.headers["Allow"] == "POST"
        assert served.receiver.stats.accepted == 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
class TestEachFramework:
    async def test_handlers_run_off_the_request_path(
        self, serve_on: ServeOn, framework: str
    ) -> None:
        """The answer is sent while the handler is still blocked; then the handler finishes."""
        served = await serve_on(framework)
        gate = asyncio.Event()
        seen: list[str] = []

        @served.receiver.on("*")
        async def blocked(event: WebhookEvent) -> None:
            await gate.wait()
            seen.append(event.id)

        assert await served.deliver(envelope(id="evt_blocked")) == 200
        assert seen == []
        gate.set()
        await served.receiver.join()
        assert seen == ["evt_blocked"]

    async def test_full_queue_answers_503(self, serve_on: ServeOn, framework: str) -> None:
        """Every worker busy and the queue full: 503 with Retry-After; a later retry works."""
        served = await serve_on(framework, workers=1, queue_size=1, enqueue_timeout=0.05)
        gate = asyncio.Event()
        started = asyncio.Event()
        recorder = Recorder()

        @served.receiver.on("*")
        async def blocked(event: WebhookEvent) -> None:
            started.set()
            await gate.wait()
            await recorder(event)

        first, second, third = envelope(), envelope(), envelope()
        assert await served.deliver(first) == 200
        await asyncio.wait_for(started.wait(), 30)  # the worker holds the first event
        assert await served.deliver(second) == 200  # the queue holds the second
        raw, headers = signed(third)
        async with served.session.post(served.url, data=raw, headers=headers) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "5"
            assert (await response.json())["error"]["code"] == "busy"
        gate.set()
        await served.receiver.join()
        assert await served.deliver(third) == 200
        await recorder.wait_for(3)
        assert served.receiver.stats.unavailable == 1

    async def test_shutting_down_answers_503(self, serve_on: ServeOn, framework: str) -> None:
        """Once drained, the receiver refuses deliveries with 503 and Retry-After."""
        served = await serve_on(framework)
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        assert await served.deliver(envelope()) == 200
        await served.receiver.drain(timeout=5)
        assert len(recorder.events) == 1
        raw, headers = signed(envelope())
        async with served.session.post(served.url, data=raw, headers=headers) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "5"
            assert (await response.json())["error"]["code"] == "shutting_down"
        assert len(recorder.events) == 1

    async def test_chunked_body_within_cap(self, serve_on: ServeOn, framework: str) -> None:
        """A chunked body (no Content-Length) under the cap is read whole and accepted."""
        served = await serve_on(framework)
        raw, headers = signed(envelope(data={"pad": "y" * 200_000}))

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(raw), 7_000):
                yield raw[start : start + 7_000]

        async with served.session.post(served.url, data=chunks(), headers=headers) as response:
            assert response.status == 200
        assert served.receiver.stats.accepted == 1

    async def test_declared_oversize_is_refused_unread(
        self, serve_on: ServeOn, framework: str
    ) -> None:
        """A Content-Length above the cap gets 413 before a single body byte is sent."""
        served = await serve_on(framework, max_body_size=CAP)
        status, answer = await _raw_exchange(served, {"Content-Length": str(100 * CAP)}, b"")
        assert status == 413
        assert b"body_too_large" in answer
        assert served.receiver.stats.rejected == 1

    async def test_streamed_oversize_stops_at_the_cap(
        self, serve_on: ServeOn, framework: str
    ) -> None:
        """A chunked body is refused with 413 once past the cap, while its sender still sends."""
        served = await serve_on(framework, max_body_size=CAP)
        # Two 600-byte chunks pass the 1000-byte cap; the final chunk is never sent, so an
        # answer proves the receiver stopped reading there.
        chunk = b"258\r\n" + b"x" * 600 + b"\r\n"
        status, answer = await _raw_exchange(served, {"Transfer-Encoding": "chunked"}, chunk * 2)
        assert status == 413
        assert b"body_too_large" in answer
        assert served.receiver.stats.rejected == 1

    async def test_sender_hangs_up_mid_body(
        self, serve_on: ServeOn, framework: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A sender that closes halfway through the body is refused quietly; nothing runs."""
        served = await serve_on(framework)
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        raw, headers = signed(envelope())
        url = urlsplit(served.url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        lines = [
            f"POST {url.path} HTTP/1.1",
            f"Host: {url.netloc}",
            f"Content-Length: {len(raw)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + raw[:20])
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        del reader
        stats = served.receiver.stats
        await until(lambda: stats.received == 1, timeout=ANSWER_LIMIT)
        await until(lambda: stats.rejected + stats.unavailable == 1, timeout=ANSWER_LIMIT)
        assert stats.rejected == 1
        assert recorder.events == []
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    async def test_sandbox_deliveries_arrive(
        self, sandbox: Sandbox, serve_on: ServeOn, framework: str
    ) -> None:
        """Deliveries sent by the sandbox's webhook emitter reach the receiver, typed, once."""
        served = await serve_on(framework)
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        sandbox.configure_webhooks(duplicates=1.0)
        sandbox.add_webhook("c1", served.url, secret=SECRET)
        ids = [
            sandbox.emit(
                "c1", "connection.sync_completed", {"entities": ["assets"], "counts": {"a": 1}}
            ),
            sandbox.emit("c1", "work-orders.updated", body=["WO-1"]),
            sandbox.emit("c1", "system.error", {"code": "E", "message": "boom"}),
        ]
        await sandbox.wait_for_deliveries(2 * len(ids))
        await served.receiver.join()
        assert sorted(recorder.ids) == sorted(ids)
        assert [
            type(e).__name__ for e in sorted(recorder.events, key=lambda e: ids.index(e.id))
        ] == [
            "SyncCompletedEvent",
            "EntityEvent",
            "SystemErrorEvent",
        ]
        assert {d.status for d in sandbox.deliveries()} == {200}
        assert served.receiver.stats.duplicates == len(ids)


async def _raw_exchange(served: Served, extra: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """Send a signed POST's head and then ``body``, keep the connection open, read the answer."""
    url = urlsplit(served.url)
    _, headers = signed(envelope())
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        lines = [
            f"POST {url.path} HTTP/1.1",
            f"Host: {url.netloc}",
            *(f"{k}: {v}" for k, v in {**headers, **extra}.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        async with asyncio.timeout(ANSWER_LIMIT):
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            return status, await reader.readexactly(length)
    finally:
        writer.close()
