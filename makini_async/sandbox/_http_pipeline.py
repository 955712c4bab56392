"""The path every request takes: log it, rate-limit it, apply any armed fault, route it, answer.

Every error is the contract's envelope with ``X-Request-Id``; nothing a client sends produces a
500 page.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, TypeAlias

from aiohttp import web

from makini_async.sandbox._core import Core
from makini_async.sandbox._errors import SandboxError, code_for_status, new_request_id
from makini_async.sandbox._faults import Fault
from makini_async.sandbox._forms import read_multipart
from makini_async.sandbox._http_auth import AuthHandlers, require_connection
from makini_async.sandbox._http_common import (
    JSON,
    Call,
    bearer,
    error_response,
    json_response,
    media_type,
    seconds,
    too_large,
)
from makini_async.sandbox._http_control import ControlPlane
from makini_async.sandbox._http_reads import ReadHandlers
from makini_async.sandbox._http_system import SystemHandlers
from makini_async.sandbox._http_writes import WriteHandlers
from makini_async.sandbox._request_log import FormPart, RequestRecord
from makini_async.sandbox._spec import Route

__all__ = ["Pipeline"]

_log = logging.getLogger("makini_async.sandbox")
#: The longest multipart text field whose value the request log keeps.
_TEXT_FIELD_MAX: Final = 64 * 1024
_REDACTED: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_HTML_502: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

_Custom: TypeAlias = Callable[[Call], Awaitable[web.StreamResponse]]


class Pipeline:
    """Serves every request: the control plane, the custom routes and the OpenAPI routes.

    Args:
        core: The sandbox's collaborators.
        reads: Handlers for ``get``, ``list`` and ``sublist`` routes.
        writes: Handlers for the routes that change records.
        auth: Handlers for the OAuth endpoints and the Admin API.
        system: Handlers for ``system`` routes and syncs.
        control: The ``/_sandbox/`` control plane.
    """

    def __init__(
        self,
        core: Core,
        *,
        reads: ReadHandlers,
        writes: WriteHandlers,
        auth: AuthHandlers,
        system: SystemHandlers,
        control: ControlPlane,
    ) -> None:
        self._core = core
        self._reads = reads
        self._writes = writes
        self._system = system
        self._control = control
        self._custom: dict[tuple[str, str], _Custom] = {
            ("POST", "/link/token"): auth.link_token,
            ("POST", "/link/oauth/token"): auth.link_token,
            ("GET", "/oauth/authorize"): auth.authorize,
            ("GET", "/link/oauth/authorize"): auth.authorize,
            ("GET", "/api/integrations/sync/status"): system.sync_status,
            ("POST", "/api/integrations/sync"): system.sync,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one request (the app's only route).

        Returns:
            The answer; errors are envelopes, never exceptions.
        """
        core = self._core
        path = request.path
        request_id = new_request_id()
        headers = {"X-Request-Id": request_id}
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            return await self._control.handle(request, request_id, headers)
        token = core.tokens.get(bearer(request))
        conn = None
        if token is not None and token.connection_id is not None:
            conn = core.connections.find(token.connection_id)
        try:
            query = list(request.query.items())
        except (ValueError, UnicodeDecodeError):
            query = []
        record = RequestRecord(
            request_id=request_id,
            method=request.method,
            path=path,
            query=query,
            headers={
                str(k): ("[redacted]" if k.lower() in _REDACTED else v)
                for k, v in request.headers.items()
            },
            connection=conn.id if conn else None,
            idempotency_key=request.headers.get("Idempotency-Key"),
            time=core.clock.now(),
            content_type=media_type(request),
        )
        core.request_log.append(record)
        try:
            await self._capture(request, record)
            call = Call(request, request_id, headers, token, conn, record)
            response = await self._serve(call)
        except SandboxError as exc:
            response = error_response(exc, request_id, headers)
        except web.HTTPException as exc:  # aiohttp's own refusals, e.g. a too-large form body
            error = SandboxError(code_for_status(exc.status), exc.reason, status=exc.status)
            response = error_response(error, request_id, headers)
        except Exception:  # noqa: BLE001 - a sandbox bug still answers with the envelope
            _log.exception("sandbox bug while serving %s %s", request.method, path)
            response = error_response(SandboxError("INTERNAL_ERROR"), request_id, headers)
        record.status = response.status
        return response

    async def _capture(self, request: web.Request, record: RequestRecord) -> None:
        """Read the body before anything answers, and keep its head in the log.

        ``request.read()`` caches the bytes, so the handlers' own reads cost nothing, and
        multipart bodies are parsed from them as well (``_forms``): the stream that
        ``request.post()`` would read is spent. A body announced over ``max_body`` is left
        unread, for the handler to refuse as before; a chunked one that turns out too large is
        refused here, since part of it has been read.
        """
        settings = self._core.settings
        if not request.body_exists:
            return
        if request.content_length is not None and request.content_length > settings.max_body:
            record.body_size = None
            return
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            record.body_size = None
            raise too_large(settings.max_body) from None
        record.body = raw[: settings.log_body_limit]
        record.body_size = len(raw)
        if record.content_type.startswith("multipart/"):
            try:
                fields = await read_multipart(request.headers, raw)
            except Exception:  # noqa: BLE001 - a body that does not parse is the handler's to refuse
                return
            # Names and sizes only: file contents stay out of the log, beyond the capped body;
            # text fields keep their (small) values.
            record.parts = tuple(
                FormPart(
                    f.name,
                    f.filename,
                    f.content_type,
                    len(f.data),
                    f.text() if f.filename is None and len(f.data) <= _TEXT_FIELD_MAX else None,
                )
                for f in fields
            )

    async def _serve(self, call: Call) -> web.StreamResponse:
        request, headers, conn = call.request, call.headers, call.conn
        core = self._core
        if conn is None:
            # No connection to count against (no token, an admin token, a token exchange).
            limit = core.settings.rate_limit
            headers["X-RateLimit-Limit"] = headers["X-RateLimit-Remaining"] = str(limit)
        else:
            limit, remaining, reset = core.connections.count_request(conn)
            headers["X-RateLimit-Limit"] = str(limit)
            headers["X-RateLimit-Remaining"] = str(max(remaining, 0))
            if remaining < 0:
                raise SandboxError(
                    "RATE_LIMIT_EXCEEDED",
                    f"More than {limit} requests in {seconds(conn.rate_window)} s.",
                    headers={
                        "Retry-After": str(max(1, math.ceil(reset - core.clock.now()))),
                        "X-RateLimit-Reset": str(math.ceil(reset)),
                    },
                )
        fault = core.faults.take(conn.id if conn else None, request.path, request.method)
        delay = (conn.latency if conn else 0.0) + (fault.latency if fault else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None and fault.kind != "latency":
            # The body was read in full (_capture): a drop or reset comes after it arrived.
            call.record.fault = fault.kind
            if fault.kind in {"truncate", "malformed"}:
                return await self._broken_body(call, fault)
            return self._fault(call, fault)
        return await self._route(call)

    def _fault(self, call: Call, fault: Fault) -> web.StreamResponse:
        transport = call.request.transport
        if fault.kind == "status":
            extra = {}
            if fault.retry_after is not None:
                extra["Retry-After"] = seconds(fault.retry_after)
                if fault.status == 429:  # noqa: PLR2004 - the rate-limit status
                    reset = self._core.clock.now() + fault.retry_after
                    extra["X-RateLimit-Reset"] = str(math.ceil(reset))
            code = fault.code or code_for_status(fault.status)
            raise SandboxError(
                code, fault.message, details=fault.details, status=fault.status, headers=extra
            )
        if fault.kind == "html":
            return web.Response(
                status=fault.status, body=_HTML_502, headers=call.headers, content_type="text/html"
            )
        if transport is not None and fault.kind == "reset":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close() sends RST instead of FIN, as a crashing proxy does.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        elif transport is not None:
            transport.close()
        # Nobody reads this: the connection is gone before aiohttp writes it.
        return web.Response(status=204, headers=call.headers)

    async def _broken_body(self, call: Call, fault: Fault) -> web.StreamResponse:
        # Start from the real answer so the part that does arrive looks right.
        try:
            real = await self._route(call)
            body = real.body if isinstance(real, web.Response) else None
        except SandboxError:
            body = None
        raw = body if isinstance(body, bytes) and len(body) > 4 else b'{"data": [{"key": "1"}]}'  # noqa: PLR2004 - room to cut
        if fault.kind == "malformed":
            return json_response(200, raw[: len(raw) // 2] + b"\x00}", call.headers)
        response = web.StreamResponse(status=200, headers=call.headers)
        response.content_type = JSON
        response.content_length = len(raw)
        await response.prepare(call.request)
        await response.write(raw[: len(raw) // 2])
        if call.request.transport is not None:
            call.request.transport.close()
        return response

    async def _route(self, call: Call) -> web.StreamResponse:
        request = call.request
        method = "GET" if request.method == "HEAD" else request.method
        custom = self._custom.get((method, request.path))
        if custom is not None:
            return await custom(call)
        found = self._core.spec.match(request.path)
        if found is None:
            if any(path == request.path for _, path in self._custom):
                raise SandboxError(
                    "OPERATION_NOT_SUPPORTED",
                    f"{request.method} is not allowed on {request.path}.",
                    headers={"Allow": ", ".join(m for m, p in self._custom if p == request.path)},
                )
            raise SandboxError("NOT_FOUND", f"No route {request.path}.")
        methods, params = found
        route = methods.get(method)
        if route is None:
            message = f"{request.method} is not allowed on {request.path}."
            if request.method == "DELETE" and request.path.startswith("/api/e"):
                message = "Makini has no DELETE on data entities: deletion is soft (deletedAt)."
            raise SandboxError(
                "OPERATION_NOT_SUPPORTED", message, headers={"Allow": ", ".join(sorted(methods))}
            )
        return await self._dispatch(call, route, params)

    async def _dispatch(
        self, call: Call, route: Route, params: Mapping[str, str]
    ) -> web.StreamResponse:
        if route.action == "system":
            return await self._system.system(call, route, params)
        conn = require_connection(call.token, call.conn, self._core.clock.now())
        if route.action in {"list", "sublist"}:
            return await self._reads.list_records(call, conn, route, params)
        if route.action == "get":
            return await self._reads.get_record(call, conn, route, params)
        return await self._writes.write(call, conn, route, params)
