"""Hostile headers and bodies (B10, B11): only our typed errors, zero 500s, zero handler runs."""

from __future__ import annotations

import base64
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from makini_async.webhooks import (
    WebhookEvent,
    WebhookPayloadError,
    WebhookVerificationError,
    parse,
    sign,
    verify,
)
from tests.webhooks.asgi_support import FRAMEWORKS
from tests.webhooks.support import SECRET, Recorder, Served, ServeOn, envelope, signed

FULL_WIDTH_DIGITS = "".join(chr(0xFF10 + n) for n in range(10))
PRINTABLE_LATIN_1 = "".join(chr(c) for c in range(0x20, 0x100) if not 0x7F <= c <= 0x9F)
BODY = json.dumps(envelope("assets.updated", body=["A1"])).encode()
GOOD = sign(BODY, secret=SECRET)
FAST = settings(deadline=None, database=None, derandomize=True)

_names = st.sampled_from(
    [
        "X-Webhook-Signature",
        "x-webhook-signature",
        "X-WEBHOOK-SIGNATURE",
        "X-Webhook-Id",
        "Content-Type",
        "X-Webhook-Timestamp",
    ]
) | st.text(max_size=20)
_b64_of = st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode())
_signature_values = st.one_of(
    st.just(GOOD),
    st.just(""),
    _b64_of,
    st.text(max_size=60),
    st.text(alphabet=string.ascii_letters + string.digits + "+/=,. ", max_size=120),
    st.text(alphabet=FULL_WIDTH_DIGITS, min_size=1, max_size=20),
    st.builds(lambda a, b: f"{a} {b}", st.just(GOOD), st.text(max_size=50)),
    st.builds(lambda a: f"v1,{a}", st.just(GOOD)),
    st.builds(lambda a: f"v1={a}", _b64_of),
    st.builds(lambda n: "A" * n, st.integers(0, 5000)),
    st.builds(lambda n: "9" * n, st.integers(1, 5000)),
    st.sampled_from(["-1", "1.5", "1e999", "NaN", "t=1,v1=abc", "\x00", "é" * 44, "=" * 44]),
    st.binary(max_size=60),
    st.integers(),
    st.none(),
)
_pairs = st.lists(st.tuples(_names, _signature_values), max_size=5)
_bodies = st.one_of(
    st.just(BODY),
    st.binary(max_size=300),
    st.builds(lambda b: BODY + b, st.binary(min_size=1, max_size=10)),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(0, 3000)),
)

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
_event_names = st.sampled_from(
    [
        "connection.sync_completed",
        "connection.sync_failed",
        "connection.reauthorization_required",
        "connection.status_changed",
        "system.error",
        "assets.updated",
        "flow.x",
        "unknown.thing",
    ]
) | st.text(max_size=30)
_envelopes = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=30) | _json,
        "event": _event_names | _json,
        "created_at": st.sampled_from(["2026-01-01T00:00:00Z", "nope", ""]) | _json,
        "connection_id": st.text(max_size=10) | _json,
        "data": st.dictionaries(
            st.sampled_from(
                ["entities", "counts", "finished_at", "code", "message", "previous", "current"]
            ),
            _json,
        )
        | _json,
        "body": st.lists(st.text(max_size=5) | st.integers(), max_size=3) | _json,
    },
)


def _check_verify(body: bytes, headers: object) -> None:
    error: WebhookVerificationError | None = None
    try:
        verify(body, headers, SECRET)  # type: ignore[arg-type]
    except WebhookVerificationError as exc:
        error = exc
    if error is not None:
        assert error.status == 401
        assert SECRET not in str(error)
    else:
        # Only a header holding the real signature of this very body can pass.
        assert body == BODY
        values = [v for k, v in headers.items() if str(k).lower() == "x-webhook-signature"]  # type: ignore[attr-defined]
        assert len(values) == 1
        assert GOOD in str(values[0])


class TestVerifyFuzz:
    @settings(FAST, max_examples=2000)
    @given(pairs=_pairs, body=_bodies)
    def test_header_dicts(self, pairs: list[tuple[str, object]], body: bytes) -> None:
        """Random header dicts and bodies give success only when truly signed, else our error."""
        _check_verify(body, dict(pairs))

    @settings(FAST, max_examples=600)
    @given(pairs=_pairs, body=_bodies)
    def test_multidicts(self, pairs: list[tuple[str, object]], body: bytes) -> None:
        """Multidicts (repeated headers allowed) behave the same way."""
        text_pairs = [(k, v) for k, v in pairs if isinstance(v, str)]
        _check_verify(body, CIMultiDictProxy(CIMultiDict(text_pairs)))


