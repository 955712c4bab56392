"""Issued tokens: opaque values that look like JWTs, looked up in a table, expiring and revocable.

The table also holds the admin token pair and the one-time authorization codes Makini Link hands
out before they are exchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Final, Literal

import attrs

from makini_async.sandbox._clock import SandboxClock
from makini_async.sandbox._errors import SandboxError

__all__ = ["ACCESS_TTL", "REFRESH_TTL", "Token", "TokenTable", "make_token"]

ACCESS_TTL: Final = 30 * 86400
REFRESH_TTL: Final = 31 * 86400


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_token(subject: str, kind: str, expires_at: float, signing_key: bytes) -> str:
    """Return an opaque token that looks like a JWT (header.payload.signature).

    The sandbox never decodes it: tokens are looked up in a table, as Makini's are opaque to
    clients.
    """
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    claims = {"sub": subject, "typ": kind, "exp": int(expires_at), "jti": secrets.token_hex(8)}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


TokenKind = Literal["access", "refresh", "admin", "admin_refresh"]


@attrs.define
class Token:
    """An issued token: what it opens and whether it still does."""

    value: str = attrs.field(repr=False)
    kind: TokenKind
    connection_id: str | None
    expires_at: float
    revoked: bool = False
    partner: str = attrs.field(default="", repr=False)


class TokenTable:
    """Every token one sandbox issued (valid or not), its admin pair and pending codes.

    Args:
        clock: The sandbox's clock, for expiry.
    """

    def __init__(self, clock: SandboxClock) -> None:
        self._clock = clock
        self._signing_key = secrets.token_bytes(32)
        self._tokens: dict[str, Token] = {}
        self._codes: dict[str, dict[str, str]] = {}
        self.admin_access = ""
        self.admin_refresh = ""

    def get(self, value: str) -> Token | None:
        """Look up an issued token (valid or not)."""
        return self._tokens.get(value)

    def __getitem__(self, value: str) -> Token:
        return self._tokens[value]

    def _new(self, kind: TokenKind, subject: str | None, ttl: float) -> Token:
        expires = self._clock.now() + ttl
        value = make_token(subject or "admin", kind, expires, self._signing_key)
        token = Token(value, kind, subject, expires)
        self._tokens[value] = token
        return token

    def issue_pair(self, connection_id: str) -> tuple[Token, Token]:
        """Revoke a connection's tokens and issue it a new ``(access, refresh)`` pair."""
        self.revoke(connection_id)
        access = self._new("access", connection_id, ACCESS_TTL)
        refresh = self._new("refresh", connection_id, REFRESH_TTL)
        return access, refresh

    def issue_admin_pair(self) -> tuple[Token, Token]:
        """Issue a new admin pair, as the ``client_credentials`` grant does.

        Earlier admin pairs keep working until they expire or are refreshed.
        """
        access = self._new("admin", None, ACCESS_TTL)
        refresh = self._new("admin_refresh", None, REFRESH_TTL)
        refresh.partner = access.value
        self.admin_access, self.admin_refresh = access.value, refresh.value
        return access, refresh

    def revoke(self, connection_id: str) -> None:
        """Revoke every token of a connection."""
        for token in self._tokens.values():
            if token.connection_id == connection_id:
                token.revoked = True

    def expire(self, value: str) -> None:
        """Make a token expired (``TOKEN_EXPIRED``)."""
        self._tokens[value].expires_at = self._clock.now() - 1

    def check_refresh(self, value: str) -> Token:
        """Return a refresh token that may be redeemed.

        Raises:
            SandboxError: The token is unknown, revoked, not a refresh token, or expired.
        """
        token = self._tokens.get(value)
        if token is None or token.revoked or token.kind not in {"refresh", "admin_refresh"}:
            raise SandboxError("AUTHENTICATION_FAILED", "The refresh token is unknown or revoked.")
        if token.expires_at <= self._clock.now():
            raise SandboxError("TOKEN_EXPIRED", "The refresh token has expired.")
        return token

    def rotate_admin(self, refresh: Token) -> tuple[Token, Token]:
        """Spend an admin refresh token and its access partner for a new admin pair."""
        refresh.revoked = True
        partner = self._tokens.get(refresh.partner)
        if partner is not None:
            partner.revoked = True
        return self.issue_admin_pair()

    def new_code(self, connection_id: str | None, provider: str) -> str:
        """Issue a one-time authorization code for a connection (``None``: a new one)."""
        code = f"code_{secrets.token_urlsafe(16)}"
        self._codes[code] = {"connection": connection_id or "", "provider": provider}
        return code

    def take_code(self, code: str) -> dict[str, str]:
        """Spend an authorization code.

        Returns:
            ``{"connection": id or "", "provider": slug}``.

        Raises:
            SandboxError: The code is unknown or used.
        """
        grant = self._codes.pop(code, None)
        if grant is None:
            raise SandboxError("INVALID_REQUEST", "The authorization code is unknown or used.")
        return grant
