"""Typed writes, consistent generated data and envelopes everywhere, under hostile input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from makini_async import Connection, ConnectionRegistry, models
from makini_async.models import WorkOrder
from makini_async.models._generate import class_name
from makini_async.models._wire import decode
from makini_async.sandbox import Sandbox
from makini_async.sandbox._app import envelope_errors
from makini_async.sandbox._data import DataSet
from makini_async.sandbox._spec import load_spec
from tests.sandbox.contract import contract
from tests.sandbox.support import Api
from tests.support import ZERO_WAIT, StartApp

WO = "/api/eam/work-orders"


@pytest.fixture(name="conn")
async def _conn(sandbox: Sandbox) -> AsyncIterator[Connection]:
    """The client's connection ``c1`` to the sandbox."""
    async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT) as registry:
        registry.add("c1", sandbox.connections["c1"])
        yield registry["c1"]


async def _raw_get(sandbox: Sandbox, target: str) -> tuple[int, dict[str, str], bytes]:
    """GET a raw request target (no client-side quoting) and read the whole answer."""
    token = sandbox.connections["c1"]
    reader, writer = await asyncio.open_connection(sandbox.host, sandbox.port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body


class TestTypedWrites:
    async def test_wrong_types_are_422_per_field(self, api: Api, sandbox: Sandbox) -> None:
        """A body with a number for a string and false for a date answers 422 naming both."""
        before = len(sandbox.records("c1", "eam/work-orders"))
        reply = await api.post(WO, json={"title": 0, "dueAt": False, "notes": "fine"})
        assert reply.status == 422, reply.text
        assert reply.error_code == "VALIDATION_ERROR"
        assert reply.body["error"]["details"]["fields"] == {
            "title": ["The title field must be a string."],
            "dueAt": ["The dueAt field must be a valid date."],
        }
        assert len(sandbox.records("c1", "eam/work-orders")) == before

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"siteKey": 12}, "siteKey"),
            ({"scheduledAt": "next tuesday"}, "scheduledAt"),
            ({"scheduledAt": "0001-01-01T00:00:00+01:00"}, "scheduledAt"),
            ({"actualTime": "1e400x"}, "actualTime"),
            ({"tasks": [{"title": ["a"]}]}, "tasks.0.title"),
            ({"tasks": {"checkList": [1]}}, "tasks.0.checkList"),
            ({"resources": [{"rate": "cheap"}]}, "resources.0.rate"),
        ],
    )
    async def test_every_field_is_checked(
        self, api: Api, body: dict[str, object], field: str
    ) -> None:
        """Keys, dates, numbers and nested objects are checked, with dotted paths for nesting."""
        reply = await api.post(WO, json=body)
        assert reply.status == 422, reply.text
        assert list(reply.body["error"]["details"]["fields"]) == [field]

    async def test_echo_has_the_types_of_a_read(self, api: Api, conn: Connection) -> None:
        """Numbers become the numeric strings records carry; a lone task becomes a list of one."""
        reply = await api.post(
            WO,
            json={
                "title": "Fix pump",
                "estimatedTime": 10,
                "actualTime": 10**30,
                "dueAt": "2026-03-01T10:00:00+02:00",
                "tasks": {"title": "Isolate", "checkList": "valves shut", "nonsense": 1},
            },
        )
        assert reply.status == 200, reply.text
        record = reply.body["data"]
        assert record["estimatedTime"] == "10"
        assert record["actualTime"] == "1" + "0" * 30
        assert record["dueAt"] == "2026-03-01T08:00:00Z"
        assert record["tasks"] == [
            {"title": "Isolate", "checkList": ["valves shut"], "nonsense": 1}
        ]
        read = await api.get(f"{WO}/{record['key']}")
        assert read.body["data"] == record
        order = await conn.eam.work_orders.get(record["key"])
        assert isinstance(order, WorkOrder)
        assert str(order.estimated_time) == "10"
        assert order.tasks[0].check_list == ("valves shut",)

    async def test_derived_fields_are_not_written(self, api: Api, sandbox: Sandbox) -> None:
        """materialCount and key come from the sandbox, whatever a write says."""
        key = str(sandbox.records("c1", "eam/work-orders")[4]["key"])
        count = sandbox.records("c1", "eam/work-orders")[4]["materialCount"]
        reply = await api.put(f"{WO}/{key}", json={"materialCount": "lots", "key": "other"})
        assert reply.status == 200, reply.text
        assert reply.body["data"]["materialCount"] == count
        assert reply.body["data"]["key"] == key

    async def test_numbers_past_64_bits(self, api: Api, sandbox: Sandbox) -> None:
        """Integers the JSON encoder cannot write answer 422 where records hold JSON numbers."""
        key = sandbox.records("c1", "eam/materials")[0]["key"]
        path = f"/api/eam/materials/{key}/inventory"
        reply = await api.put(path, json={"quantity": 2**64})
        assert reply.status == 422, reply.text
        assert list(reply.body["error"]["details"]["fields"]) == ["quantity"]
        fine = await api.put(path, json={"quantity": "12", "unitCost": 3.0})
        assert fine.body["data"]["inventory"]["quantity"] == 12
        assert fine.body["data"]["inventory"]["unitCost"] == 3
        listed = await api.get("/api/eam/materials")
        assert listed.status == 200

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b'{"title": NaN}', "not valid JSON"),
            (b'{"title": Infinity}', "not valid JSON"),
            (b'{"title": "\\ud800"}', "surrogate"),
            (b'{"\\udfff": 1}', "surrogate"),
            (b'{"tasks": ' + b"[" * 40 + b"]" * 40 + b"}", "deeper"),
        ],
    )
    async def test_unusable_json_is_400(self, api: Api, raw: bytes, reason: str) -> None:
        """JSON that Python parses but no encoder writes back answers 400, never 500."""
        reply = await api.post(WO, data=raw, headers={"Content-Type": "application/json"})
        assert reply.status == 400, reply.text
        assert reply.error_code == "INVALID_REQUEST"
        assert reason in reply.body["error"]["message"]

    async def test_free_form_json_is_bounded(self, api: Api, sandbox: Sandbox) -> None:
        """Echoed and stored free-form JSON refuses integers past 64 bits with a 422."""
        echo = await api.post(
            "/api/passthrough", json={"path": "/x", "method": "get", "body": [2**70]}
        )
        assert echo.status == 422, echo.text
        assert list(echo.body["error"]["details"]["fields"]) == ["body"]
        admin = api.as_connection(None, sandbox.admin_token)
        meta = await admin.post(
            "/api/system/connections/c2/metadata", json=[{"key": "k", "value": -(2**70)}]
        )
        assert meta.status == 422, meta.text
        listed = await admin.get("/api/system/connections/c2/metadata")
        assert listed.status == 200

    async def test_hostile_writes_still_decode(self, api: Api, conn: Connection) -> None:
        """Whatever a write sends, what it stores decodes with the client afterwards."""
        bodies: list[dict[str, Any]] = [
            {"title": "", "severity": "", "dueAt": "", "estimatedTime": ""},
            {"estimatedTime": " 12.50 ", "actualTime": -3.25, "scheduledAt": "2026-01-02"},
            {"tasks": [], "documents": None, "resources": {"rate": 4, "startedAt": "2026-01-01"}},
            {"completedAt": "2026-01-02T03:04:05.123456-05:00", "notes": "\x00\u2028"},
        ]
        for body in bodies:
            reply = await api.post(WO, json=body)
            assert reply.status == 200, (body, reply.text)
            order = await conn.eam.work_orders.get(reply.body["data"]["key"])
            assert order.key == reply.body["data"]["key"]
        async for order in conn.eam.work_orders.list(per_page=500):
            assert isinstance(order, WorkOrder)


