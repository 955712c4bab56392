"""The auth lifecycle of connections: refresh, Makini Link codes, credential changes, reconnects.

Each flow changes a connection's tokens and flags together and emits the event Makini sends.
"""

from __future__ import annotations

from makini_async.sandbox._clock import SandboxClock
from makini_async.sandbox._connections import Connections
from makini_async.sandbox._tokens import Token, TokenTable
from makini_async.sandbox._webhooks import WebhookHub

__all__ = ["AuthFlows"]


class AuthFlows:
    """Moves connections through the auth lifecycle.

    Args:
        connections: The connections.
        tokens: Where tokens are issued and revoked.
        webhooks: Where the lifecycle events go.
        clock: The sandbox's clock.
    """

    def __init__(
        self,
        connections: Connections,
        tokens: TokenTable,
        webhooks: WebhookHub,
        clock: SandboxClock,
    ) -> None:
        self._connections = connections
        self._tokens = tokens
        self._webhooks = webhooks
        self._clock = clock

    def expire_token(self, connection_id: str) -> None:
        """Make the connection's current access token expired (``TOKEN_EXPIRED``)."""
        self._tokens.expire(self._connections.get(connection_id).access_token)

    def change_credentials(self, connection_id: str) -> None:
        """Simulate the customer changing their system password (see `Sandbox`)."""
        conn = self._connections.get(connection_id)
        conn.credentials_changed = True
        conn.sync_status = "fail"
        conn.sync_updated_at = self._clock.now()
        self._webhooks.emit(
            conn.id, "connection.reauthorization_required", {"reason": "credentials_changed"}
        )

    def reconnect(self, connection_id: str) -> str:
        """Simulate the customer going through Makini Link again: a new token, old ones die.

        Returns:
            The connection's new access token.
        """
        conn = self._connections.get(connection_id)
        was_offline = conn.credentials_changed or conn.disconnected
        conn.credentials_changed = False
        conn.disconnected = False
        conn.sync_status = "done"
        conn.sync_updated_at = self._clock.now()
        access, _ = self._connections.issue_pair(conn)
        if was_offline:
            self._webhooks.emit(
                conn.id, "connection.status_changed", {"previous": "offline", "current": "online"}
            )
        return access.value

    def issue_token(self, connection_id: str) -> Token:
        """Issue a fresh pair, as the Admin API's token endpoint does; other state stays.

        Returns:
            The new access token.
        """
        access, _ = self._connections.issue_pair(self._connections.get(connection_id))
        return access

    def disconnect(self, connection_id: str) -> None:
        """Disconnect as ``DELETE /api/integrations/current`` does: every token dies at once."""
        conn = self._connections.get(connection_id)
        conn.disconnected = True
        self._tokens.revoke(conn.id)
        self._webhooks.emit(
            conn.id, "connection.status_changed", {"previous": "online", "current": "offline"}
        )

    def refresh(self, refresh_token: str) -> tuple[Token, Token]:
        """Rotate a token pair: a new pair is issued and the old pair dies.

        Raises:
            SandboxError: The refresh token is unknown, revoked or expired.
        """
        token = self._tokens.check_refresh(refresh_token)
        if token.kind == "admin_refresh":
            return self._tokens.rotate_admin(token)
        return self._connections.issue_pair(self._connections.get(str(token.connection_id)))

    def authorization_code(self, connection_id: str | None, provider: str) -> str:
        """Issue a one-time code, as Makini Link does after the customer's consent."""
        return self._tokens.new_code(connection_id, provider)

    def exchange_code(self, code: str) -> tuple[Token, Token]:
        """Trade an authorization code for a connection token pair.

        The code's connection is reconnected, or created when it has none or is gone.

        Raises:
            SandboxError: The code is unknown or used.
        """
        grant = self._tokens.take_code(code)
        cid = grant["connection"]
        conn = self._connections.find(cid) if cid else None
        if conn is not None:
            self.reconnect(cid)
        else:
            conn = self._connections.add(cid or None, provider=grant["provider"])
        return self._tokens[conn.access_token], self._tokens[conn.refresh_token]
