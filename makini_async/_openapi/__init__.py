"""Makini's OpenAPI files, shipped with the package, and the one reader every generator uses.

The four files beside this module (``oas3_eam.json``, ``oas3_erp.json``, ``oas3_wms.json`` and
``oas3_system.json``) are Makini's published OpenAPI 3 documents, copied byte for byte. `load`
reads them through `importlib.resources` and returns a parsed view: each domain's component
schemas with their properties, and every operation by path and method with its parameters, its
request body and the schema of its 200 response's ``data``. Each ``$ref`` is resolved to the name
of the component schema it points at; a reference to anything else stops the reader.

Two generators derive committed files from this view:

- ``makini_async/models/_generate.py`` writes the models and the resource services;
- ``makini_async/sandbox/_build_spec.py`` writes the sandbox's route table ``_spec.json``.

To take a new release of the files, replace them here and regenerate everything::

    python -m makini_async._openapi            # rewrite every generated file
    python -m makini_async._openapi --check    # write nothing; exit 1 if a file would change

``tests/test_generated.py`` fails when regenerating would change a committed file. Only the
generators and the tests import this package: neither ``import makini_async`` nor the sandbox at
run time reads 1.9 MB of JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files as _package_files
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Any, Final

import attrs

__all__ = [
    "DOMAINS",
    "Document",
    "OpenAPI",
    "OpenAPIError",
    "Operation",
    "Parameter",
    "Property",
    "Schema",
    "files",
    "load",
    "read",
]

#: The domains, in the order their files are read (and their routes listed).
DOMAINS: Final = ("eam", "erp", "wms", "system")
_SCHEMA_REF: Final = "#/components/schemas/"


class OpenAPIError(ValueError):
    """An OpenAPI file says something the reader cannot follow (e.g. a dangling ``$ref``)."""


@attrs.frozen
class Property:
    """One property of a schema or request body, as declared.

    ``type`` and ``format`` are empty when not declared. ``ref`` names the component schema a
    ``$ref`` points at, ``items_type`` and ``items_ref`` describe an array's items, and
    ``properties`` holds what an inline object (or an array's inline item) declares.
    """

    name: str
    type: str
    format: str
    ref: str
    items_type: str
    items_ref: str
    properties: tuple[Property, ...]


@attrs.frozen
class Schema:
    """A component schema; ``properties`` is ``None`` when it declares no property map."""

    name: str
    properties: tuple[Property, ...] | None


@attrs.frozen
class Parameter:
    """A path or query parameter of an operation."""

    name: str
    location: str
    required: bool
    type: str


@attrs.frozen
class Operation:
    """One path and method.

    ``response`` names the schema of the 200 response's ``data`` (empty when untyped) and
    ``response_is_list`` tells whether ``data`` is an array of it. ``content_type`` and ``body``
    describe the request body (empty when there is none).
    """

    domain: str
    method: str
    path: str
    parameters: tuple[Parameter, ...]
    response: str
    response_is_list: bool
    content_type: str
    body: tuple[Property, ...]


@attrs.frozen
class Document:
    """One domain's file: its component schemas (in file order) and operations."""

    domain: str
    schemas: Mapping[str, Schema]
    operations: tuple[Operation, ...]


@attrs.frozen
class OpenAPI:
    """The documents read, in the order asked for."""

    documents: tuple[Document, ...]

    @property
    def operations(self) -> tuple[Operation, ...]:
        """Every operation of every document, in file order."""
        return tuple(op for doc in self.documents for op in doc.operations)

    def document(self, domain: str) -> Document:
        """Return the document of ``domain``.

        Raises:
            KeyError: When ``domain`` was not read.
        """
        for doc in self.documents:
            if doc.domain == domain:
                return doc
        raise KeyError(domain)


def files() -> Traversable:
    """Return the folder holding the shipped OpenAPI files (a package resource)."""
    return _package_files(__name__)


def read(domain: str, folder: Traversable | None = None) -> dict[str, Any]:
    """Return one domain's OpenAPI file as plain JSON.

    Args:
        domain: ``eam``, ``erp``, ``wms`` or ``system``.
        folder: Where ``oas3_<domain>.json`` is (default: the shipped files).

    Returns:
        The decoded document.
    """
    doc = json.loads((folder or files()).joinpath(f"oas3_{domain}.json").read_bytes())
    if not isinstance(doc, dict):
        raise OpenAPIError(f"oas3_{domain}.json does not hold a JSON object")
    return doc


def load(folder: Traversable | None = None, domains: tuple[str, ...] = DOMAINS) -> OpenAPI:
    """Read and parse the OpenAPI files of ``domains``.

    Args:
        folder: Where the ``oas3_<domain>.json`` files are (default: the shipped files, parsed
            once per process).
        domains: Which files to read, in this order.

    Returns:
        The parsed view.

    Raises:
        OpenAPIError: When a ``$ref`` points at no component schema of its file.
    """
    if folder is None:
        return OpenAPI(tuple(_shipped(domain) for domain in domains))
    return OpenAPI(tuple(_document(domain, read(domain, folder)) for domain in domains))


@cache
def _shipped(domain: str) -> Document:
    return _document(domain, read(domain))


class _Refs:
    """Resolves ``$ref`` strings against one document's component schemas."""

    def __init__(self, domain: str, names: set[str]) -> None:
        self.domain = domain
        self.names = names

    def __call__(self, node: Mapping[str, Any]) -> str:
        """The schema name ``node`` refers to, or ``""`` when it is no reference."""
        ref = node.get("$ref")
        if ref is None:
            return ""
        name = str(ref).removeprefix(_SCHEMA_REF)
        if not str(ref).startswith(_SCHEMA_REF) or name not in self.names:
            raise OpenAPIError(f"oas3_{self.domain}.json: cannot resolve $ref {ref!r}")
        return name


def _document(domain: str, doc: Mapping[str, Any]) -> Document:
    raw_schemas = doc.get("components", {}).get("schemas", {})
    refs = _Refs(domain, set(raw_schemas))
    schemas = {name: _schema(name, raw, refs) for name, raw in raw_schemas.items()}
    operations = tuple(
        _operation(domain, method, path, op, refs)
        for path, methods in doc.get("paths", {}).items()
        for method, op in methods.items()
    )
    return Document(domain, MappingProxyType(schemas), operations)


def _schema(name: str, raw: object, refs: _Refs) -> Schema:
    props = raw.get("properties") if isinstance(raw, dict) else None
    return Schema(name, _properties(props, refs) if isinstance(props, dict) else None)


def _properties(props: Mapping[str, Any], refs: _Refs) -> tuple[Property, ...]:
    return tuple(_property(name, spec, refs) for name, spec in props.items())


def _property(name: str, spec: Mapping[str, Any], refs: _Refs) -> Property:
    kind = str(spec.get("type") or "")
    items = spec.get("items")
    items = items if isinstance(items, dict) else {}
    inner = items if kind == "array" else spec
    nested = inner.get("properties") if isinstance(inner, dict) else None
    return Property(
        name=name,
        type=kind,
        format=str(spec.get("format") or ""),
        ref=refs(spec),
        items_type=str(items.get("type") or ""),
        items_ref=refs(items),
        properties=_properties(nested, refs) if isinstance(nested, dict) else (),
    )


def _operation(
    domain: str, method: str, path: str, op: Mapping[str, Any], refs: _Refs
) -> Operation:
    content = op.get("responses", {}).get("200", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    data = schema.get("properties", {}).get("data", {})
    response, is_list = refs(data), False
    if not response:
        response = refs(data.get("items", {}))
        is_list = bool(response)
    content_type = ""
    body: tuple[Property, ...] = ()
    if request := op.get("requestBody"):
        content_type, media = next(iter(request["content"].items()))
        props = media.get("schema", {}).get("properties")
        body = _properties(props, refs) if isinstance(props, dict) else ()
    parameters = tuple(
        Parameter(
            name=str(p["name"]),
            location=str(p.get("in", "")),
            required=bool(p.get("required", False)),
            type=str(p.get("schema", {}).get("type") or ""),
        )
        for p in op.get("parameters", ())
    )
    return Operation(
        domain, method.upper(), path, parameters, response, is_list, content_type, body
    )
