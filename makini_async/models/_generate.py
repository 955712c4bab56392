"""Generate the typed models and resource services from Makini's OpenAPI files.

Run it from a checkout whenever the OpenAPI files in ``makini_async/_openapi/`` change
(``python -m makini_async._openapi`` regenerates these files and the sandbox's table together)::

    python -m makini_async.models._generate

It writes ``makini_async/models/_generated.py`` (one attrs class per schema of the EAM, ERP and
WMS files, plus one write body per writable resource and one per nested object a write body
describes inline, e.g. a work order's ``tasks``) and ``makini_async/resources/_generated.py``
(one service per collection with exactly the verbs its paths serve, and the ``eam``/``erp``/
``wms`` namespaces), and the ``__init__.py`` of both packages. Imports and ``__all__`` come out
in the order ruff's isort and RUF022 rules want, and ``ruff format`` (run with the checkout's
``pyproject.toml``) lays the text out, so the output passes ``ruff check`` as written.

Field types follow the rules in `field_type`: the OpenAPI files type nearly everything as a
string, so names decide where a string is really a timestamp or a number, as Makini's own field
naming does (``...At``, ``...Date``, ``...Quantity``, ``total...Value``).
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from makini_async import _openapi
from makini_async._naming import is_numeric_name
from makini_async.models._rules import decoding_section

__all__ = ["main", "render"]

_DOMAINS: Final = ("eam", "erp", "wms")
_HERE: Final = Path(__file__).parent
_PYPROJECT: Final = _HERE.parent.parent / "pyproject.toml"
_MODELS_OUT: Final = _HERE / "_generated.py"
_MODELS_INIT: Final = _HERE / "__init__.py"
_RESOURCES_INIT: Final = _HERE.parent / "resources" / "__init__.py"
_RESOURCES_OUT: Final = _HERE.parent / "resources" / "_generated.py"

#: Schema names that read better under the names the rest of the API uses.
CLASS_NAMES: Final = {
    "Counter": "Meter",
    "CounterReading": "MeterReading",
    "Model": "AssetTemplate",
    "Work": "WorkResource",
    "Dimension": "Dimensions",
}
#: Service attribute names where the path segment is an abbreviation.
SERVICE_NAMES: Final = {
    "uom": "units_of_measure",
    "pm": "preventive_maintenance",
    "assets-downtime": "asset_downtime",
    "purchase-orders.line-items": "purchase_order_line_items",
    "bom": "bills_of_material",
    "rfq": "requests_for_quotation",
    "groups": "product_groups",
    "receiving": "receivings",
}
#: The standard fields `Entity` declares; generated entities do not repeat them.
_STANDARD: Final = {"key", "id", "createdAt", "updatedAt", "deletedAt"}
_LEVEL_FIELDS: Final = {"severity", "priority", "criticality"}
#: Write-body fields holding objects or lists of them. The ones a body describes inline (a work
#: order's ``tasks`` and ``documents``) get a class of their own (`_nested_models`); the others
#: stay free-form JSON, as the OpenAPI files say nothing of their items.
_NESTED_WRITE_FIELDS: Final = {
    "documents",
    "tasks",
    "lineItems",
    "lineItem",
    "lines",
    "shippingAddress",
    "shipmentAddress",
    "billingAddress",
    "credentials",
}


def snake(name: str) -> str:
    """Turn a camelCase wire name into a snake_case attribute name."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def camel(name: str) -> str:
    """Turn a snake_case attribute name back into the camelCase wire name."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def is_time(name: str) -> bool:
    """Tell whether a field name holds a timestamp (``...At``, ``...Date``, ``date``)."""
    return name.endswith(("At", "Date")) or name == "date"


def class_name(schema: str) -> str:
    """The Python class name of an OpenAPI schema."""
    return CLASS_NAMES.get(schema, schema)


def field_type(  # noqa: C901, PLR0911 - a decision table
    name: str, kind: str, detail: str, schemas: set[str]
) -> tuple[str, str]:
    """Decide ``(annotation, default)`` of one response field."""
    if name == "materialCount":
        return "int | None", "None"
    if name.endswith("Key") and kind != "array":
        return "str | None", "None"
    if name.endswith("Keys") or name == "checkList":
        return "tuple[str, ...]", "()"
    if kind == "array" and detail in schemas:
        return f"tuple[{class_name(detail)}, ...]", "()"
    if kind == "object" and detail in schemas:
        return f"{class_name(detail)} | None", "None"
    if kind == "boolean":
        return "bool | None", "None"
    if kind == "array":
        return "JSON", "None"
    if is_time(name):
        return "datetime | None", "None"
    if kind in {"integer", "number"} or is_numeric_name(name):
        return "Decimal | None", "None"
    if kind == "object":
        return "JSON", "None"
    if name in _LEVEL_FIELDS:
        return "Level | str | None", "None"
    return "str | None", "None"


def write_type(name: str, rule: str) -> str:  # noqa: PLR0911 - a decision table
    """Decide the annotation of one write-body field (every one defaults to `UNSET`)."""
    if name in _NESTED_WRITE_FIELDS:
        return "JSON | Unset"
    if name.endswith("Key"):
        return "str | Unset | None"
    if name.endswith("Keys") or name == "checkList":
        return "Sequence[str] | Unset | None"
    if "boolean" in rule:
        return "bool | Unset | None"
    if is_time(name):
        return "datetime | Unset | None"
    if "numeric" in rule or "integer" in rule or is_numeric_name(name):
        return "Decimal | int | Unset | None"
    if name in _LEVEL_FIELDS:
        return "Level | str | Unset | None"
    return "str | Unset | None"


def _prop(prop: _openapi.Property) -> tuple[str, str]:
    if prop.ref:
        return "object", prop.ref
    kind = prop.type or "string"
    return kind, prop.items_ref if kind == "array" else ""


class _Source:
    """Everything the generator reads from the EAM, ERP and WMS files."""

    def __init__(self, folder: Traversable | None = None) -> None:
        self.fields: dict[str, dict[str, tuple[str, str]]] = {}
        self.routes: list[tuple[str, str, str, str, dict[str, str], dict[str, _Shape]]] = []
        api = _openapi.load(folder, _DOMAINS)
        for doc in api.documents:
            for name, schema in doc.schemas.items():
                if name.endswith("Collection") or schema.properties is None:
                    continue
                table = self.fields.setdefault(name, {})
                for prop in schema.properties:
                    table.setdefault(prop.name, _prop(prop))
        for op in api.operations:
            self.routes.append((op.domain, op.method, op.path, op.response, _body(op), _shapes(op)))


class _Shape:
    """A nested object of a write body: the body field's declared type and the object's rules."""

    def __init__(self, kind: str, fields: dict[str, str]) -> None:
        self.kind = kind
        self.fields = fields


def _merge_shapes(into: dict[str, _Shape], shapes: dict[str, _Shape]) -> None:
    """Add the nested objects (and their fields) that another route of the resource declares."""
    for name, shape in shapes.items():
        into.setdefault(name, _Shape(shape.kind, {})).fields.update(shape.fields)


def _rule(prop: _openapi.Property) -> str:
    return f"{prop.type}|{prop.format}"


def _body(op: _openapi.Operation) -> dict[str, str]:
    return {p.name: _rule(p) for p in op.body}


def _shapes(op: _openapi.Operation) -> dict[str, _Shape]:
    """The body fields whose object (or array item) the OpenAPI describes inline."""
    return {
        p.name: _Shape(p.type, {field.name: _rule(field) for field in p.properties})
        for p in op.body
        if p.properties
    }


# -- resources --------------------------------------------------------------------------------


class _Service:
    """One collection's verbs, as its paths serve them."""

    def __init__(self, domain: str, segment: str) -> None:
        self.domain = domain
        self.segment = segment
        self.schema = ""
        self.verbs: set[str] = set()
        self.status_field = ""
        self.write_fields: dict[str, str] = {}
        self.write_shapes: dict[str, _Shape] = {}

    @property
    def attribute(self) -> str:
        return SERVICE_NAMES.get(self.segment, self.segment.replace("-", "_").replace(".", "_"))

    @property
    def class_name(self) -> str:
        words = re.split(r"[-_.]", self.attribute)
        return "".join(w[:1].upper() + w[1:] for w in words)


