"""The exception tree, and the table that turns an error response into one of its classes.

::

    MakiniError
    ├── TransportError                     no usable response arrived
    │   ├── ConnectError                   the request never left (refused, DNS)
    │   │   └── TLSError                   the TLS handshake failed; never retried
    │   └── RequestTimeoutError            also a builtin TimeoutError
    ├── APIError                           the server answered with an error status
    │   ├── InvalidRequestError            400
    │   │   └── OperationNotSupportedError 405 OPERATION_NOT_SUPPORTED
    │   ├── ValidationError                422, with ``fields``
    │   ├── AuthenticationError            401
    │   │   ├── ReauthorizationRequiredError   the customer must reconnect
    │   │   └── TokenExpiredError
    │   ├── PermissionDeniedError          403
    │   │   └── ConnectionInactiveError
    │   ├── NotFoundError                  404
    │   ├── ConflictError                  409
    │   │   └── IdempotencyConflictError
    │   ├── RateLimitError                 429, with ``retry_after``
    │   ├── ServerError                    5xx
    │   │   ├── UpstreamError              502
    │   │   └── ServiceUnavailableError    503
    │   └── UnexpectedRedirectError        3xx: redirects are never followed
    ├── ResponseDecodeError                a 2xx whose body is not the JSON it should be
    │   └── ResponseTooLargeError
    ├── PaginationError                    a list's page numbers did not advance as asked
    ├── ConnectionNotFoundError            also a KeyError
    ├── ConnectionClosedError              the connection was removed or closed
    │   └── RegistryClosedError
    ├── UsageError                         also a RuntimeError: called in a state that forbids it
    │   └── EventLoopMismatchError         used from a second event loop
    ├── TokenNotFoundError                 also a LookupError: no token pair stored to refresh
    ├── StoreError                         a sync or webhook dedup store cannot be used
    ├── CoordinationError                  the shared Redis that processes coordinate through failed
    └── WebhookError                       a webhook delivery was refused (webhooks)
        ├── WebhookVerificationError       it cannot be trusted: answered 401
        └── WebhookPayloadError            signed, but not a webhook event: answered 400

Every class is importable from ``makini_async``; the store and webhook errors also from
``makini_async.sync`` and ``makini_async.webhooks``. A test holds this drawing against the
classes.

Error bodies are decoded by :func:`error_from_response`, which never raises. A connection whose
token is refused for good raises `ReauthorizationRequiredError` with the code
``REAUTHORIZATION_REQUIRED`` on every call, the one that got the 401 included
(`as_reauthorization_required`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeVar

from ._error_body import read_error_body
from ._redact import one_line, scrub_obj, short_field, snippet

__all__ = [
    "APIError",
    "AuthenticationError",
    "ConflictError",
    "ConnectError",
    "ConnectionClosedError",
    "ConnectionInactiveError",
    "ConnectionNotFoundError",
    "CoordinationError",
    "EventLoopMismatchError",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "MakiniError",
    "NotFoundError",
    "OperationNotSupportedError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReauthorizationRequiredError",
    "RegistryClosedError",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "ServerError",
    "ServiceUnavailableError",
    "StoreError",
    "TLSError",
    "TokenExpiredError",
    "TokenNotFoundError",
    "TransportError",
    "UnexpectedRedirectError",
    "UpstreamError",
    "UsageError",
    "ValidationError",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookVerificationError",
]

#: Longest body text kept on an exception (``APIError.body``).
BODY_SNIPPET_LIMIT: Final = 1024
#: Longest human message kept on an exception.
MESSAGE_LIMIT: Final = 500
#: The code every call on a connection whose token is refused for good carries.
REAUTHORIZATION_REQUIRED: Final = "REAUTHORIZATION_REQUIRED"


class MakiniError(Exception):
    """The root of every error makini_async raises.

    .. versionadded:: 0.1.0
    """


class TransportError(MakiniError):
    """No usable HTTP response arrived: connect failure, timeout, disconnect, protocol garbage.

    Attributes:
        method: The HTTP method of the failed request.
        path: The request path (no query string, never a token).
        may_have_reached_server: False only when the request provably never left
            (connection refused, DNS failure, TLS handshake failure). When True, a write may
            have been applied even though no answer came back.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        may_have_reached_server: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.may_have_reached_server = may_have_reached_server

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method else ""
        return f"{self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, method={self.method!r}, "
            f"path={self.path!r}, may_have_reached_server={self.may_have_reached_server})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_transport_error,
            (type(self), self.message, self.method, self.path, self.may_have_reached_server),
        )


