"""Token lifecycle: Makini Link code exchange, refresh with rotation, and a reconnect hook.

``POST /link/token`` issues token pairs. A refresh **rotates** the pair: the old pair dies the
moment the new one is issued, so a refresh must happen once per pair, and the new pair must be
stored before the old one is forgotten, or a crash in between locks the customer out.
`TokenRefresher` does both: refreshes of one connection are serialised, a caller holding an
already-rotated pair gets the newer pair instead of a second refresh, and the new pair goes to
the user's async `TokenStore` before anything else sees it (if the store fails, the pair is kept
in memory and saving is retried on the next call). Used as a registry's ``on_reconnect`` hook it
refreshes on ``TOKEN_EXPIRED`` and reports ``REAUTHORIZATION_REQUIRED`` (or a refused refresh) to
a user callback: the customer must reconnect through Makini Link.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Protocol, Self

import attrs

from ._errors import (
    AuthenticationError,
    ResponseDecodeError,
    TokenExpiredError,
    TokenNotFoundError,
)
from ._registry import ConnectionRegistry
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from types import TracebackType

    from ._channel import ReconnectEvent
    from ._transport import Timeouts
    from ._types import JSON

__all__ = [
    "LinkClient",
    "MemoryTokenStore",
    "TokenPair",
    "TokenRefresher",
    "TokenStore",
    "parse_token_pair",
]

logger: Final = logging.getLogger("makini_async")

#: Below this, ``expires_in`` is read as seconds from now rather than a Unix time.
_RELATIVE_LIMIT: Final = 1_000_000_000
#: The grant fields that are credentials in their own right.
_SECRET_FIELDS: Final = ("code", "refresh_token")


@attrs.frozen(slots=True, kw_only=True)
class TokenPair:
    """An access token, the refresh token that rotates it, and when the access token expires.

    Attributes:
        access_token: The bearer token for API calls.
        refresh_token: The token that buys the next pair (None when none was issued).
        expires_at: When the access token expires (aware), or None when not said.
        token_type: ``bearer``.

    .. versionadded:: 0.1.0
    """

    access_token: str = attrs.field(repr=False)
    refresh_token: str | None = attrs.field(default=None, repr=False)
    expires_at: datetime | None = None
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a credential

    def expires_within(self, seconds: float) -> bool:
        """Tell whether the access token expires within ``seconds`` (False when unknown).

        .. versionadded:: 0.1.0
        """
        if self.expires_at is None:
            return False
        return self.expires_at.timestamp() - time.time() <= seconds


def parse_token_pair(data: JSON, *, now: float | None = None) -> TokenPair:
    """Read a ``/link/token`` answer (bare or wrapped in ``data``).

    ``expires_in`` is documented as a Unix time but has been seen as a string and as a duration:
    an int or numeric string below 10^9 is taken as seconds from now.

    Raises:
        ResponseDecodeError: No access token, or a malformed expiry.
    """
    body = data.get("data", data) if isinstance(data, dict) else data
    if not isinstance(body, dict):
        raise ResponseDecodeError("Expected a token object")
    access = body.get("access_token", body.get("token"))
    refresh = body.get("refresh_token")
    if not isinstance(access, str) or not access:
        raise ResponseDecodeError("The token answer carries no access_token")
    if refresh is not None and not isinstance(refresh, str):
        raise ResponseDecodeError("The token answer's refresh_token is not a string")
    raw = body.get("expires_in")
    expires_at: datetime | None = None
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ResponseDecodeError("The token answer's expires_in is not a number")
        try:
            seconds = float(raw)
        except ValueError:
            raise ResponseDecodeError("The token answer's expires_in is not a number") from None
        if seconds < _RELATIVE_LIMIT:
            seconds += time.time() if now is None else now
        expires_at = datetime.fromtimestamp(seconds, UTC)
    token_type = body.get("token_type")
    return TokenPair(
        access_token=access,
        refresh_token=refresh or None,
        expires_at=expires_at,
        token_type=token_type.lower() if isinstance(token_type, str) else "bearer",
    )


class LinkClient:
    """Talks to ``POST /link/token``: code exchange, refresh, and client credentials.

    The client credentials travel in the body, so the calls carry no bearer token: they go
    through the registry's tokenless channel, which is no connection (it is never listed, and a
    refused grant raises its `AuthenticationError` without touching any connection's state or
    reconnect hook). The body is form-encoded, as OAuth 2.0 specifies for token endpoints
    (RFC 6749 sections 4.1.3, 4.4.2 and 6). Use it as an async context manager (or call
    `aclose`); it owns a small private registry unless you pass one.

    Args:
        client_id: The application's OAuth client id.
        client_secret: The application's OAuth client secret.
        base_url: Makini's API origin (the sandbox's ``url`` in tests); default:
            ``$MAKINI_BASE_URL``, else Makini's, as for `ConnectionRegistry`.
        registry: A registry to send through (default: a private one, closed by `aclose`).
        timeout: The private registry's attempt timeout, as ``ConnectionRegistry(timeout=)``
            takes it (a number of seconds for the whole attempt, or `Timeouts`). With
            ``registry``, that registry's timeouts apply instead.

    Raises:
        ValueError: An empty client id or secret, or both ``registry`` and ``timeout``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        base_url: str | None = None,
        registry: ConnectionRegistry | None = None,
        timeout: Timeouts | float | None = None,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret must be non-empty")
        if registry is not None and timeout is not None:
            raise ValueError("Pass timeout to the registry you pass, not to LinkClient")
        self._client_id = client_id
        self._client_secret = client_secret
        self._owned = registry is None
        # A refresh is never retried: a lost answer still rotated the pair server-side.
        self._registry = (
            registry
            if registry is not None
            else ConnectionRegistry(base_url, retry=RetryPolicy(attempts=1), timeout=timeout)
        )

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
        """Close the private registry (a registry you passed stays open).

        .. versionadded:: 0.1.0
        """
        if self._owned:
            await self._registry.aclose()

    def __repr__(self) -> str:
        return f"<LinkClient client_id={self._client_id!r}>"

    async def _token(
        self,
        fields: Mapping[str, str],
        timeout: Timeouts | float | None,
        deadline: float | None,
    ) -> TokenPair:
        channel = self._registry.tokenless()
        form = {**fields, "client_id": self._client_id, "client_secret": self._client_secret}
        # Never keep a credential of the body in an error, should the server echo one back.
        secrets = (self._client_secret, *(fields[k] for k in _SECRET_FIELDS if k in fields))
        response = await channel.request(
            "POST", "/link/token", form=form, redact=secrets, timeout=timeout, deadline=deadline
        )
        return parse_token_pair(response.data)

    async def exchange_code(
        self,
        code: str,
        *,
        redirect_uri: str | None = None,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> TokenPair:
        """Trade a Makini Link authorization code for a connection's token pair.

        Args:
            code: The ``code`` Makini Link sent to your redirect URI.
            redirect_uri: The redirect URI the flow used.
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call.

        Returns:
            The connection's first `TokenPair`.

        Raises:
            InvalidRequestError: The code is unknown or used.
            AuthenticationError: Wrong client credentials.

        .. versionadded:: 0.1.0
        """
        fields = {"grant_type": "authorization_code", "code": code}
        if redirect_uri is not None:
            fields["redirect_uri"] = redirect_uri
        return await self._token(fields, timeout, deadline)

    async def refresh(
        self,
        refresh_token: str,
        *,
        timeout: Timeouts | float | None = None,
        deadline: float | None = None,
    ) -> TokenPair:
        """Rotate a pair: the answer is the new pair, and the old pair is dead from now on.

        Prefer `TokenRefresher`, which refreshes once per pair and stores the result first.

        Args:
            refresh_token: The current pair's refresh token.
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call.

        Returns:
            The new `TokenPair`.

        Raises:
            AuthenticationError: The refresh token is unknown, revoked or expired.

        .. versionadded:: 0.1.0
        """
        fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self._token(fields, timeout, deadline)

    async def client_credentials(
        self, *, timeout: Timeouts | float | None = None, deadline: float | None = None
    ) -> TokenPair:
        """Get an admin token pair for the Admin API.

        Args:
            timeout: Per-attempt timeout, as for `Connection.request`.
            deadline: Seconds for the whole call.

        Returns:
            The admin `TokenPair`.

        Raises:
            AuthenticationError: Wrong client credentials.

        .. versionadded:: 0.1.0
        """
        return await self._token({"grant_type": "client_credentials"}, timeout, deadline)


class TokenStore(Protocol):
    """Where token pairs live (your database): async load and save by connection id.

    .. versionadded:: 0.1.0
    """

    async def load(self, connection_id: str) -> TokenPair | None:
        """The connection's current pair, or None."""

    async def save(self, connection_id: str, pair: TokenPair) -> None:
        """Store the connection's new pair durably (it replaces the old one)."""


class MemoryTokenStore:
    """A `TokenStore` in a dict: for tests, demos and single-process tools.

    .. versionadded:: 0.1.0
    """

    def __init__(self, pairs: Mapping[str, TokenPair] | None = None) -> None:
        self.pairs: dict[str, TokenPair] = dict(pairs or {})

    async def load(self, connection_id: str) -> TokenPair | None:
        """The connection's pair, or None."""
        return self.pairs.get(connection_id)

    async def save(self, connection_id: str, pair: TokenPair) -> None:
        """Replace the connection's pair."""
        self.pairs[connection_id] = pair


ReauthorizationCallback = Callable[["ReconnectEvent"], Awaitable[object]]


class TokenRefresher:
    """Refreshes connection tokens safely, and serves as a registry's reconnect hook.

    ``ConnectionRegistry(on_reconnect=refresher)``: on ``TOKEN_EXPIRED`` the connection's pair is
    refreshed once and the new access token returned; on ``REAUTHORIZATION_REQUIRED`` (or when
    the refresh itself is refused) ``on_reauthorization_required(event)`` is awaited and None
    returned, so the connection waits for ``registry.update_token`` after the customer
    reconnects.

    Args:
        link: The `LinkClient` that talks to ``/link/token``.
        store: Your `TokenStore`; a new pair is saved there before it is used.
        on_reauthorization_required: Awaited with the `ReconnectEvent` when the customer must
            reconnect (e.g. to e-mail them a Makini Link).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        link: LinkClient,
        store: TokenStore,
        *,
        on_reauthorization_required: ReauthorizationCallback | None = None,
    ) -> None:
        self._link = link
        self._store = store
        self._on_reauthorization = on_reauthorization_required
        self._locks: dict[str, asyncio.Lock] = {}
        self._unsaved: dict[str, TokenPair] = {}
        #: How many refreshes went to the server (for monitoring and tests).
        self.refreshes = 0

    async def _current(self, connection_id: str) -> TokenPair | None:
        pending = self._unsaved.get(connection_id)
        if pending is not None:
            await self._save(connection_id, pending)
            return pending
        return await self._store.load(connection_id)

    async def _save(self, connection_id: str, pair: TokenPair) -> None:
        try:
            await self._store.save(connection_id, pair)
        except Exception:
            # The old pair is already dead: never drop the new one. Keep it and retry later.
            self._unsaved[connection_id] = pair
            logger.exception(
                "Could not store the new token pair of connection %s; kept in memory, "
                "saving is retried on the next refresh",
                connection_id,
            )
        else:
            self._unsaved.pop(connection_id, None)

    async def refresh(self, connection_id: str, *, stale: TokenPair | None = None) -> TokenPair:
        """Refresh a connection's pair once, however many callers ask at the same time.

        Args:
            connection_id: The connection.
            stale: The pair the caller found wanting; when the stored pair is already a newer
                one, that newer pair is returned and nothing is sent.

        Returns:
            The connection's newest pair.

        Raises:
            TokenNotFoundError: The store has no refreshable pair for the connection.
            AuthenticationError: The refresh token was refused: the customer must reconnect.

        .. versionadded:: 0.1.0
        """
        lock = self._locks.setdefault(connection_id, asyncio.Lock())
        async with lock:
            current = await self._current(connection_id)
            if current is None or current.refresh_token is None:
                raise TokenNotFoundError(
                    f"No refreshable token pair stored for connection {connection_id!r}"
                )
            if stale is not None and current.refresh_token != stale.refresh_token:
                return current  # another task or process rotated it already
            new = await self._link.refresh(current.refresh_token)
            self.refreshes += 1
            await self._save(connection_id, new)
            return new

    async def __call__(self, event: ReconnectEvent) -> str | None:
        """The reconnect hook: a fresh access token, or None when the customer must reconnect.

        Args:
            event: What the registry tells its hook.

        Returns:
            The new access token, or None.

        .. versionadded:: 0.1.0
        """
        if isinstance(event.error, TokenExpiredError):
            try:
                stale = await self._current(event.connection_id)
                pair = await self.refresh(event.connection_id, stale=stale)
            except (AuthenticationError, TokenNotFoundError) as exc:
                logger.warning(
                    "Refreshing connection %s failed (%s); the customer must reconnect",
                    event.connection_id,
                    type(exc).__name__,
                )
            else:
                return pair.access_token
        if self._on_reauthorization is not None:
            await self._on_reauthorization(event)
        return None
