"""Typed events: every event of the contract, the legacy payload, unknown types, bad payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest

from makini_async._converter import StructureError, make_converter, parse_datetime, structure
from makini_async.webhooks import (
    EntityEvent,
    FlowEvent,
    ReauthorizationRequiredEvent,
    StatusChangedEvent,
    SyncCompletedEvent,
    SyncFailedEvent,
    SystemErrorEvent,
    UnknownEvent,
    WebhookEvent,
    WebhookPayloadError,
    parse,
)
from tests.webhooks.support import envelope


def _parse(payload: object, **kwargs: str) -> WebhookEvent:
    return parse(json.dumps(payload).encode(), **kwargs)


class TestEventTypes:
    def test_sync_completed(self) -> None:
        """A sync-completed event carries its entities, counts and finish time."""
        event = _parse(
            envelope(
                "connection.sync_completed",
                id="evt_1",
                created_at="2026-01-01T00:00:00Z",
                data={
                    "entities": ["assets", "work-orders"],
                    "counts": {"assets": 3, "work-orders": 10},
                    "finished_at": "2026-01-01T00:00:05+00:00",
                    "extra": {"kept": True},
                },
            )
        )
        assert isinstance(event, SyncCompletedEvent)
        assert event.id == "evt_1"
        assert event.type == "connection.sync_completed"
        assert event.connection_id == "c1"
        assert event.created_at == datetime(2026, 1, 1, tzinfo=UTC)
        assert event.entities == ("assets", "work-orders")
        assert event.counts == {"assets": 3, "work-orders": 10}
        assert event.finished_at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
        assert event.data["extra"] == {"kept": True}

    def test_sync_failed(self) -> None:
        """A sync-failed event carries the error code and message."""
        event = _parse(
            envelope("connection.sync_failed", data={"code": "SYSTEM_UNAVAILABLE", "message": "x"})
        )
        assert isinstance(event, SyncFailedEvent)
        assert (event.code, event.message) == ("SYSTEM_UNAVAILABLE", "x")

    def test_reauthorization_required(self) -> None:
        """A reauthorization event carries Makini's reason when given."""
        event = _parse(
            envelope("connection.reauthorization_required", data={"reason": "credentials_changed"})
        )
        assert isinstance(event, ReauthorizationRequiredEvent)
        assert event.reason == "credentials_changed"

    @pytest.mark.parametrize(
        ("current", "healthy"),
        [
            ("online", True),
            ("active", True),
            ("offline", False),
            ("inactive", False),
            (None, False),
        ],
    )
    def test_status_changed(self, current: str | None, healthy: bool) -> None:
        """A status event carries previous and current, and says whether current is healthy."""
        event = _parse(
            envelope("connection.status_changed", data={"previous": "x", "current": current})
        )
        assert isinstance(event, StatusChangedEvent)
        assert (event.previous, event.current, event.healthy) == ("x", current, healthy)

    def test_system_error(self) -> None:
        """A system error carries its code and message."""
        event = _parse(envelope("system.error", data={"code": "X", "message": "boom"}))
        assert isinstance(event, SystemErrorEvent)
        assert (event.code, event.message) == ("X", "boom")

    @pytest.mark.parametrize("action", ["inserted", "updated", "deleted"])
    def test_entity_events(self, action: str) -> None:
        """Entity events name the entity, the action and the record keys."""
        event = _parse(envelope(f"work-orders.{action}", body=["WO-1", 42]))
        assert isinstance(event, EntityEvent)
        assert (event.entity, event.action, event.keys) == ("work-orders", action, ("WO-1", "42"))

    def test_dotted_entity(self) -> None:
        """An entity name with a dot (purchase-orders.line-items) keeps it."""
        event = _parse(envelope("purchase-orders.line-items.updated", body=["1"]))
        assert isinstance(event, EntityEvent)
        assert event.entity == "purchase-orders.line-items"

    def test_flow_event(self) -> None:
        """A Flow custom event keeps its name and free-form data."""
        event = _parse(envelope("flow.low_stock", data={"sku": "A-1", "left": [1, 2]}))
        assert isinstance(event, FlowEvent)
        assert event.name == "low_stock"
        assert event.data == {"sku": "A-1", "left": [1, 2]}

    @pytest.mark.parametrize(
        "name", ["billing.invoice_paid", "connection.renamed", "system.x.y", "flow."]
    )
    def test_unknown_event_keeps_its_data(self, name: str) -> None:
        """An event type this version does not know decodes to UnknownEvent with its data."""
        event = _parse(envelope(name, data={"a": 1}, body=["k"]))
        assert type(event) is UnknownEvent
        assert (event.type, event.data, event.keys) == (name, {"a": 1}, ("k",))

    def test_events_are_frozen(self) -> None:
        """Events cannot be changed after parsing."""
        event = _parse(envelope())
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            event.id = "other"  # type: ignore[misc]


