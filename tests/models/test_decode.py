"""Decoding rules of the typed models: shapes, forward compatibility, wrong types, write bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from makini_async import models
from makini_async._converter import StructureError, converter, structure
from makini_async.models import UNSET, Level, WorkOrder, WorkOrderInput
from makini_async.models._wire import RecordDecodeError, decode, decode_list, encode, wire_name

WO: dict[str, object] = {
    "key": "03400100000000",
    "title": "Replace pump seal",
    "severity": "high",
    "estimatedTime": "43",
    "materialCount": "2",
    "dueAt": "2025-01-14T02:03:18Z",
    "tasks": [{"key": "t1", "title": "Drain", "checkList": ["valve shut"]}],
    "documents": [],
    "resources": [{"laborKey": "l1", "rate": "12.50", "startedAt": {}}],
    "createdAt": "2023-10-28T16:03:51Z",
    "updatedAt": "2025-10-07T10:37:18Z",
    "deletedAt": None,
}
KNOWN_WO_KEYS = {wire_name(WorkOrder, f.name) for f in attrs.fields(WorkOrder)} | {
    "_createdAt",
    "_updatedAt",
    "_deletedAt",
}


class TestShapes:
    def test_v3_record(self) -> None:
        """A v3 record decodes into snake_case attributes with typed values."""
        wo = decode(WO, WorkOrder)
        assert wo.key == "03400100000000"
        assert wo.severity is Level.HIGH
        assert wo.estimated_time == Decimal(43)
        assert wo.material_count == 2
        assert wo.due_at == datetime(2025, 1, 14, 2, 3, 18, tzinfo=UTC)
        assert wo.tasks[0].check_list == ("valve shut",)
        assert wo.resources[0].rate == Decimal("12.50")
        assert wo.resources[0].started_at is None
        assert wo.extra == {}
        assert wo.id is None

    def test_v4_record(self) -> None:
        """A v4 record's standard fields fill the same attributes, the v3 stamp winning."""
        record = {
            "id": "f7d4a2c4-76af-5861-8474-deaf4d0c9dae",
            "_idValue": "WO-10000",
            "_displayValue": "Pump",
            "_implements": "WorkOrder",
            "_createdAt": "2023-09-29T03:55:35Z",
            "_updatedAt": "2025-10-10T06:04:05Z",
            "_deletedAt": None,
            "updatedAt": "2025-10-11T00:00:00Z",
            "title": "Pump",
        }
        wo = decode(record, WorkOrder)
        assert (wo.id, wo.id_value, wo.display_value, wo.implements) == (
            "f7d4a2c4-76af-5861-8474-deaf4d0c9dae",
            "WO-10000",
            "Pump",
            "WorkOrder",
        )
        assert wo.created_at == datetime(2023, 9, 29, 3, 55, 35, tzinfo=UTC)
        assert wo.updated_at == datetime(2025, 10, 11, tzinfo=UTC)
        assert wo.key is None
        assert wo.extra == {}

    def test_models_are_frozen(self) -> None:
        """Decoded records cannot be changed, and neither can their extra mapping."""
        wo = decode({**WO, "x_costCenter": "CC-7"}, WorkOrder)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            wo.title = "other"  # type: ignore[misc]
        with pytest.raises(TypeError):
            wo.extra["x_costCenter"] = "CC-8"  # type: ignore[index]
        with pytest.raises(TypeError):
            wo.raw["title"] = "x"  # type: ignore[index]

    def test_raw_is_reachable(self) -> None:
        """The raw dict of a record and of its sub-objects stays reachable."""
        wo = decode(WO, WorkOrder)
        assert wo.raw == WO
        assert wo.tasks[0].raw == WO["tasks"][0]  # type: ignore[index]

    def test_equal_to_constructed(self) -> None:
        """A decoded record equals one built by hand from the same values and extras."""
        wo = decode({"title": "A", "x": 1}, WorkOrder)
        assert wo == WorkOrder(title="A", extra={"x": 1})


