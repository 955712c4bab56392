"""HTTP handlers for reads: a record, a filtered page of a collection, a record's sub-list.

Pages are cached per collection until a write touches it; a connection's settings shape what
each record looks like (v4 standard fields, custom fields).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aiohttp import web

from makini_async.sandbox._connections import SandboxConnection
from makini_async.sandbox._core import Core
from makini_async.sandbox._data import Collection, Record, record_uuid
from makini_async.sandbox._errors import SandboxError, dumps
from makini_async.sandbox._fields import Wire
from makini_async.sandbox._http_common import Call, json_response
from makini_async.sandbox._http_pages import page_of, paginated
from makini_async.sandbox._query import QueryError, apply, parse_query
from makini_async.sandbox._spec import SUBLIST_PARENT_FIELD, Route

__all__ = ["ReadHandlers", "shape"]

_CACHE_LIMIT: Final = 512
_KINDS: Final = {
    Wire.STRINGS: "array",
    Wire.OBJECTS: "array",
    Wire.JSON_LIST: "array",
    Wire.OBJECT: "object",
    Wire.JSON_OBJECT: "object",
    Wire.TIME: "string",
    Wire.DECIMAL: "string",
    Wire.KEY: "string",
}


def shape(conn: SandboxConnection, schema: str, record: Record, resource: str = "") -> Record:
    """Show a stored record as the connection answers with it.

    Args:
        conn: The connection (its custom fields and ``v4`` setting).
        schema: The record's schema name (``_implements`` in v4).
        record: The stored (v3) record.
        resource: Its collection, e.g. ``eam/work-orders``, for custom fields.

    Returns:
        The record with custom fields and, on v4, the standard fields.
    """
    extra = conn.custom_fields.get(resource.partition("/")[2]) or conn.custom_fields.get(resource)
    if extra:
        record = {**record, **extra}
    if not conn.v4:
        return record
    key = str(record.get("key", ""))
    shaped: Record = {
        "id": record_uuid(conn.id, key),
        "_idValue": record.get("code") or key,
        "_displayValue": record.get("title") or record.get("name") or key,
        "_createdAt": record.get("createdAt"),
        "_updatedAt": record.get("updatedAt"),
        "_deletedAt": record.get("deletedAt"),
        "_implements": schema,
    }
    shaped.update(record)
    return shaped


class ReadHandlers:
    """Serves ``get``, ``list`` and ``sublist`` routes."""

    def __init__(self, core: Core) -> None:
        self._spec = core.spec

    async def get_record(
        self, call: Call, conn: SandboxConnection, route: Route, params: Mapping[str, str]
    ) -> web.Response:
        """Answer with one record.

        Raises:
            SandboxError: No record has the key.
        """
        found = conn.data.collection(route.resource).by_key.get(params["key"])
        if found is None:
            raise SandboxError("NOT_FOUND", f"No {route.schema} with key {params['key']!r}.")
        body = dumps({"data": shape(conn, route.schema, found, route.resource)})
        return json_response(200, body, call.headers)

    async def list_records(
        self, call: Call, conn: SandboxConnection, route: Route, params: Mapping[str, str]
    ) -> web.Response:
        """Answer with a page of a collection, or of a parent record's sub-list.

        Raises:
            SandboxError: No parent record has the key, or the query is not valid.
        """
        request = call.request
        collection = conn.data.collection(route.resource)
        cache_key = (request.raw_path, conn.v4, request.host)
        cached = collection.page_cache.get(cache_key)
        if cached is not None:
            return json_response(200, cached, call.headers)
        parent: tuple[str, str] | None = None
        if route.action == "sublist":
            parent_resource, _, tail = route.resource.partition(".")
            parent_name = parent_resource.partition("/")[2]
            if params["key"] not in conn.data.collection(parent_resource).by_key:
                raise SandboxError(
                    "NOT_FOUND", f"No {parent_name} record with key {params['key']!r}."
                )
            field = "assemblyKey" if tail == "children" else SUBLIST_PARENT_FIELD[parent_name]
            parent = (field, params["key"])
        # Filters and sorts take the fields records hold scalars in (Stock.quantity, declared
        # an object, holds a numeric string; Asset.accountKeys, declared a string, a list).
        kinds = {
            field.name: _KINDS.get(wire, field.kind)
            for field, wire in conn.data.types.fields(route.domain, route.schema)
        }
        body = self._page(request, conn, route.schema, collection, kinds=kinds, parent=parent)
        if len(collection.page_cache) >= _CACHE_LIMIT:
            collection.page_cache.clear()
        collection.page_cache[cache_key] = body
        return json_response(200, body, call.headers)

    def _page(
        self,
        request: web.Request,
        conn: SandboxConnection,
        schema: str,
        collection: Collection,
        *,
        kinds: Mapping[str, str],
        parent: tuple[str, str] | None,
    ) -> bytes:
        try:
            query = parse_query(list(request.query.items()), kinds)
        except QueryError as exc:
            raise SandboxError(
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
            shape(conn, schema, r, collection.resource)
            for r in page_of(matches, query.page, query.per_page)
        ]
        return dumps(paginated(request, data, len(matches), query.page, query.per_page))
