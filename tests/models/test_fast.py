"""The msgspec path gives the same records as the reference path, or declines the page.

The reference path is `_json.loads` (orjson) and the structure functions registered on the
cattrs converter; the fast path decodes a page's bytes with msgspec. Every comparison here
decodes the same bytes both ways and compares whole records: attributes, ``extra``,
``invalid`` and ``raw``, nested objects included.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import aiohttp
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from makini_async import _json, models
from makini_async.models import _fast
from makini_async.models._fast import TypedPage, page_decoder
from makini_async.models._tolerant import decode_records
from makini_async.models._wire import wire_name
from makini_async.resources import EAM, ERP, WMS
from makini_async.resources._base import Listable
from makini_async.resources._service import collection_of
from makini_async.sandbox import Sandbox
from tests.models.test_tolerance import CASES

pytestmark = pytest.mark.skipif(not _fast.AVAILABLE, reason="msgspec is not installed")


@pytest.fixture(autouse=True)
def _precise() -> Iterator[None]:
    """Each test starts from precise wire structs, whatever the tests before it adapted."""
    _fast.forget_adaptations()
    yield
    _fast.forget_adaptations()


def _walk(record: models.Model) -> list[models.Model]:
    """The record and every model nested in it, depth first."""
    found = [record]
    for field in attrs.fields(type(record)):
        value = getattr(record, field.name)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, models.Model):
                found += _walk(item)
    return found


def both_ways(
    body: bytes, model: type[models.Model]
) -> tuple[TypedPage | None, list[models.Model]]:
    """The fast path's page (None when it declines) and the reference path's records."""
    decoder = page_decoder(model)
    assert decoder is not None
    fast = decoder(body)
    reference = decode_records(_json.decode_plain(body)["data"], model, ".data")  # type: ignore[index]
    return fast, reference


def assert_same(fast: TypedPage, reference: list[models.Model]) -> None:
    """Both paths give equal records, down to extra, invalid and raw of every nested object."""
    assert fast.records == reference
    for mine, theirs in zip(fast.records, reference, strict=True):
        assert isinstance(theirs, models.Model)
        for a, b in zip(_walk(mine), _walk(theirs), strict=True):
            assert type(a) is type(b)
            assert a == b
            assert (dict(a.extra), dict(a.invalid), dict(a.raw)) == (
                dict(b.extra),
                dict(b.invalid),
                dict(b.raw),
            )


def _services() -> list[tuple[str, type[models.Model]]]:
    """Every listable collection: its path and its records' model."""
    out: dict[str, type[models.Model]] = {}
    for namespace in (EAM, ERP, WMS):
        for name in dir(namespace):
            prop = getattr(namespace, name)
            if not isinstance(prop, property) or prop.fget is None:
                continue
            service = prop.fget.__annotations__.get("return")
            cls = getattr(sys.modules[namespace.__module__], str(service), None)
            if isinstance(cls, type) and issubclass(cls, Listable):
                path, model = collection_of(cls)
                out[path] = model
    return sorted(out.items())


@pytest.fixture(name="pages", scope="module")
def _pages() -> dict[str, tuple[type[models.Model], bytes]]:
    """A first page of every collection of a sandbox, in v3 and in v4."""

    async def fetch() -> dict[str, tuple[type[models.Model], bytes]]:
        found: dict[str, tuple[type[models.Model], bytes]] = {}
        async with Sandbox(connections=2, seed=3) as sandbox:
            sandbox.configure("c2", v4=True)
            async with aiohttp.ClientSession() as session:
                for cid, shape in (("c1", "v3"), ("c2", "v4")):
                    headers = {"Authorization": f"Bearer {sandbox.connections[cid]}"}
                    for path, model in _services():
                        url = f"{sandbox.url}{path}?per_page=100"
                        async with session.get(url, headers=headers) as response:
                            if response.status == 200:
                                found[f"{shape} {path}"] = (model, await response.read())
        return found

    return asyncio.run(fetch())


class TestSandboxPages:
    def test_every_collection_decodes_the_same_both_ways(
        self, pages: dict[str, tuple[type[models.Model], bytes]]
    ) -> None:
        """Each sandbox page is taken by the fast path and gives the reference path's records."""
        assert len(pages) >= 60
        declined = []
        for label, (model, body) in pages.items():
            fast, reference = both_ways(body, model)
            if fast is None:
                declined.append(label)
                continue
            assert_same(fast, reference)
            assert dict(fast) == json.loads(body)  # the page also reads as its JSON
        assert declined == []

    def test_work_orders_have_nested_objects(
        self, pages: dict[str, tuple[type[models.Model], bytes]]
    ) -> None:
        """The comparison covers nested objects and both record shapes."""
        for shape in ("v3", "v4"):
            _, body = pages[f"{shape} /api/eam/work-orders"]
            fast, _ = both_ways(body, models.WorkOrder)
            assert fast is not None
            records = fast.records
            assert sum(len(_walk(r)) for r in records) > 2 * len(records)
            assert all(isinstance(r, models.WorkOrder) for r in records)
            if shape == "v4":
                assert all(r.id is not None for r in records)  # type: ignore[attr-defined]


