"""HTTP handlers for auth, tokens and the Admin API, and the checks every data route makes.

``/link/token`` trades codes, refresh tokens and client credentials for token pairs;
``/oauth/authorize`` hands out codes; ``/api/system/*`` is the Admin API (an admin token only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlencode

from aiohttp import web

from makini_async.sandbox._connections import SandboxConnection
from makini_async.sandbox._core import Core
from makini_async.sandbox._data import Record, iso
from makini_async.sandbox._errors import SandboxError, dumps
from makini_async.sandbox._fields import Wire, coerce
from makini_async.sandbox._http_common import Call, json_response, read_json, read_object
from makini_async.sandbox._http_pages import simple_page
from makini_async.sandbox._rules import PROVIDERS, check_body
from makini_async.sandbox._tokens import Token

__all__ = ["AuthHandlers", "require_admin", "require_connection"]

_PLATFORMS: Final = (
    ("sandbox", "Makini Sandbox"),
    ("upkeep", "UpKeep"),
    ("maintain-x", "MaintainX"),
    ("emaint", "eMaint"),
    ("service-channel", "ServiceChannel"),
)


def require_connection(
    token: Token | None, conn: SandboxConnection | None, now: float
) -> SandboxConnection:
    """Return the connection a valid access token opens.

    Raises:
        SandboxError: No token, an admin token, a dead token, or a connection that cannot serve.
    """
    if token is None:
        raise SandboxError("AUTHENTICATION_FAILED", "Send `Authorization: Bearer <token>`.")
    if token.kind in {"admin", "admin_refresh"}:
        raise SandboxError("PERMISSION_DENIED", "An admin token cannot read connection data.")
    if token.kind != "access" or token.revoked or conn is None:
        raise SandboxError("AUTHENTICATION_FAILED")
    if token.expires_at <= now:
        raise SandboxError("TOKEN_EXPIRED")
    if conn.credentials_changed:
        raise SandboxError("REAUTHORIZATION_REQUIRED")
    if conn.status == "inactive":
        raise SandboxError("CONNECTION_INACTIVE", "The connection is inactive (out of credits).")
    return conn


def require_admin(token: Token | None, now: float) -> None:
    """Check that the token is a valid admin token.

    Raises:
        SandboxError: No token, a connection token, or a dead admin token.
    """
    if token is None:
        raise SandboxError("AUTHENTICATION_FAILED", "Send `Authorization: Bearer <admin token>`.")
    if token.kind == "access":
        raise SandboxError("PERMISSION_DENIED", "The Admin API needs an admin token.")
    if token.kind != "admin" or token.revoked:
        raise SandboxError("AUTHENTICATION_FAILED")
    if token.expires_at <= now:
        raise SandboxError("TOKEN_EXPIRED")


class AuthHandlers:
    """Serves the OAuth endpoints and the Admin API."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._settings = core.settings

    async def link_token(self, call: Call) -> web.Response:
        """``POST /link/token``: trade a code, a refresh token or client credentials for a pair.

        Raises:
            SandboxError: An unknown grant or client, or a missing or dead code or token.
        """
        request, headers = call.request, call.headers
        if request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            body: dict[str, object] = {k: str(v) for k, v in form.items()}
        else:
            body = await read_object(request, self._settings.max_body)
        grant = body.get("grant_type")
        if grant not in {"authorization_code", "refresh_token", "client_credentials"}:
            raise SandboxError(
                "INVALID_REQUEST",
                "grant_type must be authorization_code, refresh_token or client_credentials.",
                details={"parameter": "grant_type"},
            )
        if (
            body.get("client_id") != self._settings.client_id
            or body.get("client_secret") != self._settings.client_secret
        ):
            raise SandboxError("AUTHENTICATION_FAILED", "Unknown client_id or wrong client_secret.")
        if grant == "authorization_code":
            code = body.get("code")
            if not isinstance(code, str) or not code:
                raise SandboxError(
                    "INVALID_REQUEST", "code is required.", details={"parameter": "code"}
                )
            access, refresh = self._core.auth.exchange_code(code)
        elif grant == "refresh_token":
            value = body.get("refresh_token")
            if not isinstance(value, str) or not value:
                raise SandboxError(
                    "INVALID_REQUEST",
                    "refresh_token is required.",
                    details={"parameter": "refresh_token"},
                )
            access, refresh = self._core.auth.refresh(value)
        else:
            access, refresh = self._core.tokens.issue_admin_pair()
        headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
        data = {
            "access_token": access.value,
            "refresh_token": refresh.value,
            "token_type": "bearer",
            "expires_in": int(access.expires_at),
        }
        return json_response(200, dumps(data), headers)

    async def authorize(self, call: Call) -> web.Response:
        """``GET /oauth/authorize``: redirect with a one-time code, as after consent.

        Raises:
            SandboxError: An unknown client or provider, or a missing redirect.
        """
        query, headers = call.request.query, call.headers
        if query.get("client_id") != self._settings.client_id:
            raise SandboxError(
                "INVALID_REQUEST", "Unknown client_id.", details={"parameter": "client_id"}
            )
        if query.get("response_type", "code") != "code":
            raise SandboxError("INVALID_REQUEST", "response_type must be code.")
        redirect = query.get("redirect_uri")
        if not redirect:
            raise SandboxError("INVALID_REQUEST", "redirect_uri is required.")
        provider = query.get("provider", "sandbox")
        if provider not in PROVIDERS:
            raise SandboxError("INVALID_REQUEST", f"Unknown provider {provider!r}.")
        code = self._core.auth.authorization_code(query.get("connection") or None, provider)
        extra = [("code", code)]
        if "state" in query:
            extra.append(("state", query["state"]))
        separator = "&" if "?" in redirect else "?"
        headers["Location"] = f"{redirect}{separator}{urlencode(extra)}"
        return web.Response(status=302, headers=headers)

    async def admin(  # noqa: C901, PLR0911 - a table of small endpoints
        self, call: Call, key: tuple[str, str], params: Mapping[str, str]
    ) -> web.Response:
        """Serve one ``/api/system/*`` route (``key`` is its method and template).

        Raises:
            SandboxError: Not an admin token, no such connection, or a refused body.
        """
        require_admin(call.token, self._core.clock.now())
        request, headers = call.request, call.headers
        connections = self._core.connections
        if key == ("GET", "/api/system/client"):
            data = {
                "id": self._settings.client_id,
                "name": "Sandbox application",
                "logo_url": None,
                "email": "integrations@example.com",
                "default_redirect": "http://127.0.0.1/callback",
                "redirects": ["http://127.0.0.1/callback"],
            }
            return json_response(200, dumps({"data": data}), headers)
        if key == ("GET", "/api/system/platforms"):
            platforms: list[Record] = [{"slug": s, "name": n} for s, n in _PLATFORMS]
            return simple_page(request, headers, platforms)
        if key == ("GET", "/api/system/connections"):
            rows = [self._connection_row(c) for c in connections.all()]
            return simple_page(request, headers, rows)
        if key == ("POST", "/api/system/connections"):
            body = await read_object(request, self._settings.max_body)
            errors = check_body(body, {"email": "required|email"})
            provider = str(body.get("provider") or "sandbox")
            if provider not in PROVIDERS:
                errors["provider"] = [f"The selected provider {provider!r} is invalid."]
            if errors:
                raise SandboxError("VALIDATION_ERROR", details={"fields": errors})
            created = connections.add(provider=provider)
            created.name = str(body.get("name") or created.name)
            created.email = str(body["email"])
            return self._pair(headers, created)
        conn = connections.find(params.get("id", ""))
        if conn is None:
            raise SandboxError("NOT_FOUND", f"No connection {params.get('id')!r}.")
        if key == ("DELETE", "/api/system/connections/{id}"):
            connections.remove(conn.id)
            return json_response(200, b"{}", headers)
        if key == ("GET", "/api/system/connections/{id}/metadata"):
            return simple_page(request, headers, list(conn.metadata))
        if key == ("POST", "/api/system/connections/{id}/metadata"):
            items = await read_json(request, self._settings.max_body)
            if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("key"), str) for i in items
            ):
                raise SandboxError("VALIDATION_ERROR", "Send an array of {key, value} objects.")
            errors = coerce(Wire.JSON, items, "value")[1]
            if errors:
                raise SandboxError("VALIDATION_ERROR", details={"fields": errors})
            merged = {str(i["key"]): i for i in conn.metadata}
            merged.update(
                {str(i["key"]): {"key": i["key"], "value": i.get("value")} for i in items}
            )
            conn.metadata = list(merged.values())
            return json_response(200, dumps({"data": conn.metadata}), headers)
        # What is left is POST .../{id}/token: a fresh token pair for the connection.
        token = self._core.auth.issue_token(conn.id)
        issued = {"token": token.value, "expires_in": int(token.expires_at)}
        return json_response(200, dumps({"data": issued}), headers)

    def _connection_row(self, conn: SandboxConnection) -> Record:
        return {
            "key": conn.id,
            "name": conn.name,
            "email": conn.email,
            "status": "inactive" if conn.disconnected else conn.status,
            "integration_name": conn.provider,
            "redirect": None,
            "scopes": None,
            "tags": [],
            "user_metadata": {str(i["key"]): i.get("value") for i in conn.metadata},
            "client_id": self._settings.client_id,
            "updated_at": iso(conn.sync_updated_at),
            "created_at": iso(conn.created_at),
            "connected_at": iso(conn.created_at),
        }

    def _pair(self, headers: dict[str, str], conn: SandboxConnection) -> web.Response:
        token = self._core.tokens.get(conn.access_token)
        expires = int(token.expires_at) if token else 0
        data = {
            "access_token": conn.access_token,
            "refresh_token": conn.refresh_token,
            "expires_in": expires,
        }
        return json_response(200, dumps({"data": data}), headers)
