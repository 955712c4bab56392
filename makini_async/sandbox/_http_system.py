"""HTTP handlers for a connection's own endpoints and its syncs.

Those are ``/api/integrations/current`` (and its ``DELETE``, a disconnect), the raw tables, the
passthrough and the two sync endpoints; ``/api/system/*`` goes on to the Admin API.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from makini_async.sandbox._core import Core
from makini_async.sandbox._data import iso
from makini_async.sandbox._errors import SandboxError, dumps
from makini_async.sandbox._fields import Wire, coerce
from makini_async.sandbox._http_auth import AuthHandlers, require_connection
from makini_async.sandbox._http_common import Call, json_response, read_object
from makini_async.sandbox._http_pages import simple_page
from makini_async.sandbox._rules import check_body
from makini_async.sandbox._spec import Route

__all__ = ["SystemHandlers"]


class SystemHandlers:
    """Serves the ``system`` routes and the sync endpoints."""

    def __init__(self, core: Core, auth: AuthHandlers) -> None:
        self._core = core
        self._auth = auth

    async def system(  # noqa: C901 - a table of small endpoints
        self, call: Call, route: Route, params: Mapping[str, str]
    ) -> web.Response:
        """Serve one route whose action is ``system``.

        Raises:
            SandboxError: The token does not open the route, or the body is refused.
        """
        request, headers = call.request, call.headers
        key = (route.method, route.template)
        if route.template.startswith("/api/system/"):
            return await self._auth.admin(call, key, params)
        conn = require_connection(call.token, call.conn, self._core.clock.now())
        if key == ("GET", "/api/integrations/current"):
            data = {
                "id": conn.id,
                "company_name": conn.name,
                "email": conn.email,
                "provider": conn.provider,
                "updated_at": iso(conn.created_at),
                "sync_status": conn.sync_status,
                "sync_updated_at": iso(conn.sync_updated_at),
            }
            return json_response(200, dumps({"data": data}), headers)
        if key == ("DELETE", "/api/integrations/current"):
            self._core.auth.disconnect(conn.id)
            return json_response(200, b"{}", headers)
        if key == ("GET", "/api/raw/tables"):
            tables = [
                {"name": r.partition("/")[2].replace("-", "_"), "rows": conn.data.size(r)}
                for r in sorted(conn.data.resources)
                if r.startswith("eam/") and "/statuses/" not in r and "." not in r
            ]
            return json_response(200, dumps({"data": tables}), headers)
        if key == ("GET", "/api/raw/tables/{table}/data"):
            resource = f"eam/{params['table'].replace('_', '-')}"
            if resource not in conn.data.resources:
                raise SandboxError("NOT_FOUND", f"No raw table {params['table']!r}.")
            return simple_page(request, headers, conn.data.collection(resource).records)
        if key == ("POST", "/api/passthrough"):
            body = await read_object(request, self._core.settings.max_body)
            errors = {}
            if not isinstance(body.get("path"), str) or not body.get("path"):
                errors["path"] = ["The path field is required."]
            if str(body.get("method", "")).lower() not in {"get", "post", "put", "delete"}:
                errors["method"] = ["The method must be one of get, post, put, delete."]
            errors.update(coerce(Wire.JSON, body.get("body"), "body")[1])
            if errors:
                raise SandboxError("VALIDATION_ERROR", details={"fields": errors})
            echo = {
                "status": 200,
                "headers": {},
                "body": {"echo": body.get("body"), "path": body["path"]},
            }
            return json_response(200, dumps({"data": echo}), headers)
        raise SandboxError("NOT_FOUND")  # pragma: no cover - every system route is handled above

    async def sync_status(self, call: Call) -> web.Response:
        """``GET /api/integrations/sync/status``: the last sync and the next one.

        Raises:
            SandboxError: The token does not open a connection.
        """
        conn = require_connection(call.token, call.conn, self._core.clock.now())
        done = conn.sync_status in {"done", "fulldone"}
        data = {
            "status": conn.sync_status,
            "last_synced_at": iso(conn.sync_updated_at) if done else None,
            "next_sync_at": iso(conn.sync_updated_at + 900) if done else None,
            "error": conn.sync_error,
        }
        return json_response(200, dumps(data), call.headers)

    async def sync(self, call: Call) -> web.Response:
        """``POST /api/integrations/sync``: start a sync.

        Raises:
            SandboxError: The token does not open a connection, or the body is refused.
        """
        conn = require_connection(call.token, call.conn, self._core.clock.now())
        body = await read_object(call.request, self._core.settings.max_body)
        errors = check_body(body, {"type": "string|required", "scopes": "array"})
        if errors:
            raise SandboxError("VALIDATION_ERROR", details={"fields": errors})
        scopes = [str(s) for s in body.get("scopes") or []]  # type: ignore[attr-defined]
        self._core.syncs.start(conn.id, str(body["type"]), scopes)
        data = {"type": body["type"], "scopes": scopes, "status": "inprogress"}
        return json_response(200, dumps({"data": data}), call.headers)
