"""Every path and method of Makini's OpenAPI files is served, with every schema property."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from makini_async import _openapi
from makini_async.sandbox import Sandbox, _spec
from makini_async.sandbox._build_spec import build
from makini_async.sandbox._spec import Route, load_spec
from tests.sandbox.support import Api

SPEC = load_spec()
SPEC_FILE = Path(_spec.__file__).with_name("_spec.json")
OPENAPI = _openapi.files()  # the OpenAPI files shipped in the package
DATA_LISTS = [r for r in SPEC.routes if r.action == "list"]
DATA_GETS = [r for r in SPEC.routes if r.action == "get"]
SUBLISTS = [r for r in SPEC.routes if r.action == "sublist"]


def _concrete(template: str, key: str) -> str:
    return template.replace("{key}", key)


class TestSpecFile:
    def test_shipped_table_matches_the_openapi_files(self) -> None:
        """The shipped _spec.json is exactly what _build_spec derives from the OpenAPI files."""
        shipped = json.loads(SPEC_FILE.read_text())
        assert build(OPENAPI) == shipped

    def test_every_openapi_operation_is_a_route(self) -> None:
        """Each path and method pair in the four OpenAPI files has a sandbox route."""
        served = {(r.method, r.template) for r in SPEC.routes}
        for name in ("oas3_eam.json", "oas3_erp.json", "oas3_wms.json", "oas3_system.json"):
            doc = json.loads((OPENAPI / name).read_text())
            for path, operations in doc["paths"].items():
                for method in operations:
                    assert (method.upper(), path) in served

    def test_table_is_small(self) -> None:
        """The derived table stays a few hundred kilobytes at most."""
        path = SPEC_FILE
        assert path.stat().st_size < 300_000


class TestEveryDataPath:
    @pytest.mark.parametrize("route", DATA_LISTS, ids=[r.template for r in DATA_LISTS])
    async def test_list_returns_every_schema_property(self, api: Api, route: Route) -> None:
        """Each list path answers a page whose records carry every documented property."""
        reply = await api.get(route.template, params={"per_page": "3"})
        assert reply.status == 200, reply.text
        assert set(reply.body) == {"data", "links", "meta"}
        assert reply.body["data"], route
        names = [f.name for f in SPEC.fields(route.domain, route.schema)]
        assert names
        for record in reply.body["data"]:
            assert list(record) == names

    @pytest.mark.parametrize("route", DATA_GETS, ids=[r.template for r in DATA_GETS])
    async def test_get_returns_the_listed_record(self, api: Api, route: Route) -> None:
        """Each get-by-key path answers the same record the list shows."""
        template: str = route.template
        listed = await api.get(template.removesuffix("/{key}"), params={"per_page": "1"})
        record = listed.body["data"][0]
        reply = await api.get(_concrete(template, record["key"]))
        assert reply.status == 200
        assert reply.body == {"data": record}

    @pytest.mark.parametrize("route", DATA_GETS, ids=[r.template for r in DATA_GETS])
    async def test_get_unknown_key_is_not_found(self, api: Api, route: Route) -> None:
        """An unknown key answers 404 NOT_FOUND."""
        reply = await api.get(_concrete(route.template, "nope"))
        assert reply.status == 404
        assert reply.error_code == "NOT_FOUND"

    @pytest.mark.parametrize("route", SUBLISTS, ids=[r.template for r in SUBLISTS])
    async def test_sublists_belong_to_their_parent(
        self, api: Api, sandbox: Sandbox, route: Route
    ) -> None:
        """Nested material lists hold exactly the items pointing at the parent record."""
        template: str = route.template
        parent_resource = route.resource.partition(".")[0]
        items = sandbox.records("c1", route.resource)
        field = "assemblyKey" if template.endswith("children") else None
        parents = sandbox.records("c1", parent_resource)
        for parent in parents[:4]:
            reply = await api.get(
                _concrete(template, str(parent["key"])), params={"per_page": "500"}
            )
            assert reply.status == 200
            got = [r["key"] for r in reply.body["data"]]
            want = [
                r["key"]
                for r in items
                if parent["key"] in {r.get(field or ""), *(r.get(f) for f in _parent_fields())}
            ]
            assert got == want
        missing = await api.get(_concrete(template, "nope"))
        assert missing.status == 404


def _parent_fields() -> tuple[str, ...]:
    return (
        "workOrderKey",
        "assetKey",
        "assetTemplateKey",
        "pmKey",
        "productionOrderKey",
        "assemblyKey",
    )


class TestShapes:
    async def test_v4_shape_adds_standard_fields(self, api: Api, sandbox: Sandbox) -> None:
        """With v4 on, each record starts with the standard fields and keeps the v3 ones."""
        sandbox.configure("c1", v4=True)
        reply = await api.get("/api/eam/work-orders", params={"per_page": "2"})
        record = reply.body["data"][0]
        assert list(record)[:7] == [
            "id",
            "_idValue",
            "_displayValue",
            "_createdAt",
            "_updatedAt",
            "_deletedAt",
            "_implements",
        ]
        assert record["_implements"] == "WorkOrder"
        assert record["_idValue"] == record["code"]
        assert record["_updatedAt"] == record["updatedAt"]
        single = await api.get(f"/api/eam/work-orders/{record['key']}")
        assert single.body["data"] == record
        other = await api.as_connection("c2").get("/api/eam/work-orders", params={"per_page": "1"})
        assert "id" not in other.body["data"][0]

    async def test_v4_ids_are_stable_uuids(self, api: Api, sandbox: Sandbox) -> None:
        """The v4 id of a record is the same on every read."""
        sandbox.configure("c1", v4=True)
        first = await api.get("/api/eam/assets", params={"per_page": "5"})
        again = await api.get("/api/eam/assets", params={"per_page": "5", "page": "1"})
        assert [r["id"] for r in first.body["data"]] == [r["id"] for r in again.body["data"]]
        assert len({r["id"] for r in first.body["data"]}) == 5


class TestData:
    async def test_same_seed_same_data(self) -> None:
        """Two sandboxes with one seed generate identical records."""
        one = Sandbox(connections=1, seed=7)
        two = Sandbox(connections=1, seed=7)
        other = Sandbox(connections=1, seed=8)
        assert one.records("c1", "eam/work-orders") == two.records("c1", "eam/work-orders")
        assert one.records("c1", "eam/work-orders") != other.records("c1", "eam/work-orders")

    async def test_work_orders_cover_every_status(self) -> None:
        """Generated work orders use every work-order status, and status names match keys."""
        sandbox = Sandbox(connections=1, seed=3)
        statuses = {s["key"]: s["code"] for s in sandbox.records("c1", "eam/statuses/work-orders")}
        orders = sandbox.records("c1", "eam/work-orders")
        assert {o["statusKey"] for o in orders} == set(statuses)
        assert all(statuses[str(o["statusKey"])] == o["status"] for o in orders)

    async def test_relations_point_at_real_records(self) -> None:
        """A work order's siteKey and assetKey name records of those collections."""
        sandbox = Sandbox(connections=1, seed=3)
        sites = {s["key"] for s in sandbox.records("c1", "eam/sites")}
        assets = {a["key"] for a in sandbox.records("c1", "eam/assets")}
        for order in sandbox.records("c1", "eam/work-orders"):
            assert order["siteKey"] in sites
            assert order["assetKey"] in assets

    async def test_hundred_thousand_work_orders(self) -> None:
        """A collection of 100,000 work orders is generated whole, one distinct key each.

        How fast: ``benchmarks/bench_sandbox.py`` (target: under five seconds).
        """
        sandbox = Sandbox(connections=1, seed=1, sizes={"work-orders": 100_000})
        orders = sandbox.records("c1", "eam/work-orders")
        assert len(orders) == 100_000
        assert len({order["key"] for order in orders}) == 100_000


class TestConsistency:
    async def test_material_count_matches_the_materials_list(
        self, api: Api, sandbox: Sandbox
    ) -> None:
        """A work order's materialCount equals the number of items its materials list holds."""
        for order in sandbox.records("c1", "eam/work-orders")[:9]:
            reply = await api.get(f"/api/eam/work-orders/{order['key']}/materials")
            assert reply.body["meta"]["total"] == int(str(order["materialCount"]))

    async def test_connections_have_different_data(self, sandbox: Sandbox) -> None:
        """Each connection has its own keys and records."""
        one = sandbox.records("c1", "eam/work-orders")
        two = sandbox.records("c2", "eam/work-orders")
        assert {r["key"] for r in one}.isdisjoint({r["key"] for r in two})
