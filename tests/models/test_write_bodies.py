"""Typed nested write bodies: the generated classes, their encoding, what the sandbox receives."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import attrs
import pytest

from makini_async import Connection, ConnectionRegistry, RetryPolicy
from makini_async import models as public_models
from makini_async._converter import converter
from makini_async.models import (
    UNSET,
    Level,
    Unset,
    WorkOrderDocumentInput,
    WorkOrderInput,
    WorkOrderTaskInput,
    Writable,
)
from makini_async.models import _generate as generate
from makini_async.models._wire import encode
from makini_async.sandbox import Sandbox
from makini_async.typing import JSON

#: Requests as they left the client: method, path and the decoded JSON body.
Sent = list[tuple[str, str, JSON]]

NESTED = (WorkOrderTaskInput, WorkOrderDocumentInput)


@attrs.frozen(slots=True, kw_only=True)
class _Reading(Writable):
    taken_at: datetime | Unset | None = UNSET
    value: Decimal | int | Unset | None = UNSET


@attrs.frozen(slots=True, kw_only=True)
class _Round(Writable):
    readings: Sequence[_Reading] | JSON | Unset = UNSET
    last_reading: _Reading | JSON | Unset = UNSET


class TestNestedClasses:
    @pytest.mark.parametrize("cls", NESTED)
    def test_frozen_slotted_keyword_only(self, cls: type[Writable]) -> None:
        """Every nested input is a frozen, slotted Writable of keyword-only fields."""
        assert issubclass(cls, Writable)
        assert "__slots__" in cls.__dict__
        fields = [f for f in attrs.fields(cls) if f.name != "extra"]
        assert fields
        assert all(f.kw_only for f in fields)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            cls().extra = {}  # type: ignore[misc]

    @pytest.mark.parametrize("cls", NESTED)
    def test_every_field_unset(self, cls: type[Writable]) -> None:
        """Every field of a nested input defaults to UNSET, so an empty one encodes to {}."""
        assert all(f.default is UNSET for f in attrs.fields(cls) if f.name != "extra")
        assert encode(cls()) == {}

    def test_fields_follow_the_openapi(self) -> None:
        """The nested inputs have exactly the fields the work-order bodies describe inline."""
        assert [f.name for f in attrs.fields(WorkOrderTaskInput)] == [
            "extra",
            "check_list",
            "code",
            "description",
            "priority",
            "title",
        ]
        assert [f.name for f in attrs.fields(WorkOrderDocumentInput)] == [
            "extra",
            "content_type",
            "description",
            "name",
            "notes",
            "type",
            "url",
        ]

    def test_parent_annotations(self) -> None:
        """The parent takes a sequence of nested inputs, or raw JSON as before."""
        # The generated module keeps its annotations as strings.
        types = {f.name: str(f.type) for f in attrs.fields(WorkOrderInput)}
        assert types["tasks"] == "Sequence[WorkOrderTaskInput] | JSON | Unset"
        assert types["documents"] == "Sequence[WorkOrderDocumentInput] | JSON | Unset"

    def test_exported_and_registered(self) -> None:
        """The nested inputs are public models and the shared converter unstructures them."""
        for cls in NESTED:
            assert getattr(public_models, cls.__name__) is cls
            assert cls.__name__ in public_models.__all__
        task = WorkOrderTaskInput(title="Drain", check_list=["valve shut"])
        assert converter.unstructure(task) == {"title": "Drain", "checkList": ["valve shut"]}


class TestEncoding:
    def test_nested_inputs_under_wire_names(self) -> None:
        """Nested inputs in a list encode to objects of their set fields under camelCase names."""
        body = WorkOrderInput(
            title="Replace seal",
            tasks=[
                WorkOrderTaskInput(title="Drain", check_list=("valve shut",), priority=Level.HIGH),
                WorkOrderTaskInput(code="T-2", priority="urgent-ish"),
            ],
            documents=[WorkOrderDocumentInput(name="Kit", content_type="application/pdf")],
        )
        assert encode(body) == {
            "title": "Replace seal",
            "tasks": [
                {"title": "Drain", "checkList": ["valve shut"], "priority": "high"},
                {"code": "T-2", "priority": "urgent-ish"},
            ],
            "documents": [{"name": "Kit", "contentType": "application/pdf"}],
        }

    def test_unset_versus_none(self) -> None:
        """Inside a nested input UNSET fields are left out and None ones are sent as null."""
        body = WorkOrderInput(
            tasks=[WorkOrderTaskInput(title="Drain", description=None, check_list=None)]
        )
        assert encode(body) == {
            "tasks": [{"title": "Drain", "description": None, "checkList": None}]
        }
        assert encode(WorkOrderInput(tasks=[])) == {"tasks": []}
        assert encode(WorkOrderInput(tasks=UNSET)) == {}
        assert encode(WorkOrderInput(tasks=None)) == {"tasks": None}

    def test_extra_is_merged_like_the_parent(self) -> None:
        """A nested input's extra is merged into its own object, last, as on the parent."""
        task = WorkOrderTaskInput(title="Drain", extra={"x_zone": "B", "title": "Raw title"})
        body = WorkOrderInput(title="Pump", tasks=[task], extra={"x_costCenter": "CC-7"})
        assert encode(body) == {
            "title": "Pump",
            "tasks": [{"title": "Raw title", "x_zone": "B"}],
            "x_costCenter": "CC-7",
        }

    def test_datetimes_and_decimals_inside(self) -> None:
        """Datetimes and Decimals in nested inputs encode as they do at the top level."""
        plus_two = timezone(timedelta(hours=2))
        body = _Round(
            readings=[
                _Reading(taken_at=datetime(2025, 3, 1, 12, tzinfo=plus_two), value=Decimal("1.50")),
                _Reading(taken_at=None, value=Decimal(90)),
            ],
            last_reading=_Reading(taken_at=datetime(2025, 3, 2, tzinfo=UTC), value=7),
        )
        assert encode(body) == {
            "readings": [
                {"takenAt": "2025-03-01T10:00:00Z", "value": "1.50"},
                {"takenAt": None, "value": 90},
            ],
            "lastReading": {"takenAt": "2025-03-02T00:00:00Z", "value": 7},
        }

    def test_raw_json_still_accepted(self) -> None:
        """Raw JSON in a nested field is sent as it is, a list or a single object."""
        raw: list[JSON] = [{"title": "Drain", "checkList": ["valve shut"]}]
        assert encode(WorkOrderInput(tasks=raw)) == {"tasks": raw}
        assert encode(WorkOrderInput(documents={"name": "Kit"})) == {"documents": {"name": "Kit"}}
        assert encode(_Round(last_reading={"takenAt": "2025-03-02"})) == {
            "lastReading": {"takenAt": "2025-03-02"}
        }


