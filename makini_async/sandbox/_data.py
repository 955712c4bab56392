"""Deterministic, lazily generated maintenance data for one sandbox connection.

Every collection (e.g. ``eam/work-orders``) is generated from its OpenAPI schema the first time it
is touched, from a random generator seeded with ``(seed, connection id, resource)``: the same seed
gives the same records in every run and process. Relations (``siteKey``, ``assetKeys``, ...)
point at real records of the target collection without generating it, because keys are computed
from indexes. Each field holds the JSON of its wire type (``_fields``), which the client's models
decode, and nested objects of a schema that a collection serves by key (a work order's
documents, a part's inventory) are copies of that collection's records.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable
from typing import Final, TypeAlias

import attrs

from makini_async.sandbox._fields import FieldTypes, Wire, iso, parse_iso
from makini_async.sandbox._spec import SUBLIST_PARENT_FIELD, Field, Spec

__all__ = ["DEFAULT_SIZES", "Collection", "DataSet", "Record", "iso", "parse_iso"]

Record: TypeAlias = dict[str, object]
_Gen: TypeAlias = Callable[[random.Random, int], object]

#: Records per collection when the connection does not say otherwise (by collection name).
DEFAULT_SIZES: Final[dict[str, int]] = {
    "work-orders": 120,
    "assets": 60,
    "service-requests": 40,
    "purchase-orders": 40,
    "purchase-orders.line-items": 80,
    "materials": 50,
    "organizations": 3,
    "sites": 6,
    "meter-readings": 60,
}
_DEFAULT_SIZE: Final = 20
_POOL: Final = 12
_START: Final = 1672531200  # 2023-01-01T00:00:00Z
_SPAN: Final = 86400 * 1000  # generated records are created within ~2.7 years
_NS: Final = uuid.UUID("8c5f7d02-3f0e-4a43-9d63-6a1c3b5e0b11")

_STATUSES: Final[dict[str, tuple[str, ...]]] = {
    "work-orders": ("open", "in_progress", "on_hold", "completed", "cancelled"),
    "purchase-orders": ("draft", "approved", "sent", "received", "closed", "cancelled"),
    "service-requests": ("new", "approved", "rejected", "converted"),
    "return-orders": ("draft", "approved", "shipped", "closed"),
    "invoices": ("draft", "sent", "paid", "void"),
    "fulfillments": ("pending", "packed", "shipped", "delivered"),
}
_GENERIC_STATUSES: Final = ("draft", "open", "in_progress", "closed", "cancelled")
_RELATIONS: Final[dict[str, str]] = {
    "site": "sites",
    "location": "locations",
    "fromLocation": "locations",
    "toLocation": "locations",
    "storeroom": "storerooms",
    "fromStoreroom": "storerooms",
    "toStoreroom": "storerooms",
    "asset": "assets",
    "account": "accounts",
    "team": "teams",
    "labor": "labors",
    "laborAssigned": "labors",
    "user": "users",
    "userApproved": "users",
    "userRequested": "users",
    "userManager": "users",
    "vendor": "vendors",
    "organization": "organizations",
    "company": "companies",
    "makeCompany": "companies",
    "customer": "customers",
    "material": "materials",
    "assembly": "materials",
    "uom": "uom",
    "costUom": "uom",
    "rateBase": "uom",
    "pm": "pm",
    "serviceRequest": "service-requests",
    "workOrder": "work-orders",
    "assetTemplate": "asset-templates",
    "model": "asset-templates",
    "meter": "meters",
    "assetDowntime": "assets-downtime",
    "po": "purchase-orders",
    "poLineItem": "purchase-orders.line-items",
    "product": "products",
    "currency": "currencies",
    "baseCurrency": "currencies",
    "tax": "taxes",
    "group": "groups",
    "project": "projects",
    "salesOrder": "sales-orders",
    "shipmentOrder": "shipment-orders",
    "stockTransfer": "stock-transfers",
    "productionOrder": "production-orders",
    "document": "documents",
    "requester": "users",
    # A document's entities: in EAM, the work orders it is attached to.
    "entity": "work-orders",
}
_WORD_TEXT: Final = (
    "pump inspection conveyor belt replace bearing filter boiler chiller valve motor calibrate "
    "lubricate compressor gearbox hydraulic leak seal panel sensor quarterly annual safety check "
    "cooling tower forklift generator fan coupling alignment vibration hose gasket"
)
_WORDS: Final = tuple(_WORD_TEXT.split())
_PARENT_SHARE: Final = 0.3  # of records that have a parent record
_PHRASE_RNG: Final = random.Random(7)  # noqa: S311 - fixed phrase book, not a secret
_PHRASES: Final = {
    n: tuple(
        " ".join(_PHRASE_RNG.choice(_WORDS) for _ in range(n)).capitalize() for _ in range(509)
    )
    for n in (4, 8)
}
_NAME_TEXT: Final = "Ana Ben Chen Dana Eli Fatima Gus Hana Ivan Jo Kofi Lena Mo Nia Omar"
_NAMES: Final = tuple(_NAME_TEXT.split())
_CODE_PREFIXES: Final = {
    "work-orders": "WO",
    "purchase-orders": "PO",
    "service-requests": "SR",
    "return-orders": "RO",
    "sales-orders": "SO",
    "invoices": "INV",
    "materials": "PART",
    "assets": "AST",
    "pm": "PM",
}
_LEVELS: Final = ("low", "medium", "high", "critical")
_CURRENCIES: Final = ("USD", "EUR", "GBP", "NOK", "CAD")


def _stem(name: str) -> str:
    return name.removesuffix("Keys").removesuffix("Key")


@attrs.define(eq=False)
class Collection:
    """The records of one resource for one connection, plus caches that writes invalidate."""

    resource: str
    domain: str
    schema: str
    records: list[Record]
    by_key: dict[str, Record]
    next_index: int
    version: int = 0
    query_cache: dict[tuple[object, ...], list[Record]] = attrs.Factory(dict)
    page_cache: dict[tuple[object, ...], bytes] = attrs.Factory(dict)

    def touch(self) -> None:
        """Record a write: bump the version and drop every cached query and page."""
        self.version += 1
        self.query_cache.clear()
        self.page_cache.clear()


class DataSet:
    """All collections of one connection, generated on first use.

    Args:
        spec: The route and schema table.
        connection_id: The connection's id (part of the seed).
        connection_index: A small number that makes keys differ between connections.
        seed: The sandbox seed.
        sizes: Records per collection, by ``name`` or ``domain/name`` (e.g. ``work-orders``).
    """

    def __init__(
        self,
        spec: Spec,
        connection_id: str,
        connection_index: int,
        seed: int,
        sizes: dict[str, int] | None = None,
    ) -> None:
        self._spec = spec
        self._id = connection_id
        self._index = connection_index % 1000
        self._seed = seed
        self._sizes = dict(sizes or {})
        self._collections: dict[str, Collection] = {}
        self._schemas: dict[str, tuple[str, str]] = {}
        for route in spec.routes:
            if route.action in {"list", "sublist"}:
                self._schemas.setdefault(route.resource, (route.domain, route.schema))
        self._scopes = {name: n for n, name in enumerate(sorted(self._schemas))}
        self._pools: dict[tuple[str, str, int], list[object]] = {}
        self._types = FieldTypes(spec)
        # Nested objects of a schema that a collection serves by key are that collection's
        # records, so that their keys open with GET (a work order's documents, a part's inventory).
        self._served: dict[tuple[str, str], str] = {}
        for route in spec.routes:
            if route.action == "get":
                self._served.setdefault((route.domain, route.schema), route.resource)
        self._generating: set[str] = set()

    @property
    def resources(self) -> Iterable[str]:
        """Every resource name this data set can serve."""
        return self._schemas.keys()

    @property
    def types(self) -> FieldTypes:
        """The wire types of the schemas' properties (shared by generation and writes)."""
        return self._types

    def schema_of(self, resource: str) -> tuple[str, str]:
        """Return ``(domain, schema name)`` of a resource."""
        return self._schemas[resource]

    def size(self, resource: str) -> int:
        """Return how many records a collection is generated with."""
        domain, _, name = resource.partition("/")
        if name.startswith("statuses/"):
            return len(_STATUSES.get(name.removeprefix("statuses/"), _GENERIC_STATUSES))
        if name.endswith(".custom-fields"):
            return 4
        for candidate in (resource, name):
            if candidate in self._sizes:
                return self._sizes[candidate]
        if name.endswith((".materials", ".children")):
            parent = name.partition(".")[0]
            return self.size(f"{domain}/{parent}")  # about one item per parent
        return DEFAULT_SIZES.get(name, _DEFAULT_SIZE)

    def key_for(self, resource: str, index: int) -> str:
        """Return the key of record ``index`` of ``resource`` (generated or not)."""
        return f"{self.key_prefix(resource)}{index:08d}"

    def key_prefix(self, resource: str) -> str:
        """Return the six digits every key of ``resource`` starts with."""
        return f"{self._scopes.get(resource, 999):03d}{self._index:03d}"

    def touch_all(self) -> None:
        """Drop the cached queries and pages of every generated collection."""
        for collection in self._collections.values():
            collection.touch()

    def collection(self, resource: str) -> Collection:
        """Return a collection, generating it on first use.

        Raises:
            KeyError: The resource is unknown.
        """
        found = self._collections.get(resource)
        if found is None:
            self._generating.add(resource)
            try:
                found = self._generate(resource)
            finally:
                self._generating.discard(resource)
            self._collections[resource] = found
        return found

    # -- generation -------------------------------------------------------------------------

    def _rng(self, resource: str) -> random.Random:
        return random.Random(f"{self._seed}:{self._id}:{resource}")  # noqa: S311 - test data

    def _generate(self, resource: str) -> Collection:
        domain, schema = self._schemas[resource]
        name = resource.partition("/")[2]
        rng = self._rng(resource)
        gens = self._compile(domain, schema, resource, 0)
        records: list[Record] = []
        if name.startswith("statuses/"):
            records = self._statuses(resource, name.removeprefix("statuses/"), gens, rng)
        elif name.endswith(".custom-fields"):
            records = [{"name": f"custom_{word}"} for word in _WORDS[: self.size(resource)]]
        elif name.endswith((".materials", ".children")):
            records = self._items(resource, gens, rng)
        else:
            records = [self._record(gens, rng, i) for i in range(self.size(resource))]
        self._finish(resource, records)
        by_key = {str(r["key"]): r for r in records if "key" in r}
        return Collection(resource, domain, schema, records, by_key, len(records))

    def _record(self, gens: list[tuple[str, _Gen]], rng: random.Random, index: int) -> Record:
        return {name: gen(rng, index) for name, gen in gens}

    def _statuses(
        self, resource: str, entity: str, gens: list[tuple[str, _Gen]], rng: random.Random
    ) -> list[Record]:
        records = []
        for i, code in enumerate(_STATUSES.get(entity, _GENERIC_STATUSES)):
            record = self._record(gens, rng, i)
            record.update(
                key=self.key_for(resource, i),
                name=code.replace("_", " ").title(),
                code=code,
                scope=entity,
                isActive=True,
                parentKey=None,
                deletedAt=None,
            )
            records.append(record)
        return records

    def _items(
        self, resource: str, gens: list[tuple[str, _Gen]], rng: random.Random
    ) -> list[Record]:
        domain, _, name = resource.partition("/")
        parent_name = name.partition(".")[0]
        parent = f"{domain}/{parent_name}"
        field = SUBLIST_PARENT_FIELD.get(parent_name, "assemblyKey")
        if name.endswith(".children"):
            field = "assemblyKey"
        records: list[Record] = []
        for parent_index in range(self.size(parent)):
            for _ in range(parent_index % 3):
                record = self._record(gens, rng, len(records))
                record[field] = self.key_for(parent, parent_index)
                records.append(record)
        return records

    def _finish(self, resource: str, records: list[Record]) -> None:
        """Make cross-field facts hold: status names match keys, work orders know their items."""
        domain, _, name = resource.partition("/")
        statuses = f"{domain}/statuses/{name}"
        vocabulary = _STATUSES.get(name)
        for i, record in enumerate(records):
            if "statusKey" in record and statuses in self._schemas:
                code = (vocabulary or _GENERIC_STATUSES)[i % len(vocabulary or _GENERIC_STATUSES)]
                record["statusKey"] = self.key_for(
                    statuses, i % len(vocabulary or _GENERIC_STATUSES)
                )
                if "status" in record:
                    record["status"] = code
            if "materialCount" in record:
                record["materialCount"] = str(i % 3)

    def _compile(
        self, domain: str, schema: str, resource: str, depth: int
    ) -> list[tuple[str, _Gen]]:
        return [
            (field.name, self._field_gen(domain, field, wire, resource, depth))
            for field, wire in self._types.fields(domain, schema)
        ]

    def _pool(self, domain: str, field: Field, depth: int) -> _Gen:
        many = field.kind == "array"
        if depth >= 2:  # noqa: PLR2004 - nested objects stop two levels down
            return (lambda _r, _i: []) if many else (lambda _r, _i: None)
        pool_key = (domain, field.detail, int(many))
        pool = self._pools.get(pool_key)
        if pool is None:
            served = self._served.get((domain, field.detail))
            if served is not None and served not in self._generating:
                pool = self._served_pool(served, many=many)
            else:
                nested = f"{domain}/~{field.detail}"
                gens = self._compile(domain, field.detail, nested, depth + 1)
                rng = self._rng(nested)
                if many:
                    pool = [
                        [self._record(gens, rng, n * 4 + m) for m in range(n % 4)]
                        for n in range(_POOL)
                    ]
                else:
                    pool = [self._record(gens, rng, n) for n in range(_POOL)]
            self._pools[pool_key] = pool
        shared = pool
        return lambda r, _i: shared[int(r.random() * _POOL)]

    def _served_pool(self, resource: str, *, many: bool) -> list[object]:
        """Copies of real records of ``resource``, as nested objects (or lists of them)."""
        records = self.collection(resource).records
        if not records:
            return [[] if many else None for _ in range(_POOL)]
        rng = self._rng(f"{resource}~nested")

        def pick() -> Record:
            return dict(records[int(rng.random() * len(records))])

        if many:
            return [[pick() for _ in range(n % 4)] for n in range(_POOL)]
        return [pick() for _ in range(_POOL)]

    def _field_gen(  # noqa: C901, PLR0911 - a lookup by wire type
        self, domain: str, field: Field, wire: Wire, resource: str, depth: int
    ) -> _Gen:
        name = field.name
        if name == "key":
            prefix = self.key_prefix(resource)
            return lambda _r, i: f"{prefix}{i:08d}"
        if wire in {Wire.OBJECT, Wire.OBJECTS}:
            return self._pool(domain, field, depth)
        if wire is Wire.KEY:
            return self._relation(domain, name, resource, many=False)
        if wire is Wire.STRINGS:
            if name == "checkList":
                return lambda r, _i: [f"{_WORDS[int(r.random() * 30)]} ok" for _ in range(2)]
            return self._relation(domain, name, resource, many=True)
        if wire is Wire.JSON_LIST:
            return lambda _r, _i: []
        if wire is Wire.JSON_OBJECT:
            return lambda _r, _i: {}
        if wire is Wire.BOOLEAN:
            threshold = 0.85 if name.startswith("isActive") else 0.5
            return lambda r, _i: r.random() < threshold
        if wire in {Wire.INTEGER, Wire.NUMBER}:
            return lambda r, _i: int(r.random() * 100)
        if wire is Wire.TIME:
            return _time_gen(name)
        if wire is Wire.COUNT:
            return lambda _r, _i: "0"
        if wire is Wire.DECIMAL:
            return _decimal_gen(name)
        return _text_gen(name, resource)

    def _relation(self, domain: str, name: str, resource: str, *, many: bool) -> _Gen:
        stem = _stem(name)
        if stem == "parent":
            target = resource
        elif stem == "status":
            target = f"{domain}/statuses/{resource.partition('/')[2]}"
        else:
            target = f"{domain}/{_RELATIONS.get(stem, stem)}"
        if target not in self._schemas:
            # No collection to point at: keys of the reserved scope 999, which no record has.
            prefix = f"999{self._index:03d}"
            if many:
                return lambda r, _i: [f"{prefix}{int(r.random() * 1e8):08d}" for _ in range(2)]
            return lambda r, _i: f"{prefix}{int(r.random() * 1e8):08d}"
        size = max(self.size(target), 1)
        prefix = self.key_prefix(target)
        if many:
            return lambda r, _i: [f"{prefix}{int(r.random() * size):08d}" for _ in range(2)]
        if target == resource:
            return lambda r, i: (
                f"{prefix}{int(r.random() * i):08d}" if i and r.random() < _PARENT_SHARE else None
            )
        return lambda r, _i: f"{prefix}{int(r.random() * size):08d}"


