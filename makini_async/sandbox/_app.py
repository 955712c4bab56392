"""The aiohttp.web application: Makini's paths, the auth endpoints and ``/_sandbox/``.

One catch-all route feeds :class:`_Handler`, which reads the body and logs the request (its body
capped), applies the rate limit and any armed fault, matches the path against the OpenAPI table,
checks the token and answers. Every error is the contract's envelope with ``X-Request-Id``;
nothing a client sends produces a 500 page.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final, TypeAlias
from urllib.parse import urlencode

import attrs
from aiohttp import hdrs, web

from makini_async.sandbox._data import Collection, Record, iso, record_uuid
from makini_async.sandbox._errors import ApiError, code_for_status, dumps, envelope, new_request_id
from makini_async.sandbox._forms import read_multipart
from makini_async.sandbox._query import QueryError, apply, parse_query
from makini_async.sandbox._spec import SUBLIST_PARENT_FIELD, Route
from makini_async.sandbox._state import ConnectionState, Fault, FormPart, RequestRecord, Token
from makini_async.sandbox._writes import PROVIDERS, check_body, provider_errors

if TYPE_CHECKING:
    from makini_async.sandbox._server import Sandbox

__all__ = ["build_app"]

_log = logging.getLogger("makini_async.sandbox")
#: The longest multipart text field whose value the request log keeps.
_TEXT_FIELD_MAX: Final = 64 * 1024
_JSON: Final = "application/json"
_CACHE_LIMIT: Final = 512
_REDACTED: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_HTML_502: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_PLATFORMS: Final = (
    ("sandbox", "Makini Sandbox"),
    ("upkeep", "UpKeep"),
    ("maintain-x", "MaintainX"),
    ("emaint", "eMaint"),
    ("service-channel", "ServiceChannel"),
)

_Control: TypeAlias = Callable[[web.Request, dict[str, str]], Awaitable[object]]


def build_app(sandbox: Sandbox) -> web.Application:
    """Build the web application serving ``sandbox``.

    Args:
        sandbox: The state to serve.

    Returns:
        An application with one catch-all route.
    """
    app = web.Application(client_max_size=sandbox.max_body)
    handler = _Handler(sandbox)
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    return app


def _json_response(status: int, body: bytes, headers: Mapping[str, str]) -> web.Response:
    return web.Response(status=status, body=body, headers=headers, content_type=_JSON)


def _error_response(exc: ApiError, request_id: str, headers: dict[str, str]) -> web.Response:
    headers.update(exc.headers)
    return _json_response(
        exc.status, envelope(exc.code, request_id, exc.message, exc.details), headers
    )


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _media_type(request: web.Request) -> str:
    # aiohttp says application/octet-stream when the header is missing; the log says "" then.
    return request.content_type if hdrs.CONTENT_TYPE in request.headers else ""


def _bearer(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


@attrs.define
class _Call:
    """One request on its way through the pipeline."""

    request: web.Request
    request_id: str
    headers: dict[str, str]
    token: Token | None
    state: ConnectionState | None
    record: RequestRecord


class _Handler:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.spec = sandbox.spec
        self._custom: dict[tuple[str, str], Callable[[_Call], Awaitable[web.StreamResponse]]] = {
            ("POST", "/link/token"): self._link_token,
            ("POST", "/link/oauth/token"): self._link_token,
            ("GET", "/oauth/authorize"): self._authorize,
            ("GET", "/link/oauth/authorize"): self._authorize,
            ("GET", "/api/integrations/sync/status"): self._sync_status,
            ("POST", "/api/integrations/sync"): self._sync,
        }
        self._control = _ControlPlane(sandbox)

    # -- the pipeline ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        request_id = new_request_id()
        headers = {"X-Request-Id": request_id}
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            return await self._control.handle(request, request_id, headers)
        token = self.sb.token(_bearer(request))
        state = None
        if token is not None and token.connection_id is not None:
            state = self.sb.find_connection(token.connection_id)
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
            connection=state.id if state else None,
            idempotency_key=request.headers.get("Idempotency-Key"),
            time=self.sb.now(),
            content_type=_media_type(request),
        )
        self.sb.log(record)
        try:
            await self._capture(request, record)
            call = _Call(request, request_id, headers, token, state, record)
            response = await self._serve(call)
        except ApiError as exc:
            response = _error_response(exc, request_id, headers)
        except web.HTTPException as exc:  # aiohttp's own refusals, e.g. a too-large form body
            error = ApiError(code_for_status(exc.status), exc.reason, status=exc.status)
            response = _error_response(error, request_id, headers)
        except Exception:  # noqa: BLE001 - a sandbox bug still answers with the envelope
            _log.exception("sandbox bug while serving %s %s", request.method, path)
            response = _error_response(ApiError("INTERNAL_ERROR"), request_id, headers)
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
        if not request.body_exists:
            return
        if request.content_length is not None and request.content_length > self.sb.max_body:
            record.body_size = None
            return
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            record.body_size = None
            raise ApiError(
                "PAYLOAD_TOO_LARGE", f"Bodies are limited to {self.sb.max_body} bytes."
            ) from None
        record.body = raw[: self.sb.log_body_limit]
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

    async def _serve(self, call: _Call) -> web.StreamResponse:
        request, headers, state = call.request, call.headers, call.state
        if state is None:
            # No connection to count against (no token, an admin token, a token exchange).
            limit = self.sb.default_rate_limit
            headers["X-RateLimit-Limit"] = headers["X-RateLimit-Remaining"] = str(limit)
        else:
            limit, remaining, reset = self.sb.count_request(state)
            headers["X-RateLimit-Limit"] = str(limit)
            headers["X-RateLimit-Remaining"] = str(max(remaining, 0))
            if remaining < 0:
                raise ApiError(
                    "RATE_LIMIT_EXCEEDED",
                    f"More than {limit} requests in {_seconds(state.rate_window)} s.",
                    headers={
                        "Retry-After": str(max(1, math.ceil(reset - self.sb.now()))),
                        "X-RateLimit-Reset": str(math.ceil(reset)),
                    },
                )
        fault = self.sb.take_fault(state.id if state else None, request.path, request.method)
        delay = (state.latency if state else 0.0) + (fault.latency if fault else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None and fault.kind != "latency":
            # The body was read in full (_capture): a drop or reset comes after it arrived.
            call.record.fault = fault.kind
            if fault.kind in {"truncate", "malformed"}:
                return await self._broken_body(call, fault)
            return self._fault(call, fault)
        return await self._route(call)

    def _fault(self, call: _Call, fault: Fault) -> web.StreamResponse:
        transport = call.request.transport
        if fault.kind == "status":
            extra = {}
            if fault.retry_after is not None:
                extra["Retry-After"] = _seconds(fault.retry_after)
                if fault.status == 429:  # noqa: PLR2004 - the rate-limit status
                    extra["X-RateLimit-Reset"] = str(math.ceil(self.sb.now() + fault.retry_after))
            code = fault.code or code_for_status(fault.status)
            raise ApiError(
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

    async def _broken_body(self, call: _Call, fault: Fault) -> web.StreamResponse:
        # Start from the real answer so the part that does arrive looks right.
        try:
            real = await self._route(call)
            body = real.body if isinstance(real, web.Response) else None
        except ApiError:
            body = None
        raw = body if isinstance(body, bytes) and len(body) > 4 else b'{"data": [{"key": "1"}]}'  # noqa: PLR2004 - room to cut
        if fault.kind == "malformed":
            return _json_response(200, raw[: len(raw) // 2] + b"\x00}", call.headers)
        response = web.StreamResponse(status=200, headers=call.headers)
        response.content_type = _JSON
        response.content_length = len(raw)
        await response.prepare(call.request)
        await response.write(raw[: len(raw) // 2])
        if call.request.transport is not None:
            call.request.transport.close()
        return response

    async def _route(self, call: _Call) -> web.StreamResponse:
        request, headers, token, state = call.request, call.headers, call.token, call.state
        method = "GET" if request.method == "HEAD" else request.method
        custom = self._custom.get((method, request.path))
        if custom is not None:
            return await custom(call)
        found = self.spec.match(request.path)
        if found is None:
            if any(path == request.path for _, path in self._custom):
                raise ApiError(
                    "OPERATION_NOT_SUPPORTED",
                    f"{request.method} is not allowed on {request.path}.",
                    headers={"Allow": ", ".join(m for m, p in self._custom if p == request.path)},
                )
            raise ApiError("NOT_FOUND", f"No route {request.path}.")
        methods, params = found
        route = methods.get(method)
        if route is None:
            message = f"{request.method} is not allowed on {request.path}."
            if request.method == "DELETE" and request.path.startswith("/api/e"):
                message = "Makini has no DELETE on data entities: deletion is soft (deletedAt)."
            raise ApiError(
                "OPERATION_NOT_SUPPORTED", message, headers={"Allow": ", ".join(sorted(methods))}
            )
        if route.action == "system":
            return await self._system(call, route, params)
        conn = self._require_connection(token, state)
        if route.action in {"list", "sublist"}:
            return await self._list(request, headers, conn, route, params)
        if route.action == "get":
            collection = conn.data.collection(route.resource)
            found_record = collection.by_key.get(params["key"])
            if found_record is None:
                raise ApiError("NOT_FOUND", f"No {route.schema} with key {params['key']!r}.")
            body = dumps({"data": self._shape(conn, route.schema, found_record, route.resource)})
            return _json_response(200, body, headers)
        return await self._write(request, headers, conn, route, params)

    # -- auth -----------------------------------------------------------------------------------

    def _require_connection(
        self, token: Token | None, state: ConnectionState | None
    ) -> ConnectionState:
        if token is None:
            raise ApiError("AUTHENTICATION_FAILED", "Send `Authorization: Bearer <token>`.")
        if token.kind in {"admin", "admin_refresh"}:
            raise ApiError("PERMISSION_DENIED", "An admin token cannot read connection data.")
        if token.kind != "access" or token.revoked or state is None:
            raise ApiError("AUTHENTICATION_FAILED")
        if token.expires_at <= self.sb.now():
            raise ApiError("TOKEN_EXPIRED")
        if state.credentials_changed:
            raise ApiError("REAUTHORIZATION_REQUIRED")
        if state.status == "inactive":
            raise ApiError("CONNECTION_INACTIVE", "The connection is inactive (out of credits).")
        return state

    def _require_admin(self, token: Token | None) -> None:
        if token is None:
            raise ApiError("AUTHENTICATION_FAILED", "Send `Authorization: Bearer <admin token>`.")
        if token.kind == "access":
            raise ApiError("PERMISSION_DENIED", "The Admin API needs an admin token.")
        if token.kind != "admin" or token.revoked:
            raise ApiError("AUTHENTICATION_FAILED")
        if token.expires_at <= self.sb.now():
            raise ApiError("TOKEN_EXPIRED")

    # -- reads ----------------------------------------------------------------------------------

    def _shape(
        self, state: ConnectionState, schema: str, record: Record, resource: str = ""
    ) -> Record:
        extra = state.custom_fields.get(resource.partition("/")[2]) or state.custom_fields.get(
            resource
        )
        if extra:
            record = {**record, **extra}
        if not state.v4:
            return record
        key = str(record.get("key", ""))
        shaped: Record = {
            "id": record_uuid(state.id, key),
            "_idValue": record.get("code") or key,
            "_displayValue": record.get("title") or record.get("name") or key,
            "_createdAt": record.get("createdAt"),
            "_updatedAt": record.get("updatedAt"),
            "_deletedAt": record.get("deletedAt"),
            "_implements": schema,
        }
        shaped.update(record)
        return shaped

    async def _list(
        self,
        request: web.Request,
        headers: dict[str, str],
        state: ConnectionState,
        route: Route,
        params: Mapping[str, str],
    ) -> web.Response:
        collection = state.data.collection(route.resource)
        cache_key = (request.raw_path, state.v4, request.host)
        cached = collection.page_cache.get(cache_key)
        if cached is not None:
            return _json_response(200, cached, headers)
        parent: tuple[str, str] | None = None
        if route.action == "sublist":
            parent_resource, _, tail = route.resource.partition(".")
            parent_name = parent_resource.partition("/")[2]
            if params["key"] not in state.data.collection(parent_resource).by_key:
                raise ApiError("NOT_FOUND", f"No {parent_name} record with key {params['key']!r}.")
            field = "assemblyKey" if tail == "children" else SUBLIST_PARENT_FIELD[parent_name]
            parent = (field, params["key"])
        kinds = {f.name: f.kind for f in self.spec.fields(route.domain, route.schema)}
        body = self._page(request, state, route.schema, collection, kinds=kinds, parent=parent)
        if len(collection.page_cache) >= _CACHE_LIMIT:
            collection.page_cache.clear()
        collection.page_cache[cache_key] = body
        return _json_response(200, body, headers)

    def _page(
        self,
        request: web.Request,
        state: ConnectionState,
        schema: str,
        collection: Collection,
        *,
        kinds: Mapping[str, str],
        parent: tuple[str, str] | None,
    ) -> bytes:
        try:
            query = parse_query(list(request.query.items()), kinds)
        except QueryError as exc:
            raise ApiError(
                "INVALID_REQUEST", str(exc), details={"parameter": exc.parameter}
            ) from None
        signature = (*query.signature, parent)
        matches = collection.query_cache.get(signature)
        if matches is None:
            source = collection.records
            if parent is not None:
                field, key = parent
                source = [r for r in source if r.get(field) == key]
            matches = apply(source, query)
            if len(collection.query_cache) >= _CACHE_LIMIT:
                collection.query_cache.clear()
            collection.query_cache[signature] = matches
        data = [
            self._shape(state, schema, r, collection.resource)
            for r in self._window(matches, query.page, query.per_page)
        ]
        return dumps(self._paginated(request, data, len(matches), query.page, query.per_page))

    @staticmethod
    def _window(items: list[Record], page: int, per_page: int) -> list[Record]:
        start = (page - 1) * per_page
        return items[start : start + per_page]

    @staticmethod
    def _paginated(
        request: web.Request, data: list[Record], total: int, page: int, per_page: int
    ) -> dict[str, object]:
        last = max(1, math.ceil(total / per_page))
        base = f"{request.scheme}://{request.host}{request.path}"
        others = [(k, v) for k, v in request.query.items() if k != "page"]

        def link(number: int) -> str:
            return f"{base}?{urlencode([*others, ('page', str(number))])}"

        start = (page - 1) * per_page
        return {
            "data": data,
            "links": {
                "first": link(1),
                "last": link(last),
                "prev": link(page - 1) if page > 1 else None,
                "next": link(page + 1) if page < last else None,
            },
            "meta": {
                "current_page": page,
                "from": start + 1 if data else None,
                "last_page": last,
                "path": base,
                "per_page": per_page,
                "to": start + len(data) if data else None,
                "total": total,
            },
        }

    def _simple_page(
        self, request: web.Request, headers: dict[str, str], items: list[Record]
    ) -> web.Response:
        try:
            query = parse_query(
                [(k, v) for k, v in request.query.items() if k in {"page", "per_page"}], {}
            )
        except QueryError as exc:
            raise ApiError(
                "INVALID_REQUEST", str(exc), details={"parameter": exc.parameter}
            ) from None
        data = self._window(items, query.page, query.per_page)
        body = self._paginated(request, data, len(items), query.page, query.per_page)
        return _json_response(200, dumps(body), headers)

    # -- writes ---------------------------------------------------------------------------------

    async def _body(self, request: web.Request, *, json_only: bool = True) -> object:
        if request.content_length is not None and request.content_length > self.sb.max_body:
            raise ApiError("PAYLOAD_TOO_LARGE", f"Bodies are limited to {self.sb.max_body} bytes.")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(
                "PAYLOAD_TOO_LARGE", f"Bodies are limited to {self.sb.max_body} bytes."
            ) from None
        if not raw.strip():
            return {}
        content_type = request.content_type
        if json_only and content_type != _JSON and not content_type.endswith("+json"):
            raise ApiError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"Send JSON (`Content-Type: {_JSON}`), not {content_type}.",
            )
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiError("INVALID_REQUEST", f"The body is not valid JSON: {exc}.") from None

    async def _object_body(self, request: web.Request) -> dict[str, object]:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError("INVALID_REQUEST", "The body must be a JSON object.")
        return body

    async def _write(
        self,
        request: web.Request,
        headers: dict[str, str],
        state: ConnectionState,
        route: Route,
        params: Mapping[str, str],
    ) -> web.Response:
        collection_name = route.resource.partition("/")[2]
        family = collection_name.partition(".")[0] if route.action == "subcreate" else None
        rules = PROVIDERS[state.provider]
        target = (family and f"{family}.materials") or collection_name
        if target in state.unsupported or (
            rules.writable is not None and target not in rules.writable
        ):
            raise ApiError(
                "OPERATION_NOT_SUPPORTED",
                f"{state.provider} cannot {request.method} {collection_name}.",
                details={"provider": state.provider},
            )
        if route.content_type == "multipart/form-data":
            body = await self._multipart(request)
        else:
            body = await self._object_body(request)
        key = request.headers.get("Idempotency-Key")
        fingerprint = ""
        if key:
            canonical = json.dumps(body, sort_keys=True, default=str)
            fingerprint = hashlib.sha256(
                f"{request.method} {request.path}\n{canonical}".encode()
            ).hexdigest()
            replay = self.sb.remember(state, key, fingerprint)
            if replay is not None:
                headers["Idempotent-Replayed"] = "true"
                return _json_response(replay[0], replay[1], headers)
        try:
            record = self._apply_write(state, route, params, body, request.method)
            status, raw = (
                200,
                dumps(
                    {
                        "data": self._shape(
                            state, route.schema, record, route.resource.partition(".")[0]
                        )
                    }
                ),
            )
        except ApiError as exc:
            if not key or exc.status >= 500:  # noqa: PLR2004 - server errors are not stored
                raise
            headers.update(exc.headers)
            status = exc.status
            raw = envelope(exc.code, headers["X-Request-Id"], exc.message, exc.details)
        if key:
            state.idempotency[key] = (fingerprint, self.sb.now(), status, raw)
        return _json_response(status, raw, headers)

    async def _multipart(self, request: web.Request) -> dict[str, object]:
        if not request.content_type.startswith("multipart/"):
            raise ApiError("UNSUPPORTED_MEDIA_TYPE", "Upload documents as multipart/form-data.")
        if request.content_length is not None and request.content_length > self.sb.max_body:
            raise ApiError("PAYLOAD_TOO_LARGE", f"Bodies are limited to {self.sb.max_body} bytes.")
        # request.post() would read the socket stream, which _capture has spent: parse the cache.
        raw = await request.read()
        try:
            fields = await read_multipart(request.headers, raw)
        except Exception as exc:  # noqa: BLE001 - aiohttp's multipart parser raises many types
            raise ApiError("INVALID_REQUEST", f"Malformed multipart body: {exc}.") from None
        if any(f.name is None for f in fields):
            raise ApiError("INVALID_REQUEST", "Malformed multipart body: a part has no name.")
        # The first part of each name counts, as with request.post()'s MultiDict.get().
        upload = next((f for f in fields if f.name == "file"), None)
        if upload is None or not upload.filename:
            raise ApiError(
                "VALIDATION_ERROR", details={"fields": {"file": ["The file field is required."]}}
            )
        name = next((f for f in fields if f.name == "name"), None)
        return {
            "name": (name.text() if name is not None and not name.filename else "")
            or upload.filename,
            "contentType": upload.content_type or "application/octet-stream",
            "type": "file",
            "url": f"sandbox://documents/{upload.filename}",
        }

    def _validate(
        self, state: ConnectionState, route: Route, method: str, body: Mapping[str, object]
    ) -> None:
        errors = check_body(body, route.body) if route.content_type == _JSON else {}
        collection = route.resource.partition("/")[2]
        for name, messages in provider_errors(
            PROVIDERS[state.provider], method, collection, body
        ).items():
            errors.setdefault(name, []).extend(messages)
        if errors:
            raise ApiError("VALIDATION_ERROR", details={"fields": errors})

    def _apply_write(
        self,
        state: ConnectionState,
        route: Route,
        params: Mapping[str, str],
        body: dict[str, object],
        method: str,
    ) -> Record:
        now = iso(self.sb.now())
        name = route.resource.partition("/")[2]
        if route.action == "create":
            self._validate(state, route, method, body)
            return self._create(state, route.resource, route, body, now, emit=name)
        if route.action in {"subcreate", "subupdate"}:
            self._validate(state, route, method, body)
            return self._material(state, route, params, body, now)
        collection = state.data.collection(route.resource)
        current = collection.by_key.get(params["key"])
        if current is None:
            raise ApiError("NOT_FOUND", f"No {route.schema} with key {params['key']!r}.")
        changes: dict[str, object]
        if route.action == "update":
            self._validate(state, route, method, body)
            allowed = {f.name for f in self.spec.fields(route.domain, route.schema)} | set(
                route.body
            )
            changes = {k: v for k, v in body.items() if k in allowed and k != "key"}
        elif route.action == "status":
            field = "statusKey" if "statusKey" in route.body else "status"
            wanted = body.get(field) or body.get("status") or body.get("statusKey")
            if not isinstance(wanted, str) or not wanted:
                raise ApiError(
                    "VALIDATION_ERROR",
                    details={"fields": {field: [f"The {field} field is required."]}},
                )
            changes = self._status_changes(state, route, name, current, wanted=wanted, field=field)
        elif route.action == "inventory":
            self._validate(state, route, method, body)
            inventory = dict(current.get("inventory") or {})  # type: ignore[call-overload]
            inventory.update({k: v for k, v in body.items() if k in route.body})
            inventory["updatedAt"] = now
            changes = {"inventory": inventory}
        else:  # delivered
            statuses = f"{route.domain}/statuses/{name}"
            changes = {}
            if statuses in state.data.resources:
                changes["statusKey"] = state.data.collection(statuses).records[-1]["key"]
        changes["updatedAt"] = now
        updated = {**current, **changes}
        if state.read_only:
            return updated
        newly_deleted = bool(changes.get("deletedAt")) and not current.get("deletedAt")
        current.update(changes)
        collection.touch()
        event = "deleted" if newly_deleted else "updated"
        self.sb.emit(state.id, f"{name}.{event}", body=[params["key"]])
        return current

    def _status_changes(
        self,
        state: ConnectionState,
        route: Route,
        name: str,
        current: Record,
        *,
        wanted: str,
        field: str,
    ) -> dict[str, object]:
        statuses = f"{route.domain}/statuses/{name}"
        changes: dict[str, object] = {}
        if statuses in state.data.resources:
            for status in state.data.collection(statuses).records:
                if wanted in {status["key"], status["code"], status["name"]}:
                    changes["statusKey"] = status["key"]
                    if "status" in current:
                        changes["status"] = status["code"]
                    return changes
            raise ApiError(
                "VALIDATION_ERROR",
                details={"fields": {field: [f"The selected {field} {wanted!r} is invalid."]}},
            )
        changes["statusKey" if "statusKey" in current else "status"] = wanted
        return changes

    def _create(
        self,
        state: ConnectionState,
        resource: str,
        route: Route,
        body: Mapping[str, object],
        now: str,
        *,
        emit: str | None,
    ) -> Record:
        collection = state.data.collection(resource)
        domain, schema = state.data.schema_of(resource)
        fields = self.spec.fields(domain, schema)
        record: Record = {f.name: [] if f.kind == "array" else None for f in fields}
        allowed = set(record) | set(route.body)
        record.update({k: v for k, v in body.items() if k in allowed and k != "key"})
        key = state.data.key_for(resource, collection.next_index)
        record["key"] = key
        for stamp in ("createdAt", "updatedAt"):
            if stamp in record:
                record[stamp] = now
        statuses = f"{domain}/statuses/{resource.partition('/')[2]}"
        if "statusKey" in record and not record["statusKey"] and statuses in state.data.resources:
            first = state.data.collection(statuses).records[0]
            record["statusKey"] = first["key"]
            if "status" in record:
                record["status"] = first["code"]
        if "materialCount" in record:
            record["materialCount"] = "0"
        if state.read_only:
            return record
        collection.next_index += 1
        collection.records.append(record)
        collection.by_key[key] = record
        collection.touch()
        if emit:
            self.sb.emit(state.id, f"{emit}.inserted", body=[key])
        return record

    def _material(
        self,
        state: ConnectionState,
        route: Route,
        params: Mapping[str, str],
        body: Mapping[str, object],
        now: str,
    ) -> Record:
        parent_resource = route.resource.partition(".")[0]
        parents = state.data.collection(parent_resource)
        parent = parents.by_key.get(params["key"])
        if parent is None:
            raise ApiError("NOT_FOUND", f"No work order with key {params['key']!r}.")
        items = state.data.collection(route.resource)
        fields = {
            "materialKey": body.get("materialKey"),
            "requiredQuantity": body.get("requiredQuantity"),
            "quantity": body.get("usedQuantity"),
            "workOrderKey": params["key"],
            "updatedAt": now,
        }
        if route.action == "subcreate":
            self._create(state, route.resource, route, fields, now, emit=None)
            count = sum(1 for r in items.records if r.get("workOrderKey") == params["key"])
        else:
            wanted = params["materialKey"]
            mine = [r for r in items.records if r.get("workOrderKey") == params["key"]]
            item = next((r for r in mine if wanted in {r.get("key"), r.get("materialKey")}), None)
            if item is None:
                raise ApiError(
                    "NOT_FOUND", f"Work order {params['key']!r} has no material {wanted!r}."
                )
            if not state.read_only:
                item.update({k: v for k, v in fields.items() if v is not None})
                items.touch()
            count = len(mine)
        changes = {
            "materialCount": str(
                count + (1 if state.read_only and route.action == "subcreate" else 0)
            ),
            "updatedAt": now,
        }
        if state.read_only:
            return {**parent, **changes}
        parent.update(changes)
        parents.touch()
        self.sb.emit(state.id, f"{parent_resource.partition('/')[2]}.updated", body=[params["key"]])
        return parent

    # -- system, sync and auth endpoints --------------------------------------------------------

    async def _system(  # noqa: C901 - a table of small endpoints
        self, call: _Call, route: Route, params: Mapping[str, str]
    ) -> web.Response:
        request, headers, token, state = call.request, call.headers, call.token, call.state
        key = (route.method, route.template)
        if route.template.startswith("/api/system/"):
            self._require_admin(token)
            return await self._admin(request, headers, key, params)
        conn = self._require_connection(token, state)
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
            return _json_response(200, dumps({"data": data}), headers)
        if key == ("DELETE", "/api/integrations/current"):
            self.sb.disconnect(conn.id)
            return _json_response(200, b"{}", headers)
        if key == ("GET", "/api/raw/tables"):
            tables = [
                {"name": r.partition("/")[2].replace("-", "_"), "rows": conn.data.size(r)}
                for r in sorted(conn.data.resources)
                if r.startswith("eam/") and "/statuses/" not in r and "." not in r
            ]
            return _json_response(200, dumps({"data": tables}), headers)
        if key == ("GET", "/api/raw/tables/{table}/data"):
            resource = f"eam/{params['table'].replace('_', '-')}"
            if resource not in conn.data.resources:
                raise ApiError("NOT_FOUND", f"No raw table {params['table']!r}.")
            return self._simple_page(request, headers, conn.data.collection(resource).records)
        if key == ("POST", "/api/passthrough"):
            body = await self._object_body(request)
            errors = {}
            if not isinstance(body.get("path"), str) or not body.get("path"):
                errors["path"] = ["The path field is required."]
            if str(body.get("method", "")).lower() not in {"get", "post", "put", "delete"}:
                errors["method"] = ["The method must be one of get, post, put, delete."]
            if errors:
                raise ApiError("VALIDATION_ERROR", details={"fields": errors})
            echo = {
                "status": 200,
                "headers": {},
                "body": {"echo": body.get("body"), "path": body["path"]},
            }
            return _json_response(200, dumps({"data": echo}), headers)
        raise ApiError("NOT_FOUND")  # pragma: no cover - every system route is handled above

    async def _admin(  # noqa: C901, PLR0911 - a table of small endpoints
        self,
        request: web.Request,
        headers: dict[str, str],
        key: tuple[str, str],
        params: Mapping[str, str],
    ) -> web.Response:
        sb = self.sb
        if key == ("GET", "/api/system/client"):
            data = {
                "id": sb.client_id,
                "name": "Sandbox application",
                "logo_url": None,
                "email": "integrations@example.com",
                "default_redirect": "http://127.0.0.1/callback",
                "redirects": ["http://127.0.0.1/callback"],
            }
            return _json_response(200, dumps({"data": data}), headers)
        if key == ("GET", "/api/system/platforms"):
            platforms: list[Record] = [{"slug": s, "name": n} for s, n in _PLATFORMS]
            return self._simple_page(request, headers, platforms)
        if key == ("GET", "/api/system/connections"):
            rows = [self._connection_row(s) for s in sb.all_connections()]
            return self._simple_page(request, headers, rows)
        if key == ("POST", "/api/system/connections"):
            body = await self._object_body(request)
            errors = check_body(body, {"email": "required|email"})
            provider = str(body.get("provider") or "sandbox")
            if provider not in PROVIDERS:
                errors["provider"] = [f"The selected provider {provider!r} is invalid."]
            if errors:
                raise ApiError("VALIDATION_ERROR", details={"fields": errors})
            created = sb.add_connection_sync(provider=provider)
            created.name = str(body.get("name") or created.name)
            created.email = str(body["email"])
            return self._pair(headers, created)
        state = sb.find_connection(params.get("id", ""))
        if state is None:
            raise ApiError("NOT_FOUND", f"No connection {params.get('id')!r}.")
        if key == ("DELETE", "/api/system/connections/{id}"):
            sb.remove_connection(state.id)
            return _json_response(200, b"{}", headers)
        if key == ("GET", "/api/system/connections/{id}/metadata"):
            return self._simple_page(request, headers, list(state.metadata))
        if key == ("POST", "/api/system/connections/{id}/metadata"):
            items = await self._body(request)
            if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("key"), str) for i in items
            ):
                raise ApiError("VALIDATION_ERROR", "Send an array of {key, value} objects.")
            merged = {str(i["key"]): i for i in state.metadata}
            merged.update(
                {str(i["key"]): {"key": i["key"], "value": i.get("value")} for i in items}
            )
            state.metadata = list(merged.values())
            return _json_response(200, dumps({"data": state.metadata}), headers)
        # What is left is POST .../{id}/token: a fresh token pair for the connection.
        token = sb.token(sb.issue_token(state.id))
        assert token is not None  # noqa: S101 - just issued
        issued = {"token": token.value, "expires_in": int(token.expires_at)}
        return _json_response(200, dumps({"data": issued}), headers)

    def _connection_row(self, state: ConnectionState) -> Record:
        return {
            "key": state.id,
            "name": state.name,
            "email": state.email,
            "status": "inactive" if state.disconnected else state.status,
            "integration_name": state.provider,
            "redirect": None,
            "scopes": None,
            "tags": [],
            "user_metadata": {str(i["key"]): i.get("value") for i in state.metadata},
            "client_id": self.sb.client_id,
            "updated_at": iso(state.sync_updated_at),
            "created_at": iso(state.created_at),
            "connected_at": iso(state.created_at),
        }

    def _pair(self, headers: dict[str, str], state: ConnectionState) -> web.Response:
        token = self.sb.token(state.access_token)
        expires = int(token.expires_at) if token else 0
        data = {
            "access_token": state.access_token,
            "refresh_token": state.refresh_token,
            "expires_in": expires,
        }
        return _json_response(200, dumps({"data": data}), headers)

    async def _sync_status(self, call: _Call) -> web.Response:
        request, headers, token, state = call.request, call.headers, call.token, call.state
        del request
        conn = self._require_connection(token, state)
        done = conn.sync_status in {"done", "fulldone"}
        data = {
            "status": conn.sync_status,
            "last_synced_at": iso(conn.sync_updated_at) if done else None,
            "next_sync_at": iso(conn.sync_updated_at + 900) if done else None,
            "error": conn.sync_error,
        }
        return _json_response(200, dumps(data), headers)

    async def _sync(self, call: _Call) -> web.Response:
        request, headers, token, state = call.request, call.headers, call.token, call.state
        conn = self._require_connection(token, state)
        body = await self._object_body(request)
        errors = check_body(body, {"type": "string|required", "scopes": "array"})
        if errors:
            raise ApiError("VALIDATION_ERROR", details={"fields": errors})
        scopes = [str(s) for s in body.get("scopes") or []]  # type: ignore[attr-defined]
        self.sb.start_sync(conn.id, str(body["type"]), scopes)
        data = {"type": body["type"], "scopes": scopes, "status": "inprogress"}
        return _json_response(200, dumps({"data": data}), headers)

    async def _link_token(self, call: _Call) -> web.Response:
        request, headers, token, state = call.request, call.headers, call.token, call.state
        del token, state
        if request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            body: dict[str, object] = {k: str(v) for k, v in form.items()}
        else:
            body = await self._object_body(request)
        grant = body.get("grant_type")
        if grant not in {"authorization_code", "refresh_token", "client_credentials"}:
            raise ApiError(
                "INVALID_REQUEST",
                "grant_type must be authorization_code, refresh_token or client_credentials.",
                details={"parameter": "grant_type"},
            )
        if (
            body.get("client_id") != self.sb.client_id
            or body.get("client_secret") != self.sb.client_secret
        ):
            raise ApiError("AUTHENTICATION_FAILED", "Unknown client_id or wrong client_secret.")
        if grant == "authorization_code":
            code = body.get("code")
            if not isinstance(code, str) or not code:
                raise ApiError(
                    "INVALID_REQUEST", "code is required.", details={"parameter": "code"}
                )
            access, refresh = self.sb.exchange_code(code)
        elif grant == "refresh_token":
            value = body.get("refresh_token")
            if not isinstance(value, str) or not value:
                raise ApiError(
                    "INVALID_REQUEST",
                    "refresh_token is required.",
                    details={"parameter": "refresh_token"},
                )
            access, refresh = self.sb.refresh(value)
        else:
            access, refresh = self.sb.issue_admin_token()
        headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
        data = {
            "access_token": access.value,
            "refresh_token": refresh.value,
            "token_type": "bearer",
            "expires_in": int(access.expires_at),
        }
        return _json_response(200, dumps(data), headers)

    async def _authorize(self, call: _Call) -> web.Response:
        request, headers, token, state = call.request, call.headers, call.token, call.state
        del token, state
        query = request.query
        if query.get("client_id") != self.sb.client_id:
            raise ApiError(
                "INVALID_REQUEST", "Unknown client_id.", details={"parameter": "client_id"}
            )
        if query.get("response_type", "code") != "code":
            raise ApiError("INVALID_REQUEST", "response_type must be code.")
        redirect = query.get("redirect_uri")
        if not redirect:
            raise ApiError("INVALID_REQUEST", "redirect_uri is required.")
        provider = query.get("provider", "sandbox")
        if provider not in PROVIDERS:
            raise ApiError("INVALID_REQUEST", f"Unknown provider {provider!r}.")
        code = self.sb.authorization_code(query.get("connection") or None, provider)
        extra = [("code", code)]
        if "state" in query:
            extra.append(("state", query["state"]))
        separator = "&" if "?" in redirect else "?"
        headers["Location"] = f"{redirect}{separator}{urlencode(extra)}"
        return web.Response(status=302, headers=headers)


class _ControlPlane:
    """``/_sandbox/...``: the Python control methods over HTTP (JSON in, JSON out)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self._routes: list[tuple[str, tuple[str, ...], _Control]] = [
            ("GET", (), self._root),
            ("GET", ("connections",), self._list_connections),
            ("POST", ("connections",), self._add_connection),
            ("DELETE", ("connections", "{id}"), self._remove_connection),
            ("PATCH", ("connections", "{id}"), self._configure),
            ("POST", ("connections", "{id}", "{action}"), self._connection_action),
            ("GET", ("faults",), self._list_faults),
            ("POST", ("faults",), self._inject),
            ("DELETE", ("faults",), self._clear_faults),
            ("GET", ("requests",), self._requests),
            ("DELETE", ("requests",), self._clear_requests),
            ("GET", ("webhooks",), self._list_webhooks),
            ("POST", ("webhooks",), self._add_webhook),
            ("PATCH", ("webhooks",), self._configure_webhooks),
            ("DELETE", ("webhooks", "{id}"), self._remove_webhook),
            ("GET", ("deliveries",), self._deliveries),
            ("POST", ("events",), self._emit),
            ("POST", ("time",), self._time),
        ]

    async def handle(
        self, request: web.Request, request_id: str, headers: dict[str, str]
    ) -> web.Response:
        try:
            func, params = self._match(request.method, request.path)
            result = await func(request, params)
            return _json_response(200, dumps(_plain(result)), headers)
        except web.HTTPException as exc:
            error = ApiError(code_for_status(exc.status), exc.reason, status=exc.status)
            return _error_response(error, request_id, headers)
        except (KeyError, ValueError, TypeError) as exc:
            error = ApiError(
                "NOT_FOUND" if isinstance(exc, KeyError) else "INVALID_REQUEST", str(exc)
            )
            return _error_response(error, request_id, headers)
        except ApiError as exc:
            return _error_response(exc, request_id, headers)
        except Exception:  # noqa: BLE001 - a sandbox bug still answers with the envelope
            _log.exception("sandbox bug in control route %s %s", request.method, request.path)
            return _error_response(ApiError("INTERNAL_ERROR"), request_id, headers)

    def _match(self, method: str, path: str) -> tuple[_Control, dict[str, str]]:
        parts = tuple(p for p in path.split("/")[2:] if p)
        allowed: list[str] = []
        for route_method, pattern, func in self._routes:
            if len(pattern) != len(parts):
                continue
            params = {}
            for want, got in zip(pattern, parts, strict=True):
                if want.startswith("{"):
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                if route_method == method:
                    return func, params
                allowed.append(route_method)
        if allowed:
            raise ApiError(
                "OPERATION_NOT_SUPPORTED",
                f"{method} is not allowed on {path}.",
                headers={"Allow": ", ".join(allowed)},
            )
        raise ApiError("NOT_FOUND", f"No control route {path}.")

    async def _body(self, request: web.Request) -> dict[str, object]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiError("INVALID_REQUEST", f"The body is not valid JSON: {exc}.") from None
        if not isinstance(body, dict):
            raise ApiError("INVALID_REQUEST", "The body must be a JSON object.")
        return body

    async def _root(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        return {
            "url": self.sb.url,
            "client_id": self.sb.client_id,
            "client_secret": self.sb.client_secret,
            "admin_token": self.sb.admin_token,
            "connections": self.sb.connections,
            "time_scale": self.sb.time_scale,
        }

    def _describe(self, state: ConnectionState) -> dict[str, object]:
        return {
            "id": state.id,
            "token": state.access_token,
            "refresh_token": state.refresh_token,
            "provider": state.provider,
            "status": state.status,
            "v4": state.v4,
            "read_only": state.read_only,
            "rate_limit": state.rate_limit,
            "rate_window": state.rate_window,
            "latency": state.latency,
            "credentials_changed": state.credentials_changed,
            "disconnected": state.disconnected,
            "sync_status": state.sync_status,
        }

    async def _list_connections(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        return [self._describe(s) for s in self.sb.all_connections()]

    async def _add_connection(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        state = await self.sb.add_connection(
            _opt_str(body.get("id")),
            provider=_opt_str(body.get("provider")),
            sizes=body.get("sizes"),  # type: ignore[arg-type]
            v4=_opt_bool(body.get("v4")),
            read_only=_opt_bool(body.get("read_only")),
            rate_limit=_opt_int(body.get("rate_limit")),
            status=str(body.get("status") or "active"),
        )
        return self._describe(state)

    async def _remove_connection(self, request: web.Request, params: dict[str, str]) -> object:
        del request
        self.sb.remove_connection(params["id"])
        return {"removed": params["id"]}

    async def _configure(self, request: web.Request, params: dict[str, str]) -> object:
        body = await self._body(request)
        unsupported = body.get("unsupported")
        state = self.sb.configure(
            params["id"],
            v4=_opt_bool(body.get("v4")),
            read_only=_opt_bool(body.get("read_only")),
            rate_limit=_opt_int(body.get("rate_limit")),
            rate_window=_opt_float(body.get("rate_window")),
            latency=_opt_float(body.get("latency")),
            provider=_opt_str(body.get("provider")),
            unsupported=[str(u) for u in unsupported] if isinstance(unsupported, list) else None,
        )
        if body.get("status"):
            self.sb.set_status(state.id, str(body["status"]))
        return self._describe(state)

    async def _connection_action(self, request: web.Request, params: dict[str, str]) -> object:
        body = await self._body(request)
        cid, action = params["id"], params["action"]
        sb = self.sb
        if action == "change-credentials":
            sb.change_credentials(cid)
        elif action == "reconnect":
            sb.reconnect(cid)
        elif action == "expire-token":
            sb.expire_token(cid)
        elif action == "disconnect":
            sb.disconnect(cid)
        elif action == "authorization-code":
            return {"code": sb.authorization_code(cid)}
        elif action == "fail-next-sync":
            sb.fail_next_sync(
                cid, status=str(body.get("status") or "error"), code=str(body.get("code") or "")
            )
        elif action == "soft-delete":
            return sb.soft_delete(cid, str(body["resource"]), str(body["key"]))
        else:
            raise ApiError("NOT_FOUND", f"No connection action {action!r}.")
        return self._describe(sb.connection(cid))

    async def _list_faults(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        return self.sb.faults()

    async def _inject(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        times = body.get("times", 1)
        details = body.get("details")
        return self.sb.inject(
            _opt_int(body.get("status")),
            kind=_opt_str(body.get("kind")),  # type: ignore[arg-type]
            times=None if times is None else int(str(times)),
            connection=_opt_str(body.get("connection")),
            path=_opt_str(body.get("path")),
            method=_opt_str(body.get("method")),
            retry_after=_opt_float(body.get("retry_after")),
            code=_opt_str(body.get("code")),
            message=_opt_str(body.get("message")),
            details=details if isinstance(details, dict) else None,
            latency=_opt_float(body.get("latency")) or 0.0,
        )

    async def _clear_faults(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        self.sb.clear_faults()
        return {"cleared": True}

    async def _requests(self, request: web.Request, params: dict[str, str]) -> object:
        """The request log as JSON: each record's fields, its body as text or base64.

        ``body_encoding`` is ``utf-8`` when the captured bytes decode as UTF-8 and ``base64``
        otherwise; ``body_size`` and ``body_truncated`` tell whether the body was cut. Filters:
        ``connection``, ``path``, ``method``, and ``last=N`` for the N most recent only (the
        whole log, bodies included, can be large).
        """
        del params
        query = request.query
        found = self.sb.requests(
            query.get("connection"), path=query.get("path"), method=query.get("method")
        )
        last = query.get("last")
        if last is None:
            return found
        if not last.isdigit() or not last.isascii():
            raise ApiError("INVALID_REQUEST", "last must be a whole number of requests.")
        count = int(last)
        return found[-count:] if count else []

    async def _clear_requests(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        self.sb.clear_requests()
        return {"cleared": True}

    async def _list_webhooks(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        return list(self.sb.webhooks.endpoints.values())

    async def _add_webhook(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        events = body.get("events") or ["*"]
        endpoint = self.sb.add_webhook(
            str(body["connection"]),
            str(body["url"]),
            events=[str(e) for e in events] if isinstance(events, list) else ["*"],
            secret=_opt_str(body.get("secret")),
        )
        return {**attrs.asdict(endpoint), "secret": endpoint.secret}

    async def _configure_webhooks(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        self.sb.configure_webhooks(
            duplicates=_opt_float(body.get("duplicates")),
            reorder=_opt_float(body.get("reorder")),
            timeout=_opt_float(body.get("timeout")),
            backoff_start=_opt_float(body.get("backoff_start")),
            max_age=_opt_float(body.get("max_age")),
        )
        hub = self.sb.webhooks
        return {
            "duplicates": hub.duplicates,
            "reorder": hub.reorder,
            "timeout": hub.timeout,
            "backoff_start": hub.backoff_start,
            "max_age": hub.max_age,
        }

    async def _remove_webhook(self, request: web.Request, params: dict[str, str]) -> object:
        del request
        self.sb.webhooks.remove(params["id"])
        return {"removed": params["id"]}

    async def _deliveries(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        return self.sb.deliveries(request.query.get("event_id"))

    async def _emit(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        data = body.get("data")
        keys = body.get("body")
        event_id = self.sb.emit(
            str(body["connection"]),
            str(body["event"]),
            data if isinstance(data, dict) else None,
            [str(k) for k in keys] if isinstance(keys, list) else None,
        )
        return {"id": event_id}

    async def _time(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        if body.get("scale") is not None:
            self.sb.time_scale = float(str(body["scale"]))
        if body.get("advance") is not None:
            self.sb.advance(float(str(body["advance"])))
        return {"time_scale": self.sb.time_scale, "now": self.sb.now()}


def _plain(value: object) -> object:
    if isinstance(value, RequestRecord):
        return _record_json(value)
    if attrs.has(type(value)):
        return attrs.asdict(value, filter=lambda a, _v: a.repr is not False)  # type: ignore[arg-type]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _record_json(record: RequestRecord) -> dict[str, object]:
    # The control plane serves tests, so it shows the body that repr() hides: as text when it is
    # UTF-8, else as base64 (``body_encoding`` says which).
    plain = attrs.asdict(record, filter=lambda a, _v: a.repr is not False)
    try:
        body, encoding = record.body.decode(), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(record.body).decode("ascii"), "base64"
    plain.update(body=body, body_encoding=encoding, body_truncated=record.body_truncated)
    return plain


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_bool(value: object) -> bool | None:
    return None if value is None else bool(value)


def _opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _opt_float(value: object) -> float | None:
    return None if value is None else float(str(value))