def _rebuild_transport_error(
    cls: type[TransportError], message: str, method: str, path: str, reached: bool
) -> TransportError:
    return cls(message, method=method, path=path, may_have_reached_server=reached)


class ConnectError(TransportError):
    """The connection to the server could not be opened; the request was never sent.

    .. versionadded:: 0.1.0
    """

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(message, method=method, path=path, may_have_reached_server=False)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_connect_error, (type(self), self.message, self.method, self.path))


def _rebuild_connect_error(
    cls: type[ConnectError], message: str, method: str, path: str
) -> ConnectError:
    return cls(message, method=method, path=path)


class RequestTimeoutError(TransportError, TimeoutError):
    """A timeout or the call's deadline expired before a complete response arrived.

    .. versionadded:: 0.1.0
    """


class APIError(MakiniError):
    """The server answered with an error status.

    Attributes:
        status: The HTTP status code.
        code: Makini's machine-readable error code (e.g. ``"RATE_LIMIT_EXCEEDED"``), or None.
            Branch on this, never on ``message``.
        type: Makini's error type (e.g. ``"rate_limit_error"``), or None.
        message: The human-readable message, bounded in length.
        request_id: The request id from the body or the ``X-Request-Id`` header, or None.
        details: The envelope's ``details`` object (empty when absent).
        body: A bounded snippet of the raw body text, for diagnostics.
        retry_after: Seconds the server asked us to wait (``Retry-After``), or None.
        method: The HTTP method of the failed request.
        path: The request path.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        type: str | None = None,  # noqa: A002 - mirrors the envelope's field name
        request_id: str | None = None,
        details: Mapping[str, object] | None = None,
        body: str = "",
        retry_after: float | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.type = type
        self.request_id = request_id
        self.details: Mapping[str, object] = details if details is not None else {}
        self.body = body
        self.retry_after = retry_after
        self.method = method
        self.path = path

    def __str__(self) -> str:
        prefix = f"[{self.request_id}] " if self.request_id else ""
        code = f" {self.code}" if self.code else ""
        where = f" ({self.method} {self.path})" if self.method else ""
        return f"{prefix}{self.status}{code}: {self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        state = {
            "status": self.status,
            "code": self.code,
            "type": self.type,
            "request_id": self.request_id,
            "details": dict(self.details),
            "body": self.body,
            "retry_after": self.retry_after,
            "method": self.method,
            "path": self.path,
        }
        return (_rebuild_api_error, (type(self), self.message, state))


def _rebuild_api_error(cls: type[APIError], message: str, state: dict[str, object]) -> APIError:
    error = cls.__new__(cls)
    APIError.__init__(error, message, status=0)
    error.__dict__.update(state)
    return error


E = TypeVar("E", bound=APIError)


def recast(error: APIError, cls: type[E]) -> E:
    """The same error as another class (e.g. a 401 turned reauthorization-required).

    The copy keeps every field and has the original as its ``__cause__``.
    """
    copy = cls(
        error.message,
        status=error.status,
        code=error.code,
        type=error.type,
        request_id=error.request_id,
        details=error.details,
        body=error.body,
        retry_after=error.retry_after,
        method=error.method,
        path=error.path,
    )
    copy.__cause__ = error
    return copy


def as_reauthorization_required(error: APIError) -> ReauthorizationRequiredError:
    """A refused token's 401 as every later call on its connection will see it.

    The class and the code (``REAUTHORIZATION_REQUIRED``) are those `Channel.check_open`
    raises, without I/O, for the calls that follow; the message, request id and body stay the
    server's, and the server's own error (``TOKEN_EXPIRED``, say) is the ``__cause__``.
    """
    copy = recast(error, ReauthorizationRequiredError)
    copy.code = REAUTHORIZATION_REQUIRED
    return copy


class InvalidRequestError(APIError):
    """400: Makini could not understand the request.

    .. versionadded:: 0.1.0
    """


class OperationNotSupportedError(InvalidRequestError):
    """405 ``OPERATION_NOT_SUPPORTED``: the customer's source system cannot do this write.

    .. versionadded:: 0.1.0
    """


class ValidationError(APIError):
    """422: the request body failed validation.

    Attributes:
        fields: Field name → list of messages, from Makini's ``details.fields``, or from the
            ``errors`` of Laravel, RFC 9457 problem details or JSON:API (a nested field is a
            dotted path, e.g. ``profile.color``).

    .. versionadded:: 0.1.0
    """

    @property
    def fields(self) -> Mapping[str, list[str]]:
        """Field name → messages, as the server sent them (empty when it sent none)."""
        raw = self.details.get("fields")
        if not isinstance(raw, Mapping):
            return {}
        fields: dict[str, list[str]] = {}
        for name, messages in raw.items():
            if isinstance(messages, list):
                fields[str(name)] = [str(m) for m in messages]
            else:
                fields[str(name)] = [str(messages)]
        return fields


class AuthenticationError(APIError):
    """401: the token, or the client credentials of a tokenless call, were refused.

    On a connection, a refused token ends as `ReauthorizationRequiredError` unless the
    reconnect hook supplies one that works; the tokenless channel raises the 401's own class.

    .. versionadded:: 0.1.0
    """


class ReauthorizationRequiredError(AuthenticationError):
    """The connection needs a new token (the customer reconnects) before it works again.

    Raised for a 401 ``REAUTHORIZATION_REQUIRED``, and whenever a connection's token is refused
    for good: a 401 of any code that no reconnect hook could answer with a working token. That
    call and every later one on the connection (without I/O, while its state is
    ``ConnectionState.REAUTHORIZATION_REQUIRED``) carry the code ``REAUTHORIZATION_REQUIRED``;
    the 401 the server sent is the first one's ``__cause__``. ``registry.update_token()``
    makes the connection usable again.

    .. versionadded:: 0.1.0
    """


class TokenExpiredError(AuthenticationError):
    """401 ``TOKEN_EXPIRED``: the token is past its expiry; refreshing it fixes this.

    A connection's reconnect hook hears it (``ReconnectEvent.error``) and may answer with a
    refreshed token; with no hook, or none that works, the call raises
    `ReauthorizationRequiredError`. Calls on the tokenless channel raise it as it is.

    .. versionadded:: 0.1.0
    """


class PermissionDeniedError(APIError):
    """403: the token or the customer's source account lacks the right.

    .. versionadded:: 0.1.0
    """


class ConnectionInactiveError(PermissionDeniedError):
    """403 ``CONNECTION_INACTIVE``: the connection is disabled (e.g. out of credits).

    .. versionadded:: 0.1.0
    """


class NotFoundError(APIError):
    """404: no such record or route.

    .. versionadded:: 0.1.0
    """


class ConflictError(APIError):
    """409: the request conflicts with the server's state.

    .. versionadded:: 0.1.0
    """


class IdempotencyConflictError(ConflictError):
    """409 ``IDEMPOTENCY_CONFLICT``: the idempotency key was used before with another body.

    .. versionadded:: 0.1.0
    """


class RateLimitError(APIError):
    """429: the connection's rate limit is exhausted; ``retry_after`` says for how long.

    .. versionadded:: 0.1.0
    """


class ServerError(APIError):
    """5xx: Makini or the customer's system failed.

    .. versionadded:: 0.1.0
    """


class UpstreamError(ServerError):
    """502: the customer's source system answered with an error (or a proxy failed).

    .. versionadded:: 0.1.0
    """


class ServiceUnavailableError(ServerError):
    """503: the customer's source system is unreachable.

    .. versionadded:: 0.1.0
    """


class UnexpectedRedirectError(APIError):
    """3xx: the server redirected; makini_async never follows redirects with a token.

    .. versionadded:: 0.1.0
    """


class ResponseDecodeError(MakiniError):
    """A successful response's body could not be decoded as the expected JSON.

    Attributes:
        status: The HTTP status of the response.
        request_id: The ``X-Request-Id`` of the response, or None.
        body: A bounded snippet of the raw body text.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        request_id: str | None = None,
        body: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        prefix = f"[{self.request_id}] " if self.request_id else ""
        return f"{prefix}{self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status})"

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_decode_error,
            (type(self), self.message, self.status, self.request_id, self.body),
        )