def _body(records: Sequence[Mapping[str, object]]) -> bytes:
    page = {"data": records, "meta": {"current_page": 1, "last_page": 1}}
    return json.dumps(page, allow_nan=False).encode()


class TestOddValues:
    @pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kind}-{json.dumps(c.sent)}")
    def test_corpus(self, case: object) -> None:
        """Each corpus value gives the same record both ways; the fast path takes what fits."""
        wire = case.wire  # type: ignore[attr-defined]
        model = case.model  # type: ignore[attr-defined]
        body = _body([{"key": "K-0"}, {"key": "K-1", wire: case.sent}])  # type: ignore[attr-defined]
        fast, reference = both_ways(body, model)
        assert fast is not None  # the field adapts: the page stays on the fast path
        assert_same(fast, reference)
        assert fast.tainted is not case.fits  # type: ignore[attr-defined]

    def test_a_clean_page_with_coercions_takes_the_fast_path(self) -> None:
        """Numeric strings, naive and offset timestamps and numeric ids stay on the fast path."""
        records: list[dict[str, object]] = [
            {
                "key": 17,
                "estimatedTime": "43",
                "actualTime": 2.5,
                "materialCount": "2",
                "dueAt": "2025-01-14 02:03:18",
                "completedAt": "2025-01-14T03:03:18.1234567+01:00",
                "severity": "urgent",
                "tasks": {"title": "Drain", "checkList": "valve shut"},
                "resources": [{"rate": "12.50", "startedAt": {}}],
            }
        ]
        fast, reference = both_ways(_body(records), models.WorkOrder)
        assert fast is not None
        assert_same(fast, reference)
        (order,) = fast.records
        assert order.key == "17"  # type: ignore[attr-defined]
        assert order.tasks[0].check_list == ("valve shut",)  # type: ignore[attr-defined]

    def test_unknown_fields_are_learned(self) -> None:
        """Custom fields are learned, per model, and land in extra as on the reference path."""
        records: list[dict[str, object]] = [
            {"key": "K", "x_costCenter": "CC-7", "tasks": [{"title": "A", "x_zone": [1, "B"]}]},
            {"key": "L", "x_other": None},
            {"key": "M"},
        ]
        fast, reference = both_ways(_body(records), models.WorkOrder)
        assert fast is not None
        assert_same(fast, reference)
        assert [dict(r.extra) for r in fast.records] == [
            {"x_costCenter": "CC-7"},
            {"x_other": None},
            {},
        ]
        assert fast.records[0].tasks[0].extra == {"x_zone": [1, "B"]}  # type: ignore[attr-defined]
        assert not fast.tainted

    @pytest.mark.parametrize(
        "body",
        [
            b'{"error": {"code": "NOT_FOUND"}}',
            b"[]",
            b'{"data": {"key": "K"}}',
            b'{"data": [1]}',
            b"not json",
            b'{"data": [{"key": "\\ud800"}]}',
        ],
    )
    def test_declines_what_is_not_a_clean_page(self, body: bytes) -> None:
        """Bodies that are not a list page of clean records are left to the reference path."""
        decoder = page_decoder(models.WorkOrder)
        assert decoder is not None
        assert decoder(body) is None
        token = _json.use_body_decoder(decoder)
        try:
            try:
                expected: object = _json.decode_plain(body)
            except ValueError:
                with pytest.raises(ValueError, match=r"."):
                    _json.loads(body)
            else:
                assert _json.loads(body) == expected
        finally:
            _json.reset_body_decoder(token)


@pytest.mark.parametrize("number", [2**64, 2**63, -(2**63) - 1, 10**30])
def test_integers_past_64_bits_read_as_orjson_reads_them(number: int) -> None:
    """orjson reads integers past 64 bits as floats; the fast path gives the same records."""
    body = _body([{"key": number, "materialCount": number, "estimatedTime": number}])
    fast, reference = both_ways(body, models.WorkOrder)
    assert fast is not None
    assert_same(fast, reference)


_FRACTIONS = st.text("0123456789", min_size=0, max_size=10)
_ZONES = st.sampled_from(["Z", "z", "+00:00", "-00:00", "+01:00", "-07:30", "+05:45", ""])