def _services(source: _Source) -> tuple[dict[str, dict[str, _Service]], dict[str, list[str]]]:  # noqa: C901, PLR0912 - one pass over the routes
    services: dict[str, dict[str, _Service]] = {d: {} for d in _DOMAINS}
    statuses: dict[str, list[str]] = {d: [] for d in _DOMAINS}
    for domain, method, path, schema, body, shapes in source.routes:
        parts = path.split("/")[3:]
        if parts[0] == "statuses":
            statuses[domain].append(parts[1])
            continue
        service = services[domain].setdefault(parts[0], _Service(domain, parts[0]))
        shape = (method, len(parts), parts[1] if len(parts) > 1 else "")
        tail = parts[2] if len(parts) > 2 else ""  # noqa: PLR2004 - /<collection>/<key>/<tail>
        if shape[:2] == ("GET", 1):
            service.verbs.add("list")
            service.schema = schema or service.schema
        elif shape[:2] == ("POST", 1) and "|binary" in "".join(body.values()):
            service.verbs.add("upload")  # a multipart/form-data create (documents)
        elif shape[:2] == ("POST", 1):
            service.verbs.add("create")
            service.write_fields.update(body)
            _merge_shapes(service.write_shapes, shapes)
        elif len(parts) == 2 and not parts[1].startswith("{"):  # noqa: PLR2004
            service.verbs.add(f"list_{parts[1].replace('-', '_')}")
        elif shape[:2] == ("GET", 2):
            service.verbs.add("get")
            service.schema = service.schema or schema
        elif shape[:2] == ("PUT", 2):
            service.verbs.add("update")
            service.write_fields.update(body)
            _merge_shapes(service.write_shapes, shapes)
        elif tail == "status":
            service.verbs.add("set_status")
            service.status_field = next(iter(body), "status")
        elif tail in {"materials", "children"} and method == "GET":
            service.verbs.add(tail)
        elif tail == "materials" and method == "POST":
            service.verbs.add("add_material")
        elif tail == "materials":
            service.verbs.add("update_material")
        elif tail == "inventory":
            service.verbs.add("update_inventory")
        elif tail == "delivered":
            service.verbs.add("mark_delivered")
    return services, statuses


