"""Makini's OpenAPI files read as JSON Schema: the contract the sandbox's property tests check.

The files are Makini's own and have quirks, each normalised here where it is read:

- Laravel validation rules leaked into ``type`` and ``format`` (``"nullable|numeric"``,
  ``"numeric|required"``, ``"format": "nullable"``, ``"format": "string"``): a rule names the
  JSON type it takes (``numeric``: a number or numeric string; ``date``/``email``: a string;
  ``nullable``: also ``null``), and a ``format`` that is not a JSON Schema format is dropped.
- Every record property says ``"nullable": false``, yet records leave unset fields ``null`` (and
  the same files' write rules say ``nullable``): every record property may be ``null``.
- ``example`` values are not the declared types (``"string"`` in number fields, ``"[]"`` in
  arrays, ``"false"`` in booleans): they are ignored, except that a bare ``"type": "object"``
  (no ``$ref``, no properties) whose example is a string is read as a string (the example shows
  the scalar: ``Stock.quantity``, ``PurchaseOrder.orderDate``, ``LineItem.uomKey``).
- A ``$ref`` to a schema that is ``[]`` (``Dimension``, ``ConnectionToken``) is any object.
- The envelope lists no required properties: ``data`` is required, and ``links`` and ``meta``
  on lists (makini-api.md §2); ``links.prev``/``next`` and ``meta.from``/``to`` may be ``null``
  (Laravel's paginator on the first, last or an empty page).

What the sandbox deliberately does otherwise is normalised too, from `DEVIATIONS` (listed with
reasons in the ``makini_async.sandbox`` docstring, "Deviations from the OpenAPI files").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from typing import Any, Final

import attrs
from jsonschema import Draft202012Validator

from makini_async import _openapi

__all__ = ["DEVIATIONS", "Contract", "Operation", "contract"]

_REF: Final = "#/components/schemas/"
_JSON_TYPES: Final = frozenset({"string", "number", "integer", "boolean", "object", "array"})
_METADATA_ITEM: Final = {
    "type": "object",
    "properties": {"key": {"type": "string"}, "value": {}},
    "required": ["key"],
}
_MATERIAL_ITEMS: Final = {"type": "array", "items": {"$ref": "#/$defs/MaterialItem"}}

#: What the sandbox answers where the files say otherwise: (domain, schema, property) → the
#: property's schema, and (method, path) → the response's ``data``.
DEVIATIONS: Final[dict[str, dict[Any, dict[str, Any]]]] = {
    "properties": {
        # A connection's user metadata is a key → value object (the client's ConnectionInfo).
        ("system", "Connection", "user_metadata"): {"type": ["object", "null"]},
        # makini-api.md §1: expires_in is an absolute Unix time, an int or a numeric string.
        ("system", "ConnectionStore", "expires_in"): {"type": ["integer", "string"]},
    },
    "data": {
        # Metadata is a list of {key, value} items, listed and set (the client's MetadataItem).
        ("GET", "/api/system/connections/{id}/metadata"): {
            "type": "array",
            "items": _METADATA_ITEM,
        },
        ("POST", "/api/system/connections/{id}/metadata"): {
            "type": "array",
            "items": _METADATA_ITEM,
        },
        # A record's materials (and an assembly's children) are MaterialItems: the files leave
        # these lists untyped or call them WorkOrders.
        ("GET", "/api/eam/work-orders/materials"): _MATERIAL_ITEMS,
        ("GET", "/api/eam/work-orders/{key}/materials"): _MATERIAL_ITEMS,
        ("GET", "/api/eam/assets/{key}/materials"): _MATERIAL_ITEMS,
        ("GET", "/api/eam/asset-templates/{key}/materials"): _MATERIAL_ITEMS,
        ("GET", "/api/eam/pm/{key}/materials"): _MATERIAL_ITEMS,
        ("GET", "/api/eam/materials/{key}/children"): _MATERIAL_ITEMS,
        ("GET", "/api/erp/production-orders/{key}/materials"): _MATERIAL_ITEMS,
        ("GET", "/api/erp/materials/{key}/children"): _MATERIAL_ITEMS,
        ("GET", "/api/wms/materials/{key}/children"): _MATERIAL_ITEMS,
    },
}


@attrs.frozen
class Operation:
    """One documented path and method, with what the test needs of it."""

    domain: str
    method: str
    path: str
    raw: Mapping[str, Any]
    #: The schema name of ``data`` (a record, or each item of a list), or "".
    data_schema: str
    is_list: bool

    @property
    def id(self) -> str:
        """A test id, e.g. ``GET /api/eam/work-orders``."""
        return f"{self.method} {self.path}"

    @property
    def body_properties(self) -> Mapping[str, Mapping[str, Any]]:
        """The request body's declared properties (empty when it declares none)."""
        request = self.raw.get("requestBody") or {}
        media: Mapping[str, Any] = next(iter(request.get("content", {}).values()), {})
        props = media.get("schema", {}).get("properties")
        return props if isinstance(props, dict) else {}

    @property
    def content_type(self) -> str:
        """The request body's media type, or ""."""
        request = self.raw.get("requestBody") or {}
        return next(iter(request.get("content", {})), "")

    @property
    def query_names(self) -> tuple[str, ...]:
        """The documented query parameters."""
        return tuple(
            str(p["name"]) for p in self.raw.get("parameters", ()) if p.get("in") == "query"
        )


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, list):
        return {**schema, "type": [*kind, "null"]} if "null" not in kind else schema
    if not schema:
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _rule(rule: str) -> dict[str, Any]:
    """The JSON Schema of a Laravel rule string such as ``nullable|numeric``."""
    parts = set(rule.split("|"))
    if "numeric" in parts:
        schema: dict[str, Any] = {"type": ["number", "string"]}
    elif parts & {"date", "email", "string"}:
        schema = {"type": "string"}
    else:
        schema = {}
    return _nullable(schema) if "nullable" in parts and schema else schema


