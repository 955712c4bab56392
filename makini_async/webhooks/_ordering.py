"""`LatestEventFilter`: drop entity and status events older than what was already applied.

Makini may deliver events out of order (retries, parallel deliveries), and a receiver runs
handlers concurrently, so "status offline" sent at 10:00 can arrive after "status online" sent at
10:01. Each event carries ``created_at``; this helper remembers, per connection and subject, the
newest ``created_at`` applied and tells you when an event is older.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import datetime
from typing import Final

from ._events import (
    EntityEvent,
    ReauthorizationRequiredEvent,
    StatusChangedEvent,
    WebhookEvent,
)

__all__ = ["LatestEventFilter"]

_Subject = tuple[str, ...]
_STATE: Final = "connection-state"


def _subjects(event: WebhookEvent) -> Iterator[tuple[str, ...]]:
    """What an event is about: the connection's state, or each changed record."""
    connection = event.connection_id
    if connection is None or event.created_at is None:
        return
    if isinstance(event, StatusChangedEvent | ReauthorizationRequiredEvent):
        yield (connection, _STATE)
    elif isinstance(event, EntityEvent):
        for key in event.keys:
            yield (connection, event.entity, key)


class LatestEventFilter:
    """Tells whether an entity or connection-state event is older than the last one applied.

    Subjects are compared per connection: for status and reauthorization events, the
    connection's state; for entity events, each ``(entity, key)`` (an update of record ``A``
    never hides one of record ``B``). Events without ``created_at`` or ``connection_id``, and
    every other event type, are never stale. An event as old as the newest applied one is not
    stale (equal timestamps are applied again; make handlers idempotent)::

        latest = LatestEventFilter()

        @receiver.on("work-orders.updated", "work-orders.deleted")
        async def changed(event: WebhookEvent) -> None:
            if latest.is_stale(event):
                return
            await refetch(event.keys)
            latest.mark_applied(event)

    Not safe to share between processes; one receiver, one filter.

    Args:
        max_subjects: Most subjects remembered; the least recently used are forgotten first
            (forgetting only makes the filter more permissive).

    Raises:
        ValueError: ``max_subjects`` under 1.

    .. versionadded:: 0.1.0
    """

    def __init__(self, *, max_subjects: int = 100_000) -> None:
        if type(max_subjects) is not int or max_subjects < 1:
            raise ValueError("max_subjects must be an int >= 1")
        self.max_subjects = max_subjects
        self._applied: collections.OrderedDict[_Subject, datetime] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._applied)

    def is_stale(self, event: WebhookEvent) -> bool:
        """True when every subject of ``event`` already saw a newer event applied.

        Args:
            event: The event about to be applied.

        Returns:
            True to drop the event, False to apply it.

        .. versionadded:: 0.1.0
        """
        created = event.created_at
        subjects = list(_subjects(event))
        if created is None or not subjects:
            return False
        for subject in subjects:
            newest = self._applied.get(subject)
            if newest is None or newest <= created:
                return False
        return True

    def mark_applied(self, event: WebhookEvent) -> None:
        """Record that ``event`` was applied (newer timestamps are kept).

        .. versionadded:: 0.1.0
        """
        created = event.created_at
        if created is None:
            return
        applied = self._applied
        for subject in _subjects(event):
            newest = applied.get(subject)
            if newest is None or newest < created:
                applied[subject] = created
            applied.move_to_end(subject)
        while len(applied) > self.max_subjects:
            applied.popitem(last=False)

    def accept(self, event: WebhookEvent) -> bool:
        """`is_stale` and `mark_applied` in one step: False to drop, True (recorded) to apply.

        .. versionadded:: 0.1.0
        """
        if self.is_stale(event):
            return False
        self.mark_applied(event)
        return True

    def __repr__(self) -> str:
        return f"<LatestEventFilter subjects={len(self._applied)}>"
