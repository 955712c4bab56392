"""Makini webhooks: verify deliveries, decode typed events, receive them on aiohttp.web or ASGI.

* `verify` checks ``X-Webhook-Signature`` (base64 HMAC-SHA256 of the raw body) against one or
  more active secrets; `sign` computes it for your tests.
* `parse` turns a verified body into a typed event (`SyncCompletedEvent`, `EntityEvent`, ...).
* `WebhookReceiver` does both, deduplicates by event id (`MemoryDedupStore`,
  `SQLiteDedupStore`), answers fast and runs your handlers off the request path;
  ``receiver.bind(registry)`` reflects connection events in a `ConnectionRegistry`. It serves
  aiohttp.web (``receiver.app()``, ``receiver.setup(app, path)``), any ASGI framework
  (``receiver.asgi()``, a `WebhookASGIApp`, for Starlette and FastAPI) and anything else
  (``await receiver.receive(body, headers)`` returns a `WebhookAnswer`), with the same answers.
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

Or in FastAPI (Starlette alike), starting and draining it from the app's lifespan::

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with receiver:
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/webhooks/makini", receiver.asgi())

Makini's scheme has no timestamp: a replayed delivery is stopped by its event id, which the
dedup store keeps for at least 25 hours (Makini retries for 24).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from makini_async._errors import WebhookError, WebhookPayloadError, WebhookVerificationError

from ._asgi import WebhookASGIApp
from ._core import ReceiverStats, WebhookAnswer
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
from ._receiver import WebhookHandler, WebhookReceiver
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
    "WebhookASGIApp",
    "WebhookAnswer",
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
