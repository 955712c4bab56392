"""``/_sandbox/...``: the control plane, the `Sandbox` object's methods over HTTP (JSON in and out).

Control requests are never logged, counted or faulted, and need no token.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import attrs
from aiohttp import web

from makini_async.sandbox._connections import SandboxConnection
from makini_async.sandbox._core import Core
from makini_async.sandbox._errors import SandboxError, code_for_status, dumps
from makini_async.sandbox._http_common import error_response, json_response
from makini_async.sandbox._request_log import RequestRecord

__all__ = ["ControlPlane"]

_log = logging.getLogger("makini_async.sandbox")

_Control: TypeAlias = Callable[[web.Request, dict[str, str]], Awaitable[object]]


class ControlPlane:
    """Routes ``/_sandbox/`` requests to the sandbox's collaborators."""

    def __init__(self, core: Core) -> None:
        self._core = core
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
        """Serve one control request; failures answer with the error envelope.

        Returns:
            The JSON answer: ``KeyError`` becomes 404 and ``ValueError``/``TypeError`` 400.
        """
        try:
            func, params = self._match(request.method, request.path)
            result = await func(request, params)
            return json_response(200, dumps(_plain(result)), headers)
        except web.HTTPException as exc:
            error = SandboxError(code_for_status(exc.status), exc.reason, status=exc.status)
            return error_response(error, request_id, headers)
        except (KeyError, ValueError, TypeError) as exc:
            error = SandboxError(
                "NOT_FOUND" if isinstance(exc, KeyError) else "INVALID_REQUEST", str(exc)
            )
            return error_response(error, request_id, headers)
        except SandboxError as exc:
            return error_response(exc, request_id, headers)
        except Exception:  # noqa: BLE001 - a sandbox bug still answers with the envelope
            _log.exception("sandbox bug in control route %s %s", request.method, request.path)
            return error_response(SandboxError("INTERNAL_ERROR"), request_id, headers)

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
            raise SandboxError(
                "OPERATION_NOT_SUPPORTED",
                f"{method} is not allowed on {path}.",
                headers={"Allow": ", ".join(allowed)},
            )
        raise SandboxError("NOT_FOUND", f"No control route {path}.")

    async def _body(self, request: web.Request) -> dict[str, object]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise SandboxError("INVALID_REQUEST", f"The body is not valid JSON: {exc}.") from None
        if not isinstance(body, dict):
            raise SandboxError("INVALID_REQUEST", "The body must be a JSON object.")
        return body

    async def _root(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        core = self._core
        return {
            "url": core.lifecycle.url,
            "client_id": core.settings.client_id,
            "client_secret": core.settings.client_secret,
            "admin_token": core.tokens.admin_access,
            "connections": core.connections.access_tokens(),
            "time_scale": core.clock.scale,
        }

    async def _list_connections(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        return [_describe(c) for c in self._core.connections.all()]

    async def _add_connection(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        conn = self._core.connections.add(
            _opt_str(body.get("id")),
            provider=_opt_str(body.get("provider")),
            sizes=body.get("sizes"),  # type: ignore[arg-type]
            v4=_opt_bool(body.get("v4")),
            read_only=_opt_bool(body.get("read_only")),
            rate_limit=_opt_int(body.get("rate_limit")),
            status=str(body.get("status") or "active"),
        )
        return _describe(conn)

    async def _remove_connection(self, request: web.Request, params: dict[str, str]) -> object:
        del request
        self._core.connections.remove(params["id"])
        return {"removed": params["id"]}

    async def _configure(self, request: web.Request, params: dict[str, str]) -> object:
        body = await self._body(request)
        unsupported = body.get("unsupported")
        conn = self._core.connections.configure(
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
            self._core.connections.set_status(conn.id, str(body["status"]))
        return _describe(conn)

    async def _connection_action(self, request: web.Request, params: dict[str, str]) -> object:
        body = await self._body(request)
        cid, action = params["id"], params["action"]
        auth, connections = self._core.auth, self._core.connections
        if action == "change-credentials":
            auth.change_credentials(cid)
        elif action == "reconnect":
            auth.reconnect(cid)
        elif action == "expire-token":
            auth.expire_token(cid)
        elif action == "disconnect":
            auth.disconnect(cid)
        elif action == "authorization-code":
            return {"code": auth.authorization_code(cid, "sandbox")}
        elif action == "fail-next-sync":
            self._core.syncs.fail_next(
                cid, status=str(body.get("status") or "error"), code=str(body.get("code") or "")
            )
        elif action == "soft-delete":
            return connections.soft_delete(cid, str(body["resource"]), str(body["key"]))
        else:
            raise SandboxError("NOT_FOUND", f"No connection action {action!r}.")
        return _describe(connections.get(cid))

    async def _list_faults(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        return self._core.faults.active()

    async def _inject(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        times = body.get("times", 1)
        details = body.get("details")
        return self._core.faults.arm(
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
        self._core.faults.clear()
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
        found = self._core.request_log.select(
            query.get("connection"), path=query.get("path"), method=query.get("method")
        )
        last = query.get("last")
        if last is None:
            return found
        if not last.isdigit() or not last.isascii():
            raise SandboxError("INVALID_REQUEST", "last must be a whole number of requests.")
        count = int(last)
        return found[-count:] if count else []

    async def _clear_requests(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        self._core.request_log.clear()
        return {"cleared": True}

    async def _list_webhooks(self, request: web.Request, params: dict[str, str]) -> object:
        del request, params
        return list(self._core.webhooks.endpoints.values())

    async def _add_webhook(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        events = body.get("events") or ["*"]
        connection = self._core.connections.get(str(body["connection"]))
        endpoint = self._core.webhooks.add(
            connection.id,
            str(body["url"]),
            tuple(str(e) for e in events) if isinstance(events, list) else ("*",),
            _opt_str(body.get("secret")),
        )
        return {**attrs.asdict(endpoint), "secret": endpoint.secret}

    async def _configure_webhooks(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        return self._core.webhooks.configure(
            duplicates=_opt_float(body.get("duplicates")),
            reorder=_opt_float(body.get("reorder")),
            timeout=_opt_float(body.get("timeout")),
            backoff_start=_opt_float(body.get("backoff_start")),
            max_age=_opt_float(body.get("max_age")),
        )

    async def _remove_webhook(self, request: web.Request, params: dict[str, str]) -> object:
        del request
        self._core.webhooks.remove(params["id"])
        return {"removed": params["id"]}

    async def _deliveries(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        return self._core.webhooks.deliveries_of(request.query.get("event_id"))

    async def _emit(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        data = body.get("data")
        keys = body.get("body")
        event_id = self._core.webhooks.emit(
            str(body["connection"]),
            str(body["event"]),
            data if isinstance(data, dict) else None,
            [str(k) for k in keys] if isinstance(keys, list) else None,
        )
        return {"id": event_id}

    async def _time(self, request: web.Request, params: dict[str, str]) -> object:
        del params
        body = await self._body(request)
        clock = self._core.clock
        if body.get("scale") is not None:
            clock.scale = float(str(body["scale"]))
        if body.get("advance") is not None:
            clock.advance(float(str(body["advance"])))
        return {"time_scale": clock.scale, "now": clock.now()}


def _describe(conn: SandboxConnection) -> dict[str, object]:
    return {
        "id": conn.id,
        "token": conn.access_token,
        "refresh_token": conn.refresh_token,
        "provider": conn.provider,
        "status": conn.status,
        "v4": conn.v4,
        "read_only": conn.read_only,
        "rate_limit": conn.rate_limit,
        "rate_window": conn.rate_window,
        "latency": conn.latency,
        "credentials_changed": conn.credentials_changed,
        "disconnected": conn.disconnected,
        "sync_status": conn.sync_status,
    }


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
