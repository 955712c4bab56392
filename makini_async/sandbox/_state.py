"""The sandbox's mutable state: connections, tokens, faults, the request log, webhooks."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import secrets
from typing import Final, Literal

import attrs

from makini_async.sandbox._data import DataSet

__all__ = [
    "ConnectionState",
    "Delivery",
    "Fault",
    "FaultKind",
    "RequestRecord",
    "Token",
    "WebhookEndpoint",
    "make_token",
]

FaultKind = Literal["status", "latency", "drop", "reset", "truncate", "malformed", "html"]
FAULT_KINDS: Final[frozenset[str]] = frozenset(
    {"status", "latency", "drop", "reset", "truncate", "malformed", "html"}
)
ACCESS_TTL: Final = 30 * 86400
REFRESH_TTL: Final = 31 * 86400
CONNECTION_STATUSES: Final = frozenset(
    {"pending", "synchronizing", "in_progress", "active", "inactive"}
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_token(subject: str, kind: str, expires_at: float, signing_key: bytes) -> str:
    """Return an opaque token that looks like a JWT (header.payload.signature).

    The sandbox never decodes it: tokens are looked up in a table, as Makini's are opaque to
    clients.
    """
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    claims = {"sub": subject, "typ": kind, "exp": int(expires_at), "jti": secrets.token_hex(8)}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


@attrs.define
class Token:
    """An issued token: what it opens and whether it still does."""

    value: str = attrs.field(repr=False)
    kind: Literal["access", "refresh", "admin", "admin_refresh"]
    connection_id: str | None
    expires_at: float
    revoked: bool = False
    partner: str = attrs.field(default="", repr=False)


@attrs.define
class ConnectionState:
    """One customer connection as the sandbox sees it.

    Attributes are the knobs tests turn: ``v4`` (standard fields on records), ``read_only``
    (writes succeed without change), ``rate_limit`` per ``rate_window`` seconds, ``latency``
    (seconds added to every answer), ``status`` and the auth flags.
    """

    id: str
    index: int
    provider: str
    data: DataSet
    name: str = ""
    email: str = ""
    status: str = "active"
    v4: bool = False
    read_only: bool = False
    rate_limit: int = 600
    rate_window: float = 60.0
    latency: float = 0.0
    credentials_changed: bool = False
    disconnected: bool = False
    access_token: str = attrs.field(default="", repr=False)
    refresh_token: str = attrs.field(default="", repr=False)
    created_at: float = 0.0
    sync_status: str = "done"
    sync_updated_at: float = 0.0
    sync_error: dict[str, str] | None = None
    next_sync_failure: dict[str, str] | None = None
    metadata: list[dict[str, object]] = attrs.Factory(list)
    window_start: float = 0.0
    window_count: int = 0
    idempotency: dict[str, tuple[str, float, int, bytes]] = attrs.Factory(dict)
    unsupported: set[str] = attrs.Factory(set)
    custom_fields: dict[str, dict[str, object]] = attrs.Factory(dict)


@attrs.define
class Fault:
    """A misbehaviour armed for the next ``remaining`` matching requests (``None``: forever).

    A request matches when every given matcher does: ``connection`` (id), ``path`` (exact, or a
    glob such as ``/api/eam/*``) and ``method``.
    """

    id: str
    kind: FaultKind
    remaining: int | None
    connection: str | None = None
    path: str | None = None
    method: str | None = None
    status: int = 503
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    details: dict[str, object] | None = None
    latency: float = 0.0
    hits: int = 0

    def matches(self, connection: str | None, path: str, method: str) -> bool:
        """Tell whether a request is one this fault is armed for."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.connection is not None and self.connection != connection:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path is None:
            return True
        return self.path == path or fnmatch.fnmatchcase(path, self.path)


@attrs.define
class RequestRecord:
    """One request as the sandbox received it (``Authorization`` redacted)."""

    request_id: str
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    connection: str | None
    idempotency_key: str | None
    time: float
    status: int | None = None
    fault: str | None = None


@attrs.define
class WebhookEndpoint:
    """A receiver registered for one connection's events."""

    id: str
    connection: str
    url: str
    events: tuple[str, ...] = ("*",)
    secret: str = attrs.field(default="", repr=False)

    def wants(self, event: str) -> bool:
        """Tell whether the event filter lets ``event`` through (globs, e.g. ``assets.*``)."""
        return any(fnmatch.fnmatchcase(event, pattern) for pattern in self.events)


@attrs.define
class Delivery:
    """One attempt to deliver one event to one endpoint."""

    event_id: str
    event: str
    endpoint_id: str
    url: str
    attempt: int
    time: float
    status: int | None = None
    error: str | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status is not None and 200 <= self.status < 300  # noqa: PLR2004 - 2xx