# -- output -----------------------------------------------------------------------------------


def _natural(name: str) -> tuple[str | int, ...]:
    """Natural order: runs of digits compare as numbers (``Item2`` before ``Item10``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _member_type(name: str) -> int:
    """Constants, then classes, then everything else, as ruff's isort and RUF022 order them."""
    if len(name) > 1 and name.isupper():
        return 0
    return 1 if name[:1].isupper() else 2


def _all_order(names: Iterable[str]) -> list[str]:
    """The order ruff's RUF022 wants in ``__all__``."""
    return sorted(names, key=lambda name: (_member_type(name), _natural(name)))


def _import_order(names: Iterable[str]) -> list[str]:
    """The order ruff's isort wants in a ``from ... import (...)`` list."""
    return sorted(names, key=lambda n: (_member_type(n), _natural(n.lower()), _natural(n)))


_MODELS_HEADER = '''"""Typed models of every EAM, ERP and WMS schema in Makini's OpenAPI files.

Generated by ``makini_async/models/_generate.py``; do not edit by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

from ._base import UNSET, Entity, Level, Model, Unset, Writable

if TYPE_CHECKING:
    from makini_async.typing import JSON

'''


def nested_input_name(schema: str, field: str) -> str:
    """The class of a nested write object: parent input, field in the singular, ``Input``.

    ``WorkOrder`` + ``tasks`` → ``WorkOrderTaskInput``; ``SalesOrder`` + ``billingAddress`` →
    ``SalesOrderBillingAddressInput``.
    """
    word = field[:1].upper() + field[1:]
    if word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return f"{class_name(schema)}{word}Input"


