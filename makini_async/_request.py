"""The request layer: one call from arguments to a decoded response or a typed error.

For each call it validates the arguments and encodes the body once (before any I/O), waits at
the connection's rate-limit gate, takes a per-connection concurrency slot, sends through the
transport, decodes the body or the error envelope, retries what is safe to retry (with
``backoff``), and on a 401 runs the connection's reconnect hook once per token generation, then
replays the call once. A `TokenlessChannel` takes the same path without a token, and so without
the reconnect step.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from . import _json
from ._bodies import (
    DEFAULT_MAX_UPLOAD_SIZE,
    FORM_CONTENT_TYPE,
    Multipart,
    Upload,
    encode_form,
    multipart,
)
from ._errors import (
    APIError,
    AuthenticationError,
    ConnectionClosedError,
    MakiniError,
    RateLimitError,
    ReauthorizationRequiredError,
    RegistryClosedError,
    RequestTimeoutError,
    ResponseDecodeError,
    ServerError,
    TLSError,
    TransportError,
    error_from_response,
    scrub,
    scrub_bytes,
)
from ._retry import RetryPolicy, parse_retry_after
from ._transport import RawResponse, Timeouts, Transport

if TYPE_CHECKING:
    import aiohttp
    from multidict import CIMultiDictProxy

    from .typing import JSON

__all__ = [
    "APIResponse",
    "Channel",
    "Clock",
    "ConnectionState",
    "RateLimit",
    "ReconnectEvent",
    "ReconnectHook",
    "Requestor",
    "StateChange",
    "StateListener",
    "TokenlessChannel",
]

logger: Final = logging.getLogger("makini_async")

_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
# Methods whose repetition cannot duplicate a side effect (RFC 9110), minus PUT: Makini's PUTs
# change statuses and quantities, so they are treated like POST.
_REPEATABLE: Final = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
_READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_FORBIDDEN_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)
_BAD_PATH: Final = re.compile(r"[\x00-\x20\x7f#\\]")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_HEADER_VALUE: Final = re.compile(r"[\x00\r\n]")
# The longest a herd of waiters is spread over when a rate-limit gate reopens.
_GATE_SPREAD_MAX: Final = 1.0
_HTTP_OK_MAX: Final = 299
# Paths already validated (most programs call a few paths many times).
_CHECKED_PATHS_MAX: Final = 4096
_HTTP_NO_CONTENT: Final = 204
_NO_METADATA: Final[Mapping[str, object]] = MappingProxyType({})


class ConnectionState(enum.Enum):
    """Where a connection stands.

    .. versionadded:: 0.1.0
    """

    #: Requests are sent.
    ACTIVE = "active"
    #: The customer must reconnect; calls fail at once until ``update_token``.
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    #: Removed from its registry (or the registry closed); calls fail at once.
    CLOSED = "closed"


@attrs.frozen
class RateLimit:
    """The rate-limit headers of a response (each None when the server did not send it).

    .. versionadded:: 0.1.0
    """

    limit: int | None
    remaining: int | None
    reset: datetime | None


@attrs.frozen
class StateChange:
    """A connection moved from one `ConnectionState` to another.

    Attributes:
        connection_id: The connection.
        previous: Its state before.
        current: Its state now.
        reason: Why, in a few words (``"token refused"``, ``"new token"``, ``"closed"``...).

    .. versionadded:: 0.1.0
    """

    connection_id: str
    previous: ConnectionState
    current: ConnectionState
    reason: str


StateListener = Callable[[StateChange], object]


@attrs.frozen
class ReconnectEvent:
    """What a reconnect hook is told when a connection's token is refused.

    Attributes:
        connection_id: The connection whose token failed.
        error: The 401: ``TokenExpiredError`` means a refresh will do,
            ``ReauthorizationRequiredError`` that the customer changed their credentials.
        generation: The token generation that failed (starts at 1, +1 per new token).
        metadata: The connection's metadata, as given to ``registry.add``.

    .. versionadded:: 0.1.0
    """

    connection_id: str
    error: AuthenticationError
    generation: int
    metadata: Mapping[str, object]


ReconnectHook = Callable[[ReconnectEvent], Awaitable[str | None]]


class Clock(Protocol):
    """Time as the request layer sees it (a test can substitute a virtual clock)."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def time(self) -> float:
        """The Unix time (for HTTP-dates in ``Retry-After``)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep (rate-limit gate waits only; backoff waits use ``asyncio.sleep``)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """Seconds on ``time.monotonic``."""
        return time.monotonic()

    def time(self) -> float:
        """The Unix time."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)


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
        return _rate_limit(self.headers)

    def __repr__(self) -> str:
        return f"<APIResponse {self.status} request_id={self.request_id!r}>"


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 20):  # noqa: PLR2004 - 64-bit
        return None
    return int(value)


