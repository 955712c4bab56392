"""`ConnectionRegistry`: every customer connection, its token, and its session, in one place.

The registry builds the owners of state and hands each the others it needs: the `Transport`
(sessions and the connection pool), the `CredentialSource` (tokens and their generations), the
`RateBudget` (when each connection may send), the `Engine` (the calls) and one `Channel` per
connection. It keeps the connections by id; closing it is one call on each owner.
"""

from __future__ import annotations

import enum
import os
import platform
import re
import ssl as ssl_module
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from types import MappingProxyType, TracebackType
from typing import Final, Self, TypeVar, overload

import aiohttp
from yarl import URL

from ._bodies import DEFAULT_MAX_UPLOAD_SIZE
from ._budget import LocalRateBudget, RateBudget
from ._call import Arguments
from ._channel import Channel, Listeners, ReconnectHook, StateListener
from ._connection import Connection, TokenlessChannel
from ._credentials import CredentialSource, MemoryCredentials, check_token
from ._engine import Engine
from ._errors import ConnectionNotFoundError, RegistryClosedError, UsageError
from ._fanout import FanOut, fan_out
from ._instrument import Instrument
from ._retry import RetryPolicy
from ._transport import (
    DEFAULT_MAX_RESPONSE_SIZE,
    MAX_SECONDS,
    Timeouts,
    Transport,
    check_seconds,
)
from ._types import Clock, SystemClock

__all__ = ["BASE_URL_ENV", "DEFAULT_BASE_URL", "ConnectionRegistry", "resolve_base_url"]

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the item type of map(items=...)

DEFAULT_BASE_URL: Final = "https://api.makini.io"
#: The environment variable read for the base URL when none is given.
BASE_URL_ENV: Final = "MAKINI_BASE_URL"
_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})
_TOKENLESS_KEY: Final = "<tokenless>"


def _default_user_agent() -> str:
    try:
        ours = version("makini-async")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ours = "0"
    py = f"{platform.python_implementation()} {sys.version_info.major}.{sys.version_info.minor}"
    return f"makini-async/{ours} ({py}; aiohttp {aiohttp.__version__})"


# What each seam must offer: a wrong object fails here, not at its first use in a call.
_SEAMS: Final[dict[str, tuple[str, ...]]] = {
    "clock": ("monotonic", "time", "sleep"),
    "budget": ("admit", "observe", "paused_for", "forget", "aclose"),
    "credentials": ("install", "renew", "forget", "aclose"),
}
# Visible ASCII, spaces only inside: a header value that reaches the server as given.
_USER_AGENT: Final = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_BAD_IN_URL: Final = re.compile(r"[\x00-\x20\x7f\\]")


def _positive_int(value: object) -> bool:
    return type(value) is int and value >= 1


def _check_base_url(base_url: object) -> str:
    """The API origin (and optional path prefix), without a trailing slash.

    Raises:
        TypeError: Not a str.
        ValueError: Not an http(s) URL with a host, or one that carries credentials, a query,
            a fragment, or a path that yarl would send differently from how it is written.
    """
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, not {type(base_url).__name__}")
    if not base_url.startswith(("https://", "http://")):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    if not base_url.isascii() or _BAD_IN_URL.search(base_url):
        raise ValueError(
            f"base_url must be ASCII without spaces, controls or backslashes, got {base_url!r}"
        )
    if "?" in base_url or "#" in base_url or "@" in base_url:
        raise ValueError("base_url must not carry a query, a fragment or credentials")
    trimmed = base_url.rstrip("/")
    try:
        url = URL(trimmed)
        port = url.port
    except ValueError:
        raise ValueError(f"base_url is not a valid URL (host or port), got {base_url!r}") from None
    if not url.host or port is None:
        raise ValueError(f"base_url must name a host, got {base_url!r}")
    path = trimmed.partition("://")[2].partition("/")[2]
    if url.raw_path.lstrip("/") != path:
        raise ValueError(
            f"base_url's path would be sent as {url.raw_path!r}: write it as it must be sent"
        )
    return trimmed


def resolve_base_url(base_url: str | None) -> str:
    """The base URL to use: the one given, else ``$MAKINI_BASE_URL``, else `DEFAULT_BASE_URL`.

    A variable that is set but blank counts as unset.

    Args:
        base_url: The explicit base URL, or None.

    Returns:
        The checked base URL, without a trailing slash.

    Raises:
        TypeError: ``base_url`` is neither a str nor None.
        ValueError: A bad URL; one read from the environment names the variable.
    """
    if base_url is not None:
        return _check_base_url(base_url)
    from_env = os.environ.get(BASE_URL_ENV, "").strip()
    if not from_env:
        return DEFAULT_BASE_URL
    try:
        return _check_base_url(from_env)
    except ValueError as exc:
        raise ValueError(f"${BASE_URL_ENV} is not a usable base URL: {exc}") from None


