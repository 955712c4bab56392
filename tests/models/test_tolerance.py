"""Decoding connector data: real-world odd values, tolerant by default, strict on request.

Each case of the corpus is one value, as a source system sends it, in one field of a work order
(`conn.eam.work_orders`) or a part (`conn.eam.materials`). Tolerant, the attribute reads the
value shown, and a value that does not fit is kept in ``record.invalid``; strict, a value that
fits reads the same and one that does not raises `ResponseDecodeError` naming
``$.data[1].<field>``. The table below is the corpus itself (a test renders it and compares):

<!-- corpus table -->
| declared type | field | sent | tolerant: the attribute reads | strict |
|---|---|---|---|---|
| text | title | `"Replace seal"` | `'Replace seal'` | same |
| text | siteKey | `10042` | `'10042'` | same |
| text | title | `12.5` | `None`, kept in invalid | raises |
| text | title | `true` | `None`, kept in invalid | raises |
| text | title | `{"en": "Pump"}` | `None`, kept in invalid | raises |
| text | title | `["Pump"]` | `None`, kept in invalid | raises |
| number | estimatedTime | `"43"` | `Decimal('43')` | same |
| number | estimatedTime | `" 1.5e3 "` | `Decimal('1.5E+3')` | same |
| number | estimatedTime | `2.5` | `Decimal('2.5')` | same |
| number | estimatedTime | `7` | `Decimal('7')` | same |
| number | estimatedTime | `""` | `None` | same |
| number | estimatedTime | `{}` | `None` | same |
| number | estimatedTime | `"NaN"` | `None`, kept in invalid | raises |
| number | estimatedTime | `"1,234.50"` | `None`, kept in invalid | raises |
| number | estimatedTime | `"12,5"` | `None`, kept in invalid | raises |
| number | estimatedTime | `true` | `None`, kept in invalid | raises |
| integer | materialCount | `"2"` | `2` | same |
| integer | materialCount | `3.0` | `3` | same |
| integer | materialCount | `"1e3"` | `1000` | same |
| integer | materialCount | `"1.5"` | `None`, kept in invalid | raises |
| integer | materialCount | `"two"` | `None`, kept in invalid | raises |
| boolean | isActive | `"TRUE "` | `True` | same |
| boolean | isActive | `0` | `False` | same |
| boolean | isActive | `"no"` | `False` | same |
| boolean | isActive | `""` | `None` | same |
| boolean | isActive | `"Y"` | `None`, kept in invalid | raises |
| boolean | isActive | `2` | `None`, kept in invalid | raises |
| timestamp | dueAt | `"2025-01-14T02:03:18Z"` | `2025-01-14 02:03:18+00:00` | same |
| timestamp | dueAt | `"2025-01-14T03:03:18+01:00"` | `2025-01-14 03:03:18+01:00` | same |
| timestamp | dueAt | `"2025-01-14 02:03:18"` | `2025-01-14 02:03:18+00:00` | same |
| timestamp | dueAt | `"2025-01-14"` | `2025-01-14 00:00:00+00:00` | same |
| timestamp | dueAt | `"2025-01-14t02:03:18.1234567z"` | `2025-01-14 02:03:18.123457+00:00` | same |
| timestamp | dueAt | `"2025-01-14T02:03:18,5Z"` | `2025-01-14 02:03:18.500000+00:00` | same |
| timestamp | dueAt | `"20250114T020318Z"` | `2025-01-14 02:03:18+00:00` | same |
| timestamp | dueAt | `"/Date(1736820198000)/"` | `2025-01-14 02:03:18+00:00` | same |
| timestamp | dueAt | `1736820198` | `2025-01-14 02:03:18+00:00` | same |
| timestamp | dueAt | `1736820198000` | `2025-01-14 02:03:18+00:00` | same |
| timestamp | dueAt | `{}` | `None` | same |
| timestamp | dueAt | `"next tuesday"` | `None`, kept in invalid | raises |
| timestamp | dueAt | `"14/01/2025"` | `None`, kept in invalid | raises |
| timestamp | dueAt | `20250114` | `None`, kept in invalid | raises |
| timestamp | dueAt | `[]` | `None`, kept in invalid | raises |
| list of keys | siteKeys | `"S-1"` | `('S-1',)` | same |
| list of keys | siteKeys | `["S-1", 7]` | `('S-1', '7')` | same |
| list of keys | siteKeys | `null` | `()` | same |
| list of keys | siteKeys | `5` | `()`, kept in invalid | raises |
| list of keys | siteKeys | `["S-1", {"a": 1}]` | `()`, kept in invalid | raises |
| level | severity | `"high"` | `<Level.HIGH: 'high'>` | same |
| level | severity | `"urgent"` | `'urgent'` | same |
| level | severity | `3` | `'3'` | same |
| level | severity | `2.5` | `None`, kept in invalid | raises |
| nested objects | tasks | `{"title": "Drain"}` | `(Task(title='Drain'),)` | same |
| nested objects | tasks | `{}` | `()` | same |
| nested objects | tasks | `"none"` | `()`, kept in invalid | raises |
| nested objects | tasks | `[{"title": "Drain"}, "x"]` | `()`, kept in invalid | raises |
| nested object | inventory | `{"quantity": "5"}` | `Inventory(quantity=Decimal('5'))` | same |
| nested object | inventory | `"A-1"` | `None`, kept in invalid | raises |
| free-form JSON | dimensions | `{"w": [1, "2"]}` | `{'w': [1, '2']}` | same |
<!-- end corpus table -->
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web

from makini_async import Connection, ConnectionRegistry, ResponseDecodeError, models
from makini_async._requester import decodes_strictly
from makini_async.models import Level
from makini_async.models._rules import decoding_table, markdown_table
from makini_async.models._tolerant import decode_record, decode_records, forget_warnings
from makini_async.models._wire import RecordDecodeError, wire_name
from tests.support import MakeRegistry, StartApp

_TS = datetime(2025, 1, 14, 2, 3, 18, tzinfo=UTC)


@attrs.frozen
class Case:
    """One odd value: where it goes, what it is, and what it gives."""

    kind: str
    model: type[models.Entity]
    field: str  # the attribute
    sent: object
    reads: object
    fits: bool

    @property
    def wire(self) -> str:
        return wire_name(self.model, self.field)

    @property
    def service(self) -> str:
        return "work_orders" if self.model is models.WorkOrder else "materials"


WO, PART = models.WorkOrder, models.Part


def _cases() -> list[Case]:
    text = [
        (WO, "title", "Replace seal", "Replace seal", True),
        (WO, "site_key", 10042, "10042", True),
        (WO, "title", 12.5, None, False),
        (WO, "title", True, None, False),
        (WO, "title", {"en": "Pump"}, None, False),
        (WO, "title", ["Pump"], None, False),
    ]
    number = [
        ("43", Decimal(43), True),
        (" 1.5e3 ", Decimal("1.5E+3"), True),
        (2.5, Decimal("2.5"), True),
        (7, Decimal(7), True),
        ("", None, True),
        ({}, None, True),
        ("NaN", None, False),
        ("1,234.50", None, False),
        ("12,5", None, False),
        (True, None, False),
    ]
    integer = [
        ("2", 2, True),
        (3.0, 3, True),
        ("1e3", 1000, True),
        ("1.5", None, False),
        ("two", None, False),
    ]
    boolean = [
        ("TRUE ", True, True),
        (0, False, True),
        ("no", False, True),
        ("", None, True),
        ("Y", None, False),
        (2, None, False),
    ]
    timestamp = [
        ("2025-01-14T02:03:18Z", _TS, True),
        ("2025-01-14T03:03:18+01:00", _TS.astimezone(timezone(timedelta(hours=1))), True),
        ("2025-01-14 02:03:18", _TS, True),
        ("2025-01-14", datetime(2025, 1, 14, tzinfo=UTC), True),
        ("2025-01-14t02:03:18.1234567z", _TS.replace(microsecond=123457), True),
        ("2025-01-14T02:03:18,5Z", _TS.replace(microsecond=500000), True),
        ("20250114T020318Z", _TS, True),
        ("/Date(1736820198000)/", _TS, True),
        (1736820198, _TS, True),
        (1736820198000, _TS, True),
        ({}, None, True),
        ("next tuesday", None, False),
        ("14/01/2025", None, False),
        (20250114, None, False),
        ([], None, False),
    ]
    keys = [
        ("S-1", ("S-1",), True),
        (["S-1", 7], ("S-1", "7"), True),
        (None, (), True),
        (5, (), False),
        (["S-1", {"a": 1}], (), False),
    ]
    level = [
        ("high", Level.HIGH, True),
        ("urgent", "urgent", True),
        (3, "3", True),
        (2.5, None, False),
    ]
    task = models.Task(title="Drain")
    nested = [
        (WO, "tasks", {"title": "Drain"}, (task,), True),
        (WO, "tasks", {}, (), True),
        (WO, "tasks", "none", (), False),
        (WO, "tasks", [{"title": "Drain"}, "x"], (), False),
        (PART, "inventory", {"quantity": "5"}, models.Inventory(quantity=Decimal(5)), True),
        (PART, "inventory", "A-1", None, False),
    ]
    return [
        *(Case("text", *case) for case in text),
        *(Case("number", WO, "estimated_time", *case) for case in number),
        *(Case("integer", WO, "material_count", *case) for case in integer),
        *(Case("boolean", PART, "is_active", *case) for case in boolean),
        *(Case("timestamp", WO, "due_at", *case) for case in timestamp),
        *(Case("list of keys", PART, "site_keys", *case) for case in keys),
        *(Case("level", WO, "severity", *case) for case in level),
        *(
            Case("nested objects" if field == "tasks" else "nested object", m, field, s, r, f)
            for m, field, s, r, f in nested
        ),
        Case("free-form JSON", PART, "dimensions", {"w": [1, "2"]}, {"w": [1, "2"]}, True),
    ]


CASES = _cases()


def _shown(value: object) -> str:
    if isinstance(value, models.Model):  # only the fields set, as in the table
        fields = [
            f"{f.name}={getattr(value, f.name)!r}"
            for f in attrs.fields(type(value))
            if f.name not in {"extra", "_raw", "invalid"} and getattr(value, f.name) != f.default
        ]
        return f"{type(value).__name__}({', '.join(fields)})"
    if isinstance(value, tuple) and value and isinstance(value[0], models.Model):
        return "(" + ", ".join(_shown(item) for item in value) + ",)"
    return str(value) if isinstance(value, datetime) else repr(value)


def _row(case: Case) -> str:
    reads = f"`{_shown(case.reads)}`" + ("" if case.fits else ", kept in invalid")
    return (
        f"| {case.kind} | {case.wire} | `{json.dumps(case.sent)}` | {reads} | "
        f"{'same' if case.fits else 'raises'} |"
    )


def _page(case: Case) -> dict[str, Any]:
    """Three records; the middle one carries the case's value."""
    records: list[dict[str, Any]] = [{"key": f"K-{n}", "title": f"Record {n}"} for n in range(3)]
    if case.model is PART:
        records = [{"key": f"K-{n}", "name": f"Part {n}"} for n in range(3)]
    records[1][case.wire] = case.sent
    return {"data": records, "meta": {"current_page": 1, "last_page": 1, "total": 3}}