class TestParseFuzz:
    @settings(FAST, max_examples=1500)
    @given(raw=st.binary(max_size=400))
    def test_random_bytes(self, raw: bytes) -> None:
        """Random bytes either parse to an event or raise WebhookPayloadError, nothing else."""
        try:
            event: WebhookEvent | WebhookPayloadError = parse(raw)
        except WebhookPayloadError as exc:
            event = exc
        assert isinstance(event, WebhookEvent) or event.status == 400

    @settings(FAST, max_examples=700)
    @given(payload=_envelopes | _json)
    def test_random_envelopes(self, payload: object) -> None:
        """Envelope-shaped JSON with random field values parses or raises WebhookPayloadError."""
        raw = json.dumps(payload).encode()
        try:
            event = parse(raw)
        except WebhookPayloadError:
            return
        assert isinstance(event, WebhookEvent)
        assert isinstance(event.id, str)
        assert event.id
        assert all(isinstance(k, str) for k in event.keys)
        assert event.created_at is None or event.created_at.tzinfo is not None


_header_text = st.text(alphabet=PRINTABLE_LATIN_1, max_size=80)
_wire_values = st.one_of(
    st.just(GOOD),
    _b64_of,
    _header_text,
    st.builds(lambda a, b: f"{a} {b}", st.just(GOOD), _header_text),
    st.builds(lambda n: "A" * n, st.integers(0, 3000)),
)
_wire_names = st.sampled_from(
    [
        "X-Webhook-Signature",
        "x-webhook-signature",
        "X-Webhook-Id",
        "Content-Type",
        "Content-Encoding",
    ]
)


class TestReceiverFuzz:
    @settings(FAST, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        pairs=st.lists(st.tuples(_wire_names, _wire_values), max_size=4),
        body=_bodies,
    )
    async def test_over_http(
        self, serve_on: ServeOn, pairs: list[tuple[str, str]], body: bytes
    ) -> None:
        """Hostile deliveries over real HTTP get 2xx only when truly signed, never a 500, and
        the same answer from aiohttp.web, Starlette and FastAPI."""
        everywhere: list[Served] | None = getattr(self, "_everywhere", None)
        if everywhere is None:
            everywhere = [await serve_on(f, max_body_size=4096) for f in FRAMEWORKS]
            self._everywhere = everywhere
            self._recorders = [Recorder() for _ in everywhere]
            for served, recorder in zip(everywhere, self._recorders, strict=True):
                served.receiver.on("*")(recorder)
        answers = []
        for served, recorder in zip(everywhere, self._recorders, strict=True):
            before = served.receiver.stats.accepted + served.receiver.stats.duplicates
            status, answer = await served.post(body, pairs)
            answers.append((status, answer))
            assert status in {200, 400, 401, 413, 415}, status
            if status == 200:
                assert body == BODY
                assert any(
                    v.strip().startswith(GOOD)
                    for k, v in pairs
                    if k.lower() == "x-webhook-signature"
                )
                accepted = served.receiver.stats.accepted + served.receiver.stats.duplicates
                assert accepted == before + 1
            await served.receiver.join()
            # Handlers ran for accepted deliveries only (at most the one valid event).
            assert len(recorder.events) == served.receiver.stats.accepted <= 1
        # aiohttp.web's parser refuses some requests (a repeated Content-Type, say) before the
        # receiver sees them, with its own text: the receiver gives the same status.
        assert {a[0] for a in answers} == {answers[0][0]}, answers
        assert answers[2] == answers[1], answers
        if "text" not in answers[0][1]:
            assert answers[1] == answers[0], answers


@pytest.mark.parametrize("framework", FRAMEWORKS)
class TestFixedHostileCorpus:
    async def test_one_megabyte_header(self, serve_on: ServeOn, framework: str) -> None:
        """A 1 MB signature header is refused by the server (400), and nothing runs (B10)."""
        served = await serve_on(framework)
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        status, _ = await served.post(BODY, {"X-Webhook-Signature": "A" * 1_000_000})
        assert status in {400, 431}
        assert recorder.events == []
        assert served.receiver.stats.accepted == 0

    @pytest.mark.parametrize(
        "raw",
        [
            b"\xff\xfe\xfa invalid utf-8",
            b"[" * 100_000 + b"]" * 100_000,
            b'{"event": "a", "data": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
            b"<html>not json</html>",
            b'{"event": "a", "x": Infinity}',
        ],
    )
    async def test_signed_garbage_is_400(
        self, serve_on: ServeOn, framework: str, raw: bytes
    ) -> None:
        """Correctly signed bodies that are not events get 400 and run nothing (B11)."""
        served = await serve_on(framework)
        recorder = Recorder()
        served.receiver.on("*")(recorder)
        status, _ = await served.post(*signed(raw))
        assert status == 400
        await served.receiver.join()
        assert recorder.events == []