class TestForwardCompatible:
    def test_unknown_fields_kept(self) -> None:
        """Unknown fields, custom fields included, land in extra under their wire names."""
        wo = decode({**WO, "x_costCenter": "CC-7", "newThing": {"a": [1]}}, WorkOrder)
        assert dict(wo.extra) == {"x_costCenter": "CC-7", "newThing": {"a": [1]}}

    def test_unknown_level_kept(self) -> None:
        """A severity outside the known levels stays a plain string."""
        assert decode({"severity": "urgent"}, WorkOrder).severity == "urgent"

    def test_unknown_sync_status_kept(self) -> None:
        """A sync status outside the known set stays a plain string."""
        state = decode({"status": "paused"}, models.SyncState)
        assert state.status == "paused"
        assert decode({"status": "done"}, models.SyncState).status is models.SyncStatus.DONE

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("43", Decimal(43)),
            ("1.5e3", Decimal(1500)),
            (7, Decimal(7)),
            (2.5, Decimal("2.5")),
            ("", None),
            ({}, None),
        ],
    )
    def test_numbers(self, value: object, expected: Decimal | None) -> None:
        """Numbers arrive as numbers or numeric strings; empty placeholders read as unset."""
        assert decode({"estimatedTime": value}, WorkOrder).estimated_time == expected

    @pytest.mark.parametrize(
        "text",
        [
            "2025-01-14T02:03:18Z",
            "2025-01-14T02:03:18z",
            "2025-01-14t02:03:18Z",
            "2025-01-14T02:03:18+00:00",
            "2025-01-14T03:03:18+01:00",
            "2025-01-14T02:03:18.000000000Z",
            "2025-01-14T02:03:18,0Z",
            "2025-01-14 02:03:18",
            "20250114T020318Z",
        ],
    )
    def test_timestamps(self, text: str) -> None:
        """Every ISO-8601 form becomes the same timezone-aware moment."""
        due = decode({"dueAt": text}, WorkOrder).due_at
        assert due is not None
        assert due.tzinfo is not None
        assert due == datetime(2025, 1, 14, 2, 3, 18, tzinfo=UTC)

    def test_date_only(self) -> None:
        """A bare date reads as midnight UTC."""
        assert decode({"dueAt": "2025-01-14"}, WorkOrder).due_at == datetime(
            2025, 1, 14, tzinfo=UTC
        )

    def test_lone_key_string(self) -> None:
        """A lone string where a list of keys belongs reads as one key."""
        doc = decode({"entityKeys": "k1"}, models.Document)
        assert doc.entity_keys == ("k1",)

    def test_numeric_ids(self) -> None:
        """Numeric ids are kept as strings."""
        assert decode({"key": 17, "siteKey": 3}, WorkOrder).site_key == "3"

    @pytest.mark.parametrize(("value", "expected"), [("true", True), ("0", False), (1, True)])
    def test_boolean_strings(self, value: object, expected: bool) -> None:
        """Booleans sent as strings or 0/1 are accepted."""
        assert decode({"isActive": value}, models.Asset).is_active is expected


class TestKeyLayouts:
    def test_any_key_order(self) -> None:
        """Records decode the same whatever the order of their keys, past the compiled layouts."""
        expected = decode(WO, WorkOrder)
        names = list(WO)
        for shift in range(len(names) + 20):  # more layouts than are compiled per model
            turned = names[shift % len(names) :] + names[: shift % len(names)]
            record = {k: WO[k] for k in turned}
            if shift >= len(names):
                record = {**record, f"x_{shift}": shift}
            wo = decode(record, WorkOrder)
            assert wo == attrs.evolve(expected, extra=wo.extra)
            assert dict(wo.extra) == ({f"x_{shift}": shift} if shift >= len(names) else {})


class TestWrongTypes:
    @pytest.mark.parametrize(
        ("record", "path"),
        [
            ({"title": ["x"]}, "$.title"),
            ({"dueAt": 5}, "$.dueAt"),
            ({"dueAt": "next tuesday"}, "$.dueAt"),
            ({"estimatedTime": "many"}, "$.estimatedTime"),
            ({"estimatedTime": "NaN"}, "$.estimatedTime"),
            ({"estimatedTime": True}, "$.estimatedTime"),
            ({"materialCount": "1.5"}, "$.materialCount"),
            ({"tasks": "none"}, "$.tasks"),
            ({"tasks": [{}, {"title": 3.5}]}, "$.tasks[1].title"),
            ({"tasks": [{"checkList": [1.5]}]}, "$.tasks[0].checkList[0]"),
            ({"severity": ["high"]}, "$.severity"),
            ({"createdAt": [], "key": "k"}, "$.createdAt"),
        ],
    )
    def test_path_named(self, record: dict[str, object], path: str) -> None:
        """A known field of the wrong type raises naming its path."""
        with pytest.raises(RecordDecodeError) as info:
            decode(record, WorkOrder)
        assert f"at {path}" in str(info.value)

    def test_list_path(self) -> None:
        """In a list, the path names the record's index."""
        records = [dict(WO) for _ in range(5)]
        records[3] = {**WO, "dueAt": 12}
        with pytest.raises(RecordDecodeError, match=r"at \$\.data\[3\]\.dueAt$"):
            decode_list(records, WorkOrder, ".data")

    def test_not_an_object(self) -> None:
        """A record that is not an object is refused."""
        with pytest.raises(RecordDecodeError, match=r"expected an object at \$\.data\[0\]"):
            decode_list([[1]], WorkOrder, ".data")

    def test_converter_hook(self) -> None:
        """The shared cattrs converter decodes models the same way and reports the path."""
        assert structure(WO, WorkOrder).title == "Replace pump seal"
        assert converter.structure(WO, WorkOrder).title == "Replace pump seal"
        with pytest.raises(StructureError) as info:
            structure({"dueAt": 5}, WorkOrder)
        assert "$.dueAt" in str(info.value)