def _rebuild_decode_error(
    cls: type[ResponseDecodeError], message: str, status: int, request_id: str | None, body: str
) -> ResponseDecodeError:
    return cls(message, status=status, request_id=request_id, body=body)


class ResponseTooLargeError(ResponseDecodeError):
    """The response body passed the registry's ``max_response_size``; it was not kept.

    .. versionadded:: 0.1.0
    """


class ConnectionNotFoundError(MakiniError, KeyError):
    """No connection with this id is registered.

    .. versionadded:: 0.1.0
    """

    def __init__(self, connection_id: str) -> None:
        super().__init__(connection_id)
        self.connection_id = connection_id

    def __str__(self) -> str:
        return f"No connection {self.connection_id!r} is registered; add it with registry.add()."


class ConnectionClosedError(MakiniError):
    """The connection was removed from its registry or closed; it takes no more requests.

    .. versionadded:: 0.1.0
    """


class RegistryClosedError(ConnectionClosedError):
    """The registry has been closed; it cannot be reopened. Create a new one.

    .. versionadded:: 0.1.0
    """


class TLSError(ConnectError):
    """The TLS handshake failed (untrusted certificate, hostname mismatch); never retried.

    .. versionadded:: 0.1.0
    """


class UsageError(MakiniError, RuntimeError):
    """An object was called in a state that forbids the call.

    For example: a registry entered a second time while open, a closed webhook receiver
    started again. Nothing was sent; the fix is in the calling code.

    .. versionadded:: 0.1.0
    """


