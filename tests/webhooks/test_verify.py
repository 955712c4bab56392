"""Signature verification (S8, S11, S12) and the `sign` helper."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from makini_async import MakiniError
from makini_async.webhooks import (
    Secrets,
    WebhookError,
    WebhookPayloadError,
    WebhookVerificationError,
    parse,
    sign,
    verify,
)
from makini_async.webhooks import _verify as verify_module
from tests.webhooks.support import OLD_SECRET, SECRET, envelope, signed

BODY = json.dumps(envelope("connection.sync_completed", data={"entities": ["assets"]})).encode()


def _reason(body: bytes, headers: object, secrets: object = SECRET) -> str:
    with pytest.raises(WebhookVerificationError) as caught:
        verify(body, headers, secrets)  # type: ignore[arg-type]
    return caught.value.reason


class TestSign:
    def test_matches_the_contract(self) -> None:
        """`sign` is base64(HMAC-SHA256(secret, raw body)), which the sandbox signs with too."""
        expected = base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest())
        assert sign(BODY, secret=SECRET) == expected.decode()

    def test_bytes_secret(self) -> None:
        """A bytes secret signs the same as its UTF-8 text."""
        assert sign(BODY, secret=SECRET.encode()) == sign(BODY, secret=SECRET)

    def test_refuses_text_bodies(self) -> None:
        """A str body is refused: only the raw bytes may be signed or verified."""
        with pytest.raises(TypeError, match="raw request bytes"):
            sign(BODY.decode(), secret=SECRET)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="re-serialised"):
            verify(BODY.decode(), {}, SECRET)  # type: ignore[arg-type]


class TestAccepts:
    def test_valid_signature(self) -> None:
        """A body signed with the secret verifies, from a dict of headers."""
        _, headers = signed(BODY)
        verify(BODY, headers, SECRET)

    def test_multidict_and_case(self) -> None:
        """aiohttp's case-insensitive multidict headers and lower-case names work too."""
        _, headers = signed(BODY)
        verify(BODY, CIMultiDictProxy(CIMultiDict(headers)), SECRET)
        verify(BODY, {k.lower(): v for k, v in headers.items()}, SECRET)

    def test_bytearray_and_memoryview(self) -> None:
        """Raw bodies may arrive as bytearray or memoryview."""
        _, headers = signed(BODY)
        verify(bytearray(BODY), headers, SECRET)
        verify(memoryview(BODY), headers, SECRET)


class TestRejects:
    def test_flipped_byte(self) -> None:
        """Changing any single body byte breaks the signature (S8)."""
        _, headers = signed(BODY)
        for index in (0, len(BODY) // 2, len(BODY) - 1):
            tampered = bytearray(BODY)
            tampered[index] ^= 0x01
            assert _reason(bytes(tampered), headers) == "signature_mismatch"

    def test_reserialised_json(self) -> None:
        """The same JSON re-serialised (key order, whitespace) does not verify (S8)."""
        _, headers = signed(BODY)
        decoded = json.loads(BODY)
        for again in (
            json.dumps(decoded, indent=2),
            json.dumps(decoded, sort_keys=True),
            json.dumps(decoded, separators=(",", ":")),
        ):
            assert again.encode() != BODY
            assert _reason(again.encode(), headers) == "signature_mismatch"

    def test_wrong_secret(self) -> None:
        """A signature made with another secret is refused."""
        _, headers = signed(BODY, "whsec_somebody_else")
        assert _reason(BODY, headers) == "signature_mismatch"

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            ({}, "missing_signature"),
            ({"X-Webhook-Id": "evt_1"}, "missing_signature"),
            ({"X-Webhook-Signature": ""}, "empty_signature"),
            ({"X-Webhook-Signature": "   "}, "empty_signature"),
            ({"X-Webhook-Signature": " , "}, "empty_signature"),
            ({"X-Webhook-Signature": "sïgnature"}, "malformed_signature"),
            ({"X-Webhook-Signature": "abc\x00def"}, "malformed_signature"),
            ({"X-Webhook-Signature": "not base64!"}, "malformed_signature"),
            ({"X-Webhook-Signature": "QUJD"}, "malformed_signature"),
            ({"X-Webhook-Signature": "QUJD="}, "malformed_signature"),
            ({"X-Webhook-Signature": base64.b64encode(b"x" * 31).decode()}, "malformed_signature"),
            ({"X-Webhook-Signature": base64.b64encode(b"x" * 64).decode()}, "malformed_signature"),
            ({"X-Webhook-Signature": "A" * 100_000}, "malformed_signature"),
            ({"X-Webhook-Signature": " ".join(["A" * 43 + "="] * 9)}, "malformed_signature"),
            ({"X-Webhook-Signature": 12}, "malformed_signature"),
            ({"X-Webhook-Signature": None}, "malformed_signature"),
            ({"X-Webhook-Signature": b"\xff"}, "malformed_signature"),
            ({"X-Webhook-Signature": "v1=" + sign(BODY, secret=SECRET)}, "malformed_signature"),
        ],
    )
    def test_hostile_headers(self, headers: dict[str, object], reason: str) -> None:
        """Every malformed signature header is one WebhookVerificationError with a reason (B10)."""
        assert _reason(BODY, headers) == reason

    def test_duplicated_header_in_a_multidict(self) -> None:
        """A signature header sent twice is refused, even when both copies are valid."""
        good = sign(BODY, secret=SECRET)
        headers = CIMultiDict([("X-Webhook-Signature", good), ("x-webhook-signature", good)])
        assert _reason(BODY, CIMultiDictProxy(headers)) == "duplicate_signature"

    def test_duplicated_header_in_a_dict(self) -> None:
        """Two spellings of the header in a plain dict count as a duplicate."""
        good = sign(BODY, secret=SECRET)
        headers = {"X-Webhook-Signature": good, "x-webhook-signature": good}
        assert _reason(BODY, headers) == "duplicate_signature"

    def test_bytes_header_value(self) -> None:
        """An ASCII bytes header value is read as text."""
        verify(BODY, {"X-Webhook-Signature": sign(BODY, secret=SECRET).encode()}, SECRET)


