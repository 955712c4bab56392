"""The sandbox's mutable state: connections, tokens, faults, the request log, webhooks."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import secrets
from typing import Final, Literal
from urllib.parse import parse_qsl

import attrs

from makini_async.sandbox._data import DataSet

__all__ = [
    "ConnectionState",
    "Delivery",
    "Fault",
    "FaultKind",
    "FormPart",
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


@attrs.frozen
class FormPart:
    """One part of a ``multipart/form-data`` request body, without its content.

    Attributes:
        name: The part's form field name (``None`` if its ``Content-Disposition`` has none).
        filename: The file name of a file part, as sent; ``None`` for a plain field.
        content_type: The part's own ``Content-Type``, or ``None`` if it sent none.
        size: The length of the part's content in bytes.
        value: A text field's value (a part without a file name, of at most 64 KiB), decoded
            in the part's charset; None for files.

    .. versionadded:: 0.1.0
    """

    name: str | None
    filename: str | None
    content_type: str | None
    size: int
    value: str | None = None


@attrs.define
class RequestRecord:
    """One request as the sandbox received it, for tests to assert on.

    ``repr()`` shows neither the body nor credentials: ``Authorization``, ``Cookie`` and
    ``Proxy-Authorization`` are stored as ``[redacted]``, and the body, which carries client
    secrets on ``/link/token``, is left out. Read it through the attributes instead.

    Attributes:
        request_id: The ``X-Request-Id`` the sandbox answered with.
        method: The HTTP method, upper-case.
        path: The URL path, without the query string.
        query: The query string's pairs, in order.
        headers: The request headers, credentials redacted.
        connection: The id of the connection the bearer token opens, if any.
        idempotency_key: The ``Idempotency-Key`` header, if sent.
        time: The sandbox time the request arrived at.
        status: The status answered (``None`` while the request is being served).
        fault: The kind of the injected fault that answered it, if any.
        content_type: The body's media type without parameters, lower-case, e.g.
            ``multipart/form-data`` (the full header, boundary included, is in ``headers``);
            ``""`` if the request sent no ``Content-Type``.
        body: The first ``Sandbox(log_body_limit=...)`` bytes of the body (64 KiB by default),
            as the handlers read it, i.e. after any ``Content-Encoding`` is undone; ``b""``
            for a request without a body.
        body_size: The body's full length in bytes, or ``None`` if it was over the sandbox's
            ``max_body``: the sandbox does not read such a body (routes that take one answer 413).
        parts: The parts of a ``multipart/form-data`` body, all of them even when ``body`` was
            cut; empty for other bodies and for a multipart body that does not parse.

    .. versionadded:: 0.1.0
    """

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
    content_type: str = ""
    body: bytes = attrs.field(default=b"", repr=False)
    body_size: int | None = 0
    parts: tuple[FormPart, ...] = ()

    @property
    def body_truncated(self) -> bool:
        """Whether ``body`` holds less than the client sent (cut at the cap, or over max_body)."""
        return self.body_size is None or len(self.body) < self.body_size

    def json(self) -> object:
        """Decode the body as JSON, whatever its ``Content-Type`` says.

        Returns:
            The decoded value, e.g. the ``dict`` of a create.

        Raises:
            ValueError: The request had no body, the body was cut (see ``body_truncated``), or it
                is not JSON.
        """
        self._check_whole()
        if not self.body:
            raise ValueError(f"{self.method} {self.path} sent no body, so there is no JSON.")
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"The body of {self.method} {self.path} is not JSON: {exc}.") from None

    def form(self) -> list[tuple[str, str]]:
        """Decode an ``application/x-www-form-urlencoded`` body into its fields.

        Returns:
            The ``(name, value)`` pairs in the order sent (the shape of ``query``); use
            ``dict(record.form())`` when no name repeats. Empty for an empty body.

        Raises:
            ValueError: The body is another media type (a multipart form's fields are in
                ``parts``), was cut, or is not UTF-8.
        """
        if self.content_type != "application/x-www-form-urlencoded":
            raise ValueError(
                f"The body of {self.method} {self.path} is {self.content_type or 'untyped'}, "
                "not application/x-www-form-urlencoded."
            )
        self._check_whole()
        try:
            text = self.body.decode()
        except UnicodeDecodeError:
            raise ValueError(f"The form of {self.method} {self.path} is not UTF-8.") from None
        return parse_qsl(text, keep_blank_values=True)

    def _check_whole(self) -> None:
        if self.body_truncated:
            size = "more than max_body" if self.body_size is None else f"{self.body_size}"
            raise ValueError(
                f"The body of {self.method} {self.path} was cut at {len(self.body)} of {size} "
                "bytes; raise the sandbox's log_body_limit to decode it."
            )


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