@st.composite
def _timestamps(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30))  # noqa: DTZ001
    )
    separator = draw(st.sampled_from(["T", "t", " "]))
    fraction = draw(_FRACTIONS)
    text = moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    return text + (f".{fraction}" if fraction else "") + draw(_ZONES)


_DECIMALS = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"\A ?-?\d{1,20}(\.\d{0,12})?([eE][+-]?\d{1,3})? ?\Z"),
)


class TestDifferential:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(stamps=st.lists(_timestamps(), min_size=1, max_size=4))
    def test_timestamps(self, stamps: list[str]) -> None:
        """msgspec's timestamps and the reference path's agree wherever msgspec takes them."""
        records = [{"key": str(i), "dueAt": stamp} for i, stamp in enumerate(stamps)]
        fast, reference = both_ways(_body(records), models.WorkOrder)
        if fast is not None:
            assert_same(fast, reference)
            assert all(r.due_at.tzinfo is not None for r in fast.records)  # type: ignore[attr-defined]

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(values=st.lists(st.one_of(_DECIMALS, st.floats(), st.integers()), max_size=4))
    def test_numbers(self, values: list[object]) -> None:
        """Numbers and numeric strings read the same both ways (or the fast path declines)."""
        records = [
            {"key": str(i), "estimatedTime": value, "materialCount": value}
            for i, value in enumerate(values)
        ]
        try:
            body = _body(records)
        except ValueError:  # a float JSON cannot carry
            return
        fast, reference = both_ways(body, models.WorkOrder)
        if fast is not None:
            assert_same(fast, reference)

    def test_fraction_rounding(self) -> None:
        """Seven or more fraction digits round to the microsecond, half up, on both paths."""
        stamps = {
            "2025-12-31T23:59:59.1234565Z": datetime(2025, 12, 31, 23, 59, 59, 123457, UTC),
            "2025-12-31T23:59:59.1234564999Z": datetime(2025, 12, 31, 23, 59, 59, 123456, UTC),
            "2025-12-31T23:59:59.9999995Z": datetime(2026, 1, 1, tzinfo=UTC),
            "2025-12-31T23:59:59.123+01:00": datetime(
                2025, 12, 31, 23, 59, 59, 123000, timezone(timedelta(hours=1))
            ),
        }
        records = [{"dueAt": stamp} for stamp in stamps]
        fast, reference = both_ways(_body(records), models.WorkOrder)
        assert fast is not None
        assert_same(fast, reference)
        assert [r.due_at for r in reference] == list(stamps.values())  # type: ignore[attr-defined]


class TestLazyRaw:
    def test_raw_is_decoded_on_first_read(self) -> None:
        """A fast-path record keeps a reference to the page's bytes until raw is read."""
        records = [{"key": "K", "tasks": [{"title": "A"}, {"title": "B", "checkList": []}]}]
        decoder = page_decoder(models.WorkOrder)
        assert decoder is not None
        page = decoder(_body(records))
        assert page is not None
        (order,) = page.records
        task = order.tasks[1]  # type: ignore[attr-defined]
        assert isinstance(task._raw, tuple)
        assert task.raw == {"title": "B", "checkList": []}
        assert order.raw == records[0]
        assert not isinstance(order._raw, tuple)  # decoded once, then kept
        with pytest.raises(TypeError):
            order.raw["key"] = "X"  # type: ignore[index]
        assert models._wire.encode_model(order) == records[0]

    def test_evolve_keeps_the_raw_record(self) -> None:
        """attrs.evolve of a fast-path record keeps the raw record it came from."""
        decoder = page_decoder(models.WorkOrder)
        assert decoder is not None
        page = decoder(_body([{"key": "K", "title": "A"}]))
        assert page is not None
        record = page.records[0]
        assert isinstance(record, models.WorkOrder)
        changed = attrs.evolve(record, title="B")
        assert changed.title == "B"
        assert changed.raw == {"key": "K", "title": "A"}


def test_wire_names_cover_both_shapes() -> None:
    """The v4 stamps have wire fields of their own, so both shapes stay on the fast path."""
    assert wire_name(models.WorkOrder, "created_at") == "createdAt"
    v4 = [{"id": "u", "_idValue": "WO-1", "_createdAt": "2025-01-14T02:03:18Z", "createdAt": None}]
    fast, reference = both_ways(_body(v4), models.WorkOrder)
    assert fast is not None
    assert_same(fast, reference)
    assert fast.records[0].created_at == datetime(2025, 1, 14, 2, 3, 18, tzinfo=UTC)  # type: ignore[attr-defined]


