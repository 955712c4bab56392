"""``Sandbox``: a local Makini server with a control plane, as a Python object."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import time
from collections.abc import Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Final, Self

from aiohttp import web

from makini_async.sandbox._data import DataSet, Record, iso
from makini_async.sandbox._errors import ApiError
from makini_async.sandbox._spec import load_spec
from makini_async.sandbox._state import (
    ACCESS_TTL,
    CONNECTION_STATUSES,
    FAULT_KINDS,
    REFRESH_TTL,
    ConnectionState,
    Delivery,
    Fault,
    FaultKind,
    RequestRecord,
    Token,
    WebhookEndpoint,
    make_token,
)
from makini_async.sandbox._webhooks import WebhookHub
from makini_async.sandbox._writes import PROVIDERS

__all__ = ["Sandbox"]

_LOG_SIZE: Final = 10_000
_IDEMPOTENCY_TTL: Final = 86400.0


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
        self.seed = seed
        self.host = host
        self.port = port
        self.time_scale = time_scale
        self.sync_duration = sync_duration
        self.client_id = client_id
        self.client_secret = client_secret
        self.max_body = max_body
        self.log_body_limit = log_body_limit
        self.default_rate_limit = rate_limit
        self.spec = load_spec()
        self._default_provider = provider
        self._default_sizes = dict(sizes or {})
        self._default_v4 = v4
        self._default_read_only = read_only
        self._signing_key = secrets.token_bytes(32)
        self._offset = 0.0
        self._states: dict[str, ConnectionState] = {}
        self._tokens: dict[str, Token] = {}
        self._codes: dict[str, dict[str, str]] = {}
        self._faults: list[Fault] = []
        self._log: collections.deque[RequestRecord] = collections.deque(maxlen=_LOG_SIZE)
        self._counter = 0
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.webhooks = WebhookHub(self.now, lambda: self.time_scale, webhook_timeout, seed)
        self.admin_token = ""
        self.admin_refresh_token = ""
        self.issue_admin_token()
        for _ in range(connections):
            self.add_connection_sync()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving; ``url`` is valid afterwards.

        Raises:
            RuntimeError: The sandbox is already running.
        """
        from makini_async.sandbox._app import build_app  # noqa: PLC0415 - _app imports us

        if self._runner is not None:
            raise RuntimeError("The sandbox is already running; call aclose() first.")
        await self.webhooks.start()
        runner = web.AppRunner(
            build_app(self), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def aclose(self) -> None:
        """Stop serving, cancel background work and close every socket (idempotent)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.webhooks.aclose()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

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
        where = f"http://{self.host}:{self.port}" if self._runner else "not running"
        return f"<Sandbox {where} connections={len(self._states)} seed={self.seed}>"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8600``.

        Raises:
            RuntimeError: The sandbox is not running.
        """
        if self._runner is None:
            raise RuntimeError("The sandbox is not running: use `async with Sandbox()` first.")
        return f"http://{self.host}:{self.port}"

    # -- time -----------------------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox's Unix time (the wall clock plus any ``advance()``)."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward, e.g. to expire tokens or rate-limit windows."""
        self._offset += seconds

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time (scaled by ``time_scale``)."""
        await asyncio.sleep(seconds * self.time_scale)

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run a coroutine in the background until it ends or the sandbox closes."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections ----------------------------------------------------------------------------

    @property
    def connections(self) -> dict[str, str]:
        """Connection id → its current access token (a copy)."""
        return {cid: state.access_token for cid, state in self._states.items()}

    def connection(self, connection_id: str) -> ConnectionState:
        """Return a connection's state for inspection and tuning.

        Raises:
            KeyError: No such connection.
        """
        try:
            return self._states[connection_id]
        except KeyError:
            raise KeyError(f"No sandbox connection {connection_id!r}.") from None

    def find_connection(self, connection_id: str) -> ConnectionState | None:
        """Return a connection's state, or ``None`` when there is no such connection."""
        return self._states.get(connection_id)

    def all_connections(self) -> list[ConnectionState]:
        """Every connection, in creation order."""
        return list(self._states.values())

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
    ) -> ConnectionState:
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
        self._counter += 1
        cid = connection_id or f"c{self._counter}"
        while connection_id is None and cid in self._states:
            self._counter += 1
            cid = f"c{self._counter}"
        if cid in self._states:
            raise ValueError(f"A connection {cid!r} exists already; pick another id.")
        slug = provider or self._default_provider
        if slug not in PROVIDERS:
            raise ValueError(f"Unknown provider {slug!r}; use one of {sorted(PROVIDERS)}.")
        if status not in CONNECTION_STATUSES:
            raise ValueError(
                f"Unknown status {status!r}; use one of {sorted(CONNECTION_STATUSES)}."
            )
        data = DataSet(self.spec, cid, self._counter, self.seed, dict(sizes or self._default_sizes))
        state = ConnectionState(
            id=cid,
            index=self._counter,
            provider=slug,
            data=data,
            name=name or f"Customer {cid}",
            email=email or f"maintenance@{cid}.example.com",
            status=status,
            v4=self._default_v4 if v4 is None else v4,
            read_only=self._default_read_only if read_only is None else read_only,
            rate_limit=self.default_rate_limit if rate_limit is None else rate_limit,
            created_at=self.now(),
            sync_updated_at=self.now(),
        )
        self._states[cid] = state
        self._issue_pair(state)
        return state

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
    ) -> ConnectionState:
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
        """Delete a connection; its tokens stop working at once."""
        state = self.connection(connection_id)
        self._revoke(state.id)
        del self._states[state.id]

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
    ) -> ConnectionState:
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
            ValueError: The provider is unknown.
        """
        state = self.connection(connection_id)
        if provider is not None:
            if provider not in PROVIDERS:
                raise ValueError(f"Unknown provider {provider!r}; use one of {sorted(PROVIDERS)}.")
            state.provider = provider
        if v4 is not None:
            state.v4 = v4
        if read_only is not None:
            state.read_only = read_only
        if rate_limit is not None:
            state.rate_limit = rate_limit
            state.window_count = 0
        if rate_window is not None:
            state.rate_window = rate_window
        if latency is not None:
            state.latency = latency
        if unsupported is not None:
            state.unsupported = set(unsupported)
        if custom_fields is not None:
            state.custom_fields = {name: dict(extra) for name, extra in custom_fields.items()}
        state.data.touch_all()  # cached pages may show the old shape
        return state

    # -- tokens and the auth lifecycle ----------------------------------------------------------

    def _new_token(self, kind: str, subject: str | None, ttl: float) -> Token:
        expires = self.now() + ttl
        value = make_token(subject or "admin", kind, expires, self._signing_key)
        token = Token(value, kind, subject, expires)  # type: ignore[arg-type]
        self._tokens[value] = token
        return token

    def _issue_pair(self, state: ConnectionState) -> tuple[Token, Token]:
        self._revoke(state.id)
        access = self._new_token("access", state.id, ACCESS_TTL)
        refresh = self._new_token("refresh", state.id, REFRESH_TTL)
        state.access_token, state.refresh_token = access.value, refresh.value
        return access, refresh

    def issue_admin_token(self) -> tuple[Token, Token]:
        """Issue a new admin token pair, as the ``client_credentials`` grant does.

        Earlier admin pairs keep working until they expire or are refreshed.

        Returns:
            ``(access, refresh)``; ``admin_token`` and ``admin_refresh_token`` are updated.
        """
        access = self._new_token("admin", None, ACCESS_TTL)
        refresh = self._new_token("admin_refresh", None, REFRESH_TTL)
        refresh.partner = access.value
        self.admin_token, self.admin_refresh_token = access.value, refresh.value
        return access, refresh

    def _revoke(self, connection_id: str) -> None:
        for token in self._tokens.values():
            if token.connection_id == connection_id:
                token.revoked = True

    def token(self, value: str) -> Token | None:
        """Look up an issued token (valid or not)."""
        return self._tokens.get(value)

    def expire_token(self, connection_id: str) -> None:
        """Make the connection's current access token expired (``TOKEN_EXPIRED``)."""
        state = self.connection(connection_id)
        self._tokens[state.access_token].expires_at = self.now() - 1

    def change_credentials(self, connection_id: str) -> None:
        """Simulate the customer changing their system password.

        Calls answer 401 ``REAUTHORIZATION_REQUIRED`` and the sync status becomes ``fail`` until
        :meth:`reconnect`; a ``connection.reauthorization_required`` event is emitted.
        """
        state = self.connection(connection_id)
        state.credentials_changed = True
        state.sync_status = "fail"
        state.sync_updated_at = self.now()
        self.emit(
            state.id, "connection.reauthorization_required", {"reason": "credentials_changed"}
        )

    def reconnect(self, connection_id: str) -> str:
        """Simulate the customer going through Makini Link again: a new token, old ones die.

        Returns:
            The connection's new access token.
        """
        state = self.connection(connection_id)
        was_offline = state.credentials_changed or state.disconnected
        state.credentials_changed = False
        state.disconnected = False
        state.sync_status = "done"
        state.sync_updated_at = self.now()
        access, _ = self._issue_pair(state)
        if was_offline:
            self.emit(
                state.id, "connection.status_changed", {"previous": "offline", "current": "online"}
            )
        return access.value

    def issue_token(self, connection_id: str) -> str:
        """Issue a fresh token pair for a connection, as the Admin API's token endpoint does.

        The old pair dies; the connection's other state (e.g. changed credentials) stays.

        Returns:
            The new access token.
        """
        access, _ = self._issue_pair(self.connection(connection_id))
        return access.value

    def disconnect(self, connection_id: str) -> None:
        """Disconnect as ``DELETE /api/integrations/current`` does: every token dies at once."""
        state = self.connection(connection_id)
        state.disconnected = True
        self._revoke(state.id)
        self.emit(
            state.id, "connection.status_changed", {"previous": "online", "current": "offline"}
        )

    def set_status(self, connection_id: str, status: str) -> None:
        """Set the connection status and emit ``connection.status_changed``.

        Raises:
            ValueError: The status is not one of the contract's.
        """
        if status not in CONNECTION_STATUSES:
            raise ValueError(
                f"Unknown status {status!r}; use one of {sorted(CONNECTION_STATUSES)}."
            )
        state = self.connection(connection_id)
        previous, state.status = state.status, status
        self.emit(state.id, "connection.status_changed", {"previous": previous, "current": status})

    def refresh(self, refresh_token: str) -> tuple[Token, Token]:
        """Rotate a token pair: a new pair is issued and the old pair dies.

        Raises:
            ApiError: The refresh token is unknown, revoked or expired.
        """
        token = self._tokens.get(refresh_token)
        if token is None or token.revoked or token.kind not in {"refresh", "admin_refresh"}:
            raise ApiError("AUTHENTICATION_FAILED", "The refresh token is unknown or revoked.")
        if token.expires_at <= self.now():
            raise ApiError("TOKEN_EXPIRED", "The refresh token has expired.")
        if token.kind == "admin_refresh":
            token.revoked = True
            partner = self._tokens.get(token.partner)
            if partner is not None:
                partner.revoked = True
            return self.issue_admin_token()
        return self._issue_pair(self.connection(str(token.connection_id)))

    def authorization_code(
        self, connection_id: str | None = None, provider: str = "sandbox"
    ) -> str:
        """Issue a one-time code, as Makini Link does after the customer's consent.

        Exchanging it at ``POST /link/token`` connects (or reconnects) ``connection_id``, or a
        new connection when it is ``None``.
        """
        code = f"code_{secrets.token_urlsafe(16)}"
        self._codes[code] = {"connection": connection_id or "", "provider": provider}
        return code

    def exchange_code(self, code: str) -> tuple[Token, Token]:
        """Trade an authorization code for a connection token pair.

        Raises:
            ApiError: The code is unknown or used.
        """
        grant = self._codes.pop(code, None)
        if grant is None:
            raise ApiError("INVALID_REQUEST", "The authorization code is unknown or used.")
        cid = grant["connection"]
        if cid and cid in self._states:
            self.reconnect(cid)
            state = self._states[cid]
        else:
            state = self.add_connection_sync(cid or None, provider=grant["provider"])
        return self._tokens[state.access_token], self._tokens[state.refresh_token]

    # -- faults, limits and the request log -----------------------------------------------------

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
        chosen = kind or ("status" if status is not None else None)
        if chosen is None and latency:
            chosen = "latency"
        if chosen not in FAULT_KINDS:
            raise ValueError(f"Give a status or one of the kinds {sorted(FAULT_KINDS)}.")
        fault = Fault(
            id=f"flt_{secrets.token_hex(6)}",
            kind=chosen,
            remaining=times,
            connection=connection,
            path=path,
            method=method,
            status=status or (502 if chosen == "html" else 503),
            code=code,
            message=message,
            retry_after=retry_after,
            details=dict(details) if details else None,
            latency=latency,
        )
        self._faults.append(fault)
        return fault

    def faults(self) -> list[Fault]:
        """Every armed fault that still has uses left."""
        return [f for f in self._faults if f.remaining is None or f.remaining > 0]

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    def take_fault(self, connection: str | None, path: str, method: str) -> Fault | None:
        """Find the first fault matching a request and use one of its shots."""
        if not self._faults:
            return None
        for fault in self._faults:
            if fault.matches(connection, path, method):
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def count_request(self, state: ConnectionState) -> tuple[int, int, float]:
        """Count a request against the connection's window.

        Returns:
            ``(limit, remaining, window end)``; ``remaining`` is negative once over the limit.
        """
        now = self.now()
        if now >= state.window_start + state.rate_window:
            state.window_start = now
            state.window_count = 0
        state.window_count += 1
        return (
            state.rate_limit,
            state.rate_limit - state.window_count,
            (state.window_start + state.rate_window),
        )

    def log(self, record: RequestRecord) -> None:
        """Append to the request log (the oldest entries go past 10,000).

        Each record keeps at most ``log_body_limit`` bytes of its body, so the log's memory is
        bounded by both.
        """
        self._log.append(record)

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
        see ``body_encoding``) next to ``body_size`` and ``body_truncated``.

        Args:
            connection: Only this connection's requests.
            path: Only this path.
            method: Only this method.

        Returns:
            The matching records.
        """
        return [
            r
            for r in self._log
            if (connection is None or r.connection == connection)
            and (path is None or r.path == path)
            and (method is None or r.method == method.upper())
        ]

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._log.clear()

    # -- data -----------------------------------------------------------------------------------

    def records(self, connection_id: str, resource: str) -> list[Record]:
        """Return a collection's records (v3 shape, source order) for building expectations.

        Args:
            connection_id: The connection.
            resource: ``domain/collection``, e.g. ``eam/work-orders``.

        Returns:
            The live records; do not mutate them.
        """
        return self.connection(connection_id).data.collection(resource).records

    def soft_delete(self, connection_id: str, resource: str, key: str) -> Record:
        """Mark a record deleted (it stays listed with ``deletedAt`` set) and emit ``.deleted``.

        Raises:
            KeyError: No such record.
        """
        state = self.connection(connection_id)
        collection = state.data.collection(resource)
        record = collection.by_key[key]
        stamp = iso(self.now())
        record["deletedAt"] = stamp
        if "updatedAt" in record:
            record["updatedAt"] = stamp
        collection.touch()
        self.emit(state.id, f"{resource.partition('/')[2]}.deleted", body=[key])
        return record

    def remember(
        self, state: ConnectionState, key: str, fingerprint: str
    ) -> tuple[int, bytes] | None:
        """Look up a stored idempotent answer.

        Returns:
            ``(status, body)`` to replay, or ``None`` when the key is new or expired.

        Raises:
            ApiError: The key was used with another request (``IDEMPOTENCY_CONFLICT``).
        """
        stored = state.idempotency.get(key)
        if stored is None:
            return None
        seen_fingerprint, stored_at, status, body = stored
        if self.now() - stored_at > _IDEMPOTENCY_TTL:
            del state.idempotency[key]
            return None
        if seen_fingerprint != fingerprint:
            raise ApiError(
                "IDEMPOTENCY_CONFLICT",
                "This Idempotency-Key was used with another request body or path.",
                details={"idempotency_key": key},
            )
        return status, body

    # -- sync and webhooks ----------------------------------------------------------------------

    def fail_next_sync(self, connection_id: str, *, status: str = "error", code: str = "") -> None:
        """Make the connection's next requested sync end in ``error`` (or ``fail``)."""
        state = self.connection(connection_id)
        state.next_sync_failure = {
            "status": status,
            "code": code or ("AUTHENTICATION_FAILED" if status == "fail" else "SYSTEM_UNAVAILABLE"),
        }

    def start_sync(self, connection_id: str, sync_type: str, scopes: list[str]) -> None:
        """Mark a sync ``inprogress`` and finish it after ``sync_duration`` simulated seconds."""
        state = self.connection(connection_id)
        state.sync_status = "inprogress"
        state.sync_updated_at = self.now()
        state.sync_error = None
        self.spawn(self._finish_sync(state, sync_type, scopes))

    async def _finish_sync(self, state: ConnectionState, sync_type: str, scopes: list[str]) -> None:
        await self.sleep(self.sync_duration)
        state.sync_updated_at = self.now()
        failure, state.next_sync_failure = state.next_sync_failure, None
        if failure is not None:
            state.sync_status = failure["status"]
            state.sync_error = {"code": failure["code"], "message": "The sync failed."}
            self.emit(state.id, "connection.sync_failed", dict(state.sync_error))
            return
        state.sync_status = "fulldone" if sync_type == "full" else "done"
        entities = scopes or sorted(
            name
            for domain, _, name in (r.partition("/") for r in state.data.resources)
            if domain == "eam" and "/" not in name and "." not in name
        )
        counts = {name: state.data.size(f"eam/{name}") for name in entities}
        self.emit(
            state.id,
            "connection.sync_completed",
            {"entities": entities, "counts": counts, "finished_at": iso(self.now())},
        )

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
        """
        self.connection(connection_id)
        return self.webhooks.add(connection_id, url, tuple(events), secret)

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
        hub = self.webhooks
        if duplicates is not None:
            hub.duplicates = duplicates
        if reorder is not None:
            hub.reorder = reorder
        if timeout is not None:
            hub.timeout = timeout
        if backoff_start is not None:
            hub.backoff_start = backoff_start
        if max_age is not None:
            hub.max_age = max_age

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
        return self.webhooks.emit(connection_id, event, data, body)

    def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        """Return the delivery log (every attempt), optionally for one event."""
        return [d for d in self.webhooks.deliveries if event_id is None or d.event_id == event_id]

    async def drain_webhooks(self, *, timeout: float = 5.0) -> None:
        """Wait until every scheduled delivery and retry has finished.

        Raises:
            TimeoutError: Deliveries are still running after ``timeout`` seconds.
        """
        await self.webhooks.drain(timeout)

    async def wait_for_deliveries(
        self, count: int, *, ok: bool = True, timeout: float = 5.0
    ) -> None:
        """Wait until ``count`` deliveries (successful ones when ``ok``) are logged.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """
        await self.webhooks.wait(
            lambda: sum(1 for d in self.webhooks.deliveries if d.ok or not ok) >= count, timeout
        )