class TestLegacyAndIds:
    def test_legacy_payload(self) -> None:
        """The legacy {"event", "body"} payload decodes, with no time or connection."""
        event = parse(b'{"event": "assets.updated", "body": ["A1", "A2"]}')
        assert isinstance(event, EntityEvent)
        assert event.keys == ("A1", "A2")
        assert event.created_at is None
        assert event.connection_id is None

    def test_legacy_id_is_stable(self) -> None:
        """A payload without an id gets one derived from its bytes, the same every time."""
        raw = b'{"event": "assets.updated", "body": ["A1"]}'
        first, again = parse(raw), parse(raw)
        assert first.id == again.id
        assert first.id.startswith("sha256:")
        assert parse(b'{"event": "assets.updated", "body": ["A2"]}').id != first.id

    def test_legacy_id_from_header(self) -> None:
        """The X-Webhook-Id header names a payload that carries no id."""
        assert parse(b'{"event": "assets.updated"}', event_id="evt_h").id == "evt_h"

    def test_legacy_object_body(self) -> None:
        """A legacy payload with an object in "body" treats it as the data."""
        event = parse(b'{"event": "system.error", "body": {"code": "X"}}')
        assert isinstance(event, SystemErrorEvent)
        assert event.code == "X"

    def test_header_and_body_ids_must_agree(self) -> None:
        """An X-Webhook-Id different from the body's id is refused."""
        raw = json.dumps(envelope(id="evt_a")).encode()
        assert parse(raw, event_id="evt_a").id == "evt_a"
        with pytest.raises(WebhookPayloadError) as caught:
            parse(raw, event_id="evt_b")
        assert caught.value.reason == "id_mismatch"

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-03-04T05:06:07Z", datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)),
            ("2026-03-04T05:06:07.123456Z", datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)),
            ("2026-03-04T05:06:07+00:00", datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)),
            (
                "2026-03-04T07:06:07+02:00",
                datetime(2026, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2))),
            ),
            ("2026-03-04T05:06:07", datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)),
            ("2026-03-04 05:06:07z", datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)),
            ("20260304T050607Z", datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)),
        ],
    )
    def test_created_at_forms(self, text: str, expected: datetime) -> None:
        """created_at accepts ISO-8601 with Z, an offset or none (UTC), always timezone-aware."""
        event = _parse(envelope(created_at=text))
        assert event.created_at == expected
        assert event.created_at is not None
        assert event.created_at.tzinfo is not None