class TestWriteBodies:
    def test_only_set_fields(self) -> None:
        """Only the fields the caller set are sent, None as null, under wire names."""
        body = WorkOrderInput(
            title="Pump",
            site_key=None,
            due_at=datetime(2025, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
            estimated_time=Decimal("1.50"),
            actual_time=Decimal(90),
            severity=Level.HIGH,
            extra={"x_costCenter": "CC-7"},
        )
        assert encode(body) == {
            "title": "Pump",
            "siteKey": None,
            "dueAt": "2025-01-01T00:00:00Z",
            "estimatedTime": "1.50",
            "actualTime": 90,
            "severity": "high",
            "x_costCenter": "CC-7",
        }
        assert converter.unstructure(body) == encode(body)

    def test_unset_is_falsy(self) -> None:
        """UNSET is the default of every write field and reads as false."""
        assert WorkOrderInput().title is UNSET
        assert not UNSET
        assert encode(WorkOrderInput()) == {}


_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))


class TestHypothesis:
    @settings(max_examples=150, deadline=None)
    @given(
        extra=st.dictionaries(
            st.text(min_size=1, max_size=12).filter(lambda k: k not in KNOWN_WO_KEYS),
            st.one_of(_JSON_SCALARS, st.lists(_JSON_SCALARS, max_size=3)),
            max_size=6,
        )
    )
    def test_extra_fields(self, extra: dict[str, object]) -> None:
        """Any unknown fields end up in extra, exactly, and the known ones still decode."""
        wo = decode({**WO, **extra}, WorkOrder)
        assert dict(wo.extra) == extra
        assert wo.title == "Replace pump seal"

    @settings(max_examples=150, deadline=None)
    @given(
        moment=st.datetimes(
            min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - hypothesis adds the zone
            max_value=datetime(2200, 1, 1),  # noqa: DTZ001
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))]),
        ),
        form=st.sampled_from(["iso", "z", "micro-z", "space"]),
    )
    def test_odd_timestamps(self, moment: datetime, form: str) -> None:
        """Timestamps in several ISO-8601 spellings decode to the same aware moment."""
        utc = moment.astimezone(UTC)
        text = {
            "iso": moment.isoformat(),
            "z": utc.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
            "micro-z": utc.strftime("%Y-%m-%dT%H:%M:%S.%f000Z"),
            "space": moment.isoformat(sep=" "),
        }[form]
        due = decode({"dueAt": text}, WorkOrder).due_at
        assert due == moment

    @settings(max_examples=150, deadline=None)
    @given(
        index=st.integers(min_value=0, max_value=9),
        field=st.sampled_from(["title", "dueAt", "estimatedTime", "tasks", "siteKey"]),
        bad=st.one_of(
            st.booleans(),
            st.lists(st.integers(), min_size=1, max_size=3),
            st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), min_size=1),
        ),
    )
    def test_wrong_types(self, index: int, field: str, bad: object) -> None:
        """A wrong type anywhere in a page names the record index and the field (strict)."""
        # One object where a list of objects is declared reads as a list of one.
        assume(not (field == "tasks" and isinstance(bad, dict)))
        records = [dict(WO) for _ in range(10)]
        records[index] = {**WO, field: bad}
        with pytest.raises(RecordDecodeError) as info:
            decode_list(records, WorkOrder, ".data")
        assert info.value.path.startswith(f".data[{index}].{field}")


class TestEveryModel:
    @pytest.mark.parametrize(
        "name",
        [
            n
            for n in models.__all__
            if isinstance(getattr(models, n), type)
            and issubclass(getattr(models, n), models.Model)
            and getattr(models, n) is not models.Model
        ],
    )
    def test_empty_object(self, name: str) -> None:
        """Every model decodes an empty object into its defaults."""
        cls = getattr(models, name)
        assert decode({}, cls) == cls()

    def test_exports_resolve(self) -> None:
        """Every exported name of models and resources exists, and the lists are sorted."""
        from makini_async import resources

        for module in (models, resources):
            assert all(hasattr(module, name) for name in module.__all__)
            assert list(module.__all__) == sorted(
                module.__all__, key=lambda n: (not n.isupper(), n)
            )
