"""Makini webhooks: verify deliveries, decode typed events, and receive them on aiohttp.web.

* `verify` checks ``X-Webhook-Signature`` (base64 HMAC-SHA256 of the raw body) against one or
  more active secrets; `sign` computes it for your tests.
* `parse` turns a verified body into a typed event (`SyncCompletedEvent`, `EntityEvent`, ...).
* `WebhookReceiver` does both on an aiohttp.web route, deduplicates by event id
  (`MemoryDedupStore`, `SQLiteDedupStore`), answers fast and runs your handlers off the request
  path; ``receiver.bind(registry)`` reflects connection events in a `ConnectionRegistry`.
* `LatestEventFilter` drops entity and status events older than the last one applied.
* A refused delivery raises a `WebhookError`: `WebhookVerificationError` from `verify` (it
  cannot be trusted; answer 401), `WebhookPayloadError` from `parse` (signed, but not an event;
  answer 400). Neither is a subclass of the other; ``error.status`` is the answer.

Receiving, in an aiohttp.web app::

    receiver = WebhookReceiver([new_secret, old_secret], store=SQLiteDedupStore("hooks.db"))
    receiver.bind(registry)  # reauthorization and status events move connection states

    @receiver.on(SyncCompletedEvent)
    async def synced(event: SyncCompletedEvent) -> None:
        print(event.connection_id, event.counts)

    app.add_subapp("/webhooks/makini", receiver.app())

Makini's scheme has no timestamp: a replayed delivery is stopped by its event id, which the
dedup store keeps for at least 25 hours (Makini retries for 24).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from makini_async._errors import WebhookError, WebhookPayloadError, WebhookVerificationError

from ._dedup import DEFAULT_TTL, DedupStore, MemoryDedupStore, SQLiteDedupStore
from ._events import (
    EntityEvent,
    FlowEvent,
    ReauthorizationRequiredEvent,
    StatusChangedEvent,
    SyncCompletedEvent,
    SyncFailedEvent,
    SystemErrorEvent,
    UnknownEvent,
    WebhookEvent,
    parse,
)
from ._ordering import LatestEventFilter
from ._receiver import ReceiverStats, WebhookHandler, WebhookReceiver
from ._verify import ID_HEADER, SIGNATURE_HEADER, Secrets, sign, verify

__all__ = [
    "DEFAULT_TTL",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "DedupStore",
    "EntityEvent",
    "FlowEvent",
    "LatestEventFilter",
    "MemoryDedupStore",
    "ReauthorizationRequiredEvent",
    "ReceiverStats",
    "SQLiteDedupStore",
    "Secrets",
    "StatusChangedEvent",
    "SyncCompletedEvent",
    "SyncFailedEvent",
    "SystemErrorEvent",
    "UnknownEvent",
    "WebhookError",
    "WebhookEvent",
    "WebhookHandler",
    "WebhookPayloadError",
    "WebhookReceiver",
    "WebhookVerificationError",
    "parse",
    "sign",
    "verify",
]