def _rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    limit = _int_header(headers, "X-RateLimit-Limit")
    remaining = _int_header(headers, "X-RateLimit-Remaining")
    reset_epoch = _int_header(headers, "X-RateLimit-Reset")
    if limit is None and remaining is None and reset_epoch is None:
        return None
    reset = None
    if reset_epoch is not None:
        try:
            reset = datetime.fromtimestamp(reset_epoch, UTC)
        except (OverflowError, OSError, ValueError):
            reset = None
    return RateLimit(limit=limit, remaining=remaining, reset=reset)


class _Token:
    """A bearer token whose repr never shows it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<token redacted>"


def check_token(token: object) -> str:
    """Validate a token before it is stored.

    Raises:
        TypeError: Not a string.
        ValueError: Empty, or containing whitespace or control characters.
    """
    if not isinstance(token, str):
        msg = f"a connection token must be a str, not {type(token).__name__}"
        raise TypeError(msg)
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        # The message never echoes the token.
        msg = "a connection token must be non-empty printable ASCII without spaces"
        raise ValueError(msg)
    return token


class _Limiter:
    """A first-come-first-served counting limiter, cheaper than a Semaphore when idle."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] | None = None

    def try_acquire(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        if self._waiters is None:
            self._waiters = deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed to us as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class _Retry(Exception):  # noqa: N818 - a private signal, not an error users see
    """Carries a retryable failure through ``backoff`` (the only exception it retries)."""

    def __init__(self, error: MakiniError, call: _Call) -> None:
        super().__init__()
        self.error = error
        self.call = call


@attrs.define(slots=True, eq=False, repr=False)
class _Call:
    """One logical call's arguments and progress (its repr shows no body and no token)."""

    channel: Channel
    method: str
    path: str
    url: str
    params: list[tuple[str, str]] | None
    body: bytes | None
    headers: dict[str, str] | None
    timeouts: Timeouts | None
    deadline_at: float | None
    repeatable: bool
    generation: int = 0
    attempts: int = 0
    # With a deadline: when the latest attempt started (the call's start, for the first one).
    attempt_started: float = 0.0
    # A multipart body whose files are read (once) when the call starts; then None.
    multipart: Multipart | None = None
    # Strings sent in the body that must never be kept from an error answer (client secrets).
    redact: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<call {self.method} {self.path}>"


class Channel:
    """One connection's request machinery: token generations, session, gate, slots.

    The public face is `makini_async.Connection`; this class holds what the request layer needs.
    """

    __slots__ = (
        "__weakref__",
        "_gate_error",
        "_gate_until",
        "_generation",
        "_limiter",
        "_probation",
        "_reconnect_gen",
        "_reconnect_task",
        "_requestor",
        "_session",
        "_session_gen",
        "_token",
        "id",
        "inflight",
        "metadata",
        "state",
    )

    def __init__(
        self,
        requestor: Requestor,
        connection_id: str,
        token: str | None,
        metadata: Mapping[str, object],
    ) -> None:
        self._requestor = requestor
        self.id = connection_id
        self.metadata = metadata
        self.state = ConnectionState.ACTIVE
        self._token = None if token is None else _Token(token)
        self._generation = 1
        self._probation = 0
        self._session: aiohttp.ClientSession | None = None
        self._session_gen = 0
        self._gate_until = 0.0
        self._gate_error: APIError | None = None
        self._limiter: _Limiter | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._reconnect_gen = 0
        self.inflight = 0

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
        json: object = None,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, Upload] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
        redact: Sequence[str] = (),
    ) -> APIResponse:
        """Send one request with this connection's token (if it has one) and decode the answer.

        Transient failures are retried as the registry's `RetryPolicy` says: connect errors
        always; 429, 502, 503 and 504 for GET/HEAD/OPTIONS/DELETE and for any call with an
        ``idempotency_key``; 500 for reads only. A 401 runs the reconnect hook (once per token
        generation) and replays the call once with the new token. Every attempt and the replay
        send the same body bytes, encoded once: files are read into memory when the call
        starts (see `Upload`), never streamed twice.

        Args:
            method: ``GET``, ``POST``, ``PUT``, ``PATCH``, ``DELETE``, ``HEAD`` or ``OPTIONS``.
            path: The path below the base URL, e.g. ``/api/eam/work-orders``; already quoted.
            params: Query parameters; None values are dropped, sequences repeat the key,
                booleans become ``true``/``false``, aware datetimes ISO-8601 UTC.
            json: A JSON body (encoded once, reused on every attempt).
            form: An ``application/x-www-form-urlencoded`` body of str names and values; with
                ``files``, the text fields of the multipart body instead.
            files: A ``multipart/form-data`` body: field name to `Upload`. The files of one
                call together may hold at most the registry's ``max_upload_size`` bytes.
            headers: Extra headers (``Authorization`` and framing headers are refused).
            timeout: Per-attempt `Timeouts`, or seconds for the whole of each attempt.
            deadline: Seconds for the whole call: every attempt, wait and retry included.
            idempotency_key: Sent as ``Idempotency-Key`` on every attempt; makes a POST or PUT
                safe to retry.
            redact: Secrets the call sends in its body (passwords, client secrets, refresh
                tokens) that must never be kept in an error built from the answer, should the
                server echo them; the connection's own token is always cut out.

        Returns:
            The `APIResponse`, with the decoded JSON in ``data``.

        Raises:
            APIError: The server answered with an error (the subclass tells which).
            TransportError: No usable answer arrived (``may_have_reached_server`` tells
                whether a write may have been applied).
            ResponseDecodeError: A 2xx whose body is not JSON.
            ReauthorizationRequiredError: The customer must reconnect (raised with no I/O
                while the connection is in that state).
            ConnectionClosedError: The connection or its registry is closed.
            TypeError: Bad argument types (before any I/O).
            ValueError: Bad argument values (before any I/O): e.g. ``json`` together with
                ``form`` or ``files``, an unsafe multipart name, or files over
                ``max_upload_size``.

        .. versionadded:: 0.1.0
        """
        return await self._requestor.request(
            self,
            method,
            path,
            params=params,
            json=json,
            form=form,
            files=files,
            headers=headers,
            timeout=timeout,
            deadline=deadline,
            idempotency_key=idempotency_key,
            redact=_check_redact(redact) if redact else (),
        )

    @property
    def generation(self) -> int:
        """The current token generation (1 for the first token, +1 per replacement)."""
        return self._generation

    # -- tokens ------------------------------------------------------------------------------

    def _set_state(self, state: ConnectionState, reason: str) -> None:
        previous = self.state
        if previous is not state:
            self.state = state
            self._requestor.notify(StateChange(self.id, previous, state, reason))

    def set_token(self, token: str, *, probation: bool = False) -> None:
        """Install a new token generation and reactivate the connection."""
        if self.state is ConnectionState.CLOSED:
            raise ConnectionClosedError(f"Connection {self.id!r} is closed.")
        self._token = _Token(token)
        self._generation += 1
        self._probation = self._generation if probation else 0
        self._reconnect_task = None
        self._set_state(ConnectionState.ACTIVE, "new token")

    def _mark_reauthorization_required(self, generation: int) -> None:
        if self._generation == generation and self.state is ConnectionState.ACTIVE:
            self._set_state(ConnectionState.REAUTHORIZATION_REQUIRED, "token refused")
            logger.warning(
                "Connection %s needs the customer to reconnect (token generation %d refused)",
                self.id,
                generation,
            )

    async def reauthorize(
        self, generation: int, error: AuthenticationError, *, replayed_token: bool = True
    ) -> None:
        """After a 401 on ``generation``: make sure a newer token exists, or raise.

        The hook runs once per generation however many calls get here together; they all wait
        for that one run, which is shielded so that cancelling one caller cancels nobody else.

        Raises:
            ReauthorizationRequiredError: No newer token could be had.
        """
        if self.state is ConnectionState.CLOSED:
            raise ConnectionClosedError(f"Connection {self.id!r} is closed.") from error
        if generation != self._generation:
            return  # a newer token is already installed: the caller replays with it
        on_probation = replayed_token and self._probation == generation
        if self.state is ConnectionState.REAUTHORIZATION_REQUIRED or on_probation:
            # The hook's own token was refused too: no ping-pong, the customer must reconnect.
            self._mark_reauthorization_required(generation)
            raise error._copy_as(ReauthorizationRequiredError)  # noqa: SLF001 - same module family
        task = self._reconnect_task
        if task is None or self._reconnect_gen != generation:
            task = asyncio.ensure_future(self._run_hook(generation, error))
            self._reconnect_task = task
            self._reconnect_gen = generation
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # The hook task itself was cancelled (the registry is closing).
            raise ConnectionClosedError(
                f"Connection {self.id!r} closed while it was reconnecting."
            ) from error
        except MakiniError:
            raise error._copy_as(ReauthorizationRequiredError) from error  # noqa: SLF001
        if not self._replaced(generation):
            raise error._copy_as(ReauthorizationRequiredError)  # noqa: SLF001

    def _replaced(self, generation: int) -> bool:
        """True when a newer, usable token than ``generation`` is installed."""
        return self.state is ConnectionState.ACTIVE and self._generation != generation

    async def _run_hook(self, generation: int, error: AuthenticationError) -> None:
        hook = self._requestor.on_reconnect
        if hook is None:
            self._mark_reauthorization_required(generation)
            raise error
        event = ReconnectEvent(
            connection_id=self.id, error=error, generation=generation, metadata=self.metadata
        )
        logger.info(
            "Running the reconnect hook for connection %s (generation %d, %s)",
            self.id,
            generation,
            error.code,
        )
        # Failures are noted inside `except` and raised after it, so that neither the hook's
        # exception nor the token check's (either may quote a credential) is chained.
        token: str | None = None
        failure: str | None = None
        try:
            token = await hook(event)
        except Exception as exc:  # noqa: BLE001 - a user hook may raise anything
            failure = f"raised {type(exc).__name__}"  # only the type: the message may hold secrets
        if failure is None and token is not None:
            try:
                check_token(token)
            except (TypeError, ValueError):
                failure = "returned an invalid token"
        if failure is not None:
            logger.warning("The reconnect hook for connection %s %s", self.id, failure)
        if failure is not None or token is None:
            self._mark_reauthorization_required(generation)
            raise error
        if self._generation == generation and self.state is ConnectionState.ACTIVE:
            self.set_token(token, probation=True)

    async def credentials_changed(self) -> ConnectionState:
        """Treat the current token as refused because the customer's credentials changed.

        For a ``connection.reauthorization_required`` webhook: exactly what a 401
        ``REAUTHORIZATION_REQUIRED`` on the current token does. The reconnect hook runs (once per
        token generation, shared with any 401s arriving meanwhile); without a new token the
        connection becomes ``REAUTHORIZATION_REQUIRED``. No HTTP request is made.

        Returns:
            The connection's state afterwards.

        .. versionadded:: 0.1.0
        """
        if self.state is ConnectionState.ACTIVE:
            error = ReauthorizationRequiredError(
                "The customer's credentials changed; the connection must be reauthorized.",
                status=401,
                code="REAUTHORIZATION_REQUIRED",
                type="authentication_error",
            )
            with contextlib.suppress(ReauthorizationRequiredError):
                await self.reauthorize(self._generation, error, replayed_token=False)
        return self.state

    def reactivate(self) -> None:
        """Let a connection parked as ``REAUTHORIZATION_REQUIRED`` send requests again.

        For a status event saying the connection is healthy again with its current token (with a
        new token, use ``registry.update_token``). A closed connection stays closed.

        .. versionadded:: 0.1.0
        """
        if self.state is ConnectionState.REAUTHORIZATION_REQUIRED:
            self._reconnect_task = None
            self._probation = 0
            self._set_state(ConnectionState.ACTIVE, "reactivated")

    # -- sessions ----------------------------------------------------------------------------

    def _current_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or self._session_gen != self._generation:
            token = self._token
            session = self._requestor.transport.open_session(
                self, None if token is None else token.value
            )
            self._session = session
            self._session_gen = self._generation
        return session

    def _evictable(self) -> bool:
        return self.inflight == 0

    def _take_session(self) -> aiohttp.ClientSession | None:
        session, self._session = self._session, None
        return session

    def close(self) -> None:
        """Mark closed; its session is retired by the transport."""
        self._set_state(ConnectionState.CLOSED, "closed")
        self._requestor.transport.forget(self)
        self._session = None
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and not task.done():
            task.cancel()

    # -- rate-limit gate ---------------------------------------------------------------------

    def close_gate(self, seconds: float, error: APIError | None, now: float) -> None:
        """Hold every request of this connection for ``seconds`` (a 429 or Retry-After)."""
        until = now + seconds
        if until > self._gate_until:
            self._gate_until = until
            self._gate_error = error
            logger.info("Connection %s paused for %.2fs by the server", self.id, seconds)

    def gate_remaining(self, now: float) -> float:
        """Seconds until the gate reopens (0 when open)."""
        return max(0.0, self._gate_until - now)


