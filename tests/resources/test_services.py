"""Services over real HTTP: filters, sorting, incremental pulls, every write verb, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from makini_async import (
    Connection,
    InvalidRequestError,
    NotFoundError,
    OperationNotSupportedError,
    ResponseDecodeError,
    ValidationError,
)
from makini_async.models import UNSET, AssetInput, Level, WorkOrderInput
from makini_async.resources import Filter, FilterOp
from makini_async.sandbox import Sandbox
from makini_async.typing import JSON


def _queries(sandbox: Sandbox, path: str) -> list[list[tuple[str, str]]]:
    return [r.query for r in sandbox.requests("c1", path=path, method="GET")]


class TestFilters:
    @pytest.mark.parametrize(
        ("op", "value", "check"),
        [
            ("eq", "open", lambda s: s == "open"),
            ("contains", "PROG", lambda s: "prog" in s.lower()),
            ("startsWith", "in_", lambda s: s.lower().startswith("in_")),
            ("endsWith", "ed", lambda s: s.lower().endswith("ed")),
            ("gt", "in_progress", lambda s: s > "in_progress"),
            ("gteq", "in_progress", lambda s: s >= "in_progress"),
            ("lt", "in_progress", lambda s: s < "in_progress"),
            ("lteq", "in_progress", lambda s: s <= "in_progress"),
        ],
    )
    async def test_every_operator(
        self, conn: Connection, sandbox: Sandbox, op: str, value: str, check: object
    ) -> None:
        """Every operator reaches the server as filter[field:op] and selects the right records."""
        listing = conn.eam.work_orders.list(where=[Filter("status", op, value)])
        records = await listing.to_list()
        assert records
        assert all(check(r.status) for r in records)  # type: ignore[operator]
        expected = [
            r["key"]
            for r in sandbox.records("c1", "eam/work-orders")
            if check(r["status"])  # type: ignore[operator]
        ]
        assert [r.key for r in records] == expected
        name = "filter[status]" if op == "eq" else f"filter[status:{op}]"
        assert (name, value) in _queries(sandbox, "/api/eam/work-orders")[-1]

    async def test_timestamps_and_attributes(self, conn: Connection, sandbox: Sandbox) -> None:
        """Attribute names become wire names and aware datetimes ISO-8601 UTC."""
        since = datetime(2025, 10, 10, 2, tzinfo=UTC) + timedelta(hours=0)
        records = await conn.eam.work_orders.list(
            where=[Filter("updated_at", FilterOp.GTEQ, since)]
        ).to_list()
        assert records
        assert all(r.updated_at is not None and r.updated_at >= since for r in records)
        assert ("filter[updatedAt:gteq]", "2025-10-10T02:00:00Z") in _queries(
            sandbox, "/api/eam/work-orders"
        )[-1]

    async def test_match_any_and_equalities(self, conn: Connection, sandbox: Sandbox) -> None:
        """filterMatch=any joins conditions with OR; a mapping gives equalities."""
        both = await conn.eam.work_orders.list(
            where={"status": "open", "severity": Level.CRITICAL}, match="any"
        ).to_list()
        assert {r.status for r in both if r.severity != Level.CRITICAL} == {"open"}
        assert ("filterMatch", "any") in _queries(sandbox, "/api/eam/work-orders")[-1]
        only = await conn.eam.work_orders.list(
            where={"status": "open", "severity": "low"}
        ).to_list()
        assert all(r.status == "open" and r.severity is Level.LOW for r in only)

    async def test_custom_field_filter(self, conn: Connection, sandbox: Sandbox) -> None:
        """Names that are not attributes (custom fields) go to the server unchanged."""
        sandbox.configure("c1", custom_fields={"work-orders": {"x_costCenter": "CC-7"}})
        records = await conn.eam.work_orders.list(per_page=500).to_list()
        assert len(records) == 120
        assert records[0].extra == {"x_costCenter": "CC-7"}
        with pytest.raises(InvalidRequestError, match=r"filter\[x_costCenter\]"):
            await conn.eam.work_orders.list(where={"x_costCenter": "CC-7"}).to_list()

    async def test_sort(self, conn: Connection) -> None:
        """sort takes attribute names; a leading minus sorts descending."""
        newest = await conn.eam.work_orders.list(sort="-created_at", per_page=200).to_list()
        stamps = [r.created_at for r in newest]
        assert stamps == sorted(stamps, reverse=True)  # type: ignore[type-var]
        by_two = await conn.eam.work_orders.list(sort=["severity", "-code"]).to_list()
        pairs = [(r.severity, r.code) for r in by_two]
        assert [p[0] for p in pairs] == sorted(p[0] for p in pairs)  # type: ignore[type-var]

    async def test_modified_after(self, conn: Connection, sandbox: Sandbox) -> None:
        """modified_after asks for records changed after an aware datetime."""
        since = datetime(2025, 10, 15, tzinfo=UTC)
        records = await conn.eam.work_orders.list(modified_after=since).to_list()
        assert all(r.updated_at is not None and r.updated_at > since for r in records)
        assert ("modified_after", "2025-10-15T00:00:00Z") in _queries(
            sandbox, "/api/eam/work-orders"
        )[-1]

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"where": ["title"]}, TypeError),
            ({"where": {"due_at": datetime(2025, 1, 1)}}, ValueError),  # noqa: DTZ001 - the point
            ({"where": {"title": object()}}, TypeError),
            ({"match": "some"}, ValueError),
            ({"sort": "-"}, ValueError),
        ],
    )
    async def test_bad_filters(
        self, conn: Connection, kwargs: dict[str, object], error: type[Exception]
    ) -> None:
        """Malformed filters fail at once with a sentence, before any I/O."""
        with pytest.raises(error):
            conn.eam.work_orders.list(**kwargs)  # type: ignore[arg-type]

    def test_unknown_operator(self) -> None:
        """An unknown operator is refused when the filter is built."""
        with pytest.raises(ValueError, match="Unknown filter operator 'like'"):
            Filter("title", "like", "x")


class TestReads:
    async def test_get_quotes_keys(self, conn: Connection, sandbox: Sandbox) -> None:
        """Keys are quoted as one path segment; an unknown key is NotFoundError."""
        with pytest.raises(NotFoundError, match="GET /api/eam/work-orders/a%2Fb%3Fc"):
            await conn.eam.work_orders.get("a/b?c")
        assert sandbox.requests("c1")[-1].query == []
        with pytest.raises(ValueError, match="empty"):
            await conn.eam.work_orders.get("")

    async def test_nested_lists(self, conn: Connection, sandbox: Sandbox) -> None:
        """Nested lists (materials, children, all materials, custom fields) decode."""
        items = sandbox.records("c1", "eam/work-orders.materials")
        key = str(items[0]["workOrderKey"])
        mine = await conn.eam.work_orders.materials(key).to_list()
        assert [m.key for m in mine] == [i["key"] for i in items if i["workOrderKey"] == key]
        assert mine[0].work_order_key == key
        assert len(await conn.eam.work_orders.all_materials().to_list()) == len(items)
        assert [f.name for f in await conn.eam.work_orders.custom_fields().to_list()]
        part = sandbox.records("c1", "eam/materials.children")[0]
        children = await conn.eam.materials.children(str(part["assemblyKey"])).to_list()
        assert children
        asset_items = sandbox.records("c1", "eam/assets.materials")
        assets = await conn.eam.assets.materials(str(asset_items[0]["assetKey"])).to_list()
        assert assets

    async def test_decode_error_names_path(self, conn: Connection, sandbox: Sandbox) -> None:
        """With strict=True, a value that does not fit raises ResponseDecodeError naming it."""
        sandbox.records("c1", "eam/work-orders")[3]["dueAt"] = 12345
        sandbox.connection("c1").data.touch_all()
        with pytest.raises(ResponseDecodeError, match=r"\$\.data\[3\]\.dueAt") as info:
            await conn.eam.work_orders.list(per_page=10, strict=True).to_list()
        assert info.value.request_id is not None
        key = str(sandbox.records("c1", "eam/work-orders")[3]["key"])
        with pytest.raises(ResponseDecodeError, match=r"\$\.data\.dueAt"):
            await conn.eam.work_orders.get(key, strict=True)


class TestWrites:
    async def test_create_update_status(self, conn: Connection, sandbox: Sandbox) -> None:
        """Create, update and set_status round-trip typed models, sending only set fields."""
        created = await conn.eam.work_orders.create(
            WorkOrderInput(
                title="Replace seal",
                severity=Level.HIGH,
                due_at=datetime(2026, 1, 1, tzinfo=UTC),
                estimated_time=Decimal(90),
            ),
            idempotency_key="create-1",
        )
        assert created.title == "Replace seal"
        assert created.due_at == datetime(2026, 1, 1, tzinfo=UTC)
        assert created.key is not None
        sent = sandbox.requests("c1", method="POST")[-1]
        assert sent.idempotency_key == "create-1"
        updated = await conn.eam.work_orders.update(created.key, WorkOrderInput(notes="done"))
        assert (updated.notes, updated.title) == ("done", "Replace seal")
        statuses = await conn.eam.statuses.list("work-orders").to_list()
        closed = next(s for s in statuses if s.code == "completed")
        assert closed.key is not None
        moved = await conn.eam.work_orders.set_status(created.key, closed.key)
        assert (moved.status_key, moved.status) == (closed.key, "completed")
        po = sandbox.records("c1", "eam/purchase-orders")[0]
        approved = await conn.eam.purchase_orders.set_status(str(po["key"]), "approved")
        assert approved.status_key is not None
        assert (await conn.eam.work_orders.get(created.key)).notes == "done"

    async def test_mapping_body(self, conn: Connection) -> None:
        """A mapping of wire names is sent as it is."""
        asset = await conn.eam.assets.create({"name": "Pump 7", "isActive": True})
        assert (asset.name, asset.is_active) == ("Pump 7", True)
        again = await conn.eam.assets.update(str(asset.key), AssetInput(is_active=False))
        assert again.is_active is False
        assert AssetInput().name is UNSET

    async def test_validation_error_fields(self, conn: Connection, sandbox: Sandbox) -> None:
        """A 422 maps to ValidationError with the field messages."""
        sandbox.configure("c1", provider="upkeep")
        with pytest.raises(ValidationError) as info:
            await conn.eam.work_orders.create(WorkOrderInput(title="No asset"))
        assert set(info.value.fields) == {"assetKey", "severity", "scheduledAt"}
        with pytest.raises(ValidationError) as bad_status:
            await conn.eam.work_orders.set_status(
                str(sandbox.records("c1", "eam/work-orders")[0]["key"]), "nope"
            )
        assert "statusKey" in bad_status.value.fields
        with pytest.raises(OperationNotSupportedError):
            await conn.eam.stocks.create({"quantity": 1})

    async def test_nested_writes(self, conn: Connection, sandbox: Sandbox) -> None:
        """Work-order materials, material inventory and deliveries go to their own paths."""
        wo = sandbox.records("c1", "eam/work-orders")[0]
        part = sandbox.records("c1", "eam/materials")[0]
        body: dict[str, JSON] = {
            "materialKey": str(part["key"]),
            "requiredQuantity": 2,
            "usedQuantity": 1,
        }
        parent = await conn.eam.work_orders.add_material(str(wo["key"]), body)
        assert parent.key == wo["key"]
        assert parent.material_count is not None
        changed = await conn.eam.work_orders.update_material(
            str(wo["key"]), str(part["key"]), {**body, "usedQuantity": 2}
        )
        assert changed.key == wo["key"]
        material = await conn.eam.materials.update_inventory(
            str(part["key"]), {"quantity": 5, "unitCost": 3, "code": "C", "name": "N"}
        )
        assert material.key == part["key"]
        stocked = await conn.eam.materials.get(str(part["key"]))
        assert stocked.inventory is not None
        assert stocked.inventory.quantity == Decimal(5)
        shipment = sandbox.records("c1", "wms/shipment-orders")[0]
        delivered = await conn.wms.shipment_orders.mark_delivered(str(shipment["key"]))
        assert delivered.key == shipment["key"]

    async def test_write_body_type(self, conn: Connection) -> None:
        """A body that is neither an input model nor a mapping is refused."""
        with pytest.raises(TypeError, match="write body"):
            await conn.eam.work_orders.create(["title"])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="status"):
            await conn.eam.work_orders.set_status("k", "")


class TestErpWms:
    async def test_erp_writes(self, conn: Connection) -> None:
        """ERP invoices, sales orders and fulfilments take the same verbs."""
        invoice = await conn.erp.invoices.create({"invoiceNumber": "INV-1"})
        assert invoice.invoice_number == "INV-1"
        assert invoice.key is not None
        paid = await conn.erp.invoices.set_status(invoice.key, "paid")
        assert paid.status_key is not None
        order = await conn.erp.sales_orders.create({"orderNumber": "SO-1", "lines": []})
        assert order.order_number == "SO-1"
        product = await conn.wms.products.create({"name": "Bolt", "price": "0.25"})
        assert product.price == Decimal("0.25")
