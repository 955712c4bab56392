"""What a successful call returns: `APIResponse`, and the `RateLimit` read from its headers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

    from ._types import JSON

__all__ = ["APIResponse", "RateLimit", "int_header", "rate_limit_of"]

# Twenty digits hold every 64-bit value; longer is garbage (and int() of huge strings is slow).
_INT_HEADER_MAX: Final = 20


@attrs.frozen
class RateLimit:
    """The rate-limit headers of a response (each None when the server did not send it).

    Attributes:
        limit: ``X-RateLimit-Limit``: requests allowed per window.
        remaining: ``X-RateLimit-Remaining``: requests left in this window.
        reset: ``X-RateLimit-Reset``: when the window resets.

    .. versionadded:: 0.1.0
    """

    limit: int | None
    remaining: int | None
    reset: datetime | None


def int_header(headers: Mapping[str, str], name: str) -> int | None:
    """A header holding a non-negative decimal integer, or None when absent or malformed.

    The value is ``1*DIGIT`` (ASCII digits, at most 20). A header sent more than once, or as a
    comma-separated list (RFC 9110 section 5.3 lets an intermediary join repeated lines), is
    taken only when every value is the same number: anything else is ambiguous, and ignored.
    """
    getall = getattr(headers, "getall", None)
    lines: list[str] = getall(name, []) if getall is not None else []
    if getall is None and name in headers:
        lines = [headers[name]]
    if not lines:
        return None
    values = {part.strip() for line in lines for part in line.split(",")}
    if len(values) != 1:
        return None
    value = values.pop()
    if not (value.isascii() and value.isdigit() and len(value) <= _INT_HEADER_MAX):
        return None
    return int(value)


def rate_limit_of(headers: Mapping[str, str]) -> RateLimit | None:
    """The ``X-RateLimit-*`` headers, or None when the server sent none of them."""
    limit = int_header(headers, "X-RateLimit-Limit")
    remaining = int_header(headers, "X-RateLimit-Remaining")
    reset_epoch = int_header(headers, "X-RateLimit-Reset")
    if limit is None and remaining is None and reset_epoch is None:
        return None
    reset = None
    if reset_epoch is not None:
        try:
            reset = datetime.fromtimestamp(reset_epoch, UTC)
        except (OverflowError, OSError, ValueError):
            reset = None
    return RateLimit(limit=limit, remaining=remaining, reset=reset)


class APIResponse:
    """A successful response.

    Attributes:
        status: The HTTP status (2xx).
        headers: The response headers (case-insensitive).
        request_id: The ``X-Request-Id`` header, or None.
        data: The decoded JSON body (None for an empty body).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("data", "headers", "request_id", "status")

    def __init__(
        self, status: int, headers: CIMultiDictProxy[str], request_id: str | None, data: JSON
    ) -> None:
        self.status = status
        self.headers: Mapping[str, str] = headers
        self.request_id = request_id
        self.data = data

    @property
    def rate_limit(self) -> RateLimit | None:
        """The ``X-RateLimit-*`` headers, or None when the server sent none of them."""
        return rate_limit_of(self.headers)

    def __repr__(self) -> str:
        return f"<APIResponse {self.status} request_id={self.request_id!r}>"