def _time_gen(name: str) -> _Gen:
    if name in {"createdAt", "created_at"}:
        return lambda r, _i: iso(_START + int(r.random() * _SPAN))
    if name in {"updatedAt", "updated_at"}:
        # Generated independently of createdAt but always after the creation window's start.
        return lambda r, _i: iso(_START + _SPAN + int(r.random() * 86400 * 20))
    if name in {"deletedAt", "_deletedAt"}:
        return lambda r, _i: iso(_START + _SPAN) if r.random() < 0.03 else None  # noqa: PLR2004 - 3 % deleted
    return lambda r, _i: iso(_START + int(r.random() * _SPAN)) if r.random() < 0.8 else None  # noqa: PLR2004 - 20 % unset


def _text_gen(name: str, resource: str) -> _Gen:  # noqa: PLR0911 - a lookup by field name
    low = name.lower()
    collection = resource.partition("/")[2].lstrip("~")
    prefix = _CODE_PREFIXES.get(collection) or collection[:2].upper() or "RC"
    if low in {"title", "name", "description", "notes", "instructions", "completionremarks"}:
        phrases = _PHRASES[4 if low in {"title", "name"} else 8]
        return lambda r, _i: phrases[int(r.random() * len(phrases))]
    if low.endswith(("code", "no", "number")) or low in {"sku", "upc", "ean", "isbn", "partnumber"}:
        return lambda _r, i: f"{prefix}-{10000 + i}"
    if low in {"severity", "priority", "criticality"}:
        return lambda r, _i: _LEVELS[int(r.random() * 4)]
    if "email" in low:
        return lambda _r, i: f"user{i}@example.com"
    if low in {"firstname", "middlename", "lastname", "contactperson", "addressee"}:
        return lambda r, _i: _NAMES[int(r.random() * len(_NAMES))]
    if low in {"currency", "currencycode"}:
        return lambda r, _i: _CURRENCIES[int(r.random() * len(_CURRENCIES))]
    return lambda r, _i: _WORDS[int(r.random() * len(_WORDS))]


def _decimal_gen(name: str) -> _Gen:
    """Numbers carried as strings, as Makini's records carry them: ``"120"``, ``"86.40"``."""
    low = name.lower()
    if low in {"lat", "lng"}:
        return lambda r, _i: f"{r.random() * 180 - 90:.5f}"
    if any(
        part in low for part in ("price", "cost", "value", "rate", "discount", "budget", "total")
    ):
        return lambda r, _i: f"{r.random() * 5000:.2f}"
    return lambda r, _i: str(int(r.random() * 200))


def record_uuid(connection_id: str, key: str) -> str:
    """Return the stable Makini UUID (v4 ``id``) of a record."""
    return str(uuid.uuid5(_NS, f"{connection_id}/{key}"))
