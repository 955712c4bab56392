"""The sandbox against Makini's OpenAPI files: a property test of every documented operation.

For every operation of the four files, hypothesis draws valid requests (path keys of existing
records, paging, filters and sorts on the record's fields, bodies of the declared fields with
values of the types the client's models give them); the sandbox must answer 200 with a body
that validates against the operation's response schema (``tests/sandbox/contract.py`` reads the
files as JSON Schema) and decodes with the client's models, and a write's answer must equal a
later read of the same record. For every JSON write, hostile bodies (any JSON value in any
declared field) must answer 200 under the same checks, or 422 with the envelope naming only the
fields sent. Each operation runs a few derandomized examples on its own sandbox.

``MAKINI_CONTRACT_STATS=1`` prints the operations, examples and statuses seen at the end.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from makini_async import _openapi, models
from makini_async.models._generate import CLASS_NAMES, class_name, field_type, write_type
from makini_async.models._wire import RecordDecodeError, decode
from makini_async.sandbox import PROVIDERS, Sandbox
from makini_async.sandbox._spec import Route, load_spec
from tests.sandbox.contract import Operation, contract
from tests.sandbox.support import Api, Reply

CONTRACT: Final = contract()
OPERATIONS: Final = CONTRACT.operations
ROUTES: Final = {(r.method, r.template): r for r in load_spec().routes}
JSON_WRITES: Final = [
    op
    for op in OPERATIONS
    if op.method in {"POST", "PUT"}
    and op.content_type == "application/json"
    and op.domain != "system"
    and ROUTES[op.method, op.path].action != "status"
]
EXAMPLES: Final = settings(
    max_examples=3,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SYSTEM_MODELS: Final[dict[str, type[models.Model]]] = {
    "Integration": models.Integration,
    "Client": models.ClientInfo,
    "Connection": models.ConnectionInfo,
    "Platform": models.Platform,
}
STATS: Final[Counter[str]] = Counter()

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=7))]
)
# hypothesis takes naive bounds and adds the zones itself.
_FIRST, _LAST = datetime(1971, 1, 1), datetime(2099, 1, 1)  # noqa: DTZ001
_STAMPS = st.datetimes(min_value=_FIRST, max_value=_LAST, timezones=_ZONES).map(
    datetime.isoformat
) | st.dates(min_value=_FIRST.date(), max_value=_LAST.date()).map(lambda d: d.isoformat())
_DECIMALS = (
    st.integers(-(10**9), 10**9)
    | st.decimals(min_value=-(10**6), max_value=10**6, places=2).map(str)
    | st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
)
_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT
_JSON = st.recursive(
    _SCALARS | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
#: Anything JSON can say, including integers past 64 bits, for the hostile bodies.
_HOSTILE = st.recursive(
    _SCALARS | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _STAMPS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(name="sandbox_options")
def _sandbox_options() -> dict[str, Any]:
    return {"connections": 2, "seed": 3, "time_scale": 0.001}


@pytest.fixture(autouse=True, scope="module")
def _stats() -> Iterator[None]:
    yield
    if os.environ.get("MAKINI_CONTRACT_STATS"):
        print(f"\ncontract stats: {dict(sorted(STATS.items()))}")  # noqa: T201 - asked for


# -- the models' reading of a schema ---------------------------------------------------------


def _annotations(domain: str, schema: str) -> dict[str, tuple[str, str, str]]:
    """Property → (the client model's annotation, declared kind, detail)."""
    if domain == "system":
        return {}
    doc = _openapi.load().document(domain)
    names = {
        n
        for n, s in doc.schemas.items()
        if s.properties is not None and not n.endswith("Collection")
    }
    found = doc.schemas.get(schema)
    out: dict[str, tuple[str, str, str]] = {}
    for prop in (found.properties if found else None) or ():
        kind, detail = ("object", prop.ref) if prop.ref else (prop.type or "string", "")
        if kind == "array":
            detail = prop.items_ref
        out[prop.name] = (field_type(prop.name, kind, detail, names)[0], kind, detail)
    return out


def _value(domain: str, annotation: str, kind: str, depth: int) -> st.SearchStrategy[object]:  # noqa: PLR0911 - one per annotation
    """Valid values of a field the client's models read as ``annotation``."""
    plain = annotation.replace(" | Unset", "").replace(" | None", "")
    if plain in {"str", "Level | str"}:
        levels = st.sampled_from(["low", "medium", "high", "critical"])
        return levels | _TEXT if plain.startswith("Level") else _TEXT
    if plain == "datetime":
        return _STAMPS
    if plain in {"Decimal", "Decimal | int"}:
        return _DECIMALS
    if plain == "int":
        return st.integers(0, 10**6)
    if plain == "bool":
        return st.booleans()
    if plain in {"tuple[str, ...]", "Sequence[str]"}:
        return st.lists(_TEXT, max_size=3)
    if plain.startswith(("tuple[", "Sequence[")):
        inner = plain.split("[", 1)[1].split(",", 1)[0].rstrip("]")
        return st.lists(_nested(domain, inner, depth), max_size=2)
    if plain == "JSON":
        if kind == "array":
            return st.lists(_SCALARS, max_size=3)
        return st.dictionaries(_TEXT, _SCALARS, max_size=3) if kind == "object" else _JSON
    return _nested(domain, plain, depth)


def _schema_of_class(domain: str, cls: str) -> str:
    renamed = {v: k for k, v in CLASS_NAMES.items()}
    return renamed.get(cls, cls) if domain != "system" else cls


def _nested(domain: str, cls: str, depth: int) -> st.SearchStrategy[object]:
    if depth >= 2:
        return st.fixed_dictionaries({})
    fields = _annotations(domain, _schema_of_class(domain, cls))
    return st.fixed_dictionaries(
        {},
        optional={
            name: st.none() | _value(domain, annotation, kind, depth + 1)
            for name, (annotation, kind, _) in fields.items()
            if name != "key"
        },
    )


def _write_value(  # noqa: PLR0911 - one per rule
    domain: str, name: str, spec: Mapping[str, Any], record: tuple[str, str, str] | None
) -> st.SearchStrategy[object]:
    """A valid value of a body field: its rule's type, else the record's, else the write model's."""
    rule = f"{spec.get('type', '')}|{spec.get('format', '')}"
    parts = set(rule.split("|"))
    if "integer" in parts:
        return st.integers(-(10**6), 10**6)
    if "boolean" in parts:
        return st.booleans()
    if "numeric" in parts:
        return _DECIMALS
    if "date" in parts:
        return _STAMPS
    if record is not None:
        annotation, kind, _ = record
        return _value(domain, annotation, kind, 0)
    annotation = write_type(name, rule)
    if annotation.startswith("JSON"):
        kind = "array" if "array" in parts else "object" if "object" in parts else ""
        return _value(domain, "JSON", kind, 0)
    return _value(domain, annotation, "", 0)


# -- requests -------------------------------------------------------------------------------


def _keyed(route: Route) -> str:
    """The collection whose key ``{key}`` is: a sub-list's parent, else the route's own."""
    if route.action in {"sublist", "subcreate", "subupdate"}:
        return route.resource.partition(".")[0]
    return route.resource


def _record_schema(op: Operation, route: Route) -> str:
    if route.action in {"subcreate", "subupdate"}:
        return "MaterialItem"
    return op.data_schema


def _body(op: Operation, route: Route) -> st.SearchStrategy[dict[str, object]]:
    record = _annotations(op.domain, _record_schema(op, route))
    required: dict[str, st.SearchStrategy[object]] = {}
    optional: dict[str, st.SearchStrategy[object]] = {}
    for name, spec in op.body_properties.items():
        strategy = _write_value(op.domain, name, spec, record.get(name))
        rule = f"{spec.get('type', '')}|{spec.get('format', '')}"
        if "required" in rule.split("|"):
            required[name] = strategy
        else:
            optional[name] = st.none() | strategy
    return st.fixed_dictionaries(required, optional=optional)


def _hostile_body(op: Operation, route: Route) -> st.SearchStrategy[dict[str, object]]:
    names = sorted({*op.body_properties, *_annotations(op.domain, _record_schema(op, route))})
    return st.dictionaries(st.sampled_from([*names, "notAField"]), _HOSTILE, max_size=4)


async def _path(
    data: st.DataObject, op: Operation, route: Route, sandbox: Sandbox, conn: str
) -> str:
    """The path with its parameters: keys of existing records (or of fresh connections)."""
    path = op.path
    if "{materialKey}" in path:
        items = [r for r in sandbox.records(conn, route.resource) if r.get("workOrderKey")]
        item = data.draw(st.sampled_from(items), label="material item")
        material = item.get("materialKey") or item["key"]
        return path.replace("{key}", str(item["workOrderKey"])).replace(
            "{materialKey}", str(material)
        )
    if "{key}" in path:
        keys = [str(r["key"]) for r in sandbox.records(conn, _keyed(route))]
        return path.replace("{key}", data.draw(st.sampled_from(keys), label="key"))
    if "{table}" in path:
        table = data.draw(st.sampled_from(["work_orders", "assets", "sites"]), label="table")
        return path.replace("{table}", table)
    if "{id}" in path:
        target = "c2"
        if op.method == "DELETE":
            target = (await sandbox.add_connection()).id
        return path.replace("{id}", target)
    return path


def _query(data: st.DataObject, op: Operation) -> list[tuple[str, str]]:
    names = op.query_names
    query: list[tuple[str, str]] = []
    if "page" in names and data.draw(st.booleans(), label="page?"):
        query.append(("page", str(data.draw(st.integers(1, 4), label="page"))))
    if "per_page" in names and data.draw(st.booleans(), label="per_page?"):
        query.append(("per_page", str(data.draw(st.integers(1, 60), label="per_page"))))
    fields = _scalar_fields(op)
    if fields and "filter" in names and data.draw(st.booleans(), label="filter?"):
        name = data.draw(st.sampled_from(fields), label="filter field")
        operator = data.draw(
            st.sampled_from(["", ":contains", ":startsWith", ":endsWith", ":gt", ":lteq"]),
            label="operator",
        )
        timed = name.endswith(("At", "Date")) and operator not in {":contains", ":startsWith"}
        value = data.draw(_STAMPS if timed and operator != ":endsWith" else _TEXT, label="value")
        query.append((f"filter[{name}{operator}]", str(value)))
    if fields and "sort" in names and data.draw(st.booleans(), label="sort?"):
        name = data.draw(st.sampled_from(fields), label="sort field")
        query.append((f"sort[{name}]", data.draw(st.sampled_from(["0", "1"]), label="order")))
    return query


def _scalar_fields(op: Operation) -> list[str]:
    if not op.is_list or op.domain == "system":
        return []
    schema = CONTRACT.components(op.domain).get(op.data_schema)
    props = schema.get("properties") if isinstance(schema, dict) else None
    return sorted(
        name
        for name, spec in (props or {}).items()
        if spec.get("type") in {"string", "number", "integer", "boolean"}
        and not (spec.get("type") == "string" and name.endswith("Keys"))
    )


def _special_body(
    data: st.DataObject, op: Operation, route: Route, sandbox: Sandbox, conn: str
) -> object:
    """Bodies whose valid values come from the sandbox's state or a closed list."""
    if route.action == "status":
        field = next(iter(op.body_properties), "status")
        name = route.resource.partition("/")[2]
        statuses = f"{route.domain}/statuses/{name}"
        try:
            records = sandbox.records(conn, statuses)
        except KeyError:
            return {field: data.draw(_TEXT.filter(bool), label=field)}
        status = data.draw(st.sampled_from(records), label="status")
        return {field: str(status[data.draw(st.sampled_from(["key", "code", "name"]))])}
    if op.path == "/api/system/connections" and op.method == "POST":
        return data.draw(
            st.fixed_dictionaries(
                {"email": st.emails()},
                optional={"name": _TEXT, "provider": st.sampled_from(sorted(PROVIDERS))},
            ),
            label="body",
        )
    if op.path.endswith("/metadata") and op.method == "POST":
        items = st.fixed_dictionaries({"key": _TEXT, "value": _TEXT | st.none()})
        return data.draw(st.lists(items, max_size=3), label="body")
    if op.path == "/api/passthrough":
        return data.draw(
            st.fixed_dictionaries(
                {"path": _TEXT.filter(bool), "method": st.sampled_from(["get", "post", "PUT"])},
                optional={"body": _JSON, "query": st.none(), "base64encoded": st.booleans()},
            ),
            label="body",
        )
    return None


async def _send(
    api: Api, op: Operation, path: str, query: list[tuple[str, str]], body: object
) -> Reply:
    if op.content_type == "multipart/form-data":
        form = aiohttp.FormData()
        form.add_field("file", b"%PDF-1.4", filename="manual.pdf", content_type="application/pdf")
        form.add_field("name", "Manual")
        return await api.request(op.method, path, data=form)
    return await api.request(op.method, path, params=query or None, json=body)


def _api_for(api: Api, sandbox: Sandbox, op: Operation, conn: str) -> Api:
    if op.path.startswith("/api/system/"):
        return api.as_connection(None, sandbox.admin_token)
    return api.as_connection(conn)


# -- checks ---------------------------------------------------------------------------------


def _model(op: Operation) -> type[models.Model] | None:
    if op.domain == "system":
        return SYSTEM_MODELS.get(op.data_schema)
    found = getattr(models, class_name(op.data_schema), None) if op.data_schema else None
    return found if isinstance(found, type) and issubclass(found, models.Model) else None


def _check_answer(op: Operation, reply: Reply) -> None:
    """A 200 whose body validates against the contract and decodes with the client."""
    STATS[f"status {reply.status}"] += 1
    assert reply.status == 200, f"{op.id}: {reply.status} {reply.text[:500]}"
    assert reply.headers["X-Request-Id"].startswith("req_")
    errors = sorted(CONTRACT.validator(op).iter_errors(reply.body), key=lambda e: e.json_path)
    assert not errors, f"{op.id}: " + "; ".join(f"{e.json_path}: {e.message}" for e in errors[:5])
    model = _model(op)
    if model is not None and isinstance(reply.body, dict):
        records = reply.body["data"] if op.is_list else [reply.body["data"]]
        for index, record in enumerate(records):
            try:
                decode(record, model)
            except RecordDecodeError as exc:
                pytest.fail(f"{op.id}: data[{index}] does not decode: {exc}")


async def _check_echo(api: Api, op: Operation, route: Route, path: str, reply: Reply) -> None:
    """A write's answer is what a later read of the same record gives."""
    if op.domain == "system" or route.action == "system" or op.is_list:
        return
    record = reply.body["data"]
    parent = _keyed(route)
    get = next((r for r in ROUTES.values() if r.action == "get" and r.resource == parent), None)
    if get is None or not record.get("key"):
        return
    read = await api.get(get.template.replace("{key}", str(record["key"])))
    assert read.status == 200, read.text
    assert read.body["data"] == record, f"{op.id} {path}: the echo differs from the read"


def _check_refusal(reply: Reply, body: Mapping[str, object]) -> None:
    STATS[f"status {reply.status}"] += 1
    assert reply.status == 422, f"{reply.status} {reply.text[:500]}"
    error = reply.body["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["request_id"] == reply.headers["X-Request-Id"]
    named = {str(field).partition(".")[0] for field in error["details"]["fields"]}
    assert named, reply.text
    assert named <= set(body), (named, body)


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture(name="v4")
def _v4(sandbox: Sandbox) -> Sandbox:
    """The sandbox with ``c2`` answering v4 records (``c1`` stays v3)."""
    sandbox.configure("c2", v4=True)
    return sandbox


@pytest.mark.parametrize("op", OPERATIONS, ids=[op.id for op in OPERATIONS])
@EXAMPLES
@given(data=st.data())
async def test_valid_requests(api: Api, v4: Sandbox, op: Operation, data: st.DataObject) -> None:
    """Valid requests to a documented operation answer 200 with a body the contract describes."""
    sandbox = v4
    route = ROUTES[op.method, op.path]
    conn = data.draw(st.sampled_from(["c1", "c2"]), label="connection")
    if op.path == "/api/integrations/current" and op.method == "DELETE":
        conn = (await sandbox.add_connection()).id
    path = await _path(data, op, route, sandbox, conn)
    query = _query(data, op) if op.method == "GET" else []
    body = _special_body(data, op, route, sandbox, conn)
    if body is None and op.body_properties and op.content_type == "application/json":
        body = data.draw(_body(op, route), label="body")
    if body is None and op.method in {"POST", "PUT"}:
        body = {}
    client = _api_for(api, sandbox, op, conn)
    reply = await _send(client, op, path, query, body)
    STATS["examples"] += 1
    STATS[f"operation {op.id}"] = 1
    _check_answer(op, reply)
    if op.method in {"POST", "PUT"}:
        await _check_echo(client, op, route, path, reply)


@pytest.mark.parametrize("op", JSON_WRITES, ids=[op.id for op in JSON_WRITES])
@settings(EXAMPLES, max_examples=6)
@given(data=st.data())
async def test_hostile_writes(
    api: Api, sandbox: Sandbox, op: Operation, data: st.DataObject
) -> None:
    """Any JSON in a write's fields answers 200 as the contract says, or 422 naming the fields."""
    route = ROUTES[op.method, op.path]
    path = await _path(data, op, route, sandbox, "c1")
    body = data.draw(_hostile_body(op, route), label="body")
    if route.action in {"subcreate", "subupdate"}:
        body = {"requiredQuantity": 1, "usedQuantity": 1, **body}
    reply = await api.request(op.method, path, json=body)
    STATS["hostile examples"] += 1
    if reply.status == 200:
        _check_answer(op, reply)
        await _check_echo(api, op, route, path, reply)
    else:
        _check_refusal(reply, body)