def _is_many(source: _Source, schema: str, field: str, shape: _Shape) -> bool:
    """Whether a nested write field takes a list of objects.

    The record's own schema decides where it has the field: Makini's write bodies declare
    ``tasks`` and ``documents`` as a single ``object`` while records (and the bodies' examples)
    carry lists of them. Otherwise the body's declared type decides.
    """
    read = source.fields.get(schema, {}).get(field)
    return read[0] == "array" if read else shape.kind == "array"


def _nested_models(
    source: _Source, schema: str, shapes: dict[str, _Shape], taken: set[str]
) -> tuple[dict[str, str], list[str]]:
    """The parent's annotation of each nested field, and the nested classes' source."""
    annotations: dict[str, str] = {}
    out: list[str] = []
    parent = f"{class_name(schema)}Input"
    for field, shape in sorted(shapes.items()):
        name = nested_input_name(schema, field)
        if name in taken:
            raise SystemExit(f"{schema}.{field}: the class name {name} is already taken")
        taken.add(name)
        if _is_many(source, schema, field, shape):
            annotations[field] = f"Sequence[{name}] | JSON | Unset"
            summary = f"An item of ``{field}`` in a `{parent}`"
        else:
            annotations[field] = f"{name} | JSON | Unset"
            summary = f"The ``{field}`` object of a `{parent}`"
        out.append(f"\n@attrs.frozen(slots=True, kw_only=True)\nclass {name}(Writable):\n")
        out.append(
            f'    """{summary}: only the fields set are sent.\n\n'
            '    .. versionadded:: 0.1.0\n    """\n\n'
        )
        for prop, rule in sorted(shape.fields.items()):
            attr = snake(prop)
            if camel(attr) != prop:
                raise SystemExit(f"{schema} body field {field}.{prop} does not survive the casing")
            out.append(f"    {attr}: {write_type(prop, rule)} = UNSET\n")
    return annotations, out


def _models(
    source: _Source,
    entities: set[str],
    writes: dict[str, dict[str, str]],
    shapes: dict[str, dict[str, _Shape]],
) -> str:
    schemas = set(source.fields)
    taken = {class_name(s) for s in schemas} | {f"{class_name(s)}Input" for s in writes}
    # Nested classes first, so that __all__ names them and the parents know their annotations.
    nested = {
        schema: _nested_models(source, schema, shapes.get(schema, {}), taken) for schema in writes
    }
    out = [_MODELS_HEADER, f"__all__ = {_all_order(taken)!r}\n\n"]
    for schema in sorted(schemas, key=class_name):
        entity = schema in entities
        base = "Entity" if entity else "Model"
        out.append(
            f"\n@attrs.frozen(slots=True, kw_only=True)\nclass {class_name(schema)}({base}):\n"
        )
        kind = "record" if entity else "part of a record"
        out.append(f'    """A ``{schema}`` {kind}.\n\n    .. versionadded:: 0.1.0\n    """\n\n')
        for prop, (kind_, detail) in source.fields[schema].items():
            if entity and prop in _STANDARD:
                continue
            attr = snake(prop)
            if camel(attr) != prop:
                raise SystemExit(f"{schema}.{prop} does not survive the casing round trip")
            annotation, default = field_type(prop, kind_, detail, schemas)
            out.append(f"    {attr}: {annotation} = {default}\n")
    for schema, fields in sorted(writes.items()):
        decorator = "\n@attrs.frozen(slots=True, kw_only=True)\n"
        out.append(f"{decorator}class {class_name(schema)}Input(Writable):\n")
        out.append(
            f'    """The body of a ``{schema}`` create or update: only the fields set are sent.'
            '\n\n    .. versionadded:: 0.1.0\n    """\n\n'
        )
        annotations, parts = nested[schema]
        for prop, rule in sorted(fields.items()):
            attr = snake(prop)
            if camel(attr) != prop:
                raise SystemExit(f"{schema} body field {prop} does not survive the casing")
            out.append(f"    {attr}: {annotations.get(prop) or write_type(prop, rule)} = UNSET\n")
        out.extend(parts)
    return "".join(out)