def _check_timeout(timeout: object) -> Timeouts:
    """The registry's per-attempt `Timeouts` from its ``timeout=`` argument.

    A number is the whole of each attempt: no separate limit on reading the answer, so that
    ``timeout=300`` really gives a slow source system five minutes.

    Raises:
        TypeError: Neither `Timeouts`, a number nor None.
        ValueError: A number that is not > 0, not finite, or over `MAX_SECONDS`.
    """
    if timeout is None:
        return Timeouts()
    if isinstance(timeout, Timeouts):
        return timeout
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        return Timeouts(read=None, total=check_seconds("timeout", timeout))
    raise TypeError(
        f"timeout must be a Timeouts, a number of seconds, or None, not {type(timeout).__name__}"
    )


def _check_close_timeout(name: str, value: object) -> float:
    """Seconds to let in-flight calls finish at close: a finite number >= 0.

    Raises:
        TypeError: Not a number.
        ValueError: Negative, not finite, or over `MAX_SECONDS`.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    try:
        return check_seconds(name, value)
    except ValueError:
        raise ValueError(
            f"{name} must be a finite number of seconds >= 0 (at most {MAX_SECONDS:.0e})"
        ) from None


def _check_strict(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"strict must be a bool, not {type(value).__name__}")
    return value


def _check_seam(name: str, value: object) -> None:
    missing = [method for method in _SEAMS[name] if not callable(getattr(value, method, None))]
    if missing:
        raise TypeError(
            f"{name} must provide {', '.join(_SEAMS[name])}; a {type(value).__name__} lacks "
            f"{', '.join(missing)}"
        )


def _check_plugins(
    instruments: object, trace_configs: object
) -> tuple[Sequence[Instrument], Sequence[aiohttp.TraceConfig]]:
    """The instruments and trace configs, each a sequence of the right objects.

    Raises:
        TypeError: Not a sequence (a str is not one here), or an item of the wrong kind.
    """
    for name, given in (("instruments", instruments), ("trace_configs", trace_configs)):
        if not isinstance(given, Sequence) or isinstance(given, str | bytes):
            raise TypeError(f"{name} must be a sequence, not {type(given).__name__}")
    assert isinstance(instruments, Sequence)  # noqa: S101 - narrowed by the loop above
    assert isinstance(trace_configs, Sequence)  # noqa: S101
    for instrument in instruments:
        if not callable(getattr(instrument, "call_started", None)):
            raise TypeError(
                f"instruments must provide call_started(); a {type(instrument).__name__} does not"
            )
    for trace in trace_configs:
        if not isinstance(trace, aiohttp.TraceConfig):
            raise TypeError(
                f"trace_configs must hold aiohttp.TraceConfig, not {type(trace).__name__}"
            )
    return instruments, trace_configs


def _check_connection_options(
    *, proxy: object, trust_env: object, user_agent: object, ssl: object
) -> None:
    """Check the transport's options (the proxy, the User-Agent, TLS, the environment).

    Raises:
        TypeError: An option of the wrong type.
        ValueError: A proxy that is not an http(s) URL, or a User-Agent that cannot be sent
            as given (controls, non-ASCII text, spaces at either end, empty).
    """
    if proxy is not None:
        if not isinstance(proxy, str | URL):
            raise TypeError(f"proxy must be a str, a yarl.URL or None, not {type(proxy).__name__}")
        if not str(proxy).startswith(("http://", "https://")):
            raise ValueError("proxy must be an http(s) URL")
    if not isinstance(trust_env, bool):
        raise TypeError(f"trust_env must be a bool, not {type(trust_env).__name__}")
    if user_agent is not None:
        if not isinstance(user_agent, str):
            raise TypeError(f"user_agent must be a str, not {type(user_agent).__name__}")
        if not _USER_AGENT.fullmatch(user_agent):
            raise ValueError(
                "user_agent must be visible ASCII, with spaces only between words "
                f"(it is sent as the User-Agent header), got {user_agent!r}"
            )
    if not isinstance(ssl, ssl_module.SSLContext | bool):
        raise TypeError("ssl must be True, False or an ssl.SSLContext")


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class ConnectionRegistry:
    """Holds one token-scoped session per customer connection over one shared connection pool.

    Adding a connection does no I/O; its ``aiohttp.ClientSession`` is created on its first
    request, inside the running event loop, and may be closed again when idle
    (``max_open_sessions``) so that tens of thousands of registered connections stay cheap.
    No cookies are kept, redirects are never followed, and the environment's proxies and
    ``.netrc`` are ignored unless ``trust_env=True``.

    Use it as an async context manager (or call `aclose`)::

        async with ConnectionRegistry() as registry:
            conn = registry.add("acme", token)
            response = await conn.request("GET", "/api/eam/work-orders")

    Args:
        base_url: Makini's API origin (the sandbox's ``url`` in tests). When None, the
            ``MAKINI_BASE_URL`` environment variable, else ``https://api.makini.io``.
        retry: How transient failures are retried. ``RetryPolicy(attempts=4)`` (the default)
            makes at most 4 attempts in all, the first included: that is 3 retries.
        timeout: Per-attempt limits, which each call may override: seconds for the whole of
            each attempt, or a `Timeouts` (None: ``Timeouts()``, whose ``total`` is 120 s and
            ``connect + read`` 70 s). To wait without limit, pass ``Timeouts`` with every
            field None.
        on_reconnect: ``async (ReconnectEvent) -> str | None``, run once per connection and
            token generation when a 401 arrives; a returned token replays the failed calls, None
            (or an exception) moves the connection to ``REAUTHORIZATION_REQUIRED``.
        limit: Most open HTTP connections for the whole registry.
        limit_per_connection: Most concurrent requests per customer connection (None: no limit).
        ssl: True for default certificate checks, an ``SSLContext``, or False (logged as unsafe).
        proxy: A proxy URL for every request.
        trust_env: Read proxies and ``.netrc`` from the environment.
        trace_configs: ``aiohttp.TraceConfig``s, passed to every session.
        user_agent: The ``User-Agent`` header.
        max_response_size: Largest response body accepted, after decompression, in bytes.
        max_upload_size: Most file bytes one call may send in a multipart body; files are held
            in memory so that a retry or replay resends the same bytes.
        max_open_sessions: Most sessions kept open; the least recently used idle one is closed
            when a new one would pass it (None: never close).
        close_timeout: How long `aclose` lets in-flight calls finish before cancelling them.
        clock: Time source for deadlines, backoff waits and rate-limit pauses (tests pass a
            virtual clock).
        budget: When each connection may send (default: a `LocalRateBudget` on ``clock``).
        credentials: Where tokens and their generations live (default: `MemoryCredentials`).
        instruments: Told of every call (`Instrument`): tracing, metrics.
        strict: Decode typed records strictly: a value that does not fit its field's declared
            type raises `ResponseDecodeError` naming the field, instead of reading None with
            the value kept in the record's ``invalid``. Each typed call may say otherwise.

    Raises:
        TypeError: Bad argument types.
        ValueError: Bad argument values, including a bad ``$MAKINI_BASE_URL``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: Timeouts | float | None = None,
        on_reconnect: ReconnectHook | None = None,
        limit: int = 100,
        limit_per_connection: int | None = 16,
        ssl: ssl_module.SSLContext | bool = True,
        proxy: str | URL | None = None,
        trust_env: bool = False,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
        user_agent: str | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE,
        max_open_sessions: int | None = 1000,
        close_timeout: float = 10.0,
        clock: Clock | None = None,
        budget: RateBudget | None = None,
        credentials: CredentialSource | None = None,
        instruments: Sequence[Instrument] = (),
        strict: bool = False,
    ) -> None:
        self._state = _State.UNOPENED
        self._strict = _check_strict(strict)
        origin = resolve_base_url(base_url)
        for name, value in (
            ("limit", limit),
            ("max_response_size", max_response_size),
            ("max_upload_size", max_upload_size),
        ):
            if not _positive_int(value):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, optional in (
            ("limit_per_connection", limit_per_connection),
            ("max_open_sessions", max_open_sessions),
        ):
            if optional is not None and not _positive_int(optional):
                raise ValueError(f"{name} must be an int >= 1 or None, got {optional!r}")
        if on_reconnect is not None and not callable(on_reconnect):
            raise TypeError("on_reconnect must be an async callable or None")
        _check_connection_options(proxy=proxy, trust_env=trust_env, user_agent=user_agent, ssl=ssl)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, not {type(retry).__name__}")
        the_timeouts = _check_timeout(timeout)
        for seam, given in (("clock", clock), ("budget", budget), ("credentials", credentials)):
            if given is not None:
                _check_seam(seam, given)
        instruments, trace_configs = _check_plugins(instruments, trace_configs)
        policy = retry if retry is not None else RetryPolicy()
        the_clock: Clock = clock if clock is not None else SystemClock()
        self.base_url = origin
        self._close_timeout = _check_close_timeout("close_timeout", close_timeout)
        self._limit_per_connection = limit_per_connection
        self._on_reconnect = on_reconnect
        self._listeners = Listeners()
        self._credentials: CredentialSource = (
            credentials if credentials is not None else MemoryCredentials()
        )
        self._budget: RateBudget = (
            budget
            if budget is not None
            else LocalRateBudget(clock=the_clock, max_pause=policy.max_retry_after)
        )
        self._transport = Transport(
            base_url=self.base_url,
            limit=limit,
            ssl=ssl,
            proxy=proxy,
            trust_env=trust_env,
            trace_configs=trace_configs,
            user_agent=user_agent or _default_user_agent(),
            timeouts=the_timeouts,
            max_response_size=max_response_size,
            max_open_sessions=max_open_sessions,
        )
        self._engine = Engine(
            arguments=Arguments(base_url=self.base_url, timeouts=the_timeouts, clock=the_clock),
            transport=self._transport,
            retry=policy,
            budget=self._budget,
            clock=the_clock,
            instruments=instruments,
            max_upload_size=max_upload_size,
        )
        self._connections: dict[str, tuple[Connection, Channel]] = {}
        self._tokenless: tuple[TokenlessChannel, Channel] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is _State.CLOSED:
            raise RegistryClosedError(
                "Cannot open the registry, as it has been closed; create a new one."
            )
        if self._state is _State.OPENED:
            raise UsageError("The registry is already open; enter it only once.")
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """True once `aclose` has begun."""
        return self._state is _State.CLOSED

    @property
    def clock(self) -> Clock:
        """The clock the registry's deadlines, backoff and pauses are measured on."""
        return self._engine.clock

    async def aclose(self, *, timeout: float | None = None) -> None:
        """Close the registry: refuse new calls, let in-flight ones finish, close every session.

        In-flight calls get ``timeout`` seconds (default: the registry's ``close_timeout``) to
        finish; the tasks still running one are then cancelled. The rate budget and the
        credential source are closed too. Idempotent.

        Args:
            timeout: Seconds to wait for in-flight calls (0: cancel them at once).

        Raises:
            TypeError: ``timeout`` is not a number.
            ValueError: ``timeout`` is negative, not finite, or over `MAX_SECONDS`.

        .. versionadded:: 0.1.0
        """
        if self._state is _State.CLOSED:
            return
        wait = self._close_timeout if timeout is None else _check_close_timeout("timeout", timeout)
        self._state = _State.CLOSED
        try:
            await self._engine.aclose(wait)
        finally:
            # Also when the wait is cancelled (a timeout around `async with`): a second aclose()
            # returns at once, so this is the only chance to close the sessions and the pool.
            for _, channel in self._connections.values():
                channel.close()
            await self._credentials.aclose()
            await self._budget.aclose()
            await self._transport.aclose()

    def __del__(self) -> None:
        # getattr: a constructor that failed (even on its signature) leaves no attributes.
        transport = getattr(self, "_transport", None)
        state = getattr(self, "_state", _State.CLOSED)
        if state is not _State.CLOSED and transport is not None and transport.started:
            warnings.warn(
                f"Unclosed {self!r}: use 'async with ConnectionRegistry()' or await aclose()",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    # -- connections -------------------------------------------------------------------------

    def add(
        self,
        connection_id: str,
        token: str,
        *,
        metadata: Mapping[str, object] | None = None,
    ) -> Connection:
        """Register a customer connection and its token. No I/O happens.

        Args:
            connection_id: Your id for the connection (e.g. Makini's connection id).
            token: The connection's bearer token.
            metadata: Anything you want handed back in `ReconnectEvent.metadata`.

        Returns:
            The new `Connection`.

        Raises:
            RegistryClosedError: The registry is closed.
            TypeError: ``connection_id`` or ``token`` is not a str.
            ValueError: Empty values, or the id is already registered.

        .. versionadded:: 0.1.0
        """
        if self._state is _State.CLOSED:
            raise RegistryClosedError("Cannot add a connection, as the registry has been closed.")
        if not isinstance(connection_id, str):
            raise TypeError(f"connection_id must be a str, not {type(connection_id).__name__}")
        if not connection_id:
            raise ValueError("connection_id must not be empty")
        check_token(token)
        if connection_id in self._connections:
            raise ValueError(
                f"Connection {connection_id!r} is already registered; "
                "use update_token() to give it a new token."
            )
        channel = Channel(
            key=connection_id,
            connection_id=connection_id,
            credential=self._credentials.install(connection_id, token),
            metadata=_EMPTY if not metadata else MappingProxyType(dict(metadata)),
            credentials=self._credentials,
            hook=self._on_reconnect,
            listeners=self._listeners,
            slots=self._limit_per_connection,
        )
        connection = Connection(channel, self._engine, strict=self._strict)
        self._connections[connection_id] = (connection, channel)
        return connection

    @overload
    def get(self, connection_id: str) -> Connection | None: ...

    @overload
    def get(self, connection_id: str, default: T) -> Connection | T: ...

    def get(self, connection_id: str, default: object = None) -> object:
        """The connection registered under ``connection_id``, or ``default``: as `dict.get`.

        ``registry[connection_id]`` is the form that raises.

        Args:
            connection_id: The connection's id.
            default: What to return when no such connection is registered.

        Returns:
            The `Connection`, or ``default``.

        .. versionadded:: 0.1.0
        """
        entry = self._connections.get(connection_id)
        return default if entry is None else entry[0]

    def __getitem__(self, connection_id: str) -> Connection:
        """The connection registered under ``connection_id``.

        Raises:
            ConnectionNotFoundError: No such connection (also a ``KeyError``).

        .. versionadded:: 0.1.0
        """
        try:
            return self._connections[connection_id][0]
        except KeyError:
            raise ConnectionNotFoundError(connection_id) from None

    def __contains__(self, item: object) -> bool:
        # An id, or a Connection: iteration yields Connections, so `conn in registry` must work.
        if isinstance(item, Connection):
            entry = self._connections.get(item.id)
            return entry is not None and entry[0] is item
        return item in self._connections

    def __len__(self) -> int:
        return len(self._connections)

    def __bool__(self) -> bool:
        # An empty registry is still a registry: `registry or make_one()` must not replace it.
        return True

    def __iter__(self) -> Iterator[Connection]:
        return iter([connection for connection, _ in self._connections.values()])

    async def remove(self, connection_id: str) -> None:
        """Unregister a connection and close its session; its later calls fail typed.

        Raises:
            ConnectionNotFoundError: No such connection.

        .. versionadded:: 0.1.0
        """
        entry = self._connections.pop(connection_id, None)
        if entry is None:
            raise ConnectionNotFoundError(connection_id)
        channel = entry[1]
        channel.close()
        self._budget.forget(channel.key)
        self._transport.forget(channel)
        if self._transport.bound:  # nothing to close before the first request
            self._transport.check_loop()
            await self._transport.close_retired()

    def update_token(self, connection_id: str, token: str) -> Connection:
        """Give a connection a new token (e.g. after the customer reconnected).

        The token generation moves on, the connection becomes ``ACTIVE`` again, and its next
        request uses a fresh session carrying the new token. No I/O happens.

        Returns:
            The connection.

        Raises:
            ConnectionNotFoundError: No such connection.
            TypeError: The token is not a str.
            ValueError: The token is empty or malformed.

        .. versionadded:: 0.1.0
        """
        check_token(token)
        connection = self[connection_id]
        self._connections[connection_id][1].install(token)
        return connection

    def subscribe(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener(StateChange)`` whenever a connection's state changes.

        Listeners run synchronously, in the task that caused the change; keep them quick (hand
        work to a queue). An exception in a listener is logged and ignored.

        Args:
            listener: A callable taking a `StateChange`.

        Returns:
            A function that unsubscribes the listener.

        .. versionadded:: 0.1.0
        """
        return self._listeners.add(listener)

    def tokenless(self) -> TokenlessChannel:
        """The registry's channel for calls that carry no token, such as ``/link/token``.

        Made on first use. It shares the pool, retries, timeouts and lifetime of the registry,
        but is no connection: it is never listed, counted or handed to the reconnect hook.

        Returns:
            The `TokenlessChannel` (the same one on every call).

        Raises:
            RegistryClosedError: The registry is closed.

        .. versionadded:: 0.1.0
        """
        if self._state is _State.CLOSED:
            raise RegistryClosedError("Cannot send a request, as the registry has been closed.")
        if self._tokenless is None:
            channel = Channel(
                key=_TOKENLESS_KEY,
                connection_id=None,
                credential=None,
                metadata=_EMPTY,
                credentials=self._credentials,
                hook=None,
                listeners=self._listeners,
                slots=self._limit_per_connection,
            )
            self._tokenless = (
                TokenlessChannel(channel, self._engine, strict=self._strict),
                channel,
            )
        return self._tokenless[0]

    @property
    def open_sessions(self) -> int:
        """How many connections hold an open session right now."""
        transport = self._transport
        tokenless = self._tokenless
        if tokenless is not None and transport.has_session(tokenless[1]):
            return transport.open_sessions - 1
        return transport.open_sessions

    # -- many connections at once ------------------------------------------------------------

    @overload
    def map(
        self,
        fn: Callable[[Connection], Awaitable[T]],
        connections: Iterable[Connection | str] | None = None,
        *,
        concurrency: int = 16,
        per_connection: int = 1,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> FanOut[T]: ...

    @overload
    def map(
        self,
        fn: Callable[[Connection, I], Awaitable[T]],
        connections: Iterable[Connection | str] | None = None,
        *,
        items: Iterable[I],
        concurrency: int = 16,
        per_connection: int = 1,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> FanOut[T]: ...

    def map(
        self,
        fn: Callable[..., Awaitable[T]],
        connections: Iterable[Connection | str] | None = None,
        *,
        items: Iterable[object] | None = None,
        concurrency: int = 16,
        per_connection: int = 1,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> FanOut[T]:
        """Run ``fn`` for many connections; yield one `Outcome` per job as jobs finish.

        Partial failure is the normal case: each outcome is ok (with its value), skipped (with
        the reason: e.g. the connection needs reauthorization, found without any I/O) or failed
        (with the typed error and its request id). Jobs start round-robin across connections, a
        connection paused by a 429 yields its slot to the others, and closing the iterator (or
        leaving ``async with``) cancels every running job::

            async with registry.map(count_work_orders) as outcomes:
                async for outcome in outcomes:
                    print(outcome.connection_id, outcome.status.value, outcome.value)

        Args:
            fn: ``async fn(connection)``, or ``async fn(connection, item)`` with ``items``.
            connections: Connections or their ids (default: every registered connection).
            items: Run ``fn`` once per connection and item (e.g. entity names).
            concurrency: Most jobs running at once, not counting jobs waiting at a rate-limit
                pause.
            per_connection: Most jobs of one connection running at once.
            timeout: Seconds each job may run; a job still running then is cancelled and
                fails with `RequestTimeoutError`.
            deadline: Seconds for the whole fan-out, on the registry's clock: jobs still
                running then are cancelled (failed with `RequestTimeoutError`) and jobs not yet
                started are skipped.

        Returns:
            A `FanOut`: an async iterator of `Outcome`, and an async context manager.

        Raises:
            ConnectionNotFoundError: A connection is not registered here.
            TypeError: ``fn`` is not callable, a connection is neither a `Connection` nor an
                id, or ``timeout`` or ``deadline`` is not a number.
            ValueError: ``concurrency`` or ``per_connection`` below 1, or ``timeout`` or
                ``deadline`` not > 0.

        .. versionadded:: 0.1.0
        """
        chosen: list[tuple[Connection, Channel]] = []
        seen: set[str] = set()
        for entry in self if connections is None else connections:
            if not isinstance(entry, str | Connection):
                raise TypeError(
                    f"connections must hold Connections or their ids, not {type(entry).__name__}"
                )
            connection = self[entry] if isinstance(entry, str) else entry
            registered = self._connections.get(connection.id)
            if registered is None or registered[0] is not connection:
                raise ConnectionNotFoundError(connection.id)
            if connection.id not in seen:
                seen.add(connection.id)
                chosen.append(registered)
        engine = self._engine
        return fan_out(
            [(connection, partial(engine.paused_for, channel)) for connection, channel in chosen],
            fn,
            items=items,
            concurrency=concurrency,
            per_connection=per_connection,
            timeout=timeout,
            deadline=deadline,
            clock=engine.clock,
        )

    def __repr__(self) -> str:
        return (
            f"<ConnectionRegistry {self.base_url} connections={len(self._connections)} "
            f"state={self._state.name.lower()}>"
        )
