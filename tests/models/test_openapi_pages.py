"""Pages of random schema-valid records, for every collection of Makini's OpenAPI files.

The OpenAPI files type nearly every field as a plain string, so a record that is valid for the
schema may carry any text in a timestamp or a number field, where the models expect one. These
tests walk each list operation's response schema (through `makini_async._openapi`) and make
random records that the schema allows: any string (text, digits, timestamps in many forms,
empty), any integer, boolean, array or object where declared, any JSON where nothing is, in the
v3 or the v4 shape. Tolerant decoding must take every page, and the fast path, when it takes
one, must give the same records.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import pytest

from makini_async import _openapi, models
from makini_async.models._tolerant import decode_records
from makini_async.resources import EAM, ERP, WMS
from makini_async.resources._base import Listable
from makini_async.resources._service import collection_of
from tests.models.test_fast import assert_same, both_ways

PAGES = 12
RECORDS = 20
_STRINGS = [
    "",
    " ",
    "WO-10042",
    "43",
    "-1.5e3",
    "NaN",
    "true",
    "2025-01-14T02:03:18Z",
    "2025-01-14T02:03:18.123456789+01:00",
    "2025-01-14",
    "14/01/2025",
    "/Date(1405344000000)/",
    "next tuesday",
    "Ünïcødé ✓ 漢字",
    "x" * 300,
]


def _services() -> dict[str, type[models.Model]]:
    out: dict[str, type[models.Model]] = {}
    for namespace in (EAM, ERP, WMS):
        for name in dir(namespace):
            prop = getattr(namespace, name)
            if isinstance(prop, property) and prop.fget is not None:
                service = prop.fget.__annotations__.get("return")
                cls = getattr(sys.modules[namespace.__module__], str(service), None)
                if isinstance(cls, type) and issubclass(cls, Listable):
                    path, model = collection_of(cls)
                    out[path] = model
    return out


class _Maker:
    """Random values a JSON schema allows."""

    def __init__(self, schemas: dict[str, Any], rng: random.Random) -> None:
        self.schemas = schemas
        self.rng = rng

    def string(self) -> str:
        rng = self.rng
        pick = rng.random()
        if pick < 0.5:
            return rng.choice(_STRINGS)
        if pick < 0.75:
            return "".join(rng.choice("abcXYZ019 -_.:/") for _ in range(rng.randrange(12)))
        return str(rng.randrange(-(10**12), 10**14))

    def anything(self, depth: int) -> object:
        rng = self.rng
        kinds: list[Any] = [None, True, rng.randrange(-(2**63), 2**63), rng.uniform(-1e6, 1e6)]
        kinds.append(self.string())
        if depth < 2:
            kinds.append([self.anything(depth + 1) for _ in range(rng.randrange(3))])
            kinds.append({self.string()[:8]: self.anything(depth + 1) for _ in range(2)})
        return rng.choice(kinds)

    def value(self, schema: dict[str, Any], depth: int) -> object:  # noqa: PLR0911 - per type
        rng = self.rng
        if schema.get("nullable") and rng.random() < 0.1:
            return None
        ref = schema.get("$ref")
        if ref:
            target = self.schemas[ref.rsplit("/", 1)[-1]]
            # A few component schemas are declared as something else than an object (``[]``).
            return self.record(target, depth + 1) if isinstance(target, dict) else []
        kind = schema.get("type")
        if kind == "string":
            return self.string()
        if kind == "integer":
            return rng.randrange(-(2**31), 2**31)
        if kind == "number":
            return rng.uniform(-1e9, 1e9)
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "array":
            items = schema.get("items") or {}
            count = rng.randrange(4) if depth < 3 else 0
            return [self.value(items, depth + 1) for _ in range(count)]
        if kind == "object" or "properties" in schema:
            return self.record(schema, depth + 1)
        return self.anything(depth)

    def record(self, schema: dict[str, Any], depth: int = 0) -> dict[str, object]:
        rng = self.rng
        properties = schema.get("properties") or {}
        if depth > 4:
            return {}
        out = {
            name: self.value(spec, depth)
            for name, spec in properties.items()
            if rng.random() < 0.85
        }
        if depth == 0 and rng.random() < 0.5:
            out = {
                "id": self.string(),
                "_idValue": self.string(),
                "_displayValue": self.string(),
                "_createdAt": self.string(),
                "_updatedAt": self.string(),
                "_deletedAt": rng.choice([None, self.string()]),
                "_implements": self.string(),
                **out,
            }
        return out


def _model_of(path: str, services: dict[str, type[models.Model]]) -> type[models.Model]:
    """The model a list path's records decode into (its service's, or a listing beside one)."""
    if path in services:
        return services[path]
    if "/statuses/" in path:
        return models.Status
    if path.endswith("/custom-fields"):
        return models.CustomField
    assert path.endswith("/materials"), path
    return models.MaterialItem


def _list_operations() -> list[_openapi.Operation]:
    spec = _openapi.load(domains=("eam", "erp", "wms"))
    return [op for op in spec.operations if op.method == "GET" and op.response_is_list]


def _operations() -> list[tuple[str, str, type[models.Model]]]:
    services = _services()
    found = {(op.domain, op.response, _model_of(op.path, services)) for op in _list_operations()}
    return sorted(found, key=lambda item: (item[0], item[1], item[2].__name__))


OPERATIONS = _operations()


def test_every_collection_is_covered() -> None:
    """Every list operation of the three OpenAPI files has its schema walked."""
    services = _services()
    operations = _list_operations()
    assert len(operations) >= 100
    assert set(services) <= {op.path for op in operations}
    assert {(op.domain, op.response, _model_of(op.path, services)) for op in operations} == set(
        OPERATIONS
    )


@pytest.mark.parametrize(
    ("domain", "schema", "model"), OPERATIONS, ids=[f"{d}-{s}" for d, s, _ in OPERATIONS]
)
def test_random_schema_valid_pages_decode(
    domain: str, schema: str, model: type[models.Model]
) -> None:
    """Every page of random schema-valid records decodes tolerantly, the same on both paths."""
    schemas = _openapi.read(domain)["components"]["schemas"]
    maker = _Maker(schemas, random.Random(f"{domain}/{schema}"))  # noqa: S311 - test data
    decoded = taken = 0
    for _ in range(PAGES):
        records = [maker.record(schemas[schema]) for _ in range(RECORDS)]
        body = json.dumps({"data": records, "meta": {"current_page": 1}}).encode()
        fast, reference = both_ways(body, model)
        assert len(reference) == RECORDS
        decoded += len(reference)
        if fast is not None:
            assert_same(fast, reference)
            taken += 1
    assert decoded == PAGES * RECORDS
    strict_failures = 0
    for record in [maker.record(schemas[schema]) for _ in range(RECORDS)]:
        try:
            decode_records([record], model, ".data", strict=True)
        except ValueError:
            strict_failures += 1
    # The same random data would fail strict decoding: tolerance is what takes it.
    assert strict_failures > 0 or not [
        f for f in schemas[schema].get("properties", {}) if f.endswith("At")
    ]