_RESOURCES_HEADER = '''"""One service per collection of the EAM, ERP and WMS APIs.

Each has exactly the verbs Makini serves. Generated by ``makini_async/models/_generate.py``;
do not edit by hand.
"""

from __future__ import annotations

from makini_async import models

'''

_MIXINS: Final = (
    ("list", "Listable[models.{m}]"),
    ("get", "Retrievable[models.{m}]"),
    ("create", "Creatable[models.{m}, models.{i}]"),
    ("update", "Updatable[models.{m}, models.{i}]"),
    ("upload", "Uploadable[models.{m}]"),
    ("set_status", "StatusSettable[models.{m}]"),
    ("materials", "HasMaterials"),
    ("add_material", "WritableMaterials[models.{m}]"),
    ("children", "HasChildren"),
    ("update_inventory", "HasInventory"),
    ("mark_delivered", "Deliverable[models.{m}]"),
)


def _resources(
    services: dict[str, dict[str, _Service]],
    statuses: dict[str, list[str]],
    unstamped: set[str],
) -> tuple[str, list[str]]:
    """The services module, and the names it exports.

    ``unstamped`` names the schemas without ``updatedAt``: their collections cannot be listed
    in ``updatedAt`` order, nor filtered by it.
    """
    out: list[str] = []
    names: list[str] = []
    imported = {"Namespace", "StatusLists"}
    for domain in _DOMAINS:
        for service in sorted(services[domain].values(), key=lambda s: s.attribute):
            cls = f"{domain.upper()}{service.class_name}"
            names.append(cls)
            model = class_name(service.schema)
            bases = [
                mixin.format(m=model, i=f"{class_name(service.schema)}Input")
                for verb, mixin in _MIXINS
                if verb in service.verbs
            ]
            bases = bases or ["Service"]
            imported.update(base.partition("[")[0] for base in bases)
            out.append(f"\n\nclass {cls}({', '.join(bases)}):\n")
            verbs = ", ".join(sorted(_method_name(v) for v in service.verbs))
            detail = textwrap.fill(
                f"Verbs: {verbs}.", width=96, initial_indent="    ", subsequent_indent="    "
            )
            out.append(
                f'    """``/api/{domain}/{service.segment}``.\n\n{detail}\n\n'
                '    .. versionadded:: 0.1.0\n    """\n\n'
            )
            out.append("    __slots__ = ()\n")
            out.append(f"    _path = {f'/api/{domain}/{service.segment}'!r}\n")
            if "list" in service.verbs or "get" in service.verbs:
                out.append(f"    _model = models.{model}\n")
            if "list" in service.verbs and service.schema in unstamped:
                out.append("    _incremental = False\n")
            if service.status_field:
                out.append(f"    _status_field = {service.status_field!r}\n")
            literal_lists = sorted(v for v in service.verbs if v.startswith("list_"))
            out.extend(_literal_list(verb, domain, service.segment) for verb in literal_lists)
            if literal_lists:
                imported.add("Listing")
        out.append(_namespace(domain, services[domain], statuses[domain]))
        names.append(domain.upper())
    out.insert(0, _RESOURCES_HEADER + _import_block("._base", sorted(imported)))
    out.append(f"\n\n__all__ = {_all_order(names)!r}\n")
    return "".join(out), names


def _method_name(verb: str) -> str:
    """The method serving a verb (``list_custom_fields`` → ``custom_fields``)."""
    if verb == "list_custom_fields":
        return "custom_fields"
    return f"all_{verb.removeprefix('list_')}" if verb.startswith("list_") else verb


