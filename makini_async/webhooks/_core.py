"""The framework-free part of receiving a webhook: header checks, the capped read, the answers.

`WebhookReceiver.receive` turns a delivery (body bytes or an async byte stream, headers, method)
into a `WebhookAnswer`; the adapters (``_aiohttp``, ``_asgi``) only translate their framework's
request into that call and the answer back into their framework's response, so every framework
gives the same answer, byte for byte, to the same delivery.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterable, Iterable, Mapping
from email.message import EmailMessage
from email.parser import HeaderParser
from email.policy import HTTP
from typing import Final, Protocol

import attrs

from ._verify import header_values

__all__ = ["ReceiverStats", "WebhookAnswer"]

#: The header values a receiver is given: aiohttp's ``request.headers``, a ``CIMultiDict``
#: built from an ASGI scope, or any mapping (a repeated header needs a multidict).
Headers = Mapping[str, str] | Mapping[str, object]

DEFAULT_MAX_BODY_SIZE: Final = 1024 * 1024
#: Seconds Makini is told to wait before retrying a delivery answered 503.
RETRY_AFTER: Final = "5"
_JSON: Final = ("Content-Type", "application/json")
# The Content-Type a request without one (or with an unparsable one) is taken to have, as
# aiohttp does; generic HTTP clients also send it for raw bytes. The signature, not the label, is
# what proves a delivery is Makini's JSON.
_OCTET_STREAM: Final = "application/octet-stream"
_UNTYPED: Final = frozenset({_OCTET_STREAM, ""})


@attrs.define
class ReceiverStats:
    """Counters kept by a `WebhookReceiver`.

    Attributes:
        received: Requests that reached the receiver.
        accepted: Events queued for their handlers (answered 200).
        duplicates: Deliveries of an event already accepted (answered 200, not queued).
        rejected: Deliveries refused as invalid (400, 401, 405, 413, 415).
        unavailable: Deliveries refused for now (503: full queue, shutting down, store error).
        handled: Handler runs that returned.
        failed: Handler runs that raised or timed out.
        abandoned: Accepted events that did not finish before shutdown.

    .. versionadded:: 0.1.0
    """

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    unavailable: int = 0
    handled: int = 0
    failed: int = 0
    abandoned: int = 0

    @property
    def handler_runs(self) -> int:
        """How many times a handler was started and ended (``handled + failed``)."""
        return self.handled + self.failed


@attrs.frozen
class WebhookAnswer:
    """What a receiver answers to one delivery, ready for any HTTP framework to send.

    Attributes:
        status: The HTTP status: 200, 400, 401, 405, 413, 415 or 503 (never 500).
        code: ``"accepted"`` or ``"duplicate"`` for a 200, else the refusal's reason, e.g.
            ``"signature_mismatch"``, ``"body_too_large"`` or ``"busy"``.
        headers: Response headers as (name, value) pairs: ``Content-Type``, plus
            ``Retry-After`` on a 503 and ``Allow`` on a 405.
        body: The JSON body: ``{"status": code}`` for a 200, else
            ``{"error": {"code": ..., "message": ...}}``.

    .. versionadded:: 0.1.0
    """

    status: int
    code: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def ok(self) -> bool:
        """True for a 2xx answer: Makini will not send the delivery again."""
        return 200 <= self.status < 300  # noqa: PLR2004 - the 2xx range


# The 200 answers, built once: they are sent for every accepted event.
_OK: Final = {
    code: WebhookAnswer(200, code, (_JSON,), json.dumps({"status": code}).encode())
    for code in ("accepted", "duplicate")
}


def ok(code: str) -> WebhookAnswer:
    """The 200 answer ``{"status": code}`` for ``"accepted"`` or ``"duplicate"``."""
    return _OK[code]


def refusal(status: int, code: str, message: str) -> WebhookAnswer:
    """A 4xx/503 answer with the error envelope; 503 says when to retry, 405 what is allowed."""
    headers: tuple[tuple[str, str], ...] = (_JSON,)
    if status == 503:  # noqa: PLR2004 - the one retry-later status
        headers = (_JSON, ("Retry-After", RETRY_AFTER))
    elif status == 405:  # noqa: PLR2004 - the one status that must name the allowed methods
        headers = (_JSON, ("Allow", "POST"))
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return WebhookAnswer(status, code, headers, body)


def first_header(headers: Headers, name: str) -> str | None:
    """The first value of header ``name`` as text, or None (what aiohttp's ``get`` returns)."""
    for value in header_values(headers, name):
        if isinstance(value, str):
            return value
        if isinstance(value, bytes):
            return value.decode("latin-1")
        return None
    return None


def content_length(headers: Headers) -> int | None:
    """The declared ``Content-Length``, or None when absent or not a plain decimal number.

    HTTP servers refuse a malformed length before the receiver sees the request; a mapping
    handed to `WebhookReceiver.receive` directly gets the benefit of the doubt and the capped
    read still applies.
    """
    raw = first_header(headers, "Content-Length")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


class _DefaultsToOctetStream(EmailMessage):
    """An email message whose malformed Content-Type reads as application/octet-stream."""

    def __init__(self) -> None:
        super().__init__()
        self.set_default_type(_OCTET_STREAM)


@functools.lru_cache(maxsize=64)
def _parse_mimetype(raw: str) -> str:
    # Parsed as an email header (RFC 2047 words decoded, folding undone), as aiohttp.web does for
    # `request.content_type`, so that every adapter agrees with the aiohttp one.
    message = HeaderParser(_DefaultsToOctetStream, policy=HTTP).parsestr(f"Content-Type: {raw}")
    value = str(message.get("content-type", "")).lower()
    mimetype = value.partition(";")[0].strip()
    return mimetype if mimetype.count("/") == 1 else _OCTET_STREAM


def mimetype(headers: Headers) -> str:
    """The lower-case media type of the body (``application/octet-stream`` when not given)."""
    raw = first_header(headers, "Content-Type")
    return _OCTET_STREAM if raw is None else _parse_mimetype(raw)


def is_json_or_untyped(headers: Headers) -> bool:
    """True when the Content-Type names JSON (``application/json``, ``*+json``) or nothing."""
    media = mimetype(headers)
    return media in _UNTYPED or media == "application/json" or media.endswith("+json")


def is_encoded(headers: Headers) -> bool:
    """True when a Content-Encoding other than identity is declared (the body is compressed)."""
    encodings = header_values(headers, "Content-Encoding")
    return any(str(v).strip().lower() not in {"", "identity"} for v in encodings)


def body_refusal(
    headers: Headers, limit: int, *, require_json: bool
) -> tuple[int, str, str] | None:
    """Why the body announced by ``headers`` is refused unread, as (status, code, message)."""
    if is_encoded(headers):
        # The signature covers the bytes as sent, and decompressing first is a bomb risk.
        return 415, "encoded_body", "Compressed bodies are not accepted."
    length = content_length(headers)
    if length is not None and length > limit:
        return 413, "body_too_large", "The body is larger than allowed."
    if require_json and not is_json_or_untyped(headers):
        return 415, "not_json", "The body must be application/json."
    return None


async def read_capped(body: bytes | AsyncIterable[bytes], limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes (the rest is never read).

    Raises:
        Exception: Whatever the stream raises (a peer that hung up, say).
    """
    if isinstance(body, bytes):
        return body if len(body) <= limit else None
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def check_body(body: object) -> bytes | AsyncIterable[bytes]:
    """``body`` as the receiver takes it: bytes, or an async iterable of bytes chunks.

    Raises:
        TypeError: Anything else (a str, a sync iterable, a parsed JSON object).
    """
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, AsyncIterable):
        return body
    raise TypeError(
        "body must be the raw request bytes or an async iterable of bytes chunks, "
        f"not {type(body).__name__}; never pass re-serialised JSON."
    )


def check_headers(headers: object) -> Headers:
    """``headers`` as the receiver takes them: a mapping of header names to values.

    Raises:
        TypeError: Anything else.
    """
    if isinstance(headers, Mapping):
        return headers
    raise TypeError(
        "headers must be a mapping (a multidict when a header may repeat), "
        f"not {type(headers).__name__}"
    )


class Endpoint(Protocol):
    """What a framework adapter needs from a receiver: the delivery call and the lifecycle."""

    async def receive(
        self,
        body: bytes | AsyncIterable[bytes],
        headers: Headers,
        *,
        method: str = "POST",
        remote: str | None = None,
    ) -> WebhookAnswer: ...

    async def start(self) -> None: ...

    async def drain(self, timeout: float | None = None) -> None: ...

    async def aclose(self, timeout: float | None = None) -> None: ...


def header_pairs(answer: WebhookAnswer) -> Iterable[tuple[str, str]]:
    """The answer's headers plus its Content-Length, for adapters that write raw headers."""
    yield from answer.headers
    yield ("Content-Length", str(len(answer.body)))
