"""makini_async: the asyncio client for the Makini unified API."""

from __future__ import annotations

from ._admin import AdminClient, IssuedToken
from ._bodies import Upload
from ._budget import LocalRateBudget, Pause, RateBudget, RateSignal
from ._channel import ConnectionState, ReconnectEvent, StateChange
from ._connection import Connection, TokenlessChannel
from ._credentials import Credential, CredentialSource, MemoryCredentials
from ._errors import (
    APIError,
    AuthenticationError,
    ConflictError,
    ConnectError,
    ConnectionClosedError,
    ConnectionInactiveError,
    ConnectionNotFoundError,
    CoordinationError,
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
    TokenNotFoundError,
    TransportError,
    UnexpectedRedirectError,
    UpstreamError,
    UsageError,
    ValidationError,
    WebhookError,
    WebhookPayloadError,
    WebhookVerificationError,
)
from ._fanout import FanOut, Outcome, OutcomeStatus
from ._instrument import (
    AttemptSent,
    CallEnded,
    CallObserver,
    CallStarted,
    GateWait,
    Instrument,
    ReconnectFired,
    ResponseReceived,
    RetryScheduled,
)
from ._pagination import Listing, Page, PageMeta
from ._registry import ConnectionRegistry
from ._response import APIResponse, RateLimit
from ._retry import RetryPolicy
from ._tokens import LinkClient, MemoryTokenStore, TokenPair, TokenRefresher, TokenStore
from ._transport import Timeouts
from ._types import Clock, SystemClock
from .resources import Filter, FilterOp

__all__ = [
    "APIError",
    "APIResponse",
    "AdminClient",
    "AttemptSent",
    "AuthenticationError",
    "CallEnded",
    "CallObserver",
    "CallStarted",
    "Clock",
    "ConflictError",
    "ConnectError",
    "Connection",
    "ConnectionClosedError",
    "ConnectionInactiveError",
    "ConnectionNotFoundError",
    "ConnectionRegistry",
    "ConnectionState",
    "CoordinationError",
    "Credential",
    "CredentialSource",
    "EventLoopMismatchError",
    "FanOut",
    "Filter",
    "FilterOp",
    "GateWait",
    "IdempotencyConflictError",
    "Instrument",
    "InvalidRequestError",
    "IssuedToken",
    "LinkClient",
    "Listing",
    "LocalRateBudget",
    "MakiniError",
    "MemoryCredentials",
    "MemoryTokenStore",
    "NotFoundError",
    "OperationNotSupportedError",
    "Outcome",
    "OutcomeStatus",
    "Page",
    "PageMeta",
    "PaginationError",
    "Pause",
    "PermissionDeniedError",
    "RateBudget",
    "RateLimit",
    "RateLimitError",
    "RateSignal",
    "ReauthorizationRequiredError",
    "ReconnectEvent",
    "ReconnectFired",
    "RegistryClosedError",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "ResponseReceived",
    "ResponseTooLargeError",
    "RetryPolicy",
    "RetryScheduled",
    "ServerError",
    "ServiceUnavailableError",
    "StateChange",
    "StoreError",
    "SystemClock",
    "TLSError",
    "Timeouts",
    "TokenExpiredError",
    "TokenNotFoundError",
    "TokenPair",
    "TokenRefresher",
    "TokenStore",
    "TokenlessChannel",
    "TransportError",
    "UnexpectedRedirectError",
    "Upload",
    "UpstreamError",
    "UsageError",
    "ValidationError",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookVerificationError",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 - only paid when asked for

        return version("makini-async")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
