"""makini_async: the asyncio client for the Makini unified API."""

from __future__ import annotations

from ._admin import AdminClient, IssuedToken
from ._bodies import Upload
from ._errors import (
    APIError,
    AuthenticationError,
    ConflictError,
    ConnectError,
    ConnectionClosedError,
    ConnectionInactiveError,
    ConnectionNotFoundError,
    EventLoopMismatchError,
    IdempotencyConflictError,
    InvalidRequestError,
    MakiniError,
    NotFoundError,
    OperationNotSupportedError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ReauthorizationRequiredError,
    RegistryClosedError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    ServerError,
    ServiceUnavailableError,
    StoreError,
    TLSError,
    TokenExpiredError,
    TransportError,
    UnexpectedRedirectError,
    UpstreamError,
    ValidationError,
    WebhookPayloadError,
    WebhookVerificationError,
)
from ._fanout import FanOut, Outcome, OutcomeStatus, fan_out
from ._pagination import Listing, Page, PageMeta
from ._registry import Connection, ConnectionRegistry
from ._request import APIResponse, ConnectionState, RateLimit, ReconnectEvent, StateChange
from ._retry import RetryPolicy
from ._tokens import LinkClient, MemoryTokenStore, TokenPair, TokenRefresher, TokenStore
from ._transport import Timeouts
from .resources import Filter, FilterOp

__all__ = [
    "APIError",
    "APIResponse",
    "AdminClient",
    "AuthenticationError",
    "ConflictError",
    "ConnectError",
    "Connection",
    "ConnectionClosedError",
    "ConnectionInactiveError",
    "ConnectionNotFoundError",
    "ConnectionRegistry",
    "ConnectionState",
    "EventLoopMismatchError",
    "FanOut",
    "Filter",
    "FilterOp",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "IssuedToken",
    "LinkClient",
    "Listing",
    "MakiniError",
    "MemoryTokenStore",
    "NotFoundError",
    "OperationNotSupportedError",
    "Outcome",
    "OutcomeStatus",
    "Page",
    "PageMeta",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "ReauthorizationRequiredError",
    "ReconnectEvent",
    "RegistryClosedError",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "StateChange",
    "StoreError",
    "TLSError",
    "Timeouts",
    "TokenExpiredError",
    "TokenPair",
    "TokenRefresher",
    "TokenStore",
    "TransportError",
    "UnexpectedRedirectError",
    "Upload",
    "UpstreamError",
    "ValidationError",
    "WebhookPayloadError",
    "WebhookVerificationError",
    "fan_out",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 - only paid when asked for

        return version("makini-async")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