class TokenlessChannel(Channel):
    """A registry's channel for calls that carry no bearer token, such as ``POST /link/token``.

    Its session sends no ``Authorization`` header. It has a rate-limit gate and concurrency
    slots of its own and gets the registry's retries and timeouts, but it has no token to renew:
    a 401 is raised as its `AuthenticationError` subclass, the reconnect hook never runs, and its
    state stays ``ACTIVE`` (no state listener hears of it): its calls are refused only once the
    registry closes. It is not a registered connection: iterating the registry,
    ``len(registry)`` and ``registry.map`` never see it.
    """

    __slots__ = ()

    def __init__(self, requestor: Requestor) -> None:
        super().__init__(requestor, "<tokenless>", None, _NO_METADATA)

    async def reauthorize(
        self, generation: int, error: AuthenticationError, *, replayed_token: bool = True
    ) -> None:
        """Raise the 401 as it is: there is no token to renew, so nothing is replayed."""
        del generation, replayed_token
        raise error

    def __repr__(self) -> str:
        return "<TokenlessChannel>"


class Requestor:
    """Sends calls for every connection of a registry."""

    def __init__(
        self,
        *,
        base_url: str,
        transport: Transport,
        retry: RetryPolicy,
        on_reconnect: ReconnectHook | None,
        limit_per_connection: int | None,
        clock: Clock | None = None,
        max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.transport = transport
        self.policy = retry
        self.on_reconnect = on_reconnect
        self.limit_per_connection = limit_per_connection
        self.max_upload_size = max_upload_size
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.closing = False
        self.listeners: list[StateListener] = []
        self.inflight_tasks: dict[asyncio.Task[object], int] = {}
        self.drained: asyncio.Event | None = None
        self._checked_paths: dict[str, None] = {}

    def notify(self, change: StateChange) -> None:
        """Tell every listener about a state change; a failing listener is logged and skipped."""
        for listener in tuple(self.listeners):
            try:
                listener(change)
            except Exception:
                logger.warning(
                    "A state listener failed for connection %s", change.connection_id, exc_info=True
                )

    # -- public entry ------------------------------------------------------------------------

    async def request(
        self,
        channel: Channel,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
        json: object = None,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, Upload] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
        redact: tuple[str, ...] = (),
    ) -> APIResponse:
        """Send one call on ``channel``; see `Channel.request`."""
        call = self._prepare(
            channel,
            method,
            path,
            params,
            json,
            form,
            files,
            headers,
            timeout,
            deadline,
            idempotency_key,
        )
        if redact:
            call.redact = tuple(s for s in redact if s)
        self._check_open(channel)
        self.transport.check_loop()
        if self.transport._retired:  # noqa: SLF001 - cheap check before an await
            await self.transport.close_retired()
        task = asyncio.current_task()
        if task is not None:
            self.inflight_tasks[task] = self.inflight_tasks.get(task, 0) + 1
        channel.inflight += 1
        try:
            if call.deadline_at is None:
                return await self._call(call)
            budget = asyncio.timeout(max(0.0, call.deadline_at - self.clock.monotonic()))
            try:
                async with budget:
                    return await self._call(call)
            except TimeoutError:
                if not budget.expired():
                    raise
                raise RequestTimeoutError(
                    f"The call's deadline of {deadline}s passed",
                    method=call.method,
                    path=call.path,
                    may_have_reached_server=call.attempts > 0,
                ) from None
        finally:
            channel.inflight -= 1
            if task is not None:
                left = self.inflight_tasks[task] - 1
                if left:
                    self.inflight_tasks[task] = left
                else:
                    del self.inflight_tasks[task]
                    if self.drained is not None and not self.inflight_tasks:
                        self.drained.set()

    def _check_open(self, channel: Channel) -> None:
        if self.closing:
            raise RegistryClosedError(
                "Cannot send a request, as the registry has been closed; create a new one."
            )
        state = channel.state
        if state is ConnectionState.ACTIVE:
            return
        if state is ConnectionState.CLOSED:
            raise ConnectionClosedError(
                f"Cannot send a request on connection {channel.id!r}: it was removed or closed."
            )
        raise ReauthorizationRequiredError(
            f"Connection {channel.id!r} needs the customer to reconnect; "
            "call registry.update_token() with the new token.",
            status=401,
            code="REAUTHORIZATION_REQUIRED",
        )

    # -- argument checks (no I/O) ------------------------------------------------------------

    def _prepare(  # noqa: C901, PLR0912, PLR0917 - one flat checklist of arguments
        self,
        channel: Channel,
        method: str,
        path: str,
        params: Mapping[str, object] | Iterable[tuple[str, object]] | None,
        json: object,
        form: Mapping[str, str] | None,
        files: Mapping[str, Upload] | None,
        headers: Mapping[str, str] | None,
        timeout: Timeouts | float | None,
        deadline: float | None,
        idempotency_key: str | None,
    ) -> _Call:
        if not isinstance(method, str):
            raise TypeError(f"method must be a str, not {type(method).__name__}")
        verb = method.upper()
        if verb not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(sorted(_METHODS))}, got {method!r}")
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, not {type(path).__name__}")
        if path not in self._checked_paths:
            if not path.startswith("/") or path.startswith("//") or _BAD_PATH.search(path):
                raise ValueError(
                    f"path must start with a single '/' and contain no spaces, control "
                    f"characters, backslashes or '#', got {path!r}"
                )
            if len(self._checked_paths) >= _CHECKED_PATHS_MAX:
                self._checked_paths.clear()
            self._checked_paths[path] = None
        extra: dict[str, str] | None = None
        if headers:
            extra = _check_headers(headers)
        if idempotency_key is not None:
            if not isinstance(idempotency_key, str):
                raise TypeError("idempotency_key must be a str")
            if (
                not idempotency_key
                or len(idempotency_key) > 255  # noqa: PLR2004 - the usual key limit
                or not idempotency_key.isascii()
                or not idempotency_key.isprintable()
            ):
                raise ValueError("idempotency_key must be 1-255 printable ASCII characters")
            extra = {**(extra or {}), "Idempotency-Key": idempotency_key}
        body: bytes | None = None
        upload: Multipart | None = None
        if json is not None:
            if form is not None or files is not None:
                raise ValueError(
                    "Pass a body as json= or as form= (with files= for multipart), not both"
                )
            body = _json.dumps(json)
            extra = {**(extra or {}), "Content-Type": "application/json"}
        elif files is not None:
            upload = multipart(form, files)  # the files are read when the call starts
        elif form is not None:
            body = encode_form(form)
            extra = {**(extra or {}), "Content-Type": FORM_CONTENT_TYPE}
        timeouts = None if timeout is None else self._timeouts(timeout)
        deadline_at = None
        if deadline is not None:
            if not _is_number(deadline):
                raise TypeError("deadline must be a number of seconds, or None")
            if not deadline > 0:
                raise ValueError(f"deadline must be > 0 seconds, got {deadline!r}")
            started = self.clock.monotonic()
            deadline_at = started + deadline
        # Positional: keyword arguments would cost a third of this method on every call.
        call = _Call(
            channel,
            verb,  # method
            path,
            self.base_url + path,  # url
            _check_params(params) if params else None,  # params
            body,
            extra,  # headers
            timeouts,
            deadline_at,
            verb in _REPEATABLE or idempotency_key is not None,  # repeatable
        )
        if upload is not None:
            call.multipart = upload
        if deadline_at is not None:
            call.attempt_started = started
        return call

    def _timeouts(self, timeout: Timeouts | float) -> Timeouts:
        if isinstance(timeout, Timeouts):
            return timeout
        if _is_number(timeout):
            if not timeout > 0:
                raise ValueError(f"timeout must be > 0, got {timeout!r}")
            return attrs.evolve(self.transport.timeouts, total=float(timeout))
        raise TypeError("timeout must be a Timeouts, a number of seconds, or None")

    # -- the call: retries and one replay after a reconnect ------------------------------------

    async def _call(self, call: _Call) -> APIResponse:
        if call.multipart is not None:
            # Read inside the call's deadline and the registry's in-flight count.
            call.body, content_type = await call.multipart.encode(self.max_upload_size)
            call.multipart = None
            call.headers = {**(call.headers or {}), "Content-Type": content_type}
        # The first attempt runs bare: a successful call pays for no retry machinery.
        try:
            return await self._attempt(call)
        except (_Retry, AuthenticationError) as exc:
            failure: _Retry | AuthenticationError = exc
        return await self._recover(call, failure)

    async def _recover(self, call: _Call, failure: _Retry | AuthenticationError) -> APIResponse:
        """Go on after a failed first attempt: retries, then at most one replay after a 401."""
        channel = call.channel
        replayed = False
        error: MakiniError
        while True:
            if isinstance(failure, _Retry):
                try:
                    return await self._retry(call, failure)
                except _Retry as final:
                    error = final.error  # the attempts are spent
                    break
                except AuthenticationError as exc:
                    failure = exc
                    continue
            if replayed:
                # The replacement token was refused too: no ping-pong, the customer must act.
                channel._mark_reauthorization_required(call.generation)  # noqa: SLF001
                error = failure._copy_as(ReauthorizationRequiredError)  # noqa: SLF001
                break
            await channel.reauthorize(call.generation, failure)
            replayed = True
            if call.deadline_at is not None:
                call.attempt_started = self.clock.monotonic()
            try:
                return await self._attempt(call)
            except (_Retry, AuthenticationError) as exc:
                failure = exc
        # Raised outside every `except`, so no other exception is chained as its context.
        raise error

    async def _retry(self, call: _Call, retry: _Retry) -> APIResponse:
        """Further attempts after ``retry``, spaced by the policy's jittered backoff.

        Raises:
            _Retry: The last failure, once the attempts are spent or the next attempt (its wait
                plus as long as the failed one took) would end after the call's deadline.
        """
        policy = self.policy
        waits = policy.waits()
        tries = 1
        while tries < policy.attempts:
            delay = next(waits)
            if call.deadline_at is not None:
                now = self.clock.monotonic()
                hold = max(delay, call.channel.gate_remaining(now))
                # The failed attempt's length is the best guess of the next one's: a retry
                # that would end after the deadline is not started, and the real error is
                # raised instead of a timeout.
                expected = now - call.attempt_started
                if now + hold + expected >= call.deadline_at:
                    logger.info(
                        "Giving up %s %s: the next attempt would end after the deadline",
                        call.method,
                        call.path,
                    )
                    raise retry
                call.attempt_started = now + hold
            logger.info(
                "Retrying %s %s after %s (attempt %d of %d, waiting %.3fs)",
                call.method,
                call.path,
                type(retry.error).__name__,
                tries + 1,
                policy.attempts,
                delay,
            )
            await asyncio.sleep(delay)
            tries += 1
            try:
                return await self._attempt(call)
            except _Retry as again:
                retry = again
        logger.info(
            "Giving up %s %s after %d attempt(s): %s",
            call.method,
            call.path,
            tries,
            type(retry.error).__name__,
        )
        raise retry

    # -- one attempt -------------------------------------------------------------------------

    async def _attempt(self, call: _Call) -> APIResponse:
        channel = call.channel
        if self.closing or channel.state is not ConnectionState.ACTIVE:
            self._check_open(channel)
        limiter = channel._limiter  # noqa: SLF001
        if limiter is None and self.limit_per_connection is not None:
            limiter = channel._limiter = _Limiter(self.limit_per_connection)  # noqa: SLF001
        if limiter is not None and not limiter.try_acquire():
            await self._wait_for_slot(limiter, call)
        try:
            # Checked with the slot held: a 429 that arrived while we queued still stops us.
            if channel._gate_until:  # noqa: SLF001 - the fast path is one float test
                await self._pass_gate(call)
            session = channel._current_session()  # noqa: SLF001
            self.transport.touch(channel)
            call.generation = channel._generation  # noqa: SLF001
            call.attempts += 1
            timeout = self._attempt_timeout(call)
            try:
                raw = await self.transport.send(
                    session,
                    call.method,
                    call.url,
                    params=call.params,
                    body=call.body,
                    headers=call.headers,
                    timeout=timeout,
                    path=call.path,
                )
            except TLSError:
                raise
            except TransportError as error:
                if call.repeatable or not error.may_have_reached_server:
                    raise _Retry(error, call) from error
                raise
        finally:
            if limiter is not None:
                limiter.release()
        if raw.status <= _HTTP_OK_MAX and raw.status >= 200:  # noqa: PLR2004 - 2xx
            return self._success(call, raw)
        raise self._failure(call, raw)

    def _attempt_timeout(self, call: _Call) -> aiohttp.ClientTimeout:
        timeouts = call.timeouts
        if call.deadline_at is None:
            if timeouts is None:
                return self.transport.default_timeout
            return timeouts._client_timeout()  # noqa: SLF001
        remaining = max(0.001, call.deadline_at - self.clock.monotonic())
        return (timeouts or self.transport.timeouts)._client_timeout(remaining)  # noqa: SLF001

    async def _wait_for_slot(self, limiter: _Limiter, call: _Call) -> None:
        if call.deadline_at is None:
            await limiter.acquire()
            return
        budget = asyncio.timeout(max(0.0, call.deadline_at - self.clock.monotonic()))
        try:
            async with budget:
                await limiter.acquire()
        except TimeoutError:
            if not budget.expired():
                raise
            raise RequestTimeoutError(
                "The call's deadline passed while waiting for a free slot on its connection",
                method=call.method,
                path=call.path,
                may_have_reached_server=call.attempts > 0,
            ) from None

    async def _pass_gate(self, call: _Call) -> None:
        """Wait while the connection is paused by a 429/Retry-After, or give up typed."""
        channel = call.channel
        clock = self.clock
        while True:
            now = clock.monotonic()
            remaining = channel.gate_remaining(now)
            if remaining <= 0:
                return
            too_long = remaining > self.policy.max_retry_after
            past_deadline = call.deadline_at is not None and now + remaining > call.deadline_at
            if too_long or past_deadline:
                raise self._gate_error(channel, remaining, call)
            # Spread the herd that waits here so it does not return in one burst.
            spread = random.uniform(0.0, min(_GATE_SPREAD_MAX, remaining * 0.1))  # noqa: S311
            await clock.sleep(remaining + spread)

    @staticmethod
    def _gate_error(channel: Channel, remaining: float, call: _Call) -> APIError:
        cause = channel._gate_error  # noqa: SLF001
        if cause is None:
            error: APIError = RateLimitError(
                "The connection is paused by the server's rate limit",
                status=429,
                code="RATE_LIMIT_EXCEEDED",
            )
        else:
            error = cause._copy_as(type(cause))  # noqa: SLF001
        error.retry_after = remaining
        error.method = call.method
        error.path = call.path
        return error

    # -- decoding ----------------------------------------------------------------------------

    def _success(self, call: _Call, raw: RawResponse) -> APIResponse:
        headers = raw.headers
        request_id = headers.get("X-Request-Id")
        body = raw.body
        data: JSON = None
        if body and raw.status != _HTTP_NO_CONTENT and call.method != "HEAD":
            problem: str | None = None
            content_type = raw.content_type
            if content_type != "application/json" and not content_type.endswith("+json"):
                problem = f"Expected a JSON body, got {content_type!r}"
            else:
                try:
                    data = _json.loads(body)  # type: ignore[assignment] # decoded JSON is JSON
                except (ValueError, RecursionError) as exc:
                    # Not chained: a JSONDecodeError keeps the whole body in .doc.
                    problem = f"The response body is not valid JSON ({type(exc).__name__})"
            if problem is not None:
                raise self._decode_error(call, raw, problem)
        channel = call.channel
        if channel._probation and channel._probation == call.generation:  # noqa: SLF001
            channel._probation = 0  # noqa: SLF001 - the reconnect hook's token works
        if headers.get("X-RateLimit-Remaining") == "0":
            self._pause_until_reset(call, headers)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d (%s) attempt %d",
                call.method,
                call.path,
                raw.status,
                request_id,
                call.attempts,
            )
        return APIResponse(raw.status, headers, request_id, data)

    @staticmethod
    def _decode_error(call: _Call, raw: RawResponse, problem: str) -> ResponseDecodeError:
        secrets = _secrets(call)
        request_id = raw.headers.get("X-Request-Id")
        return ResponseDecodeError(
            f"{problem} ({call.method} {call.path})",
            status=raw.status,
            request_id=scrub(request_id, secrets)[:200] if request_id else None,
            body=scrub(_snippet(scrub_bytes(raw.body, secrets)), secrets),
        )

    def _pause_until_reset(self, call: _Call, headers: Mapping[str, str]) -> None:
        """The budget is spent: hold the connection until the announced reset."""
        reset = _int_header(headers, "X-RateLimit-Reset")
        if reset is None:
            return
        wait = reset - self.clock.time()
        if 0 < wait <= self.policy.max_retry_after:
            call.channel.close_gate(wait, None, self.clock.monotonic())

    def _failure(self, call: _Call, raw: RawResponse) -> MakiniError | _Retry:
        headers = raw.headers
        status = raw.status
        retry_after = parse_retry_after(headers.get("Retry-After"), now=self.clock.time())
        channel = call.channel
        error = error_from_response(
            status,
            raw.body,
            request_id=headers.get("X-Request-Id"),
            retry_after=retry_after,
            method=call.method,
            path=call.path,
            secrets=_secrets(call),
        )
        logger.info(
            "%s %s -> %d %s (%s) attempt %d",
            call.method,
            call.path,
            status,
            error.code,
            error.request_id,
            call.attempts,
        )
        if status not in _RETRY_STATUSES and not (status == 500 and call.method in _READS):  # noqa: PLR2004
            return error
        if retry_after is None and status == 429:  # noqa: PLR2004
            reset = _int_header(headers, "X-RateLimit-Reset")
            if reset is not None:
                retry_after = max(0.0, reset - self.clock.time())
        if retry_after is not None:
            channel.close_gate(retry_after, error, self.clock.monotonic())
            if retry_after > self.policy.max_retry_after:
                return error
        if not call.repeatable:
            return error
        if isinstance(error, RateLimitError | ServerError):
            return _Retry(error, call)
        return error  # pragma: no cover - every retry status maps to one of the two


