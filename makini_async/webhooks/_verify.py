"""Webhook signatures: `verify` a delivery, and `sign` one for tests.

Makini signs the raw request body: ``X-Webhook-Signature: base64(HMAC-SHA256(secret, body))``.
There is no timestamp in the scheme, so replays are stopped by deduplicating on the event id
(see `MemoryDedupStore`), never by a freshness window.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Final, Self

from multidict import CIMultiDict, CIMultiDictProxy

from makini_async._errors import WebhookError, WebhookVerificationError

__all__ = [
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "Secrets",
    "sign",
    "verify",
]

#: The header carrying the signature.
SIGNATURE_HEADER: Final = "X-Webhook-Signature"
#: The header carrying the event id (equal to the body's ``id``).
ID_HEADER: Final = "X-Webhook-Id"

_DIGEST_SIZE: Final = hashlib.sha256().digest_size
# base64 of 32 bytes is 44 characters; a few signatures (rotation) fit well below this.
_MAX_SIGNATURE_HEADER: Final = 512
_MAX_SIGNATURES: Final = 8
_MAX_SECRETS: Final = 16


class Secrets:
    """The active signing secrets, kept as bytes and never shown in a repr.

    Args:
        secrets: One secret, or several while rotating (``[new, old]``); str or bytes.

    Raises:
        TypeError: A secret is neither str nor bytes.
        ValueError: No secret, an empty secret, or more than 16.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_keys",)

    def __new__(cls, secrets: str | bytes | Iterable[str | bytes] | Secrets) -> Self:
        # Secrets are immutable: wrapping a `Secrets` hands back the very same object.
        if isinstance(secrets, cls):
            return secrets
        return super().__new__(cls)

    def __init__(self, secrets: str | bytes | Iterable[str | bytes] | Secrets) -> None:
        if isinstance(secrets, Secrets):
            return  # __new__ handed back this very object, already built
        items: Iterable[object] = (
            (secrets,) if isinstance(secrets, str | bytes | bytearray) else secrets
        )
        keys: list[bytes] = []
        for item in items:
            if isinstance(item, str):
                key = item.encode("utf-8")
            elif isinstance(item, bytes | bytearray):
                key = bytes(item)
            else:
                raise TypeError(f"A webhook secret must be str or bytes, not {type(item).__name__}")
            if not key.strip():
                raise ValueError("A webhook secret must not be empty.")
            keys.append(key)
        if not keys:
            raise ValueError("Give at least one webhook secret.")
        if len(keys) > _MAX_SECRETS:
            raise ValueError(f"Give at most {_MAX_SECRETS} webhook secrets at once.")
        self._keys = tuple(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def digests(self, raw_body: bytes) -> list[bytes]:
        """The expected HMAC-SHA256 digest of ``raw_body`` under each secret.

        Args:
            raw_body: The raw request body.

        Returns:
            One 32-byte digest per secret, in order.

        .. versionadded:: 0.1.0
        """
        return [hmac.new(key, raw_body, hashlib.sha256).digest() for key in self._keys]

    def __repr__(self) -> str:
        return f"<Secrets: {len(self._keys)} active>"


def sign(raw_body: bytes | bytearray | memoryview, *, secret: str | bytes) -> str:
    """Compute the ``X-Webhook-Signature`` value Makini sends for ``raw_body``.

    Meant for your own tests: sign a body, post it to your receiver, see it accepted.

    Args:
        raw_body: The exact bytes that will be sent.
        secret: The endpoint's signing secret.

    Returns:
        base64(HMAC-SHA256(secret, raw_body)), as ASCII text.

    Raises:
        TypeError: ``raw_body`` is not bytes, or the secret is neither str nor bytes.
        ValueError: The secret is empty.

    .. versionadded:: 0.1.0
    """
    body = _body_bytes(raw_body)
    (digest,) = Secrets(secret).digests(body)
    return base64.b64encode(digest).decode("ascii")


def _body_bytes(raw_body: object) -> bytes:
    if isinstance(raw_body, bytes):
        return raw_body
    if isinstance(raw_body, bytearray | memoryview):
        return bytes(raw_body)
    raise TypeError(
        f"raw_body must be the raw request bytes, not {type(raw_body).__name__}; "
        "never verify re-serialised JSON."
    )


def header_values(headers: Mapping[str, str] | Mapping[str, object], name: str) -> list[object]:
    """Every value of header ``name`` (case-insensitive), duplicates included.

    Works on plain dicts and on multidicts (aiohttp's ``request.headers``), whose ``items()``
    yields every occurrence of a repeated header.
    """
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return list(headers.getall(name, ()))  # aiohttp's request.headers: one C lookup
    wanted = name.lower()
    values: list[object] = []
    items: Iterable[tuple[object, object]] = headers.items()
    for key, value in items:
        if isinstance(key, str) and key.lower() == wanted:
            values.append(value)
    return values


def single_header(
    headers: Mapping[str, str] | Mapping[str, object],
    name: str,
    *,
    error: type[WebhookError] = WebhookVerificationError,
) -> str | None:
    """The one value of header ``name``, or None when absent.

    Raises:
        WebhookError: ``error``: the header is repeated, not text, or not printable ASCII.
    """
    values = header_values(headers, name)
    if not values:
        return None
    slug = name.lower().removeprefix("x-webhook-")
    if len(values) > 1:
        raise error(
            f"The {name} header appears {len(values)} times; send it once.",
            reason=f"duplicate_{slug}",
        )
    value = values[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            value = None
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        raise error(f"The {name} header is not printable ASCII.", reason=f"malformed_{slug}")
    return value


def _candidates(header: str) -> list[bytes]:
    """Decode the signature header into candidate digests (several during a rotation)."""
    if len(header) > _MAX_SIGNATURE_HEADER:
        raise WebhookVerificationError(
            f"The {SIGNATURE_HEADER} header is too long.", reason="malformed_signature"
        )
    parts = header.replace(",", " ").split()
    if not parts:
        raise WebhookVerificationError(
            f"The {SIGNATURE_HEADER} header is empty.", reason="empty_signature"
        )
    if len(parts) > _MAX_SIGNATURES:
        raise WebhookVerificationError(
            f"The {SIGNATURE_HEADER} header carries too many signatures.",
            reason="malformed_signature",
        )
    digests: list[bytes] = []
    for part in parts:
        try:
            digest = base64.b64decode(part.encode("ascii"), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookVerificationError(
                f"The {SIGNATURE_HEADER} header is not valid base64.",
                reason="malformed_signature",
            ) from None
        if len(digest) != _DIGEST_SIZE:
            raise WebhookVerificationError(
                f"The {SIGNATURE_HEADER} header does not hold a {_DIGEST_SIZE}-byte "
                "HMAC-SHA256 digest.",
                reason="malformed_signature",
            )
        digests.append(digest)
    return digests


def verify(
    raw_body: bytes | bytearray | memoryview,
    headers: Mapping[str, str] | Mapping[str, object],
    secrets: str | bytes | Iterable[str | bytes] | Secrets,
) -> None:
    """Check that ``raw_body`` was signed by Makini with one of ``secrets``.

    The signature is recomputed over the raw bytes as received and compared with
    `hmac.compare_digest`, on bytes, against every active secret (pass ``[new, old]`` while
    rotating). The header may carry several space- or comma-separated signatures; any match
    is enough.

    Args:
        raw_body: The request body exactly as received (never re-serialised JSON).
        headers: The request headers: aiohttp's ``request.headers`` or any mapping (a
            repeated header in a multidict is refused).
        secrets: The endpoint's signing secret(s).

    Raises:
        WebhookVerificationError: The signature header is missing, repeated, empty, not ASCII,
            not base64, of the wrong length, or matches no secret.
        TypeError: ``raw_body`` is not bytes, or a secret is neither str nor bytes.
        ValueError: No secret or an empty secret.

    .. versionadded:: 0.1.0
    """
    body = _body_bytes(raw_body)
    keys = Secrets(secrets)
    header = single_header(headers, SIGNATURE_HEADER)
    if header is None:
        raise WebhookVerificationError(
            f"The {SIGNATURE_HEADER} header is missing.", reason="missing_signature"
        )
    candidates = _candidates(header)
    matched = False
    # Every candidate is compared with every expected digest: no early exit, so the time
    # taken does not depend on which secret matched.
    for expected in keys.digests(body):
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError(
            f"The {SIGNATURE_HEADER} header matches none of the active secrets.",
            reason="signature_mismatch",
        )
