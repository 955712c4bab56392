"""`AdminClient`: the Admin API (``/api/system/*``) with an admin token it obtains and renews.

The admin token comes from the ``client_credentials`` grant of ``POST /link/token``; when the
Admin API refuses it (401), a new one is fetched once and the call replayed, through the same
reconnect machinery the data connections use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final, Self, TypeVar
from urllib.parse import quote

import attrs

from ._errors import RequestTimeoutError, ResponseDecodeError
from ._registry import ConnectionRegistry
from ._retry import RetryPolicy
from ._tokens import LinkClient, TokenPair, parse_token_pair
from ._transport import Timeouts, check_seconds
from .models import ClientInfo, ConnectionInfo, MetadataItem, Model, Platform
from .models._wire import RecordDecodeError, decode_list
from .resources._service import decode_one, listing

if TYPE_CHECKING:
    from types import TracebackType

    from ._channel import ReconnectEvent
    from ._connection import Connection
    from ._response import APIResponse
    from ._types import JSON, Clock

__all__ = ["AdminClient", "IssuedToken"]

_ADMIN: Final = "makini-admin"

M = TypeVar("M", bound=Model)
T = TypeVar("T")


@attrs.frozen(slots=True, kw_only=True)
class IssuedToken:
    """A connection token issued by the Admin API.

    Attributes:
        token: The bearer token.
        expires_at: When it expires.

    .. versionadded:: 0.1.0
    """

    token: str = attrs.field(repr=False)
    expires_at: datetime | None = None


class _Call:
    """One Admin API call, which may first fetch the admin token: its timeout and deadline.

    Each step (the token fetch, then the call) gets the time left of the call's deadline; a
    step cut by it raises a `RequestTimeoutError` that names the call's deadline, not the time
    that step had left.
    """

    __slots__ = ("_clock", "_deadline", "_ends", "method", "path", "timeout")

    def __init__(
        self,
        clock: Clock,
        method: str,
        path: str,
        timeout: Timeouts | float | None,
        deadline: float | None,
    ) -> None:
        self._clock = clock
        self.method = method
        self.path = path
        self.timeout = timeout
        self._deadline = None if deadline is None else check_seconds("deadline", deadline)
        self._ends = None if self._deadline is None else clock.monotonic() + self._deadline

    def left(self) -> float | None:
        """The seconds left for the next step (None: no deadline).

        Raises:
            RequestTimeoutError: The deadline passed before the step was sent.
        """
        if self._ends is None:
            return None
        left = self._ends - self._clock.monotonic()
        if left <= 0:
            raise self._expired(self.method, self.path, reached=False)
        return left

    async def step(self, work: Callable[[float | None], Awaitable[T]]) -> T:
        """Run one step with the time left (``work(deadline)``)."""
        try:
            return await work(self.left())
        except RequestTimeoutError as exc:
            if self._ends is None or self._clock.monotonic() < self._ends:
                raise  # the step's own attempt timeout, not the call's deadline
            raise self._expired(exc.method, exc.path, reached=exc.may_have_reached_server) from None

    def _expired(self, method: str, path: str, *, reached: bool) -> RequestTimeoutError:
        return RequestTimeoutError(
            f"The call's deadline of {self._deadline}s passed",
            method=method,
            path=path,
            may_have_reached_server=reached,
        )


class AdminClient:
    """The Admin API: client info, platforms, connections, metadata and connection tokens.

    Use it as an async context manager (or call `aclose`)::

        async with AdminClient(client_id, client_secret, base_url=url) as admin:
            async for connection in admin.connections():
                print(connection.key, connection.status)

    Args:
        client_id: The application's OAuth client id.
        client_secret: The application's OAuth client secret.
        base_url: Makini's API origin (the sandbox's ``url`` in tests); default:
            ``$MAKINI_BASE_URL``, else Makini's, as for `ConnectionRegistry`.
        admin_token: An admin token you already hold (fetched on first use otherwise). Given
            alone, without client credentials, it is used until it is refused, and then every
            call raises `ReauthorizationRequiredError`: there is nothing to renew it with.
        timeout: The attempt timeout of every call, as ``ConnectionRegistry(timeout=)`` takes
            it (a number of seconds for the whole attempt, or `Timeouts`).
        retry: The `RetryPolicy` of every call (default: the registry's).

    Every call also takes ``timeout`` (per attempt) and ``deadline`` (seconds for the whole
    call, fetching the admin token first included when it has to).

    Raises:
        ValueError: Neither client credentials nor an admin token, or half of the credentials.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        base_url: str | None = None,
        admin_token: str | None = None,
        timeout: Timeouts | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if client_id is None and client_secret is None:
            if admin_token is None:
                raise ValueError("Pass client_id and client_secret, or an admin_token")
            self._link: LinkClient | None = None
        elif client_id is None or client_secret is None:
            raise ValueError("Pass client_id and client_secret together")
        self._registry = ConnectionRegistry(
            base_url, on_reconnect=self._renew, timeout=timeout, retry=retry
        )
        if client_id is not None and client_secret is not None:
            self._link = LinkClient(client_id, client_secret, registry=self._registry)
        self._token = admin_token
        #: How many admin tokens were fetched (for monitoring and tests).
        self.tokens_fetched = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's sessions. Idempotent.

        .. versionadded:: 0.1.0
        """
        await self._registry.aclose()

    def __repr__(self) -> str:
        return f"<AdminClient {self._registry.base_url}>"

    async def _renew(self, event: ReconnectEvent) -> str | None:
        # The only connection of the private registry is the admin one: /link/token goes
        # through its tokenless channel, which never runs this hook.
        del event
        return await self._fetch_token()

    async def _fetch_token(self, call: _Call | None = None) -> str | None:
        """A new admin token from the client credentials (None: a bare token, nothing to renew)."""
        if self._link is None:
            return None
        link = self._link
        if call is None:
            pair = await link.client_credentials()
        else:
            pair = await call.step(
                lambda left: link.client_credentials(timeout=call.timeout, deadline=left)
            )
        self.tokens_fetched += 1
        self._token = pair.access_token
        return pair.access_token

    async def _connection(self, call: _Call) -> Connection:
        registry = self._registry
        if _ADMIN not in registry:
            token = self._token if self._token is not None else await self._fetch_token(call)
            if token is None:  # pragma: no cover - __init__ wants a token or credentials
                raise ValueError("AdminClient has neither an admin token nor client credentials")
            registry.add(_ADMIN, token)
        return registry[_ADMIN]

    def _call(
        self,
        method: str,
        path: str,
        timeout: Timeouts | float | None,
        deadline: float | None,
    ) -> _Call:
        return _Call(self._registry.clock, method, path, timeout, deadline)

    async def _send(self, call: _Call, body: JSON = None) -> APIResponse:
        connection = await self._connection(call)
        return await call.step(
            lambda left: connection.request(
                call.method, call.path, json=body, timeout=call.timeout, deadline=left
            )
        )

    async def _request(self, call: _Call, body: JSON = None) -> JSON:
        return (await self._send(call, body)).data

    async def _list(self, call: _Call, model: type[M]) -> list[M]:
        connection = await self._connection(call)
        return await call.step(
            lambda left: listing(
                connection, call.path, model, [], timeout=call.timeout, deadline=left
            ).to_list()
        )

    async def client(
        self, *, timeout: Timeouts | float | None = None, deadline: float | None = None
    ) -> ClientInfo:
        """The application behind the credentials (``GET /api/system/client``).

        Args:
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call, fetching the admin token included.

        Returns:
            The `ClientInfo`.

        Raises:
            AuthenticationError: The credentials are refused.

        .. versionadded:: 0.1.0
        """
        call = self._call("GET", "/api/system/client", timeout, deadline)
        return decode_one(await self._send(call), ClientInfo, f"GET {call.path}")

    async def platforms(
        self, *, timeout: Timeouts | float | None = None, deadline: float | None = None
    ) -> list[Platform]:
        """Every platform Makini supports (``GET /api/system/platforms``, every page).

        Args:
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call, fetching the admin token included.

        Returns:
            The platforms.

        .. versionadded:: 0.1.0
        """
        call = self._call("GET", "/api/system/platforms", timeout, deadline)
        return await self._list(call, Platform)

    async def connections(
        self, *, timeout: Timeouts | float | None = None, deadline: float | None = None
    ) -> list[ConnectionInfo]:
        """Every connection of the account (``GET /api/system/connections``, every page).

        Args:
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call, fetching the admin token included.

        Returns:
            The connections.

        .. versionadded:: 0.1.0
        """
        call = self._call("GET", "/api/system/connections", timeout, deadline)
        return await self._list(call, ConnectionInfo)

    async def create_connection(
        self,
        *,
        name: str,
        email: str,
        provider: str,
        credentials: Mapping[str, JSON] | None = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> TokenPair:
        """Create a connection from the customer's system credentials (no Link UI).

        Args:
            name: The connection's name.
            email: A contact e-mail.
            provider: The platform slug (see `platforms`).
            credentials: The platform's credentials.
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call, fetching the admin token included.

        Returns:
            The new connection's `TokenPair`.

        Raises:
            ValidationError: 422, e.g. an unknown provider.

        .. versionadded:: 0.1.0
        """
        body: dict[str, JSON] = {"name": name, "email": email, "provider": provider}
        if credentials is not None:
            body["credentials"] = dict(credentials)
        call = self._call("POST", "/api/system/connections", timeout, deadline)
        return parse_token_pair(await self._request(call, body))

    async def delete_connection(
        self,
        connection_id: str,
        *,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> None:
        """Delete a connection; its tokens die at once.

        Args:
            connection_id: The connection.
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call, fetching the admin token included.

        Raises:
            NotFoundError: No such connection.

        .. versionadded:: 0.1.0
        """
        path = f"/api/system/connections/{_quote(connection_id)}"
        await self._request(self._call("DELETE", path, timeout, deadline))

    async def metadata(
        self,
        connection_id: str,
        *,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> list[MetadataItem]:
        """A connection's custom metadata (every page).

        Args:
            connection_id: The connection.
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call, fetching the admin token included.

        Returns:
            The key/value items.

        Raises:
            NotFoundError: No such connection.

        .. versionadded:: 0.1.0
        """
        path = f"/api/system/connections/{_quote(connection_id)}/metadata"
        return await self._list(self._call("GET", path, timeout, deadline), MetadataItem)

    async def set_metadata(
        self,
        connection_id: str,
        values: Mapping[str, JSON],
        *,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> list[MetadataItem]:
        """Set (merge) custom metadata on a connection.

        Args:
            connection_id: The connection.
            values: Keys and values to set.
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call, fetching the admin token included.

        Returns:
            The connection's metadata afterwards.

        Raises:
            NotFoundError: No such connection.
            ResponseDecodeError: The answer is not a list of items.

        .. versionadded:: 0.1.0
        """
        path = f"/api/system/connections/{_quote(connection_id)}/metadata"
        items: list[JSON] = [{"key": k, "value": v} for k, v in values.items()]
        data = await self._request(self._call("POST", path, timeout, deadline), items)
        body = data.get("data") if isinstance(data, dict) else data
        try:
            return decode_list(body, MetadataItem, ".data")
        except RecordDecodeError as exc:
            raise ResponseDecodeError(f"Unexpected value: {exc} (POST {path})") from None

    async def issue_token(
        self,
        connection_id: str,
        *,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> IssuedToken:
        """Issue a fresh access token for a connection (its previous tokens die).

        Args:
            connection_id: The connection.
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call, fetching the admin token included.

        Returns:
            The `IssuedToken`.

        Raises:
            NotFoundError: No such connection.
            ResponseDecodeError: The answer holds no token.

        .. versionadded:: 0.1.0
        """
        path = f"/api/system/connections/{_quote(connection_id)}/token"
        pair = parse_token_pair(
            await self._request(self._call("POST", path, timeout, deadline), {})
        )
        return IssuedToken(token=pair.access_token, expires_at=pair.expires_at)

    async def register(
        self, registry: ConnectionRegistry, *, statuses: Iterable[str] = ("active",)
    ) -> list[Connection]:
        """Register in ``registry`` every connection of the account that the Admin API lists.

        Each connection not yet registered gets a fresh token from the Admin API (its previous
        tokens die) and the metadata ``name``, ``email``, ``provider`` and ``user_metadata``.
        Those tokens may be short-lived: build the registry with
        ``on_reconnect=admin.reconnect_hook`` to renew them on a 401.

        Args:
            registry: The registry to fill.
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
        for info in await self.connections():
            if not info.key or info.key in registry or info.status not in wanted:
                continue
            issued = await self.issue_token(info.key)
            metadata = {
                "name": info.name,
                "email": info.email,
                "provider": info.integration_name,
                "user_metadata": info.user_metadata,
            }
            added.append(registry.add(info.key, issued.token, metadata=metadata))
        return added

    async def reconnect_hook(self, event: ReconnectEvent) -> str | None:
        """A registry reconnect hook that issues a fresh token through the Admin API.

        ``ConnectionRegistry(on_reconnect=admin.reconnect_hook)`` keeps connections filled by
        ``admin.register(registry)`` going when their short-lived tokens expire. A
        connection whose customer must reconnect (``REAUTHORIZATION_REQUIRED``) gets None.

        Returns:
            The new token, or None.

        .. versionadded:: 0.1.0
        """
        if event.error.code == "REAUTHORIZATION_REQUIRED":
            return None
        return (await self.issue_token(event.connection_id)).token


def _quote(connection_id: str) -> str:
    if not connection_id:
        raise ValueError("A connection id must not be empty")
    return quote(connection_id, safe="")
