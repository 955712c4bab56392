"""`Connection`: one customer connection as users hold it, and `TokenlessChannel`.

A connection is a handle: it holds its `Channel` (the per-connection state) and the registry's
`Engine`, and forwards every call to the engine with its channel. Everything it exposes is
public; the machinery behind it is reachable only through its owners.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from ._call import check_redact
from ._channel import ConnectionState
from .resources import EAM, ERP, WMS, _system

if TYPE_CHECKING:
    from ._bodies import Upload
    from ._channel import Channel
    from ._engine import Engine
    from ._pagination import Listing
    from ._response import APIResponse
    from ._transport import Timeouts
    from ._types import JSON, Clock
    from .models import Integration, SyncState
    from .resources import RawRow

__all__ = ["Connection", "TokenlessChannel"]


class _Sender:
    """The one ``request`` method of a connection and of the tokenless channel."""

    __slots__ = ("_channel", "_engine", "_strict")

    def __init__(self, channel: Channel, engine: Engine, *, strict: bool = False) -> None:
        self._channel = channel
        self._engine = engine
        self._strict = strict

    @property
    def clock(self) -> Clock:
        """The registry's clock (deadlines are measured on it)."""
        return self._engine.clock

    @property
    def strict(self) -> bool:
        """Whether typed calls decode strictly unless they say otherwise (the registry's).

        Strictly: a value that does not fit its field raises `ResponseDecodeError`.
        """
        return self._strict

    def request(
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
    ) -> Coroutine[object, None, APIResponse]:
        """Send one request and decode the answer: ``await conn.request(...)``.

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
        # The engine's coroutine itself, not one wrapping it: a frame less on every resume.
        return self._engine.request(
            self._channel,
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
            redact=check_redact(redact) if redact else (),
        )


class TokenlessChannel(_Sender):
    """Calls that carry no bearer token, such as ``POST /link/token``: ``registry.tokenless()``.

    Its session sends no ``Authorization`` header. It has a rate-limit pause and concurrency
    slots of its own and gets the registry's retries and timeouts, but it has no token to renew:
    a 401 is raised as its `AuthenticationError` subclass and the reconnect hook never runs. It
    is not a registered connection: iterating the registry, ``len(registry)`` and
    ``registry.map`` never see it.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<TokenlessChannel>"