class EventLoopMismatchError(UsageError):
    """The registry was used from an event loop other than the one its sessions belong to.

    .. versionadded:: 0.1.0
    """


class TokenNotFoundError(MakiniError, LookupError):
    """The token store holds no refreshable pair for the connection (`TokenRefresher`).

    As a reconnect hook, `TokenRefresher` treats it as a customer who must reconnect.

    .. versionadded:: 0.1.0
    """


class PaginationError(MakiniError):
    """The server's page numbers did not advance as asked (a page answered for another page).

    Attributes:
        requested: The page number asked for.
        received: The ``current_page`` the server answered with.

    .. versionadded:: 0.1.0
    """

    def __init__(self, message: str, *, requested: int, received: int) -> None:
        super().__init__(message)
        self.requested = requested
        self.received = received


class StoreError(MakiniError):
    """The store cannot be used: locked by another process, corrupt, unreadable or unwritable.

    .. versionadded:: 0.1.0
    """


class CoordinationError(MakiniError):
    """The shared state that several processes coordinate through (Redis) could not be used.

    Raised by the distributed rate budget, credential source and work queue
    (``makini_async.distributed``) when Redis is unreachable or answers with an error, and the
    component is not configured to carry on without it. The message names the operation, never
    a token or a password from the Redis URL.

    .. versionadded:: 0.1.0
    """


class WebhookError(MakiniError):
    """A webhook delivery was refused; ``status`` is what a receiver answers with.

    Catch this to handle every refusal; catch `WebhookVerificationError` (401: the delivery
    cannot be trusted) or `WebhookPayloadError` (400: signed, but not an event) to tell them
    apart. The message says what was wrong with the delivery and never contains a secret, a
    signature or the body.

    Attributes:
        reason: A short machine-readable reason, e.g. ``"missing_signature"`` or
            ``"invalid_json"``.
        status: The HTTP status a receiver answers with.

    .. versionadded:: 0.1.0
    """

    status: int = 400

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_webhook_error, (type(self), self.message, self.reason))


def _rebuild_webhook_error(cls: type[WebhookError], message: str, reason: str) -> WebhookError:
    return cls(message, reason=reason)


class WebhookVerificationError(WebhookError):
    """A webhook delivery cannot be trusted: its signature is missing, malformed or wrong.

    Answered with 401. Raised by `verify`.

    Attributes:
        reason: ``"missing_signature"``, ``"duplicate_signature"``, ``"malformed_signature"``,
            ``"empty_signature"`` or ``"signature_mismatch"``.

    .. versionadded:: 0.1.0
    """

    status: int = 401


