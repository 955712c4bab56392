"""Writes: create, update, status, nested materials, soft deletes, provider rules, idempotency."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from makini_async.sandbox import Sandbox
from makini_async.sandbox._spec import Route, load_spec
from tests.sandbox.support import Api

WO = "/api/eam/work-orders"
WRITES = [r for r in load_spec().routes if r.action in {"create", "update"}]
STATUS_ROUTES = [r for r in load_spec().routes if r.action == "status"]


class TestCreateAndUpdate:
    async def test_create_answers_200_with_the_record(self, api: Api, sandbox: Sandbox) -> None:
        """POST answers 200 with the new record, which the list and get then show."""
        before = len(sandbox.records("c1", "eam/work-orders"))
        reply = await api.post(
            WO, json={"title": "Fix pump", "severity": "high", "estimatedTime": 3}
        )
        assert reply.status == 200, reply.text
        record = reply.body["data"]
        assert record["title"] == "Fix pump"
        assert record["createdAt"] == record["updatedAt"]
        assert record["deletedAt"] is None
        assert record["statusKey"]
        assert len(sandbox.records("c1", "eam/work-orders")) == before + 1
        got = await api.get(f"{WO}/{record['key']}")
        assert got.body["data"] == record
        listed = await api.get(WO, params={"filter[title]": "Fix pump"})
        assert [r["key"] for r in listed.body["data"]] == [record["key"]]

    async def test_nested_lists_must_hold_objects(self, api: Api) -> None:
        """Tasks and documents are lists of objects (or one object); anything else is a 422."""
        tasks = [{"title": "Isolate", "checkList": ["valves closed"]}]
        good = await api.post(WO, json={"title": "Fix pump", "tasks": tasks})
        assert good.status == 200, good.text
        assert good.body["data"]["tasks"] == tasks
        for wrong in ("Isolate", [1, 2], [{"title": "ok"}, "not an object"]):
            bad = await api.post(WO, json={"title": "Fix pump", "tasks": wrong})
            assert bad.status == 422, bad.text
            assert bad.body["error"]["details"]["fields"] == {
                "tasks": ["The tasks field must be an object or a list of objects."]
            }

    async def test_update_changes_fields_and_moves_updated_at(
        self, api: Api, sandbox: Sandbox
    ) -> None:
        """PUT changes the given fields and moves updatedAt, so incremental pulls see it."""
        record = sandbox.records("c1", "eam/work-orders")[5]
        key, old_updated = record["key"], record["updatedAt"]
        pull = await api.get(WO, params={"filter[updatedAt:gt]": "2026-01-01T00:00:00Z"})
        assert key not in [r["key"] for r in pull.body["data"]]
        reply = await api.put(f"{WO}/{key}", json={"notes": "checked", "nonsense": 1})
        assert reply.status == 200
        assert reply.body["data"]["notes"] == "checked"
        assert "nonsense" not in reply.body["data"]
        assert reply.body["data"]["updatedAt"] > str(old_updated)
        assert reply.body["data"]["title"] == record["title"]
        pull = await api.get(WO, params={"filter[updatedAt:gt]": "2026-01-01T00:00:00Z"})
        assert key in [r["key"] for r in pull.body["data"]]

    @pytest.mark.parametrize("route", WRITES, ids=[f"{r.method} {r.template}" for r in WRITES])
    async def test_every_write_path(self, api: Api, sandbox: Sandbox, route: Route) -> None:
        """Every documented POST and PUT answers 200 with a record of the collection."""
        template: str = route.template
        path = template
        if "{key}" in template:
            key = sandbox.records("c1", route.resource)[0]["key"]
            path = template.replace("{key}", str(key))
        if route.content_type == "multipart/form-data":
            form = aiohttp.FormData()
            form.add_field(
                "file", b"%PDF-1.4", filename="manual.pdf", content_type="application/pdf"
            )
            form.add_field("name", "Manual")
            reply = await api.request(route.method, path, data=form)
            assert reply.status == 200, reply.text
            assert reply.body["data"]["name"] == "Manual"
            assert reply.body["data"]["contentType"] == "application/pdf"
            return
        reply = await api.request(route.method, path, json={})
        assert reply.status == 200, reply.text
        assert reply.body["data"]["key"]

    async def test_unknown_key_is_404(self, api: Api) -> None:
        """PUT on an unknown key answers 404."""
        reply = await api.put(f"{WO}/nope", json={"title": "x"})
        assert reply.status == 404

    async def test_no_delete_on_data(self, api: Api, sandbox: Sandbox) -> None:
        """DELETE on a data record answers 405 OPERATION_NOT_SUPPORTED with Allow."""
        key = sandbox.records("c1", "eam/work-orders")[0]["key"]
        reply = await api.request("DELETE", f"{WO}/{key}")
        assert reply.status == 405
        assert reply.error_code == "OPERATION_NOT_SUPPORTED"
        assert reply.headers["Allow"] == "GET, PUT"

    async def test_soft_delete_keeps_the_record_listed(self, api: Api, sandbox: Sandbox) -> None:
        """A soft delete sets deletedAt and the record stays listed."""
        key = str(sandbox.records("c1", "eam/assets")[2]["key"])
        sandbox.soft_delete("c1", "eam/assets", key)
        got = await api.get(f"/api/eam/assets/{key}")
        assert got.body["data"]["deletedAt"]
        deleted = await api.get("/api/eam/assets", params={"filter[deletedAt:gt]": "2026-01-01"})
        assert key in [r["key"] for r in deleted.body["data"]]
        via_put = await api.put(
            f"{WO}/{sandbox.records('c1', 'eam/work-orders')[0]['key']}",
            json={"deletedAt": "2026-02-01T00:00:00Z"},
        )
        assert via_put.body["data"]["deletedAt"] == "2026-02-01T00:00:00Z"


class TestStatusAndNested:
    async def test_work_order_status_by_key_or_code(self, api: Api, sandbox: Sandbox) -> None:
        """PUT /{key}/status takes statusKey (a key or a code) and sets both status fields."""
        statuses = sandbox.records("c1", "eam/statuses/work-orders")
        key = sandbox.records("c1", "eam/work-orders")[0]["key"]
        reply = await api.put(f"{WO}/{key}/status", json={"statusKey": statuses[3]["key"]})
        assert reply.body["data"]["statusKey"] == statuses[3]["key"]
        assert reply.body["data"]["status"] == statuses[3]["code"]
        by_code = await api.put(f"{WO}/{key}/status", json={"statusKey": "completed"})
        assert by_code.body["data"]["status"] == "completed"
        bad = await api.put(f"{WO}/{key}/status", json={"statusKey": "exploded"})
        assert bad.status == 422
        assert "statusKey" in bad.body["error"]["details"]["fields"]
        empty = await api.put(f"{WO}/{key}/status", json={})
        assert empty.status == 422

    @pytest.mark.parametrize("route", STATUS_ROUTES, ids=[r.template for r in STATUS_ROUTES])
    async def test_every_status_path(self, api: Api, sandbox: Sandbox, route: Route) -> None:
        """Every status path accepts the collection's last status code and records its key."""
        name = route.resource.partition("/")[2]
        statuses = sandbox.records("c1", f"{route.domain}/statuses/{name}")
        key = sandbox.records("c1", route.resource)[0]["key"]
        field = "statusKey" if "statusKey" in route.body else "status"
        path = route.template.replace("{key}", str(key))
        reply = await api.put(path, json={field: statuses[-1]["code"]})
        assert reply.status == 200, reply.text
        assert reply.body["data"]["statusKey"] == statuses[-1]["key"]

    async def test_purchase_order_status_uses_status(self, api: Api, sandbox: Sandbox) -> None:
        """Purchase orders change status with {"status": ...}."""
        key = sandbox.records("c1", "eam/purchase-orders")[0]["key"]
        reply = await api.put(f"/api/eam/purchase-orders/{key}/status", json={"status": "approved"})
        assert reply.status == 200
        approved = next(
            s
            for s in sandbox.records("c1", "eam/statuses/purchase-orders")
            if s["code"] == "approved"
        )
        assert reply.body["data"]["statusKey"] == approved["key"]

    async def test_work_order_materials(self, api: Api, sandbox: Sandbox) -> None:
        """Adding and changing a work order's material updates its list and materialCount."""
        order = sandbox.records("c1", "eam/work-orders")[0]
        key = order["key"]
        material = sandbox.records("c1", "eam/materials")[0]["key"]
        missing = await api.post(f"{WO}/{key}/materials", json={"materialKey": material})
        assert missing.status == 422
        assert set(missing.body["error"]["details"]["fields"]) == {
            "requiredQuantity",
            "usedQuantity",
        }
        added = await api.post(
            f"{WO}/{key}/materials",
            json={"materialKey": material, "requiredQuantity": 4, "usedQuantity": 1},
        )
        assert added.status == 200
        assert added.body["data"]["materialCount"] == "1"
        listed = await api.get(f"{WO}/{key}/materials")
        assert [m["materialKey"] for m in listed.body["data"]] == [material]
        changed = await api.put(
            f"{WO}/{key}/materials/{material}", json={"requiredQuantity": 4, "usedQuantity": 3}
        )
        assert changed.status == 200
        again = await api.get(f"{WO}/{key}/materials")
        assert again.body["data"][0]["quantity"] == "3"  # as MaterialItem records carry it
        absent = await api.put(
            f"{WO}/{key}/materials/zzz", json={"requiredQuantity": 1, "usedQuantity": 1}
        )
        assert absent.status == 404

    async def test_material_inventory(self, api: Api, sandbox: Sandbox) -> None:
        """PUT materials/{key}/inventory replaces the part's inventory fields."""
        key = sandbox.records("c1", "eam/materials")[0]["key"]
        reply = await api.put(
            f"/api/eam/materials/{key}/inventory", json={"quantity": 12, "unitCost": 3}
        )
        assert reply.body["data"]["inventory"]["quantity"] == 12
        bad = await api.put(f"/api/eam/materials/{key}/inventory", json={"quantity": "many"})
        assert bad.status == 422

    async def test_shipment_delivered(self, api: Api, sandbox: Sandbox) -> None:
        """POST shipment-orders/{key}/delivered answers the updated order."""
        key = sandbox.records("c1", "wms/shipment-orders")[0]["key"]
        reply = await api.post(f"/api/wms/shipment-orders/{key}/delivered")
        assert reply.status == 200
        assert reply.body["data"]["key"] == key


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"estimatedTime": "soon"}, "estimatedTime"),
            ({"estimatedTime": True}, "estimatedTime"),
            ({"title": {"a": 1}}, "title"),
        ],
    )
    async def test_openapi_rules(self, api: Api, body: dict[str, object], field: str) -> None:
        """Bodies breaking the OpenAPI's field rules answer 422 with details.fields."""
        reply = await api.post(WO, json=body)
        assert reply.status == 422
        assert reply.error_code == "VALIDATION_ERROR"
        assert reply.body["error"]["type"] == "invalid_request_error"
        assert list(reply.body["error"]["details"]["fields"]) == [field]

    @pytest.mark.parametrize(
        ("provider", "required"),
        [
            ("upkeep", {"assetKey", "title", "severity", "scheduledAt"}),
            ("maintain-x", {"siteKey", "title"}),
            ("emaint", {"assetKey", "title", "scheduledAt"}),
            (
                "service-channel",
                {
                    "organizationKey",
                    "siteKey",
                    "accountKey",
                    "title",
                    "description",
                    "severity",
                    "scheduledAt",
                },
            ),
        ],
    )
    async def test_provider_required_fields(
        self, api: Api, sandbox: Sandbox, provider: str, required: set[str]
    ) -> None:
        """Each provider's required work-order fields are enforced on POST, with messages."""
        sandbox.configure("c1", provider=provider)
        reply = await api.post(WO, json={})
        assert reply.status == 422
        assert set(reply.body["error"]["details"]["fields"]) == required
        complete = dict.fromkeys(required, "x")
        complete["scheduledAt"] = "2026-03-01T00:00:00Z"
        ok = await api.post(WO, json=complete)
        assert ok.status == 200, ok.text
        key = ok.body["data"]["key"]
        emptied = await api.put(f"{WO}/{key}", json={"title": ""})
        assert emptied.status == 422
        partial = await api.put(f"{WO}/{key}", json={"notes": "fine"})
        assert partial.status == 200

    async def test_provider_cannot_write(self, api: Api, sandbox: Sandbox) -> None:
        """A write the provider cannot do answers 405 OPERATION_NOT_SUPPORTED."""
        sandbox.configure("c1", provider="service-channel")
        reply = await api.post("/api/eam/purchase-orders", json={"title": "x"})
        assert reply.status == 405
        assert reply.error_code == "OPERATION_NOT_SUPPORTED"
        sandbox.configure("c1", provider="sandbox", unsupported=["customers"])
        blocked = await api.post("/api/eam/customers", json={"name": "x"})
        assert blocked.status == 405

    async def test_read_only_mode(self, api: Api, sandbox: Sandbox) -> None:
        """In read-only mode writes answer 200 with the would-be record and change nothing."""
        sandbox.configure("c1", read_only=True)
        before = [dict(r) for r in sandbox.records("c1", "eam/work-orders")]
        created = await api.post(WO, json={"title": "ghost"})
        assert created.status == 200
        assert created.body["data"]["title"] == "ghost"
        key = before[0]["key"]
        updated = await api.put(f"{WO}/{key}", json={"title": "changed"})
        assert updated.body["data"]["title"] == "changed"
        status = await api.put(f"{WO}/{key}/status", json={"statusKey": "completed"})
        assert status.status == 200
        assert sandbox.records("c1", "eam/work-orders") == before
        material = await api.post(
            f"{WO}/{key}/materials",
            json={"materialKey": "m", "requiredQuantity": 1, "usedQuantity": 1},
        )
        assert material.status == 200
        assert material.body["data"]["materialCount"] == str(
            int(str(before[0]["materialCount"])) + 1
        )
        assert sandbox.records("c1", "eam/work-orders") == before


