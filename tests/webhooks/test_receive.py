"""`WebhookReceiver.receive`: the framework-free entry point every adapter goes through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict

from makini_async.webhooks import WebhookAnswer, WebhookReceiver
from tests.webhooks.support import SECRET, Recorder, envelope, signed


class TestReceive:
    async def test_bytes_and_plain_headers(self) -> None:
        """Raw bytes and a plain dict of headers are enough; the answer is ready to send."""
        async with WebhookReceiver(SECRET) as receiver:
            recorder = Recorder()
            receiver.on("*")(recorder)
            raw, headers = signed(envelope(id="evt_direct"))
            answer = await receiver.receive(raw, headers)
            await recorder.wait_for(1)
        assert answer == WebhookAnswer(
            200, "accepted", (("Content-Type", "application/json"),), b'{"status": "accepted"}'
        )
        assert answer.ok
        assert recorder.ids == ["evt_direct"]

    async def test_stream_is_not_read_past_the_cap(self) -> None:
        """A streamed body is refused with 413 as soon as it passes the cap; no chunk after."""
        pulled: list[int] = []

        async def endless() -> AsyncIterator[bytes]:
            n = 0
            while True:
                pulled.append(n)
                yield b"x" * 300
                n += 1

        async with WebhookReceiver(SECRET, max_body_size=1000) as receiver:
            _, headers = signed(b"irrelevant")
            answer = await receiver.receive(endless(), headers)
        assert (answer.status, answer.code, answer.ok) == (413, "body_too_large", False)
        assert pulled == [0, 1, 2, 3]  # 1200 bytes: the fourth chunk passed the cap

    async def test_stream_within_cap(self) -> None:
        """A streamed body within the cap is joined and verified as one."""
        raw, headers = signed(envelope())

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(raw), 7):
                yield raw[start : start + 7]

        async with WebhookReceiver(SECRET) as receiver:
            assert (await receiver.receive(chunks(), headers)).code == "accepted"

    async def test_failing_stream_is_400(self) -> None:
        """A stream that breaks off (a sender that hung up) is answered 400, never raised."""

        async def broken() -> AsyncIterator[bytes]:
            yield b"{"
            raise ConnectionResetError

        async with WebhookReceiver(SECRET) as receiver:
            _, headers = signed(b"{}")
            answer = await receiver.receive(broken(), headers)
        assert (answer.status, answer.code) == (400, "unreadable_body")

    async def test_length_mismatch_is_400(self) -> None:
        """A body shorter than its declared Content-Length is refused before verification."""
        raw, headers = signed(envelope())
        async with WebhookReceiver(SECRET) as receiver:
            answer = await receiver.receive(raw[:-1], {**headers, "Content-Length": str(len(raw))})
        assert (answer.status, answer.code) == (400, "unreadable_body")

    async def test_refusals_carry_their_headers(self) -> None:
        """A 405 names POST in Allow; a 503 says when to retry; both bodies are the envelope."""
        raw, headers = signed(envelope())
        async with WebhookReceiver(SECRET) as receiver:
            not_post = await receiver.receive(raw, headers, method="GET")
            await receiver.drain()
            closing = await receiver.receive(raw, CIMultiDict(headers))
        assert not_post.status == 405
        assert ("Allow", "POST") in not_post.headers
        assert json.loads(not_post.body)["error"]["code"] == "method_not_allowed"
        assert (closing.status, closing.code) == (503, "shutting_down")
        assert ("Retry-After", "5") in closing.headers
        assert receiver.stats.rejected == 1
        assert receiver.stats.unavailable == 1

    @pytest.mark.parametrize(
        ("body", "headers"),
        [("{}", {}), ([b"{}"], {}), (b"{}", [("X-Webhook-Signature", "x")]), (None, {})],
    )
    async def test_bad_arguments_raise_before_anything(self, body: object, headers: object) -> None:
        """A str or sync body, or headers that are not a mapping, raise TypeError uncounted."""
        receiver = WebhookReceiver(SECRET)
        with pytest.raises(TypeError, match=r"body must be|headers must be"):
            await receiver.receive(body, headers)  # type: ignore[arg-type]
        assert receiver.stats.received == 0
        await receiver.aclose()