class Connection(_Sender):
    """One customer connection: its typed resources, its system calls, and raw requests.

    Created by `ConnectionRegistry.add`; never build one yourself.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_eam", "_erp", "_wms")

    def __init__(self, channel: Channel, engine: Engine, *, strict: bool = False) -> None:
        super().__init__(channel, engine, strict=strict)
        self._eam: EAM | None = None
        self._erp: ERP | None = None
        self._wms: WMS | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id!r} {self.state.value} generation={self.generation}>"

    @property
    def id(self) -> str:
        """The connection id given to ``registry.add``."""
        return self._channel.key

    @property
    def state(self) -> ConnectionState:
        """Where the connection stands: a `ConnectionState`."""
        return self._channel.state

    @property
    def metadata(self) -> Mapping[str, object]:
        """The read-only metadata given to ``registry.add``."""
        return self._channel.metadata

    @property
    def generation(self) -> int:
        """The current token generation (1 for the first token, +1 per replacement)."""
        return self._channel.generation

    # -- credentials -------------------------------------------------------------------------

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
        return await self._channel.credentials_changed()

    def reactivate(self) -> None:
        """Let a connection parked as ``REAUTHORIZATION_REQUIRED`` send requests again.

        For a status event saying the connection is healthy again with its current token (with a
        new token, use ``registry.update_token``). A closed connection stays closed.

        .. versionadded:: 0.1.0
        """
        self._channel.reactivate()

    # -- typed resources ---------------------------------------------------------------------

    @property
    def eam(self) -> EAM:
        """The EAM/CMMS resources: ``conn.eam.work_orders.list()``.

        .. versionadded:: 0.1.0
        """
        namespace = self._eam
        if namespace is None:
            namespace = self._eam = EAM(self)
        return namespace

    @property
    def erp(self) -> ERP:
        """The ERP resources: ``conn.erp.sales_orders.list()``.

        .. versionadded:: 0.1.0
        """
        namespace = self._erp
        if namespace is None:
            namespace = self._erp = ERP(self)
        return namespace

    @property
    def wms(self) -> WMS:
        """The WMS resources: ``conn.wms.shipment_orders.list()``.

        .. versionadded:: 0.1.0
        """
        namespace = self._wms
        if namespace is None:
            namespace = self._wms = WMS(self)
        return namespace

    # -- the connection itself ---------------------------------------------------------------

    async def integration(
        self, *, timeout: Timeouts | float | None = None, deadline: float | None = None
    ) -> Integration:
        """The connection as Makini sees it, with its sync state (``/api/integrations/current``).

        Args:
            timeout: Per-attempt timeout.
            deadline: Seconds for the whole call.

        Returns:
            The `Integration`; ``sync_status == "fail"`` means the customer must reconnect.

        Raises:
            APIError: The server answered with an error.
            ResponseDecodeError: The answer does not fit the model.

        .. versionadded:: 0.1.0
        """
        return await _system.integration(self, timeout=timeout, deadline=deadline)

    async def sync_status(
        self, *, timeout: Timeouts | float | None = None, deadline: float | None = None
    ) -> SyncState:
        """The connection's sync status (``/api/integrations/sync/status``).

        Args:
            timeout: Per-attempt timeout.
            deadline: Seconds for the whole call.

        Returns:
            The `SyncState`.

        Raises:
            APIError: The server answered with an error.
            ResponseDecodeError: The answer does not fit the model.

        .. versionadded:: 0.1.0
        """
        return await _system.sync_status(self, timeout=timeout, deadline=deadline)

    async def request_sync(
        self,
        sync_type: str = "incremental",
        *,
        scopes: Sequence[str] | None = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> JSON:
        """Ask Makini to sync the connection now (``POST /api/integrations/sync``).

        Args:
            sync_type: The kind of sync, e.g. ``"incremental"`` or ``"full"``.
            scopes: Entities to sync (e.g. ``["work-orders"]``); None for all.
            timeout: Per-attempt timeout.
            deadline: Seconds for the whole call.

        Returns:
            The decoded answer (``data`` unwrapped).

        Raises:
            ValidationError: 422, e.g. an unknown scope.

        .. versionadded:: 0.1.0
        """
        return await _system.request_sync(
            self, sync_type, scopes, timeout=timeout, deadline=deadline
        )

    async def disconnect(
        self, *, timeout: Timeouts | float | None = None, deadline: float | None = None
    ) -> None:
        """Disconnect this connection at Makini; its token stops working at once.

        Args:
            timeout: Per-attempt timeout.
            deadline: Seconds for the whole call.

        Raises:
            APIError: The server answered with an error.

        .. versionadded:: 0.1.0
        """
        await _system.disconnect(self, timeout=timeout, deadline=deadline)

    async def raw_tables(
        self, *, timeout: Timeouts | float | None = None, deadline: float | None = None
    ) -> JSON:
        """The source system's raw tables (``/api/raw/tables``).

        Args:
            timeout: Per-attempt timeout.
            deadline: Seconds for the whole call.

        Returns:
            The decoded answer (``data`` unwrapped).

        Raises:
            APIError: The server answered with an error.

        .. versionadded:: 0.1.0
        """
        return await _system.raw_tables(self, timeout=timeout, deadline=deadline)

    def raw_rows(
        self,
        table: str,
        *,
        per_page: int | None = None,
        prefetch: int = 0,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> Listing[RawRow]:
        """The rows of one raw table, page after page (``/api/raw/tables/{table}/data``).

        Args:
            table: The table's name.
            per_page: Rows per page.
            prefetch: Pages fetched concurrently.
            timeout: Per-request timeout.
            deadline: Seconds for the whole listing, from its first request.

        Returns:
            A `Listing` of `RawRow` (the columns are in ``extra``).

        Raises:
            ValueError: An empty table name.

        .. versionadded:: 0.1.0
        """
        return _system.raw_rows(
            self, table, per_page=per_page, prefetch=prefetch, timeout=timeout, deadline=deadline
        )

    async def passthrough(
        self,
        path: str,
        method: Literal["get", "post", "put", "delete"] = "get",
        *,
        headers: Mapping[str, str] | None = None,
        body: JSON = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> JSON:
        """Call the source system's own API through Makini (``POST /api/passthrough``).

        Args:
            path: The path on the source system.
            method: ``get``, ``post``, ``put`` or ``delete``.
            headers: Headers for the source system.
            body: A JSON body for the source system.
            timeout: Per-attempt timeout.
            deadline: Seconds for the whole call.

        Returns:
            The decoded answer (``data`` unwrapped).

        Raises:
            ValidationError: 422, e.g. a bad method.

        .. versionadded:: 0.1.0
        """
        return await _system.passthrough(
            self, path, method, headers, body, timeout=timeout, deadline=deadline
        )
