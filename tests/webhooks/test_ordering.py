"""`LatestEventFilter`: older entity and status events are dropped, others pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from makini_async.webhooks import LatestEventFilter, WebhookEvent, parse
from tests.webhooks.support import envelope

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _event(
    name: str, at: datetime | None, connection: str | None = "c1", **fields: object
) -> WebhookEvent:
    payload = envelope(name, connection_id=connection, **fields)
    payload["created_at"] = None if at is None else at.isoformat()
    return parse(json.dumps(payload).encode())


def _status(current: str, at: datetime, connection: str = "c1") -> WebhookEvent:
    return _event("connection.status_changed", at, connection, data={"current": current})


class TestLatestEventFilter:
    def test_older_status_dropped(self) -> None:
        """A status event older than the last applied one for the connection is stale."""
        latest = LatestEventFilter()
        assert latest.accept(_status("online", T0 + timedelta(seconds=60)))
        assert not latest.accept(_status("offline", T0))
        assert latest.accept(_status("offline", T0 + timedelta(seconds=61)))

    def test_reauthorization_shares_the_state_subject(self) -> None:
        """A late 'online' older than a reauthorization event is stale."""
        latest = LatestEventFilter()
        latest.mark_applied(_event("connection.reauthorization_required", T0))
        assert latest.is_stale(_status("online", T0 - timedelta(seconds=1)))

    def test_other_connections_unaffected(self) -> None:
        """Connections are tracked separately."""
        latest = LatestEventFilter()
        latest.mark_applied(_status("online", T0, "c1"))
        assert not latest.is_stale(_status("offline", T0 - timedelta(hours=1), "c2"))

    def test_equal_timestamps_apply(self) -> None:
        """An event exactly as old as the newest applied one is not stale."""
        latest = LatestEventFilter()
        latest.mark_applied(_status("online", T0))
        assert not latest.is_stale(_status("offline", T0))

    def test_entity_events_per_key(self) -> None:
        """Entity events are compared per record: an old update of A never hides B."""
        latest = LatestEventFilter()
        latest.mark_applied(_event("assets.deleted", T0, body=["A"]))
        assert latest.is_stale(_event("assets.updated", T0 - timedelta(seconds=5), body=["A"]))
        assert not latest.is_stale(_event("assets.updated", T0 - timedelta(seconds=5), body=["B"]))
        assert not latest.is_stale(
            _event("assets.updated", T0 - timedelta(seconds=5), body=["A", "B"])
        )
        assert not latest.is_stale(
            _event("work-orders.updated", T0 - timedelta(seconds=5), body=["A"])
        )

    def test_newer_timestamp_kept(self) -> None:
        """Marking an older event applied never moves the newest timestamp back."""
        latest = LatestEventFilter()
        latest.mark_applied(_status("online", T0))
        latest.mark_applied(_status("offline", T0 - timedelta(hours=1)))
        assert latest.is_stale(_status("offline", T0 - timedelta(minutes=1)))

    @pytest.mark.parametrize(
        "event",
        [
            _event("connection.status_changed", None),
            _event("connection.status_changed", T0, connection=None),
            _event("connection.sync_completed", T0),
            _event("flow.x", T0),
            _event("assets.updated", T0),
        ],
    )
    def test_never_stale(self, event: WebhookEvent) -> None:
        """Events without time, connection or subject (and other types) always pass."""
        latest = LatestEventFilter()
        latest.mark_applied(_status("online", T0 + timedelta(days=1)))
        latest.mark_applied(event)
        assert latest.accept(event)

    def test_bounded(self) -> None:
        """Only max_subjects subjects are kept; forgetting makes the filter permissive."""
        latest = LatestEventFilter(max_subjects=2)
        for connection in ("c1", "c2", "c3"):
            latest.mark_applied(_status("online", T0, connection))
        assert len(latest) == 2
        assert not latest.is_stale(_status("offline", T0 - timedelta(hours=1), "c1"))
        assert latest.is_stale(_status("offline", T0 - timedelta(hours=1), "c3"))
        assert "subjects=2" in repr(latest)
        with pytest.raises(ValueError, match="max_subjects"):
            LatestEventFilter(max_subjects=0)
