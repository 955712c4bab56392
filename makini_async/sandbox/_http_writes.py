"""HTTP handlers for writes: creates, updates, status changes, materials and document uploads.

A write is checked against the route's body rules and the connection's provider, applied (unless
the connection is read-only), emitted as an event, and stored for replay under its
``Idempotency-Key``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from aiohttp import web

from makini_async.sandbox._connections import SandboxConnection
from makini_async.sandbox._core import Core
from makini_async.sandbox._data import Record, iso
from makini_async.sandbox._errors import SandboxError, dumps, envelope
from makini_async.sandbox._forms import read_multipart
from makini_async.sandbox._http_common import JSON, Call, json_response, read_object, too_large
from makini_async.sandbox._http_reads import shape
from makini_async.sandbox._rules import PROVIDERS, clean_body, provider_errors
from makini_async.sandbox._spec import Route

__all__ = ["WriteHandlers"]


class WriteHandlers:
    """Serves the routes that change records."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._connections = core.connections

    async def write(
        self, call: Call, conn: SandboxConnection, route: Route, params: Mapping[str, str]
    ) -> web.Response:
        """Apply a write and answer with the record, replaying a repeated idempotent one.

        Raises:
            SandboxError: The provider cannot write this, or the body is refused.
        """
        request, headers = call.request, call.headers
        collection_name = route.resource.partition("/")[2]
        family = collection_name.partition(".")[0] if route.action == "subcreate" else None
        rules = PROVIDERS[conn.provider]
        target = (family and f"{family}.materials") or collection_name
        if target in conn.unsupported or (
            rules.writable is not None and target not in rules.writable
        ):
            raise SandboxError(
                "OPERATION_NOT_SUPPORTED",
                f"{conn.provider} cannot {request.method} {collection_name}.",
                details={"provider": conn.provider},
            )
        if route.content_type == "multipart/form-data":
            body = await self._multipart(request)
        else:
            body = await read_object(request, self._core.settings.max_body)
        key = request.headers.get("Idempotency-Key")
        fingerprint = ""
        if key:
            canonical = json.dumps(body, sort_keys=True, default=str)
            fingerprint = hashlib.sha256(
                f"{request.method} {request.path}\n{canonical}".encode()
            ).hexdigest()
            replay = self._connections.replay(conn, key, fingerprint)
            if replay is not None:
                headers["Idempotent-Replayed"] = "true"
                return json_response(replay[0], replay[1], headers)
        try:
            record = self._apply(conn, route, params, body, request.method)
            resource = route.resource.partition(".")[0]
            # The record as GET shows it: its collection's schema names it (v4 _implements).
            schema = conn.data.schema_of(resource)[1]
            status, raw = 200, dumps({"data": shape(conn, schema, record, resource)})
        except SandboxError as exc:
            if not key or exc.status >= 500:  # noqa: PLR2004 - server errors are not stored
                raise
            headers.update(exc.headers)
            status = exc.status
            raw = envelope(exc.code, headers["X-Request-Id"], exc.message, exc.details)
        if key:
            self._connections.store(conn, key, fingerprint, status, raw)
        return json_response(status, raw, headers)

    async def _multipart(self, request: web.Request) -> dict[str, object]:
        max_body = self._core.settings.max_body
        if not request.content_type.startswith("multipart/"):
            raise SandboxError("UNSUPPORTED_MEDIA_TYPE", "Upload documents as multipart/form-data.")
        if request.content_length is not None and request.content_length > max_body:
            raise too_large(max_body)
        # request.post() would read the socket stream, which the pipeline has spent: parse the
        # bytes it cached instead.
        raw = await request.read()
        try:
            fields = await read_multipart(request.headers, raw)
        except Exception as exc:  # noqa: BLE001 - aiohttp's multipart parser raises many types
            raise SandboxError("INVALID_REQUEST", f"Malformed multipart body: {exc}.") from None
        if any(f.name is None for f in fields):
            raise SandboxError("INVALID_REQUEST", "Malformed multipart body: a part has no name.")
        # The first part of each name counts, as with request.post()'s MultiDict.get().
        upload = next((f for f in fields if f.name == "file"), None)
        if upload is None or not upload.filename:
            raise SandboxError(
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
        self,
        conn: SandboxConnection,
        route: Route,
        method: str,
        body: Mapping[str, object],
        schema: str | None = None,
    ) -> dict[str, object]:
        """Check a body and return the values to store, typed as the records carry them.

        ``schema`` names the stored record's schema (default: the collection's own).

        Raises:
            SandboxError: A field breaks its type, its rule or the provider's requirements.
        """
        if route.content_type != JSON:
            return dict(body)  # an upload: the handler built the fields itself
        types = conn.data.types
        if schema is None:
            schema = conn.data.schema_of(route.resource)[1]
        cleaned, errors = clean_body(
            body, route.body, types.fields(route.domain, schema), types.nested(route.domain)
        )
        collection = route.resource.partition("/")[2]
        for name, messages in provider_errors(
            PROVIDERS[conn.provider], method, collection, body
        ).items():
            errors.setdefault(name, []).extend(messages)
        if errors:
            raise SandboxError("VALIDATION_ERROR", details={"fields": errors})
        return cleaned

    def _apply(
        self,
        conn: SandboxConnection,
        route: Route,
        params: Mapping[str, str],
        body: dict[str, object],
        method: str,
    ) -> Record:
        now = iso(self._core.clock.now())
        name = route.resource.partition("/")[2]
        if route.action == "create":
            cleaned = self._validate(conn, route, method, body)
            return self._create(conn, route.resource, cleaned, now, emit=name)
        if route.action in {"subcreate", "subupdate"}:
            cleaned = self._validate(conn, route, method, body, schema="MaterialItem")
            return self._material(conn, route, params, cleaned, now)
        collection = conn.data.collection(route.resource)
        current = collection.by_key.get(params["key"])
        if current is None:
            raise SandboxError("NOT_FOUND", f"No {route.schema} with key {params['key']!r}.")
        changes: dict[str, object]
        if route.action == "update":
            changes = self._validate(conn, route, method, body)
        elif route.action == "status":
            field = "statusKey" if "statusKey" in route.body else "status"
            wanted = body.get(field) or body.get("status") or body.get("statusKey")
            if not isinstance(wanted, str) or not wanted:
                raise SandboxError(
                    "VALIDATION_ERROR",
                    details={"fields": {field: [f"The {field} field is required."]}},
                )
            changes = self._status_changes(conn, route, name, current, wanted=wanted, field=field)
        elif route.action == "inventory":
            cleaned = self._validate(conn, route, method, body, schema="Inventory")
            inventory = dict(current.get("inventory") or {})  # type: ignore[call-overload]
            inventory.update({k: v for k, v in cleaned.items() if k in route.body})
            inventory["updatedAt"] = now
            changes = {"inventory": inventory}
        else:  # delivered
            statuses = f"{route.domain}/statuses/{name}"
            changes = {}
            if statuses in conn.data.resources:
                changes["statusKey"] = conn.data.collection(statuses).records[-1]["key"]
        changes["updatedAt"] = now
        updated = {**current, **changes}
        if conn.read_only:
            return updated
        newly_deleted = bool(changes.get("deletedAt")) and not current.get("deletedAt")
        current.update(changes)
        collection.touch()
        event = "deleted" if newly_deleted else "updated"
        self._core.webhooks.emit(conn.id, f"{name}.{event}", body=[params["key"]])
        return current

    def _status_changes(
        self,
        conn: SandboxConnection,
        route: Route,
        name: str,
        current: Record,
        *,
        wanted: str,
        field: str,
    ) -> dict[str, object]:
        statuses = f"{route.domain}/statuses/{name}"
        changes: dict[str, object] = {}
        if statuses in conn.data.resources:
            for status in conn.data.collection(statuses).records:
                if wanted in {status["key"], status["code"], status["name"]}:
                    changes["statusKey"] = status["key"]
                    if "status" in current:
                        changes["status"] = status["code"]
                    return changes
            raise SandboxError(
                "VALIDATION_ERROR",
                details={"fields": {field: [f"The selected {field} {wanted!r} is invalid."]}},
            )
        changes["statusKey" if "statusKey" in current else "status"] = wanted
        return changes

    def _create(
        self,
        conn: SandboxConnection,
        resource: str,
        body: Mapping[str, object],
        now: str,
        *,
        emit: str | None,
    ) -> Record:
        collection = conn.data.collection(resource)
        domain, schema = conn.data.schema_of(resource)
        fields = conn.data.types.fields(domain, schema)
        record: Record = {f.name: [] if wire.is_list else None for f, wire in fields}
        record.update(body)
        key = conn.data.key_for(resource, collection.next_index)
        record["key"] = key
        for stamp in ("createdAt", "updatedAt"):
            if stamp in record:
                record[stamp] = now
        statuses = f"{domain}/statuses/{resource.partition('/')[2]}"
        if "statusKey" in record and not record["statusKey"] and statuses in conn.data.resources:
            first = conn.data.collection(statuses).records[0]
            record["statusKey"] = first["key"]
            if "status" in record:
                record["status"] = first["code"]
        if "materialCount" in record:
            record["materialCount"] = "0"
        if conn.read_only:
            return record
        collection.next_index += 1
        collection.records.append(record)
        collection.by_key[key] = record
        collection.touch()
        if emit:
            self._core.webhooks.emit(conn.id, f"{emit}.inserted", body=[key])
        return record

    def _material(
        self,
        conn: SandboxConnection,
        route: Route,
        params: Mapping[str, str],
        body: Mapping[str, object],
        now: str,
    ) -> Record:
        parent_resource = route.resource.partition(".")[0]
        parents = conn.data.collection(parent_resource)
        parent = parents.by_key.get(params["key"])
        if parent is None:
            raise SandboxError("NOT_FOUND", f"No work order with key {params['key']!r}.")
        items = conn.data.collection(route.resource)
        fields = {
            "materialKey": body.get("materialKey"),
            "requiredQuantity": body.get("requiredQuantity"),
            "quantity": body.get("usedQuantity"),
            "workOrderKey": params["key"],
            "updatedAt": now,
        }
        if route.action == "subcreate":
            self._create(conn, route.resource, fields, now, emit=None)
            count = sum(1 for r in items.records if r.get("workOrderKey") == params["key"])
        else:
            wanted = params["materialKey"]
            mine = [r for r in items.records if r.get("workOrderKey") == params["key"]]
            item = next((r for r in mine if wanted in {r.get("key"), r.get("materialKey")}), None)
            if item is None:
                raise SandboxError(
                    "NOT_FOUND", f"Work order {params['key']!r} has no material {wanted!r}."
                )
            if not conn.read_only:
                item.update({k: v for k, v in fields.items() if v is not None})
                items.touch()
            count = len(mine)
        changes = {
            "materialCount": str(
                count + (1 if conn.read_only and route.action == "subcreate" else 0)
            ),
            "updatedAt": now,
        }
        if conn.read_only:
            return {**parent, **changes}
        parent.update(changes)
        parents.touch()
        emitted = parent_resource.partition("/")[2]
        self._core.webhooks.emit(conn.id, f"{emitted}.updated", body=[params["key"]])
        return parent
