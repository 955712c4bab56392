"""The contract's error envelope and the table of codes the sandbox answers with."""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable, Mapping
from typing import Final

from makini_async._optional import optional

__all__ = ["ERRORS", "SandboxError", "code_for_status", "dumps", "envelope", "new_request_id"]


def _stdlib_dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _first_dumps(value: object) -> bytes:
    """Pick the encoder at the first body: orjson (faster) when installed."""
    module = optional("orjson")
    _dumps[0] = _stdlib_dumps if module is None else module.dumps
    return _dumps[0](value)


_dumps: list[Callable[[object], bytes]] = [_first_dumps]


def dumps(value: object) -> bytes:
    """Encode a value as compact JSON bytes."""
    return bytes(_dumps[0](value))


#: code → (HTTP status, error type, default message), as in the contract's §3 table.
ERRORS: Final[dict[str, tuple[int, str, str]]] = {
    "INVALID_REQUEST": (400, "invalid_request_error", "The request is malformed."),
    "VALIDATION_ERROR": (422, "invalid_request_error", "The given data was invalid."),
    "AUTHENTICATION_FAILED": (401, "authentication_error", "The token is unknown or revoked."),
    "TOKEN_EXPIRED": (401, "authentication_error", "The token has expired."),
    "REAUTHORIZATION_REQUIRED": (
        401,
        "authentication_error",
        "The customer's system credentials changed: the customer must reconnect.",
    ),
    "PERMISSION_DENIED": (403, "permission_error", "The token may not do this."),
    "CONNECTION_INACTIVE": (403, "permission_error", "The connection is inactive."),
    "NOT_FOUND": (404, "not_found_error", "No such record or route."),
    "OPERATION_NOT_SUPPORTED": (
        405,
        "invalid_request_error",
        "The source system cannot do this operation.",
    ),
    "IDEMPOTENCY_CONFLICT": (
        409,
        "idempotency_error",
        "This Idempotency-Key was already used with another request.",
    ),
    "PAYLOAD_TOO_LARGE": (413, "invalid_request_error", "The request body is too large."),
    "UNSUPPORTED_MEDIA_TYPE": (
        415,
        "invalid_request_error",
        "The request body has an unsupported content type.",
    ),
    "RATE_LIMIT_EXCEEDED": (429, "rate_limit_error", "Too many requests for this connection."),
    "INTERNAL_ERROR": (500, "api_error", "Something went wrong on our side."),
    "UPSTREAM_ERROR": (502, "upstream_error", "The customer's system answered with an error."),
    "SYSTEM_UNAVAILABLE": (503, "upstream_error", "The customer's system is unreachable."),
}
_BY_STATUS: Final = {status: code for code, (status, _, _) in reversed(ERRORS.items())}


def code_for_status(status: int) -> str:
    """Pick the contract code for a status (``INTERNAL_ERROR`` family fallbacks for unknowns)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return "INTERNAL_ERROR" if status >= 500 else "INVALID_REQUEST"  # noqa: PLR2004 - 5xx


_ID_PREFIX: Final = secrets.token_hex(6)
_ID_COUNTER: Final = itertools.count(1)


def new_request_id() -> str:
    """Return a fresh request id such as ``req_3f2a9c01b7d4000000a1``.

    A random per-process prefix and a counter: unique, and cheaper than random bytes per request.
    """
    return f"req_{_ID_PREFIX}{next(_ID_COUNTER):08x}"


def envelope(
    code: str,
    request_id: str,
    message: str | None = None,
    details: Mapping[str, object] | None = None,
) -> bytes:
    """Encode the contract's error body.

    Args:
        code: An error code (known codes get their type and default message).
        request_id: The id also sent as ``X-Request-Id``.
        message: A human message (default: the code's own).
        details: Extra machine-readable facts (e.g. ``fields`` for validation errors).

    Returns:
        The encoded ``{"error": {...}}`` body.
    """
    _, kind, default = ERRORS.get(code, (500, "api_error", "Error."))
    body = {
        "error": {
            "code": code,
            "type": kind,
            "message": message or default,
            "request_id": request_id,
            "details": dict(details or {}),
        }
    }
    return dumps(body)


class SandboxError(Exception):
    """Raised inside the sandbox to answer with the contract's error envelope.

    It never leaves the sandbox: the HTTP layer turns it into the envelope, which clients see
    as their own ``APIError`` subclasses.

    Args:
        code: The contract code.
        message: A human message (default: the code's own).
        details: Extra machine-readable facts.
        status: The HTTP status (default: the code's own).
        headers: Extra response headers (e.g. ``Retry-After``, ``Allow``).
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        details: Mapping[str, object] | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        known_status, _, default = ERRORS.get(code, (500, "api_error", "Error."))
        super().__init__(message or default)
        self.code = code
        self.message = message or default
        self.details = dict(details or {})
        self.status = status or known_status
        self.headers = dict(headers or {})
