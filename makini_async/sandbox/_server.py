"""``Sandbox``: a local Makini server with a control plane, as a Python object.

`Sandbox` is the top layer: it builds the collaborators (`Core`), serves the app built on them
and offers their controls as methods; nothing below it knows it exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Self

from makini_async.sandbox._app import build_app
from makini_async.sandbox._connections import SandboxConnection
from makini_async.sandbox._core import Core
from makini_async.sandbox._data import Record
from makini_async.sandbox._faults import Fault, FaultKind
from makini_async.sandbox._request_log import RequestRecord
from makini_async.sandbox._settings import Settings
from makini_async.sandbox._webhooks import Delivery, WebhookEndpoint

__all__ = ["Sandbox"]


class Sandbox:
    """A faithful local Makini API server for tests, demos and benchmarks.

    Use it as an async context manager; it listens on ``host`` (``127.0.0.1``) and a free port
    unless ``port`` is given::

        async with Sandbox(connections=3, seed=1) as sandbox:
            token = sandbox.connections["c1"]
            sandbox.inject(status=503, times=2, path="/api/eam/work-orders", retry_after=1)

    Every control method here is also served over HTTP under ``/_sandbox/``.

    Args:
        connections: How many connections to create (ids ``c1``, ``c2``, ...).
        seed: Seeds the generated data, so the same seed gives the same records.
        host: The interface to listen on.
        port: The port (0: a free one).
        provider: The default provider slug of new connections (see ``PROVIDERS``).
        sizes: Records per collection for new connections, e.g. ``{"work-orders": 100_000}``.
        v4: Whether new connections answer with v4 standard fields.
        read_only: Whether new connections' writes succeed without change (Makini's sandbox).
        rate_limit: Requests per minute per connection.
        time_scale: Factor applied to every simulated wait (webhook backoff, syncs).
        sync_duration: Simulated seconds a requested sync stays ``inprogress``.
        webhook_timeout: Seconds a webhook receiver has to answer.
        client_id: The application's OAuth client id.
        client_secret: The application's OAuth client secret.
        max_body: The largest accepted request body in bytes.
        log_body_limit: How many bytes of each request body the request log keeps (0: none).
            The log holds the last 10,000 requests, so bodies can cost up to 10,000 times this.

    Raises:
        ValueError: ``log_body_limit`` is negative.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        connections: int = 1,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        provider: str = "sandbox",
        sizes: Mapping[str, int] | None = None,
        v4: bool = False,
        read_only: bool = False,
        rate_limit: int = 600,
        time_scale: float = 1.0,
        sync_duration: float = 5.0,
        webhook_timeout: float = 10.0,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",  # noqa: S107 - a published test credential
        max_body: int = 1024 * 1024,
        log_body_limit: int = 64 * 1024,
    ) -> None:
        if log_body_limit < 0:
            raise ValueError(f"log_body_limit must be 0 or more, not {log_body_limit}.")
        settings = Settings(
            seed=seed,
            provider=provider,
            sizes=dict(sizes or {}),
            v4=v4,
            read_only=read_only,
            rate_limit=rate_limit,
            sync_duration=sync_duration,
            webhook_timeout=webhook_timeout,
            client_id=client_id,
            client_secret=client_secret,
            max_body=max_body,
            log_body_limit=log_body_limit,
        )
        self._core = Core.build(settings, host=host, port=port, time_scale=time_scale)
        for _ in range(connections):
            self._core.connections.add()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving; ``url`` is valid afterwards.

        Raises:
            RuntimeError: The sandbox is already running.
        """
        core = self._core
        if core.lifecycle.running:
            raise RuntimeError("The sandbox is already running; call aclose() first.")
        await core.webhooks.start()
        await core.lifecycle.serve(build_app(core))

    async def aclose(self) -> None:
        """Stop serving, cancel background work and close every socket (idempotent)."""
        await self._core.lifecycle.cancel_tasks()
        await self._core.webhooks.aclose()
        await self._core.lifecycle.stop_serving()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        lifecycle = self._core.lifecycle
        where = lifecycle.url if lifecycle.running else "not running"
        count = len(self._core.connections.all())
        return f"<Sandbox {where} connections={count} seed={self.seed}>"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8600``.

        Raises:
            RuntimeError: The sandbox is not running.
        """
        return self._core.lifecycle.url

    @property
    def host(self) -> str:
        """The interface the sandbox listens on."""
        return self._core.lifecycle.host

    @property
    def port(self) -> int:
        """The port: the one given, or the free one picked once running."""
        return self._core.lifecycle.port

    @property
    def seed(self) -> int:
        """The seed of the generated data."""
        return self._core.settings.seed

    @property
    def client_id(self) -> str:
        """The application's OAuth client id."""
        return self._core.settings.client_id

    @property
    def client_secret(self) -> str:
        """The application's OAuth client secret."""
        return self._core.settings.client_secret

    @property
    def admin_token(self) -> str:
        """The current admin access token (for the Admin API, ``/api/system/``)."""
        return self._core.tokens.admin_access

    @property
    def admin_refresh_token(self) -> str:
        """The refresh token of the current admin pair."""
        return self._core.tokens.admin_refresh

    @property
    def max_body(self) -> int:
        """The largest accepted request body in bytes."""
        return self._core.settings.max_body

    @property
    def log_body_limit(self) -> int:
        """How many bytes of each request body the request log keeps."""
        return self._core.settings.log_body_limit

    @property
    def sync_duration(self) -> float:
        """Simulated seconds a requested sync stays ``inprogress``."""
        return self._core.settings.sync_duration

    # -- time -----------------------------------------------------------------------------------

    @property
    def time_scale(self) -> float:
        """The factor applied to every simulated wait; set it to speed up or slow down."""
        return self._core.clock.scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        self._core.clock.scale = value

    def now(self) -> float:
        """The sandbox's Unix time (the wall clock plus any ``advance()``)."""
        return self._core.clock.now()

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward, e.g. to expire tokens or rate-limit windows."""
        self._core.clock.advance(seconds)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time (scaled by ``time_scale``)."""
        await self._core.clock.sleep(seconds)

    # -- connections ----------------------------------------------------------------------------

    @property
    def connections(self) -> dict[str, str]:
        """Connection id → its current access token (a copy)."""
        return self._core.connections.access_tokens()

    def connection(self, connection_id: str) -> SandboxConnection:
        """Return a connection's record for inspection and tuning.

        Raises:
            KeyError: No such connection.
        """
        return self._core.connections.get(connection_id)

    def add_connection_sync(
        self,
        connection_id: str | None = None,
        *,
        provider: str | None = None,
        sizes: Mapping[str, int] | None = None,
        v4: bool | None = None,
        read_only: bool | None = None,
        rate_limit: int | None = None,
        status: str = "active",
        name: str | None = None,
        email: str | None = None,
    ) -> SandboxConnection:
        """Create a connection with its own data, token pair and settings.

        Args:
            connection_id: The id (default: the next ``cN``).
            provider: The provider slug (default: the sandbox's).
            sizes: Records per collection (default: the sandbox's).
            v4: Whether records carry v4 standard fields.
            read_only: Whether writes succeed without change.
            rate_limit: Requests per minute.
            status: The connection status (``active``, ``inactive``, ...).
            name: The company name shown by ``/api/integrations/current``.
            email: The contact e-mail.

        Returns:
            The new connection; its ``access_token`` is ready to use.

        Raises:
            ValueError: The id is taken, or the provider or status is unknown.
        """
        return self._core.connections.add(
            connection_id,
            provider=provider,
            sizes=sizes,
            v4=v4,
            read_only=read_only,
            rate_limit=rate_limit,
            status=status,
            name=name,
            email=email,
        )

    async def add_connection(
        self,
        connection_id: str | None = None,
        *,
        provider: str | None = None,
        sizes: Mapping[str, int] | None = None,
        v4: bool | None = None,
        read_only: bool | None = None,
        rate_limit: int | None = None,
        status: str = "active",
        name: str | None = None,
        email: str | None = None,
    ) -> SandboxConnection:
        """Create a connection (see :meth:`add_connection_sync` for the arguments).

        Returns:
            The new connection.
        """
        return self.add_connection_sync(
            connection_id,
            provider=provider,
            sizes=sizes,
            v4=v4,
            read_only=read_only,
            rate_limit=rate_limit,
            status=status,
            name=name,
            email=email,
        )

    def remove_connection(self, connection_id: str) -> None:
        """Delete a connection; its tokens stop working at once.

        Raises:
            KeyError: No such connection.
        """
        self._core.connections.remove(connection_id)

    def configure(
        self,
        connection_id: str,
        *,
        v4: bool | None = None,
        read_only: bool | None = None,
        rate_limit: int | None = None,
        rate_window: float | None = None,
        latency: float | None = None,
        provider: str | None = None,
        unsupported: Iterable[str] | None = None,
        custom_fields: Mapping[str, Mapping[str, object]] | None = None,
    ) -> SandboxConnection:
        """Change a connection's settings; ``None`` leaves a setting as it is.

        Args:
            connection_id: The connection.
            v4: Answer with v4 standard fields.
            read_only: Writes succeed without change.
            rate_limit: Requests per window.
            rate_window: The rate-limit window in seconds.
            latency: Seconds added before every answer.
            provider: The provider slug (changes the write rules).
            unsupported: Collections (e.g. ``work-orders``) whose writes answer 405.
            custom_fields: Extra fields the customer mapped, added to every record of a
                collection, e.g. ``{"work-orders": {"x_costCenter": "CC-7"}}``.

        Returns:
            The connection.

        Raises:
            KeyError: No such connection.
            ValueError: The provider is unknown.
        """
        return self._core.connections.configure(
            connection_id,
            v4=v4,
            read_only=read_only,
            rate_limit=rate_limit,
            rate_window=rate_window,
            latency=latency,
            provider=provider,
            unsupported=unsupported,
            custom_fields=custom_fields,
        )

    def set_status(self, connection_id: str, status: str) -> None:
        """Set the connection status and emit ``connection.status_changed``.

        Raises:
            KeyError: No such connection.
            ValueError: The status is not one of the contract's.
        """
        self._core.connections.set_status(connection_id, status)

    # -- the auth lifecycle ---------------------------------------------------------------------

    def expire_token(self, connection_id: str) -> None:
        """Make the connection's current access token expired (``TOKEN_EXPIRED``)."""
        self._core.auth.expire_token(connection_id)

    def change_credentials(self, connection_id: str) -> None:
        """Simulate the customer changing their system password.

        Calls answer 401 ``REAUTHORIZATION_REQUIRED`` and the sync status becomes ``fail`` until
        :meth:`reconnect`; a ``connection.reauthorization_required`` event is emitted.
        """
        self._core.auth.change_credentials(connection_id)

    def reconnect(self, connection_id: str) -> str:
        """Simulate the customer going through Makini Link again: a new token, old ones die.

        Returns:
            The connection's new access token.
        """
        return self._core.auth.reconnect(connection_id)

    def issue_token(self, connection_id: str) -> str:
        """Issue a fresh token pair for a connection, as the Admin API's token endpoint does.

        The old pair dies; the connection's other state (e.g. changed credentials) stays.

        Returns:
            The new access token.
        """
        return self._core.auth.issue_token(connection_id).value

    def disconnect(self, connection_id: str) -> None:
        """Disconnect as ``DELETE /api/integrations/current`` does: every token dies at once."""
        self._core.auth.disconnect(connection_id)

    def authorization_code(
        self, connection_id: str | None = None, provider: str = "sandbox"
    ) -> str:
        """Issue a one-time code, as Makini Link does after the customer's consent.

        Exchanging it at ``POST /link/token`` connects (or reconnects) ``connection_id``, or a
        new connection when it is ``None``.

        Returns:
            The code.
        """
        return self._core.auth.authorization_code(connection_id, provider)

    # -- faults and the request log -------------------------------------------------------------

    def inject(
        self,
        status: int | None = None,
        *,
        kind: FaultKind | None = None,
        times: int | None = 1,
        connection: str | None = None,
        path: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        message: str | None = None,
        details: Mapping[str, object] | None = None,
        latency: float = 0.0,
    ) -> Fault:
        """Arm a fault for the next ``times`` requests that match (``None``: until cleared).

        Kinds: ``status`` (an error envelope with ``status``, the default when a status is given),
        ``latency`` (answer normally after ``latency`` seconds), ``drop`` (close without an
        answer), ``reset`` (a TCP reset after reading the request), ``truncate`` (headers promise
        more body than is sent), ``malformed`` (a 200 whose JSON is broken) and ``html`` (a proxy's
        502 page). ``latency`` delays any kind. Faults are checked in the order they were armed,
        and control-plane requests never match. ``times`` counts requests as they arrive: note that
        aiohttp's client itself resends an idempotent request (GET, PUT, ...) once when the
        connection closes or resets before any answer, so to make a ``drop`` or ``reset`` reach
        the code under test, arm it for two requests.

        Args:
            status: The HTTP status for ``status`` faults (e.g. 503).
            kind: The fault kind.
            times: How many matching requests it applies to.
            connection: Only requests with this connection's token (valid or not).
            path: Only this path, or paths matching this glob (``/api/eam/*``).
            method: Only this HTTP method.
            retry_after: Seconds for a ``Retry-After`` header.
            code: The error code (default: the status's own from the contract table).
            message: The error message.
            details: The error details.
            latency: Seconds to wait before answering.

        Returns:
            The armed fault; ``remaining`` and ``hits`` show its use.

        Raises:
            ValueError: Neither a status nor a known kind was given.
        """
        return self._core.faults.arm(
            status,
            kind=kind,
            times=times,
            connection=connection,
            path=path,
            method=method,
            retry_after=retry_after,
            code=code,
            message=message,
            details=details,
            latency=latency,
        )

    def faults(self) -> list[Fault]:
        """Every armed fault that still has uses left."""
        return self._core.faults.active()

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._core.faults.clear()

    def requests(
        self,
        connection: str | None = None,
        *,
        path: str | None = None,
        method: str | None = None,
    ) -> list[RequestRecord]:
        """Return the logged requests, oldest first, optionally filtered.

        Each `RequestRecord` keeps what the client sent: method, path, query, headers (credentials
        redacted) and the body, cut at ``log_body_limit`` bytes, with ``json()``, ``form()`` and,
        for uploads, the multipart ``parts``::

            (create,) = sandbox.requests("c1", path="/api/eam/work-orders", method="POST")
            assert create.json() == {"title": "Replace pump seal"}

        ``GET /_sandbox/requests`` serves the same records as JSON, the body as text (or base64,
        see ``body_encoding``) next to ``body_size`` and ``body_truncated``. The log keeps the
        last 10,000 requests.

        Args:
            connection: Only this connection's requests.
            path: Only this path.
            method: Only this method.

        Returns:
            The matching records.
        """
        return self._core.request_log.select(connection, path=path, method=method)

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._core.request_log.clear()

    # -- data and syncs -------------------------------------------------------------------------

    def records(self, connection_id: str, resource: str) -> list[Record]:
        """Return a collection's records (v3 shape, source order) for building expectations.

        Args:
            connection_id: The connection.
            resource: ``domain/collection``, e.g. ``eam/work-orders``.

        Returns:
            The live records; do not mutate them.
        """
        return self._core.connections.records(connection_id, resource)

    def soft_delete(self, connection_id: str, resource: str, key: str) -> Record:
        """Mark a record deleted (it stays listed with ``deletedAt`` set) and emit ``.deleted``.

        Returns:
            The record.

        Raises:
            KeyError: No such record.
        """
        return self._core.connections.soft_delete(connection_id, resource, key)

    def fail_next_sync(self, connection_id: str, *, status: str = "error", code: str = "") -> None:
        """Make the connection's next requested sync end in ``error`` (or ``fail``)."""
        self._core.syncs.fail_next(connection_id, status=status, code=code)

    def start_sync(self, connection_id: str, sync_type: str, scopes: list[str]) -> None:
        """Mark a sync ``inprogress`` and finish it after ``sync_duration`` simulated seconds."""
        self._core.syncs.start(connection_id, sync_type, scopes)

    # -- webhooks -------------------------------------------------------------------------------

    def add_webhook(
        self,
        connection_id: str,
        url: str,
        *,
        events: Iterable[str] = ("*",),
        secret: str | None = None,
    ) -> WebhookEndpoint:
        """Register a webhook endpoint for a connection.

        Args:
            connection_id: Whose events to send.
            url: Where to POST them.
            events: Event-name globs to send (``*``: all; ``work-orders.*``; ...).
            secret: The signing secret (default: a generated one, on the returned endpoint).

        Returns:
            The endpoint.

        Raises:
            KeyError: No such connection.
        """
        self._core.connections.get(connection_id)
        return self._core.webhooks.add(connection_id, url, tuple(events), secret)

    def remove_webhook(self, endpoint_id: str) -> None:
        """Forget an endpoint; deliveries already scheduled still run.

        Args:
            endpoint_id: The ``id`` of an endpoint from :meth:`add_webhook` (an unknown one is
                ignored, as ``DELETE /_sandbox/webhooks/{id}`` does).
        """
        self._core.webhooks.remove(endpoint_id)

    def webhooks(self) -> list[WebhookEndpoint]:
        """Return the registered webhook endpoints.

        Returns:
            The endpoints, in registration order (``GET /_sandbox/webhooks`` serves them too).
        """
        return list(self._core.webhooks.endpoints.values())

    def configure_webhooks(
        self,
        *,
        duplicates: float | None = None,
        reorder: float | None = None,
        timeout: float | None = None,
        backoff_start: float | None = None,
        max_age: float | None = None,
    ) -> None:
        """Tune deliveries; ``None`` leaves a setting as it is.

        Args:
            duplicates: Probability (0-1) that a delivery is sent twice with the same id.
            reorder: Up to this many simulated seconds of random delay before each delivery,
                so events arrive out of order.
            timeout: Seconds a receiver has to answer (applies to deliveries started later).
            backoff_start: The first retry delay in simulated seconds (default 30).
            max_age: Simulated seconds after which retries stop (default 24 h).
        """
        self._core.webhooks.configure(
            duplicates=duplicates,
            reorder=reorder,
            timeout=timeout,
            backoff_start=backoff_start,
            max_age=max_age,
        )

    def emit(
        self,
        connection_id: str,
        event: str,
        data: Mapping[str, object] | None = None,
        body: list[str] | None = None,
    ) -> str:
        """Emit an event for a connection (delivered to its matching endpoints).

        Returns:
            The event id.
        """
        return self._core.webhooks.emit(connection_id, event, data, body)

    def events(self) -> list[dict[str, object]]:
        """Return every event emitted so far, whether or not an endpoint wanted it.

        Returns:
            The events, oldest first, each the envelope its deliveries carry (``id``, ``event``,
            ``created_at``, ``connection_id``, ``data``, ``body``).
        """
        return list(self._core.webhooks.events)

    def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        """Return the delivery log (every attempt), optionally for one event."""
        return self._core.webhooks.deliveries_of(event_id)

    async def drain_webhooks(self, *, timeout: float = 5.0) -> None:
        """Wait until every scheduled delivery and retry has finished.

        Raises:
            TimeoutError: Deliveries are still running after ``timeout`` seconds.
        """
        await self._core.webhooks.drain(timeout)

    async def wait_for_deliveries(
        self, count: int, *, ok: bool = True, timeout: float = 5.0
    ) -> None:
        """Wait until ``count`` deliveries (successful ones when ``ok``) are logged.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """
        await self._core.webhooks.wait_for_deliveries(count, ok=ok, timeout=timeout)