def _ids(case: Case) -> str:
    return f"{case.kind}-{case.wire}-{json.dumps(case.sent)}"


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    forget_warnings()


def test_the_corpus_has_thirty_cases_or_more() -> None:
    """The corpus covers every kind of field, with at least 30 values in all."""
    assert len(CASES) >= 30
    assert {case.kind for case in CASES} >= {
        "text",
        "number",
        "integer",
        "boolean",
        "timestamp",
        "list of keys",
        "level",
        "nested objects",
        "nested object",
        "free-form JSON",
    }
    assert any(case.fits for case in CASES)
    assert any(not case.fits for case in CASES)


def test_the_table_is_the_corpus() -> None:
    """The table in this module's docstring is exactly what the corpus says."""
    doc = __doc__ or ""
    table = doc.split("<!-- corpus table -->\n", 1)[1].split("<!-- end corpus table -->", 1)[0]
    rows = table.strip().splitlines()[2:]
    assert rows == [_row(case) for case in CASES]


class TestDecoding:
    @pytest.mark.parametrize("case", CASES, ids=_ids)
    def test_tolerant(self, case: Case) -> None:
        """Tolerant: the attribute reads the coerced or invalid value; invalid keeps the rest."""
        record = decode_record({"key": "K", case.wire: case.sent}, case.model)
        assert getattr(record, case.field) == case.reads
        assert type(getattr(record, case.field)) is type(case.reads)
        assert dict(record.invalid) == ({} if case.fits else {case.wire: case.sent})
        assert record.key == "K"
        assert record.raw == {"key": "K", case.wire: case.sent}

    @pytest.mark.parametrize("case", CASES, ids=_ids)
    def test_strict(self, case: Case) -> None:
        """Strict: what fits reads the same; what does not raises, naming the field's path."""
        record = {"key": "K", case.wire: case.sent}
        if case.fits:
            assert getattr(decode_record(record, case.model, strict=True), case.field) == (
                case.reads
            )
        else:
            with pytest.raises(RecordDecodeError) as info:
                decode_record(record, case.model, ".data", strict=True)
            assert info.value.path.startswith(f".data.{case.wire}")