@pytest.fixture(name="sent")
def _sent() -> Sent:
    return []


@pytest.fixture(name="conn")
async def _conn(makini_sandbox: Sandbox, sent: Sent) -> AsyncIterator[Connection]:
    """Connection ``c1`` of the sandbox, recording every request body as it leaves the client."""

    async def start(
        _session: aiohttp.ClientSession,
        context: SimpleNamespace,
        _params: aiohttp.TraceRequestStartParams,
    ) -> None:
        context.chunks = []

    async def chunk(
        _session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestChunkSentParams,
    ) -> None:
        context.chunks.append(params.chunk)

    async def end(
        _session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        if context.chunks:
            sent.append((params.method, params.url.path, json.loads(b"".join(context.chunks))))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(start)
    trace.on_request_chunk_sent.append(chunk)
    trace.on_request_end.append(end)
    async with ConnectionRegistry(
        makini_sandbox.url, retry=RetryPolicy(base=0.0, cap=0.0), trace_configs=[trace]
    ) as registry:
        yield registry.add("c1", makini_sandbox.connections["c1"])


def _stored(sandbox: Sandbox, key: str) -> dict[str, object]:
    return next(r for r in sandbox.records("c1", "eam/work-orders") if r["key"] == key)


class TestOverHTTP:
    async def test_create_sends_nested_inputs(
        self, conn: Connection, makini_sandbox: Sandbox, sent: Sent
    ) -> None:
        """A create sends nested inputs as camelCase objects of their set fields only."""
        created = await conn.eam.work_orders.create(
            WorkOrderInput(
                title="Replace seal",
                due_at=datetime(2026, 1, 1, tzinfo=UTC),
                tasks=[
                    WorkOrderTaskInput(
                        title="Drain", check_list=["valve shut", "gauge at 0"], priority=Level.HIGH
                    ),
                    WorkOrderTaskInput(code="T-2", title="Swap the seal", description=None),
                ],
                documents=[
                    WorkOrderDocumentInput(
                        name="Seal kit", url="https://example.com/kit.pdf", content_type="pdf"
                    )
                ],
            )
        )
        tasks: list[JSON] = [
            {"title": "Drain", "checkList": ["valve shut", "gauge at 0"], "priority": "high"},
            {"code": "T-2", "title": "Swap the seal", "description": None},
        ]
        documents: list[JSON] = [
            {"name": "Seal kit", "url": "https://example.com/kit.pdf", "contentType": "pdf"}
        ]
        assert sent == [
            (
                "POST",
                "/api/eam/work-orders",
                {
                    "title": "Replace seal",
                    "dueAt": "2026-01-01T00:00:00Z",
                    "tasks": tasks,
                    "documents": documents,
                },
            )
        ]
        logged = makini_sandbox.requests("c1", path="/api/eam/work-orders", method="POST")
        assert [r.status for r in logged] == [200]
        assert created.key is not None
        stored = _stored(makini_sandbox, created.key)
        assert (stored["tasks"], stored["documents"]) == (tasks, documents)
        assert [(t.title, t.check_list, t.priority) for t in created.tasks] == [
            ("Drain", ("valve shut", "gauge at 0"), Level.HIGH),
            ("Swap the seal", (), None),
        ]
        assert created.documents[0].content_type == "pdf"

    async def test_update_replaces_and_raw_json(
        self, conn: Connection, makini_sandbox: Sandbox, sent: Sent
    ) -> None:
        """An update sends raw JSON and empty lists as they are, and leaves unset fields alone."""
        key = str(makini_sandbox.records("c1", "eam/work-orders")[0]["key"])
        before = _stored(makini_sandbox, key)
        title = before["title"]
        raw: list[JSON] = [{"title": "Raw task", "checkList": ["x"], "x_zone": "B"}]
        updated = await conn.eam.work_orders.update(key, WorkOrderInput(tasks=raw, documents=[]))
        assert sent == [("PUT", f"/api/eam/work-orders/{key}", {"tasks": raw, "documents": []})]
        stored = _stored(makini_sandbox, key)
        assert (stored["tasks"], stored["documents"], stored["title"]) == (raw, [], title)
        assert [(t.title, t.check_list) for t in updated.tasks] == [("Raw task", ("x",))]
        assert updated.documents == ()


def _write_openapi(folder: Path, shapes: dict[str, JSON], read: dict[str, JSON]) -> None:
    """Write a minimal EAM file with one ``orders`` collection (and empty ERP and WMS files)."""

    def body(properties: dict[str, JSON]) -> JSON:
        return {"content": {"application/json": {"schema": {"properties": properties}}}}

    def answer(*, many: bool) -> JSON:
        ref: JSON = {"$ref": "#/components/schemas/Order"}
        data: JSON = {"type": "array", "items": ref} if many else ref
        schema: JSON = {"properties": {"data": data}}
        return {"200": {"content": {"application/json": {"schema": schema}}}}

    put_task: JSON = {"type": "object", "properties": {"code": {"type": "string"}}}
    eam: JSON = {
        "components": {"schemas": {"Order": {"properties": {"key": {"type": "string"}, **read}}}},
        "paths": {
            "/api/eam/orders": {
                "get": {"responses": answer(many=True)},
                "post": {"requestBody": body({"title": {"type": "string"}, **shapes})},
            },
            "/api/eam/orders/{key}": {
                "get": {"responses": answer(many=False)},
                "put": {"requestBody": body({"tasks": put_task})},
            },
        },
    }
    empty: JSON = {"components": {"schemas": {}}, "paths": {}}
    for domain, doc in (("eam", eam), ("erp", empty), ("wms", empty)):
        (folder / f"oas3_{domain}.json").write_text(json.dumps(doc), encoding="utf-8")


def _generated(folder: Path) -> str:
    source = generate._Source(folder)
    services, _ = generate._services(source)
    return generate._models(source, {"Order"}, *generate._writes(services))


class TestGenerator:
    @pytest.mark.parametrize(
        ("field", "name"),
        [
            ("tasks", "WorkOrderTaskInput"),
            ("lineItems", "WorkOrderLineItemInput"),
            ("lineItem", "WorkOrderLineItemInput"),
            ("billingAddress", "WorkOrderBillingAddressInput"),
            ("addresses", "WorkOrderAddressInput"),
            ("categories", "WorkOrderCategoryInput"),
        ],
    )
    def test_class_names(self, field: str, name: str) -> None:
        """A nested input is named after the parent input and the field in the singular."""
        assert generate.nested_input_name("WorkOrder", field) == name

    def test_one_or_many(self, tmp_path: Path) -> None:
        """The record's schema, else the body's declared type, decides between one and many."""
        item: JSON = {"type": "object", "properties": {"title": {"type": "string"}}}
        _write_openapi(
            tmp_path,
            shapes={
                # Declared an object, but records hold a list: a sequence.
                "tasks": {"type": "object", "properties": {"dueAt": {}, "checkList": {}}},
                # Declared an object, records hold one: a single object.
                "shippingAddress": {"type": "object", "properties": {"zip": {}}},
                # Not on the record, declared an array: a sequence.
                "lines": {"type": "array", "items": {"properties": {"quantity": {}}}},
                # No inline description: free-form JSON, as before.
                "lineItems": {"type": "array"},
            },
            read={
                "tasks": {"type": "array", "items": item},
                "shippingAddress": {"type": "object", "properties": {}},
            },
        )
        text = _generated(tmp_path)
        assert "    tasks: Sequence[OrderTaskInput] | JSON | Unset = UNSET\n" in text
        assert "    shipping_address: OrderShippingAddressInput | JSON | Unset = UNSET\n" in text
        assert "    lines: Sequence[OrderLineInput] | JSON | Unset = UNSET\n" in text
        assert "    line_items: JSON | Unset = UNSET\n" in text
        assert "OrderLineItemInput" not in text
        exported = generate._exported(text)
        for name in ("OrderLineInput", "OrderShippingAddressInput", "OrderTaskInput"):
            assert name in exported

    def test_generated_classes_work(self, tmp_path: Path) -> None:
        """The generated nested classes type their fields by the write rules and encode."""
        _write_openapi(
            tmp_path,
            shapes={"tasks": {"type": "object", "properties": {"dueAt": {}, "checkList": {}}}},
            read={},
        )
        text = _generated(tmp_path)
        assert "    due_at: datetime | Unset | None = UNSET\n" in text
        assert "    check_list: Sequence[str] | Unset | None = UNSET\n" in text
        assert "    code: str | Unset | None = UNSET\n" in text  # declared by the PUT only
        namespace: dict[str, object] = {"__name__": "generated_orders"}
        exec(  # noqa: S102 - the generator's own output
            text.replace("from ._base import", "from makini_async.models._base import"), namespace
        )
        order, task = namespace["OrderInput"], namespace["OrderTaskInput"]
        assert isinstance(order, type)
        assert isinstance(task, type)
        body = order(tasks=[task(due_at=datetime(2025, 1, 1, tzinfo=UTC), check_list=["a"])])
        assert encode(body) == {"tasks": [{"dueAt": "2025-01-01T00:00:00Z", "checkList": ["a"]}]}

    def test_name_clash_stops(self, tmp_path: Path) -> None:
        """A nested class name that is already taken stops the generator."""
        _write_openapi(
            tmp_path,
            shapes={"tasks": {"type": "object", "properties": {"title": {}}}},
            read={},
        )
        source = generate._Source(tmp_path)
        source.fields["OrderTaskInput"] = {}
        services, _ = generate._services(source)
        with pytest.raises(SystemExit, match="OrderTaskInput is already taken"):
            generate._models(source, {"Order"}, *generate._writes(services))
