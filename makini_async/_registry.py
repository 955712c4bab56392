"""`ConnectionRegistry`: every customer connection, its token, and its session, in one place."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import platform
import ssl as ssl_module
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Final, Self, TypeVar, overload

import aiohttp

from ._bodies import DEFAULT_MAX_UPLOAD_SIZE
from ._errors import ConnectionNotFoundError, RegistryClosedError
from ._fanout import FanOut, fan_out
from ._request import (
    Channel,
    Clock,
    ReconnectHook,
    Requestor,
    StateListener,
    TokenlessChannel,
    check_token,
)
from ._retry import RetryPolicy
from ._transport import DEFAULT_MAX_RESPONSE_SIZE, Timeouts, Transport

if TYPE_CHECKING:
    from yarl import URL

# -- typed resources (issue 4): imports, additions only ------------------------------------------
import weakref
from typing import Literal, cast

if TYPE_CHECKING:
    from ._admin import AdminClient
    from ._pagination import Listing
    from .models import Integration, SyncState
    from .resources import EAM, ERP, WMS, Namespace
    from .resources._system import RawRow
    from .typing import JSON

_NAMESPACES: weakref.WeakKeyDictionary[Connection, dict[str, Namespace]] = (
    weakref.WeakKeyDictionary()
)
# -- end of the issue 4 imports ------------------------------------------------------------------

__all__ = ["Connection", "ConnectionRegistry"]

logger: Final = logging.getLogger("makini_async")

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the item type of map(items=...)

DEFAULT_BASE_URL: Final = "https://api.makini.io"
_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})


def _default_user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - once

    try:
        ours = version("makini-async")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ours = "0"
    py = f"{platform.python_implementation()} {sys.version_info.major}.{sys.version_info.minor}"
    return f"makini-async/{ours} ({py}; aiohttp {aiohttp.__version__})"


def _is_http_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def _positive_int(value: object) -> bool:
    return type(value) is int and value >= 1


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class Connection(Channel):
    """One customer connection: its token generations, its session and its request method.

    Created by `ConnectionRegistry.add`; never build one yourself.

    Attributes:
        id: The connection id given to ``registry.add``.
        state: A `ConnectionState`.
        metadata: The read-only metadata given to ``registry.add``.
        generation: The current token generation (1, then +1 per new token).

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<Connection {self.id!r} {self.state.value} generation={self._generation}>"

    # -- typed resources and sync state (issue 4) -------------------------------------------
    # Additions only. Namespaces are cached per connection in _NAMESPACES, since `Connection`
    # has no slots of its own.

    def _namespace(self, name: str) -> Namespace:
        cached = _NAMESPACES.get(self)
        if cached is None:
            cached = _NAMESPACES[self] = {}
        found = cached.get(name)
        if found is None:
            from .resources import _generated  # noqa: PLC0415 - resources import the models

            found = cached[name] = getattr(_generated, name.upper())(self)
        return found

    @property
    def eam(self) -> EAM:
        """The EAM/CMMS resources: ``conn.eam.work_orders.list()``.

        .. versionadded:: 0.1.0
        """
        return cast("EAM", self._namespace("eam"))

    @property
    def erp(self) -> ERP:
        """The ERP resources: ``conn.erp.sales_orders.list()``.

        .. versionadded:: 0.1.0
        """
        return cast("ERP", self._namespace("erp"))

    @property
    def wms(self) -> WMS:
        """The WMS resources: ``conn.wms.shipment_orders.list()``.

        .. versionadded:: 0.1.0
        """
        return cast("WMS", self._namespace("wms"))

    async def integration(self) -> Integration:
        """The connection as Makini sees it, with its sync state (``/api/integrations/current``).

        Returns:
            The `Integration`; ``sync_status == "fail"`` means the customer must reconnect.

        Raises:
            APIError: The server answered with an error.
            ResponseDecodeError: The answer does not fit the model.

        .. versionadded:: 0.1.0
        """
        from .resources import _system  # noqa: PLC0415 - resources import the models

        return await _system.integration(self)

    async def sync_status(self) -> SyncState:
        """The connection's sync status (``/api/integrations/sync/status``).

        Returns:
            The `SyncState`.

        Raises:
            APIError: The server answered with an error.
            ResponseDecodeError: The answer does not fit the model.

        .. versionadded:: 0.1.0
        """
        from .resources import _system  # noqa: PLC0415 - resources import the models

        return await _system.sync_status(self)

    async def request_sync(
        self, sync_type: str = "incremental", *, scopes: Sequence[str] | None = None
    ) -> JSON:
        """Ask Makini to sync the connection now (``POST /api/integrations/sync``).

        Args:
            sync_type: The kind of sync, e.g. ``"incremental"`` or ``"full"``.
            scopes: Entities to sync (e.g. ``["work-orders"]``); None for all.

        Returns:
            The decoded answer (``data`` unwrapped).

        Raises:
            ValidationError: 422, e.g. an unknown scope.

        .. versionadded:: 0.1.0
        """
        from .resources import _system  # noqa: PLC0415 - resources import the models

        return await _system.request_sync(self, sync_type, scopes)

    async def disconnect(self) -> None:
        """Disconnect this connection at Makini; its token stops working at once.

        Raises:
            APIError: The server answered with an error.

        .. versionadded:: 0.1.0
        """
        from .resources import _system  # noqa: PLC0415 - resources import the models

        await _system.disconnect(self)

    async def raw_tables(self) -> JSON:
        """The source system's raw tables (``/api/raw/tables``).

        Returns:
            The decoded answer (``data`` unwrapped).

        Raises:
            APIError: The server answered with an error.

        .. versionadded:: 0.1.0
        """
        from .resources import _system  # noqa: PLC0415 - resources import the models

        return await _system.raw_tables(self)

    def raw_rows(
        self, table: str, *, per_page: int | None = None, prefetch: int = 0
    ) -> Listing[RawRow]:
        """The rows of one raw table, page after page (``/api/raw/tables/{table}/data``).

        Args:
            table: The table's name.
            per_page: Rows per page.
            prefetch: Pages fetched concurrently.

        Returns:
            A `Listing` of `RawRow` (the columns are in ``extra``).

        Raises:
            ValueError: An empty table name.

        .. versionadded:: 0.1.0
        """
        from .resources import _system  # noqa: PLC0415 - resources import the models

        return _system.raw_rows(self, table, per_page=per_page, prefetch=prefetch)

    async def passthrough(
        self,
        path: str,
        method: Literal["get", "post", "put", "delete"] = "get",
        *,
        headers: Mapping[str, str] | None = None,
        body: JSON = None,
    ) -> JSON:
        """Call the source system's own API through Makini (``POST /api/passthrough``).

        Args:
            path: The path on the source system.
            method: ``get``, ``post``, ``put`` or ``delete``.
            headers: Headers for the source system.
            body: A JSON body for the source system.

        Returns:
            The decoded answer (``data`` unwrapped).

        Raises:
            ValidationError: 422, e.g. a bad method.

        .. versionadded:: 0.1.0
        """
        from .resources import _system  # noqa: PLC0415 - resources import the models

        return await _system.passthrough(self, path, method, headers, body)

    # -- end of the issue 4 block ---------------------------------------------------------------


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
        base_url: Makini's API origin (the sandbox's ``url`` in tests).
        retry: How transient failures are retried.
        timeouts: Per-attempt timeouts; each call may override them.
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
        clock: Time source for deadlines and rate-limit pauses (tests pass a virtual clock).

    Raises:
        TypeError: Bad argument types.
        ValueError: Bad argument values.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
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
    ) -> None:
        self._state = _State.UNOPENED
        if not _is_http_url(base_url):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if "?" in base_url or "#" in base_url or "@" in base_url:
            raise ValueError("base_url must not carry a query, a fragment or credentials")
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
        if not isinstance(ssl, ssl_module.SSLContext | bool):
            raise TypeError("ssl must be True, False or an ssl.SSLContext")
        self.base_url = base_url.rstrip("/")
        self._close_timeout = close_timeout
        self._transport = Transport(
            base_url=self.base_url,
            limit=limit,
            ssl=ssl,
            proxy=proxy,
            trust_env=trust_env,
            trace_configs=trace_configs,
            user_agent=user_agent or _default_user_agent(),
            timeouts=timeouts if timeouts is not None else Timeouts(),
            max_response_size=max_response_size,
            max_open_sessions=max_open_sessions,
        )
        self._requestor = Requestor(
            base_url=self.base_url,
            transport=self._transport,
            retry=retry if retry is not None else RetryPolicy(),
            on_reconnect=on_reconnect,
            limit_per_connection=limit_per_connection,
            clock=clock,
            max_upload_size=max_upload_size,
        )
        self._connections: dict[str, Connection] = {}
        self._tokenless: TokenlessChannel | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is _State.CLOSED:
            raise RegistryClosedError(
                "Cannot open the registry, as it has been closed; create a new one."
            )
        if self._state is _State.OPENED:
            raise RuntimeError("The registry is already open; enter it only once.")
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

    async def aclose(self, *, timeout: float | None = None) -> None:
        """Close the registry: refuse new calls, let in-flight ones finish, close every session.

        In-flight calls get ``timeout`` seconds (default: the registry's ``close_timeout``) to
        finish; the tasks still running one are then cancelled. Idempotent.

        Args:
            timeout: Seconds to wait for in-flight calls.

        .. versionadded:: 0.1.0
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        requestor = self._requestor
        requestor.closing = True
        wait = self._close_timeout if timeout is None else timeout
        current = asyncio.current_task()
        others = [t for t in requestor.inflight_tasks if t is not current]
        if others:
            requestor.drained = asyncio.Event()
            try:
                await asyncio.wait_for(requestor.drained.wait(), wait)
            except TimeoutError:
                late = [t for t in requestor.inflight_tasks if t is not current]
                logger.warning("Cancelling %d call(s) still in flight at close", len(late))
                for task in late:
                    task.cancel()
                await asyncio.wait(late, timeout=1.0)
        for connection in self._connections.values():
            connection.close()
        await self._transport.aclose()

    def __del__(self) -> None:
        transport = getattr(self, "_transport", None)
        if (
            self._state is not _State.CLOSED
            and transport is not None
            and transport._connector is not None  # noqa: SLF001 - only sockets matter
        ):
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
        frozen = _EMPTY if not metadata else MappingProxyType(dict(metadata))
        connection = Connection(self._requestor, connection_id, token, frozen)
        self._connections[connection_id] = connection
        return connection

    def get(self, connection_id: str) -> Connection:
        """The connection registered under ``connection_id``.

        Raises:
            ConnectionNotFoundError: No such connection (also a ``KeyError``).

        .. versionadded:: 0.1.0
        """
        try:
            return self._connections[connection_id]
        except KeyError:
            raise ConnectionNotFoundError(connection_id) from None

    def __getitem__(self, connection_id: str) -> Connection:
        return self.get(connection_id)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._connections

    def __len__(self) -> int:
        return len(self._connections)

    def __bool__(self) -> bool:
        # An empty registry is still a registry: `registry or make_one()` must not replace it.
        return True

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._connections.values()))

    async def remove(self, connection_id: str) -> None:
        """Unregister a connection and close its session; its later calls fail typed.

        Raises:
            ConnectionNotFoundError: No such connection.

        .. versionadded:: 0.1.0
        """
        connection = self._connections.pop(connection_id, None)
        if connection is None:
            raise ConnectionNotFoundError(connection_id)
        connection.close()
        if self._transport._loop is not None:  # noqa: SLF001 - nothing to close before first use
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
        connection = self.get(connection_id)
        connection.set_token(token)
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
        listeners = self._requestor.listeners
        listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                listeners.remove(listener)

        return unsubscribe

    # -- typed resources (issue 4): additions only ---------------------------------------------

    async def add_from_admin(
        self, admin: AdminClient, *, statuses: Iterable[str] = ("active",)
    ) -> list[Connection]:
        """Register every connection of the account that the Admin API lists.

        Each connection not yet registered gets a fresh token from the Admin API (its previous
        tokens die) and the metadata ``name``, ``email``, ``provider`` and ``user_metadata``.
        Those tokens may be short-lived: build the registry with
        ``on_reconnect=admin.reconnect_hook`` to renew them on a 401.

        Args:
            admin: An `AdminClient` for the account.
            statuses: Only connections in these statuses are added.

        Returns:
            The connections added (already registered ones are left alone).

        Raises:
            RegistryClosedError: The registry is closed.
            APIError: The Admin API answered with an error.

        .. versionadded:: 0.1.0
        """
        wanted = set(statuses)
        added: list[Connection] = []
        for info in await admin.connections():
            if not info.key or info.key in self._connections or info.status not in wanted:
                continue
            issued = await admin.issue_token(info.key)
            metadata = {
                "name": info.name,
                "email": info.email,
                "provider": info.integration_name,
                "user_metadata": info.user_metadata,
            }
            added.append(self.add(info.key, issued.token, metadata=metadata))
        return added

    # -- end of the issue 4 block ---------------------------------------------------------------

    @overload
    def map(
        self,
        fn: Callable[[Connection], Awaitable[T]],
        connections: Iterable[Connection | str] | None = None,
        *,
        concurrency: int = 16,
        per_connection: int = 1,
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
    ) -> FanOut[T]: ...

    def map(
        self,
        fn: Callable[..., Awaitable[T]],
        connections: Iterable[Connection | str] | None = None,
        *,
        items: Iterable[object] | None = None,
        concurrency: int = 16,
        per_connection: int = 1,
    ) -> FanOut[T]:
        """Run ``fn`` for many connections; yield one `Outcome` per job as jobs finish.

        Partial failure is the normal case: each outcome is ok (with its value), skipped (with
        the reason: e.g. the connection needs reauthorization, found without any I/O) or failed
        (with the typed error and its request id). Jobs start round-robin across connections, a
        connection paused by a 429 yields its slot to the others, and closing the iterator (or
        leaving ``async with``) cancels every running job. See `fan_out`.

        Args:
            fn: ``async fn(connection)``, or ``async fn(connection, item)`` with ``items``.
            connections: Connections or their ids (default: every registered connection).
            items: Run ``fn`` once per connection and item.
            concurrency: Most jobs running at once.
            per_connection: Most jobs of one connection running at once.

        Returns:
            A `FanOut`: an async iterator of `Outcome`, and an async context manager.

        .. versionadded:: 0.1.0
        """
        if items is None:
            return fan_out(
                self, fn, connections, concurrency=concurrency, per_connection=per_connection
            )
        return fan_out(
            self,
            fn,
            connections,
            items=items,
            concurrency=concurrency,
            per_connection=per_connection,
        )

    @property
    def open_sessions(self) -> int:
        """How many connections hold an open session right now."""
        transport = self._transport
        if self._tokenless is not None and self._tokenless in transport._open:  # noqa: SLF001
            return transport.open_sessions - 1
        return transport.open_sessions

    def _tokenless_channel(self) -> TokenlessChannel:
        """The registry's channel for calls without a token (``/link/token``), made on first use.

        It shares the pool, retries, timeouts and lifetime of the registry, but is no
        connection: it is never listed, counted or handed to the reconnect hook.

        Raises:
            RegistryClosedError: The registry is closed.
        """
        if self._state is _State.CLOSED:
            raise RegistryClosedError("Cannot send a request, as the registry has been closed.")
        channel = self._tokenless
        if channel is None:
            channel = self._tokenless = TokenlessChannel(self._requestor)
        return channel

    def __repr__(self) -> str:
        return (
            f"<ConnectionRegistry {self.base_url} connections={len(self._connections)} "
            f"state={self._state.name.lower()}>"
        )