class WebhookPayloadError(WebhookError):
    """A signed delivery is not a webhook event: its body or its ``X-Webhook-Id`` is unusable.

    Answered with 400 (a retry would not help). Raised by `parse`: the body is not JSON, not an
    object, or has mistyped fields; or the ``X-Webhook-Id`` header is repeated, malformed or
    differs from the body's id.

    Attributes:
        paths: Where the payload was wrong, e.g. ``("$.created_at",)`` (may be empty).

    .. versionadded:: 0.1.0
    """

    status: int = 400

    def __init__(
        self, message: str, *, reason: str = "malformed_payload", paths: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, reason=reason)
        self.paths = paths

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_payload_error, (type(self), self.message, self.reason, self.paths))


def _rebuild_payload_error(
    cls: type[WebhookPayloadError], message: str, reason: str, paths: tuple[str, ...]
) -> WebhookPayloadError:
    return cls(message, reason=reason, paths=paths)


# --------------------------------------------------------------------------------------------
# The (status, code) → class table.

_BY_STATUS_AND_CODE: Final[Mapping[tuple[int, str | None], type[APIError]]] = {
    (400, None): InvalidRequestError,
    (401, None): AuthenticationError,
    (401, "REAUTHORIZATION_REQUIRED"): ReauthorizationRequiredError,
    (401, "TOKEN_EXPIRED"): TokenExpiredError,
    (403, None): PermissionDeniedError,
    (403, "CONNECTION_INACTIVE"): ConnectionInactiveError,
    (404, None): NotFoundError,
    (405, "OPERATION_NOT_SUPPORTED"): OperationNotSupportedError,
    (409, None): ConflictError,
    (409, "IDEMPOTENCY_CONFLICT"): IdempotencyConflictError,
    (422, None): ValidationError,
    (429, None): RateLimitError,
    (500, None): ServerError,
    (502, None): UpstreamError,
    (503, None): ServiceUnavailableError,
}


def error_class_for(status: int, code: str | None) -> type[APIError]:
    """Pick the most specific class for a status and an error code.

    An unknown code falls back to the status's class; an unknown 5xx to `ServerError`, a 3xx to
    `UnexpectedRedirectError`, and any other unknown status to `APIError`.
    """
    cls = _BY_STATUS_AND_CODE.get((status, code)) or _BY_STATUS_AND_CODE.get((status, None))
    if cls is not None:
        return cls
    if 500 <= status <= 599:  # noqa: PLR2004 - the 5xx range
        return ServerError
    if 300 <= status <= 399:  # noqa: PLR2004 - the 3xx range
        return UnexpectedRedirectError
    return APIError


def error_from_response(
    status: int,
    body: bytes,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    method: str = "",
    path: str = "",
    secrets: tuple[str, ...] = (),
) -> APIError:
    """Decode an error response into the right `APIError` subclass. Never raises.

    The class comes from the status and the code (`error_class_for`); the fields from whatever
    shape the body has (see `makini_async._error_body`: Makini's envelope, RFC 9457 problem
    details, Laravel, OAuth 2.0, bare messages, text, HTML, empty). Each of ``secrets`` found
    in the body is redacted from every field kept; messages lose their control characters, and
    request ids, codes and types that are not printable are dropped. The body's request id wins
    over the header's.
    """
    said = read_error_body(body)
    code = short_field(said.code, secrets)
    if 300 <= status <= 399:  # noqa: PLR2004 - the 3xx range
        # A redirect's body is no error envelope: whatever it holds, it names no error.
        message = f"The server answered {status} (a redirect); makini_async never follows redirects"
        code = None
    else:
        message = one_line(said.message or "", secrets, MESSAGE_LIMIT)
        message = message or f"HTTP {status} with no error message"
    details = said.details
    if secrets and details:
        details = scrub_obj(details, secrets)  # type: ignore[assignment] # same shape back
    return error_class_for(status, code)(
        message,
        status=status,
        code=code,
        type=short_field(said.type, secrets),
        request_id=short_field(said.request_id, secrets) or short_field(request_id, secrets),
        details=details,
        body=snippet(body, secrets, BODY_SNIPPET_LIMIT),
        retry_after=retry_after,
        method=method,
        path=path,
    )