class Contract:
    """The four files' operations and JSON Schemas, normalised as the module docstring says."""

    def __init__(self) -> None:
        self._docs = {domain: _openapi.read(domain) for domain in _openapi.DOMAINS}
        self._defs = {domain: self._components(domain) for domain in _openapi.DOMAINS}
        self._validators: dict[tuple[str, str], Draft202012Validator] = {}
        self._checked: set[str] = set()
        self.operations = tuple(
            self._operation(domain, method, path, op)
            for domain, doc in self._docs.items()
            for path, methods in doc["paths"].items()
            for method, op in methods.items()
        )

    def components(self, domain: str) -> Mapping[str, Mapping[str, Any]]:
        """The raw component schemas of a domain."""
        return self._docs[domain]["components"]["schemas"]  # type: ignore[no-any-return]

    def validator(self, op: Operation) -> Draft202012Validator:
        """A validator of ``op``'s 200 response body."""
        key = (op.method, op.path)
        found = self._validators.get(key)
        if found is None:
            schema = self._response(op)
            Draft202012Validator.check_schema(schema)
            self._check_defs(op.domain)
            found = Draft202012Validator({**schema, "$defs": self._defs[op.domain]})
            self._validators[key] = found
        return found

    def _check_defs(self, domain: str) -> None:
        """Check a domain's normalised components once (they are large)."""
        if domain not in self._checked:
            Draft202012Validator.check_schema({"$defs": self._defs[domain]})
            self._checked.add(domain)

    def record_validator(self, domain: str, schema: str) -> Draft202012Validator:
        """A validator of one record of a component schema."""
        key = (domain, schema)
        found = self._validators.get(key)
        if found is None:
            found = Draft202012Validator({"$ref": f"#/$defs/{schema}", "$defs": self._defs[domain]})
            self._validators[key] = found
        return found

    # -- reading ------------------------------------------------------------------------------

    def _operation(self, domain: str, method: str, path: str, op: Mapping[str, Any]) -> Operation:
        schema = self._data_node(op)
        override = DEVIATIONS["data"].get((method.upper(), path))
        if override is not None:
            schema = override
        ref = schema.get("$ref", "") or schema.get("items", {}).get("$ref", "")
        name = ref.rpartition("/")[2]
        return Operation(
            domain, method.upper(), path, op, name, schema.get("type") == "array" and bool(name)
        )

    @staticmethod
    def _data_node(op: Mapping[str, Any]) -> dict[str, Any]:
        content = op.get("responses", {}).get("200", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        return dict(schema.get("properties", {}).get("data", {}))

    def _components(self, domain: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, raw in self.components(domain).items():
            if not isinstance(raw, dict):
                out[name] = {"type": "object"}  # a schema written as []
                continue
            if raw.get("type") == "array":
                out[name] = {"type": "array", "items": self._node(domain, raw.get("items", {}))}
                continue
            example: dict[str, Any] = raw["example"] if isinstance(raw.get("example"), dict) else {}
            props = raw.get("properties")
            if not isinstance(props, dict):
                out[name] = {"type": "object"}
                continue
            out[name] = {
                "type": "object",
                "properties": {
                    prop: self._record_property(domain, name, prop, spec, example.get(prop))
                    for prop, spec in props.items()
                },
            }
        return out

    def _record_property(
        self, domain: str, schema: str, name: str, spec: Mapping[str, Any], example: object
    ) -> dict[str, Any]:
        override = DEVIATIONS["properties"].get((domain, schema, name))
        if override is not None:
            return dict(override)
        kind = spec.get("type")
        if kind == "object" and "$ref" not in spec and "properties" not in spec:
            # A bare object whose example is a string holds that scalar.
            return _nullable({"type": "string" if isinstance(example, str) else "object"})
        if kind == "string" and name.endswith("Keys"):
            # The sandbox's deviation: a list of keys, as every other ...Keys field.
            return _nullable({"type": "array", "items": {"type": "string"}})
        return _nullable(self._node(domain, spec))

    def _node(self, domain: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """One schema node, normalised (``$ref`` → ``$defs``, rules, formats, nullable)."""
        if "$ref" in spec:
            target = str(spec["$ref"]).removeprefix(_REF)
            return {"$ref": f"#/$defs/{target}"}
        kind = spec.get("type")
        node: dict[str, Any]
        if kind == "array":
            items = spec.get("items")
            node = {"type": "array"}
            if isinstance(items, dict) and items:
                node["items"] = self._node(domain, items)
        elif kind == "object" and isinstance(spec.get("properties"), dict):
            node = {
                "type": "object",
                "properties": {
                    name: self._node(domain, sub) for name, sub in spec["properties"].items()
                },
            }
        elif isinstance(kind, str) and kind in _JSON_TYPES:
            node = {"type": kind}
        elif isinstance(kind, str):
            node = _rule(kind)
        else:
            node = {}
        if spec.get("format") == "nullable" or spec.get("nullable") is True:
            node = _nullable(node)
        return node

    def _response(self, op: Operation) -> dict[str, Any]:
        content = op.raw.get("responses", {}).get("200", {}).get("content", {})
        raw = content.get("application/json", {}).get("schema", {})
        schema = self._node(op.domain, raw)
        schema = copy.deepcopy(schema)
        props: dict[str, Any] = schema.get("properties", {})
        override = DEVIATIONS["data"].get((op.method, op.path))
        if override is not None:
            props["data"] = copy.deepcopy(override)
            if override.get("type") == "array" and op.method == "GET":
                props.setdefault("links", self._node(op.domain, _LINKS))
                props.setdefault("meta", self._node(op.domain, _META))
            schema["type"] = "object"
            schema["properties"] = props
        if "data" in props:
            schema["required"] = ["data"]
        if "meta" in props:
            schema["required"] = ["data", "links", "meta"]
            for name in ("from", "to"):
                props["meta"]["properties"][name] = _nullable(props["meta"]["properties"][name])
        return schema


_LINKS: Final = {
    "type": "object",
    "properties": {
        "first": {"type": "string"},
        "last": {"type": "string"},
        "prev": {"type": "string", "format": "nullable"},
        "next": {"type": "string", "format": "nullable"},
    },
}
_META: Final = {
    "type": "object",
    "properties": {
        name: {"type": "string" if name == "path" else "number"}
        for name in ("current_page", "from", "last_page", "path", "per_page", "to", "total")
    },
}


@cache
def contract() -> Contract:
    """The contract, read once per process."""
    return Contract()