class TestOverHTTP:
    @pytest.fixture
    def serve(self, app_server: StartApp, make_registry: MakeRegistry) -> Callable[..., Any]:
        async def serve(case: Case, **options: bool) -> Connection:
            body = json.dumps(_page(case)).encode()

            async def handler(request: web.Request) -> web.Response:
                return web.Response(body=body, content_type="application/json")

            app = web.Application()
            app.router.add_get("/{tail:.*}", handler)
            url = await app_server(app)
            return make_registry(url, **options).add("c1", "token-1")

        return serve

    @pytest.mark.parametrize("case", CASES, ids=_ids)
    async def test_tolerant_by_default(self, case: Case, serve: Callable[..., Any]) -> None:
        """A listing by default gives every record; the odd one reads as the table says."""
        conn = await serve(case)
        records = await getattr(conn.eam, case.service).list().to_list()
        assert [r.key for r in records] == ["K-0", "K-1", "K-2"]
        assert getattr(records[1], case.field) == case.reads
        assert dict(records[1].invalid) == ({} if case.fits else {case.wire: case.sent})
        assert records[1].raw[case.wire] == case.sent

    @pytest.mark.parametrize("case", CASES, ids=_ids)
    async def test_strict_registry(self, case: Case, serve: Callable[..., Any]) -> None:
        """A strict registry raises for a value that does not fit, naming $.data[1].field."""
        conn = await serve(case, strict=True)
        listing = getattr(conn.eam, case.service).list()
        if case.fits:
            assert getattr((await listing.to_list())[1], case.field) == case.reads
        else:
            with pytest.raises(ResponseDecodeError, match=rf"\$\.data\[1\]\.{case.wire}\b"):
                await listing.to_list()