def _secrets(call: _Call) -> tuple[str, ...]:
    """What an error answer must not keep: the call's token and its redacted body values."""
    token = call.channel._token  # noqa: SLF001 - scrub our own token from echoes
    return call.redact if token is None else (token.value, *call.redact)


def _check_redact(redact: Sequence[str]) -> tuple[str, ...]:
    if isinstance(redact, str) or not all(isinstance(item, str) for item in redact):
        raise TypeError("redact must be a sequence of str, such as (client_secret,)")
    return tuple(redact)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _snippet(body: bytes) -> str:
    return body[:1024].decode("utf-8", "replace")


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not _is_str(name) or not _is_str(value):
            raise TypeError("header names and values must be str")
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise ValueError(
                f"the {name} header is managed by makini_async; use update_token() for credentials"
            )
        if _BAD_HEADER_VALUE.search(value):
            raise ValueError(f"the value of header {name!r} contains CR, LF or NUL")
        checked[name] = value
    return checked


def _param_value(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"query parameter {key!r}: datetimes must be timezone-aware")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(
        f"query parameter {key!r} must be str, int, float, bool or datetime, "
        f"not {type(value).__name__}"
    )


def _check_params(
    params: Mapping[str, object] | Iterable[tuple[str, object]],
) -> list[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    checked: list[tuple[str, str]] = []
    for key, value in items:
        if not isinstance(key, str):
            raise TypeError("query parameter names must be str")
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            checked.extend((key, _param_value(key, v)) for v in value)
        else:
            checked.append((key, _param_value(key, value)))
    return checked