class TestIdempotency:
    async def test_same_key_same_body_replays(self, api: Api, sandbox: Sandbox) -> None:
        """A repeated POST with the same key and body replays the stored answer once created."""
        headers = {"Idempotency-Key": "abc"}
        first = await api.post(WO, json={"title": "once"}, headers=headers)
        second = await api.post(WO, json={"title": "once"}, headers=headers)
        assert first.body == second.body
        assert second.headers["Idempotent-Replayed"] == "true"
        titles = [r["title"] for r in sandbox.records("c1", "eam/work-orders")]
        assert titles.count("once") == 1

    async def test_same_key_other_body_conflicts(self, api: Api) -> None:
        """The same key with another body answers 409 IDEMPOTENCY_CONFLICT."""
        headers = {"Idempotency-Key": "abc"}
        await api.post(WO, json={"title": "once"}, headers=headers)
        reply = await api.post(WO, json={"title": "twice"}, headers=headers)
        assert reply.status == 409
        assert reply.error_code == "IDEMPOTENCY_CONFLICT"
        assert reply.body["error"]["type"] == "idempotency_error"

    async def test_keys_are_per_connection_and_expire(self, api: Api, sandbox: Sandbox) -> None:
        """Keys are scoped to a connection and forgotten after 24 hours."""
        headers = {"Idempotency-Key": "abc"}
        await api.post(WO, json={"title": "once"}, headers=headers)
        other = await api.as_connection("c2").post(WO, json={"title": "twice"}, headers=headers)
        assert other.status == 200
        sandbox.advance(24 * 3600 + 1)
        later = await api.post(WO, json={"title": "twice"}, headers=headers)
        assert later.status == 200
        assert "Idempotent-Replayed" not in later.headers

    async def test_validation_errors_replay_too(self, api: Api) -> None:
        """A stored 422 replays for the same key and body."""
        headers = {"Idempotency-Key": "bad"}
        first = await api.post(WO, json={"estimatedTime": "x"}, headers=headers)
        second = await api.post(WO, json={"estimatedTime": "x"}, headers=headers)
        assert first.status == second.status == 422
        assert second.headers["Idempotent-Replayed"] == "true"

    async def test_concurrent_retries_create_once(self, api: Api, sandbox: Sandbox) -> None:
        """Concurrent POSTs with one key create a single record."""
        headers = {"Idempotency-Key": "race"}
        replies = await asyncio.gather(
            *(api.post(WO, json={"title": "raced"}, headers=headers) for _ in range(5))
        )
        assert {r.body["data"]["key"] for r in replies} == {replies[0].body["data"]["key"]}
        titles = [r["title"] for r in sandbox.records("c1", "eam/work-orders")]
        assert titles.count("raced") == 1