class TestGeneratedData:
    def test_every_field_has_its_declared_type(self) -> None:
        """Every generated record validates against its schema and decodes with the client."""
        spec = load_spec()
        data = DataSet(spec, "c1", 1, 1)
        schemas = contract()
        checked = 0
        for resource in sorted(data.resources):
            domain, schema = data.schema_of(resource)
            validator = schemas.record_validator(domain, schema)
            model = getattr(models, class_name(schema))
            for record in data.collection(resource).records[:15]:
                errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(record)]
                assert not errors, (resource, errors[:3])
                decode(record, model)
                checked += 1
        assert checked > 500

    async def test_nested_keys_open_with_get(self, api: Api, sandbox: Sandbox) -> None:
        """Documents nested in records and a part's inventory are records their endpoint serves."""
        seen = 0
        for resource, field, endpoint in [
            ("eam/work-orders", "documents", "/api/eam/documents"),
            ("eam/assets", "documents", "/api/eam/documents"),
            ("eam/materials", "inventory", "/api/eam/inventories"),
            ("erp/materials", "inventory", "/api/erp/inventories"),
        ]:
            for record in sandbox.records("c1", resource)[:12]:
                nested = record[field]
                for item in nested if isinstance(nested, list) else [nested]:
                    if not isinstance(item, dict):
                        continue
                    reply = await api.get(f"{endpoint}/{item['key']}")
                    assert reply.status == 200, (resource, field, reply.text)
                    assert reply.body["data"] == item
                    seen += 1
        assert seen > 10

    def test_key_lists_are_lists(self, sandbox: Sandbox) -> None:
        """Document.entityKeys holds a list of work-order keys, not one string."""
        orders = {r["key"] for r in sandbox.records("c1", "eam/work-orders")}
        for document in sandbox.records("c1", "eam/documents"):
            assert isinstance(document["entityKeys"], list)
            assert set(document["entityKeys"]) <= orders

    async def test_filters_follow_what_records_hold(self, api: Api, sandbox: Sandbox) -> None:
        """A numeric string declared an object filters as a number; a list of keys does not."""
        stocks = sandbox.records("c1", "eam/stocks")
        reply = await api.get("/api/eam/stocks", params={"filter[quantity:gteq]": "100"})
        assert reply.status == 200, reply.text
        expected = [r["key"] for r in stocks if float(str(r["quantity"])) >= 100]
        assert [r["key"] for r in reply.body["data"]] == expected
        refused = await api.get("/api/eam/assets", params={"filter[accountKeys]": "x"})
        assert refused.status == 400
        assert refused.body["error"]["details"]["parameter"] == "filter[accountKeys]"