_ODD = next(case for case in CASES if not case.fits and case.field == "due_at")


class TestStrictness:
    async def test_per_call_overrides_the_registry(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """strict= on a call wins over the registry's strict, both ways."""
        body = json.dumps(_page(_ODD)).encode()
        record = json.dumps({"data": _page(_ODD)["data"][1]}).encode()

        async def handler(request: web.Request) -> web.Response:
            one = request.path.endswith("/K-1")
            return web.Response(body=record if one else body, content_type="application/json")

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        url = await app_server(app)
        lenient = make_registry(url).add("c1", "token-1")
        strict = make_registry(url, strict=True).add("c1", "token-1")
        assert (lenient.strict, strict.strict) == (False, True)
        with pytest.raises(ResponseDecodeError, match=r"\$\.data\[1\]\.dueAt"):
            await lenient.eam.work_orders.list(strict=True).to_list()
        with pytest.raises(ResponseDecodeError, match=r"\$\.data\.dueAt"):
            await lenient.eam.work_orders.get("K-1", strict=True)
        assert (await strict.eam.work_orders.list(strict=False).to_list())[1].due_at is None
        got = await strict.eam.work_orders.get("K-1", strict=False)
        assert got.invalid == {"dueAt": "next tuesday"}
        assert (await lenient.eam.work_orders.get("K-1")).due_at is None

    def test_strict_must_be_a_bool(self, make_registry: MakeRegistry) -> None:
        """strict= that is not a bool is refused at once, on the registry and on a call."""
        with pytest.raises(TypeError, match="strict must be a bool"):
            make_registry("http://127.0.0.1:9", strict="yes")
        conn = make_registry("http://127.0.0.1:9").add("c1", "token-1")
        with pytest.raises(TypeError, match="strict must be a bool or None"):
            conn.eam.work_orders.list(strict=1)  # type: ignore[arg-type]


class TestWarnings:
    def test_one_warning_per_model_and_field(self, caplog: pytest.LogCaptureFixture) -> None:
        """A page where every record has the same odd field logs one warning, not one per record."""
        records = [
            {"key": f"K-{n}", "dueAt": "soon", "title": 1.5, "tasks": [{"title": []}]}
            for n in range(200)
        ]
        with caplog.at_level(logging.WARNING, logger="makini_async.models"):
            decoded = decode_records(records, WO, ".data")
            decode_records(records, WO, ".data")
        assert len(decoded) == 200
        assert all(r.invalid == {"dueAt": "soon", "title": 1.5} for r in decoded)
        assert all(r.tasks[0].invalid == {"title": []} for r in decoded)
        warned = sorted(r.getMessage().split(":")[0] for r in caplog.records)
        assert warned == ["Task.title", "WorkOrder.dueAt", "WorkOrder.title"]
        assert "soon" not in caplog.text  # the values are customer data: not logged

    def test_clean_records_warn_nothing(self, caplog: pytest.LogCaptureFixture) -> None:
        """Values that fit, coerced or not, log nothing and leave invalid empty."""
        fitting = [{case.wire: case.sent} for case in CASES if case.fits and case.model is WO]
        with caplog.at_level(logging.WARNING, logger="makini_async.models"):
            decoded = decode_records(fitting, WO, ".data")
        assert caplog.records == []
        assert all(r.invalid == {} for r in decoded)


class TestShapes:
    def test_both_record_shapes_with_odd_values(self) -> None:
        """v3 and v4 records both decode tolerantly; unknown fields stay in extra."""
        v3 = {"key": "K", "createdAt": "yesterday", "x_costCenter": "CC-7", "dueAt": 1736820198}
        v4 = {"id": "u-1", "_idValue": 10042, "_createdAt": "yesterday", "x_zone": [1]}
        first, second = decode_records([v3, v4], WO, ".data")
        assert (first.key, first.created_at, first.due_at) == ("K", None, _TS)
        assert first.invalid == {"createdAt": "yesterday"}
        assert first.extra == {"x_costCenter": "CC-7"}
        assert (second.id, second.id_value, second.created_at) == ("u-1", "10042", None)
        assert second.invalid == {"_createdAt": "yesterday"}
        assert second.extra == {"x_zone": [1]}

    def test_a_record_that_is_no_object_still_fails(self) -> None:
        """Tolerance is about values: a page item that is not an object fails in both modes."""
        with pytest.raises(RecordDecodeError, match=r"expected an object at \$\.data\[1\]"):
            decode_records([{"key": "K"}, "K-2"], WO, ".data")
        with pytest.raises(RecordDecodeError, match=r"expected an object at \$\.data\[1\]"):
            decode_records([{"key": "K"}, "K-2"], WO, ".data", strict=True)

    def test_equal_to_a_record_built_by_hand(self) -> None:
        """A tolerant record equals one built with the same values, extra and invalid."""
        record = decode_record({"title": "A", "dueAt": "soon", "x": 1}, WO)
        assert record == WO(title="A", extra={"x": 1}, invalid={"dueAt": "soon"})
        assert record != WO(title="A", extra={"x": 1})

    def test_missing_fields_are_not_invalid(self) -> None:
        """A field that is absent or null is unset, never invalid."""
        record = decode_record({"dueAt": None}, WO)
        assert record.due_at is None
        assert record.invalid == {}


class TestDocs:
    def test_the_readme_shows_the_rules(self) -> None:
        """README.md's "Decoding connector data" holds the table the models' docstring holds."""
        readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
        section = readme.split("## Decoding connector data\n", 1)[1].split("\n## ", 1)[0]
        assert markdown_table() in section
        assert decoding_table() in (models.__doc__ or "")


async def test_the_plugin_registry_is_strict(makini_registry: ConnectionRegistry) -> None:
    """The pytest plugin's makini_registry decodes strictly, so users' tests catch drift."""
    assert makini_registry["c1"].strict


def test_a_requester_without_strict_decodes_tolerantly() -> None:
    """A Requester of the user's own (no strict attribute) gets tolerant decoding."""

    class Bare:
        clock = None

    assert decodes_strictly(Bare()) is False  # type: ignore[arg-type]
    Bare.strict = True  # type: ignore[attr-defined]
    assert decodes_strictly(Bare()) is True  # type: ignore[arg-type]