def _literal_list(verb: str, domain: str, segment: str) -> str:
    literal = verb.removeprefix("list_").replace("_", "-")
    model = "CustomField" if literal == "custom-fields" else "MaterialItem"
    method = _method_name(verb)
    return (
        f"\n    def {method}(self, *, per_page: int | None = None) -> "
        f"Listing[models.{model}]:\n"
        f'        """List ``/api/{domain}/{segment}/{literal}`` (every page).\n\n'
        "        Args:\n            per_page: Records per page.\n\n"
        "        Returns:\n            An async iterator over the records, with ``pages()``.\n\n"
        '        .. versionadded:: 0.1.0\n        """\n'
        f"        return self._sublist({f'{segment}/{literal}'!r}, models.{model}, per_page)\n"
    )


def _namespace(domain: str, services: dict[str, _Service], statuses: list[str]) -> str:
    out = [f"\n\nclass {domain.upper()}(Namespace):\n"]
    out.append(
        f'    """The ``/api/{domain}`` resources of one connection.\n\n'
        '    .. versionadded:: 0.1.0\n    """\n\n'
    )
    out.append("    __slots__ = ()\n\n")
    for service in sorted(services.values(), key=lambda s: s.attribute):
        cls = f"{domain.upper()}{service.class_name}"
        out.append(
            f"    @property\n    def {service.attribute}(self) -> {cls}:\n"
            f'        """``/api/{domain}/{service.segment}``."""\n'
            f"        return self._service({cls})\n\n"
        )
    entities = tuple(sorted(statuses))
    out.append(
        f"    @property\n    def statuses(self) -> StatusLists:\n"
        f'        """The status lists (``statuses.entities`` names them)."""\n'
        f"        return self._statuses(_STATUSES_{domain.upper()})\n"
    )
    out.insert(0, f"\n\n_STATUSES_{domain.upper()} = {entities!r}\n")
    return "".join(out)


def _exported(text: str) -> list[str]:
    match = re.search(r"^__all__ = (\[.*?\])$", text, flags=re.MULTILINE | re.DOTALL)
    if match is None:
        raise SystemExit("the generated models have no __all__")
    return [str(name) for name in ast.literal_eval(match.group(1))]


_BASE_NAMES: Final = ("UNSET", "Entity", "Level", "Model", "Unset", "Writable")
_SYSTEM_NAMES: Final = (
    "ClientInfo",
    "ConnectionInfo",
    "ConnectionStatus",
    "Integration",
    "MetadataItem",
    "Platform",
    "SyncState",
    "SyncStatus",
)
_SNAKE_CASE_MODELS: Final = (
    "ClientInfo",
    "ConnectionInfo",
    "Integration",
    "MetadataItem",
    "SyncState",
)


def _import_block(module: str, names: Iterable[str]) -> str:
    body = "".join(f"    {name},\n" for name in _import_order(names))
    return f"from {module} import (\n{body})\n"


def _all_block(names: list[str]) -> str:
    body = "".join(f"    {name!r},\n" for name in _all_order(names)).replace("'", '"')
    return f"__all__ = [\n{body}]\n"


def _models_init(generated: list[str]) -> str:
    return (
        '"""Typed models of the Makini unified API.\n\n'
        "Every EAM, ERP and WMS record, write bodies, sync state and the Admin API's objects.\n"
        "Attributes are snake_case (``asset_key``, ``created_at``); the camelCase wire names\n"
        "live only in the private decoder. Both record shapes decode: v3 (``key``,\n"
        "``createdAt``) and v4 (``id``, ``_idValue``, ``_displayValue``, ``_createdAt``...).\n"
        "Unknown fields are kept in ``extra`` and the raw record in ``raw``, both read-only\n"
        "mappings.\n\n"
        + decoding_section()
        + "Generated by ``makini_async/models/_generate.py``; do not edit by hand.\n\n"
        '.. versionadded:: 0.1.0\n"""\n\n'
        "from __future__ import annotations\n\n"
        "from . import _generated, _system\n"
        + _import_block("._base", _BASE_NAMES)
        + _import_block("._generated", generated)
        + _import_block("._system", _SYSTEM_NAMES)
        + "from ._wire import register, register_snake_case\n\n"
        + _all_block([*_BASE_NAMES, *generated, *_SYSTEM_NAMES])
        + f"\nfor _cls in ({', '.join(_SNAKE_CASE_MODELS)}):\n    register_snake_case(_cls)\n"
        + "register([getattr(_generated, name) for name in _generated.__all__])\n"
        + "register([getattr(_system, name) for name in _system.__all__])\n"
    )