class TestBadPayloads:
    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b"", "invalid_json"),
            (b"not json", "invalid_json"),
            (b"\xff\xfe{}", "invalid_json"),
            (b'{"event": "a", "x": NaN}', "invalid_json"),
            (b"[" * 5000 + b"]" * 5000, "invalid_json"),
            (b'{"event": "a",', "invalid_json"),
            (b"[]", "malformed_payload"),
            (b'"text"', "malformed_payload"),
            (b"{}", "malformed_payload"),
            (b'{"event": ""}', "malformed_payload"),
            (b'{"event": 5}', "malformed_payload"),
            (b'{"event": "a", "id": 5}', "malformed_payload"),
            (b'{"event": "a", "id": ""}', "malformed_payload"),
            (b'{"event": "a", "data": [1]}', "malformed_payload"),
            (b'{"event": "a", "body": "k"}', "malformed_payload"),
            (b'{"event": "a", "body": [{"k": 1}]}', "malformed_payload"),
            (b'{"event": "a", "body": [null]}', "malformed_payload"),
            (b'{"event": "a", "connection_id": 5.5}', "malformed_payload"),
        ],
    )
    def test_refused(self, raw: bytes, reason: str) -> None:
        """Bodies that are not webhook events raise WebhookPayloadError with a reason (B11)."""
        with pytest.raises(WebhookPayloadError) as caught:
            parse(raw)
        assert caught.value.reason == reason
        assert caught.value.status == 400

    def test_deeply_nested_data(self) -> None:
        """Deeply nested JSON inside data is refused cleanly or kept, never a crash (B11)."""
        raw = b'{"event": "flow.x", "data": {"a": ' + b"[" * 3000 + b"]" * 3000 + b"}}"
        with pytest.raises(WebhookPayloadError):
            parse(raw)

    @pytest.mark.parametrize(
        ("data", "path"),
        [
            ({"counts": {"a": "3"}}, "$.data.counts['a']"),
            ({"counts": {"a": True}}, "$.data.counts['a']"),
            ({"counts": [1]}, "$.data.counts"),
            ({"entities": "assets"}, "$.data.entities"),
            ({"finished_at": "yesterday"}, "$.data.finished_at"),
        ],
    )
    def test_mistyped_fields_name_their_path(self, data: dict[str, object], path: str) -> None:
        """A mistyped data field is refused, naming where it is."""
        with pytest.raises(WebhookPayloadError) as caught:
            _parse(envelope("connection.sync_completed", data=data))
        assert any(p.endswith(f"@ {path}") for p in caught.value.paths), caught.value.paths

    def test_bad_created_at(self) -> None:
        """An unparseable created_at is refused with its path."""
        with pytest.raises(WebhookPayloadError) as caught:
            _parse(envelope(created_at="2026-13-45"))
        assert any("$.created_at" in p for p in caught.value.paths)


class TestConverter:
    def test_datetime_round_trip(self) -> None:
        """Datetimes unstructure to ISO-8601 with Z and parse back equal."""
        converter = make_converter()
        moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        text = converter.unstructure(moment)
        assert text == "2026-01-02T03:04:05Z"
        assert converter.structure(text, datetime) == moment

    @pytest.mark.parametrize("value", [None, 5, "", "x" * 100, "2026-02-30T00:00:00Z"])
    def test_bad_datetimes(self, value: object) -> None:
        """Non-strings, empty, overlong or impossible timestamps are refused."""
        with pytest.raises(ValueError, match=r"."):
            parse_datetime(value)

    def test_strict_scalars(self) -> None:
        """str fields take strings or integers; int fields take integers only."""

        @attrs.frozen
        class Thing:
            name: str
            count: int

        assert structure({"name": 7, "count": 2}, Thing) == Thing("7", 2)
        for bad in ({"name": None, "count": 1}, {"name": "a", "count": 1.5}, {"name": "a"}):
            with pytest.raises(StructureError):
                structure(bad, Thing)

    def test_forbid_extra_keys_variant(self) -> None:
        """The test variant of the converter refuses unknown keys; the shipped one ignores them."""

        @attrs.frozen
        class Thing:
            name: str

        assert structure({"name": "a", "new": 1}, Thing) == Thing("a")
        with pytest.raises(StructureError):
            structure({"name": "a", "new": 1}, Thing, make_converter(forbid_extra_keys=True))