def test_without_msgspec_the_reference_path_decodes() -> None:
    """With msgspec absent, makini_async imports without it and lists typed records."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["msgspec"] = None  # as if it were not installed
        import makini_async
        from makini_async.models import _fast
        from makini_async.sandbox import Sandbox

        async def main():
            async with Sandbox(connections=1, seed=1) as sandbox:
                async with makini_async.ConnectionRegistry(sandbox.url) as registry:
                    conn = registry.add("c1", sandbox.connections["c1"])
                    orders = await conn.eam.work_orders.list(per_page=20, max_pages=1).to_list()
                    assert len(orders) == 20 and orders[0].created_at.tzinfo is not None
            assert not _fast.AVAILABLE and _fast.page_decoder(type(orders[0])) is None
            print("ok", len(orders))

        asyncio.run(main())
        """
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "20"]


def test_decimal_from_json_numbers_matches() -> None:
    """A JSON number in a decimal field reads the same both ways (the float's shortest text)."""
    body = b'{"data": [{"estimatedTime": 0.1, "actualTime": 12.50}]}'
    fast, reference = both_ways(body, models.WorkOrder)
    assert fast is not None
    assert_same(fast, reference)
    assert fast.records[0].estimated_time == Decimal("0.1")  # type: ignore[attr-defined]


class TestAdaptation:
    def test_an_odd_field_adapts_once(self) -> None:
        """The first page with an odd value adapts its field; the next pages decode in one go."""
        decoder = page_decoder(models.WorkOrder)
        assert decoder is not None
        odd = _body([{"key": "K", "dueAt": "next tuesday", "siteKey": 7}])
        first = decoder(odd)
        assert first is not None
        assert first.tainted
        adapted = _fast._state.adaptations
        assert decoder(odd) is not None
        assert _fast._state.adaptations is adapted  # nothing more to learn
        clean = _body([{"key": "L", "dueAt": "2025-01-14T02:03:18Z", "siteKey": "S"}])
        fast, reference = both_ways(clean, models.WorkOrder)
        assert fast is not None
        assert not fast.tainted
        assert_same(fast, reference)

    def test_fields_read_as_stored_widen_only_for_values_to_convert(self) -> None:
        """Zoned timestamps, integers and lists of strings stay precise; the rest widens once."""
        clean = _body(
            [{"key": "K", "dueAt": "2025-01-14T02:03:18Z", "materialCount": 3, "tasks": []}]
        )
        fast, reference = both_ways(clean, models.WorkOrder)
        assert fast is not None
        assert_same(fast, reference)
        assert dict(_fast._state.adaptations.levels) == {}
        odd = _body(
            [
                {
                    "key": "K",
                    "dueAt": "2025-01-14 02:03:18",  # naive: UTC
                    "materialCount": "3",
                    "tasks": [{"checkList": "valve shut"}, {"checkList": None}],
                }
            ]
        )
        fast, reference = both_ways(odd, models.WorkOrder)
        assert fast is not None
        assert not fast.tainted
        assert_same(fast, reference)
        levels = {
            (cls.__name__, wire): level
            for (cls, wire), level in _fast._state.adaptations.levels.items()
        }
        assert levels == {
            ("WorkOrder", "dueAt"): _fast._WIDE,
            ("WorkOrder", "materialCount"): _fast._WIDE,
            ("Task", "checkList"): _fast._WIDE,
        }
        (order,) = fast.records
        assert order.due_at == datetime(2025, 1, 14, 2, 3, 18, tzinfo=UTC)  # type: ignore[attr-defined]
        assert order.tasks[0].check_list == ("valve shut",)  # type: ignore[attr-defined]
        assert order.tasks[1].check_list == ()  # type: ignore[attr-defined]

    def test_too_many_custom_fields_take_the_reference_path(self) -> None:
        """Past the learned keys' limit, a model's pages are left to the reference path."""
        records = [{"key": "K", **{f"x_{n}": n for n in range(_fast._MAX_EXTRAS + 1)}}]
        decoder = page_decoder(models.Site)
        assert decoder is not None
        for _ in range(_fast._MAX_EXTRAS // _fast._MAX_TRIES + 2):
            assert decoder(_body(records)) is None or len(records[0]) <= _fast._MAX_EXTRAS
        assert len(_fast._state.adaptations.extras[models.Site]) == _fast._MAX_EXTRAS
        _, reference = both_ways(_body(records), models.Site)
        assert len(reference[0].extra) == _fast._MAX_EXTRAS + 1

    def test_switched_off(self) -> None:
        """With the fast path switched off, there is no page decoder at all."""
        _fast.set_enabled(False)
        try:
            assert page_decoder(models.WorkOrder) is None
        finally:
            _fast.set_enabled(True)
        assert page_decoder(models.WorkOrder) is not None