_RESOURCE_BASE: Final = ("Filter", "FilterOp", "Namespace", "Service", "StatusLists")
_PAGINATION: Final = ("Listing", "Page", "PageMeta")


def _resources_init(generated: list[str]) -> str:
    return (
        '"""Typed services for every collection of the Makini unified API, per connection.\n\n'
        "``conn.eam.work_orders.list()``, ``conn.erp.invoices.get(key)``,\n"
        "``conn.wms.products.create(...)``: each service has exactly the verbs Makini serves\n"
        "for its collection.\n\n"
        "Generated by ``makini_async/models/_generate.py``; do not edit by hand.\n\n"
        '.. versionadded:: 0.1.0\n"""\n\n'
        "from __future__ import annotations\n\n"
        "from makini_async._errors import PaginationError\n"
        f"from makini_async._pagination import {', '.join(_import_order(_PAGINATION))}\n\n"
        + _import_block("._base", _RESOURCE_BASE)
        + _import_block("._generated", generated)
        + _import_block("._system", ("RawRow",))
        + "\n"
        + _all_block([*_PAGINATION, "PaginationError", *_RESOURCE_BASE, *generated, "RawRow"])
    )


def _writes(
    services: dict[str, dict[str, _Service]],
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, _Shape]]]:
    """The write-body fields and nested objects of every writable schema, over all domains."""
    writes: dict[str, dict[str, str]] = {}
    shapes: dict[str, dict[str, _Shape]] = {}
    for domain_services in services.values():
        for service in domain_services.values():
            if {"create", "update"} & service.verbs and service.schema:
                writes.setdefault(service.schema, {}).update(service.write_fields)
                _merge_shapes(shapes.setdefault(service.schema, {}), service.write_shapes)
    return writes, shapes


def render(source: Traversable | None = None) -> dict[Path, str]:
    """Return the generated files by path, with the text `main` writes there.

    Args:
        source: The folder holding ``oas3_*.json`` (default: the files shipped in
            ``makini_async/_openapi/``).

    Returns:
        The text of the models, the services and both packages' ``__init__.py``.

    Raises:
        SystemExit: When a name does not survive the casing round trip, a class name is
            taken twice, or ruff cannot format the output (run from a checkout, with the
            ``lint`` extra installed).
    """
    src = _Source(source)
    services, statuses = _services(src)
    entities = {s.schema for d in services.values() for s in d.values() if s.schema}
    entities |= {"Status", "MaterialItem"}
    models = _models(src, entities, *_writes(services))
    unstamped = {schema for schema, fields in src.fields.items() if "updatedAt" not in fields}
    resources, names = _resources(services, statuses, unstamped)
    texts = {
        _MODELS_OUT: models,
        _RESOURCES_OUT: resources,
        _MODELS_INIT: _models_init(_exported(models)),
        _RESOURCES_INIT: _resources_init(names),
    }
    return {path: _ruff_format(path, text) for path, text in texts.items()}


def _ruff_format(path: Path, text: str) -> str:
    """Lay ``text`` out as ``ruff format`` would the file at ``path``, with our settings."""
    if not _PYPROJECT.is_file():
        raise SystemExit(f"{_PYPROJECT} is missing: generate from a checkout")
    argv = [sys.executable, "-m", "ruff", "format", "--config", str(_PYPROJECT)]
    proc = subprocess.run(  # noqa: S603 - a fixed argv: our own formatter
        [*argv, "--stdin-filename", str(path), "-"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"ruff format failed on {path}:\n{proc.stderr.decode()}")
    return proc.stdout.decode()


def main(argv: list[str] | None = None) -> int:
    """Write the generated models and services from the shipped OpenAPI files.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    for path, text in render().items():
        path.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