class TestRotation:
    @pytest.mark.parametrize("signer", [SECRET, OLD_SECRET])
    def test_either_secret_while_rotating(self, signer: str) -> None:
        """With [new, old] active, a body signed with either verifies (S11)."""
        _, headers = signed(BODY, signer)
        verify(BODY, headers, [SECRET, OLD_SECRET])

    def test_header_with_both_signatures(self) -> None:
        """A header carrying both signatures, space- or comma-separated, verifies (S11)."""
        new, old = sign(BODY, secret=SECRET), sign(BODY, secret=OLD_SECRET)
        verify(BODY, {"X-Webhook-Signature": f"{new} {old}"}, [SECRET])
        verify(BODY, {"X-Webhook-Signature": f"{old},{new}"}, [SECRET])
        verify(BODY, {"X-Webhook-Signature": f"{old}, {new}"}, [OLD_SECRET])

    def test_old_secret_removed(self) -> None:
        """Once the old secret is dropped, bodies signed with it are refused (S11)."""
        _, headers = signed(BODY, OLD_SECRET)
        assert _reason(BODY, headers, [SECRET]) == "signature_mismatch"

    def test_secrets_object(self) -> None:
        """A prepared `Secrets` is accepted and reused as is."""
        secrets = Secrets([SECRET, OLD_SECRET])
        verify(BODY, signed(BODY, OLD_SECRET)[1], Secrets(secrets))
        assert len(secrets) == 2


class TestConstantTime:
    def test_compare_digest_for_every_pair(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`hmac.compare_digest` is called on bytes for every secret and candidate (S12)."""
        calls: list[tuple[object, object]] = []
        real = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        new, old = sign(BODY, secret=SECRET), sign(BODY, secret=OLD_SECRET)
        verify(BODY, {"X-Webhook-Signature": f"{new} {old}"}, [SECRET, OLD_SECRET])
        assert len(calls) == 4
        assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)
        calls.clear()
        _reason(BODY, {"X-Webhook-Signature": sign(b"other", secret=SECRET)}, [SECRET, OLD_SECRET])
        assert len(calls) == 2

    def test_no_equality_on_digests(self) -> None:
        """The verifier never compares digests with == (a grep over its source, S12)."""
        source = verify_module.__file__
        with open(source, encoding="utf-8") as handle:  # noqa: PTH123 - plain read
            text = handle.read()
        assert "compare_digest" in text
        for line in text.splitlines():
            if "digest" in line and ("==" in line or "!=" in line):
                assert "len(digest)" in line, line


class TestErrors:
    def test_tree(self) -> None:
        """Both refusals are WebhookErrors (so MakiniErrors) and neither is the other."""
        for cls in (WebhookVerificationError, WebhookPayloadError):
            assert issubclass(cls, WebhookError)
            assert issubclass(cls, MakiniError)
        assert not issubclass(WebhookPayloadError, WebhookVerificationError)
        assert not issubclass(WebhookVerificationError, WebhookPayloadError)
        assert WebhookVerificationError.status == 401
        assert WebhookPayloadError.status == 400

    def test_catching_verification_errors_leaves_payload_errors_alone(self) -> None:
        """``except WebhookVerificationError`` around verify and parse lets a 400 through."""
        raw = b'{"id": "evt_1"}'  # signed, but it names no event
        headers = {"X-Webhook-Signature": sign(raw, secret=SECRET)}

        def receive() -> None:
            try:
                verify(raw, headers, SECRET)
                parse(raw)
            except WebhookVerificationError:
                pytest.fail("a payload error was caught as a verification error")

        with pytest.raises(WebhookPayloadError) as caught:
            receive()
        assert caught.value.status == 400
        with pytest.raises(WebhookError) as unsigned:
            verify(raw, {}, SECRET)
        assert type(unsigned.value) is WebhookVerificationError
        assert unsigned.value.status == 401

    def test_payload_errors_pickle_with_their_paths(self) -> None:
        """A payload error survives pickling with its class, reason and paths."""
        error = WebhookPayloadError("bad", reason="malformed_payload", paths=("$.created_at",))
        clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
        assert type(clone) is WebhookPayloadError
        assert (clone.reason, clone.paths, clone.status) == ("malformed_payload", error.paths, 400)

    def test_no_secret_anywhere(self) -> None:
        """Secrets never appear in error texts, reprs or pickles."""
        _, headers = signed(BODY, "whsec_other")
        with pytest.raises(WebhookVerificationError) as caught:
            verify(BODY, headers, [SECRET, OLD_SECRET])
        error = caught.value
        for text in (str(error), repr(error), repr(Secrets([SECRET, OLD_SECRET]))):
            assert SECRET not in text
            assert OLD_SECRET not in text
        assert pickle.loads(pickle.dumps(error)).reason == error.reason  # noqa: S301 - our own

    @pytest.mark.parametrize(
        ("secrets", "error"),
        [
            ([], ValueError),
            ("", ValueError),
            ([SECRET, "  "], ValueError),
            ([SECRET] * 17, ValueError),
            ([SECRET, 7], TypeError),
            (None, TypeError),
        ],
    )
    def test_bad_secrets_fail_at_once(self, secrets: object, error: type[Exception]) -> None:
        """Empty, missing or mistyped secrets are refused before anything is checked."""
        with pytest.raises(error):
            Secrets(secrets)  # type: ignore[arg-type]