class TestEnvelopesEverywhere:
    @pytest.mark.parametrize(
        "target",
        [
            f"{WO}/%0A",
            f"{WO}/a%0Ab",
            "/api/eam/%0A/work-orders",
            "/%0D%0A",
            "/_sandbox/connections/%0A",
        ],
    )
    async def test_newlines_in_paths(self, sandbox: Sandbox, target: str) -> None:
        """A decoded newline in a path answers the JSON envelope with X-Request-Id."""
        status, headers, body = await _raw_get(sandbox, target)
        assert status in {404, 405}, body
        assert headers["content-type"].startswith("application/json")
        assert headers["x-request-id"].encode() in body
        assert b'"NOT_FOUND"' in body or b'"OPERATION_NOT_SUPPORTED"' in body

    @pytest.mark.parametrize(
        ("query", "status"),
        [
            ("page=18446744073709551616", 400),
            ("page=99999999999999999999999999", 400),
            ("page=2147483648", 400),
            ("page=2147483647", 200),
            ("page=%2B1", 400),
            ("page=1_0", 400),
            ("page=%D9%A3", 400),
            ("page=0001", 200),
            ("per_page=99999999999999999999999999", 200),
        ],
    )
    async def test_numeric_query_bounds(self, sandbox: Sandbox, query: str, status: int) -> None:
        """Paging numbers outside 1..2**31-1 (or not ASCII digits) answer a 400 envelope."""
        for path in (WO, "/api/eam/work-orders/materials", "/api/raw/tables/assets/data"):
            got, headers, body = await _raw_get(sandbox, f"{path}?{query}")
            assert got == status, (path, body)
            assert headers["content-type"].startswith("application/json")
            if status == 400:
                assert b'"INVALID_REQUEST"' in body

    async def test_time_filters_past_year_one(self, sandbox: Sandbox) -> None:
        """A time filter whose offset moves it before year 1 answers a 400 envelope."""
        target = f"{WO}?filter[dueAt:gt]=0001-01-01T00:00:00%2B01:00"
        status, _, body = await _raw_get(sandbox, target)
        assert status == 400, body
        assert b'"INVALID_REQUEST"' in body

    async def test_router_errors_are_envelopes(self, app_server: StartApp) -> None:
        """aiohttp's own 404 and 405 become the envelope, keeping Allow."""

        async def hello(request: web.Request) -> web.Response:
            return web.json_response({"data": {}})

        app = web.Application(middlewares=[envelope_errors])
        app.router.add_get("/only-get", hello)
        url = await app_server(app)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/missing") as missing:
                body = await missing.json()
                assert missing.status == 404
                assert body["error"]["code"] == "NOT_FOUND"
                assert body["error"]["request_id"] == missing.headers["X-Request-Id"]
            async with session.post(f"{url}/only-get") as refused:
                body = await refused.json()
                assert refused.status == 405
                assert body["error"]["code"] == "OPERATION_NOT_SUPPORTED"
                assert "GET" in refused.headers["Allow"]
