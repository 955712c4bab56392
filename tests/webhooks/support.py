"""Helpers for the webhook tests: signed deliveries, a recording handler, a served receiver."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import aiohttp

from makini_async.webhooks import WebhookEvent, WebhookReceiver, sign

#: A canary secret: it must never show up in a log, a repr or an answer.
SECRET = "whsec_canary_7Qk2pX9vLmT4"
OLD_SECRET = "whsec_old_canary_Zr8sW1nB"


def envelope(event: str = "system.error", **fields: object) -> dict[str, object]:
    """A contract envelope with a fresh id; ``fields`` override or add top-level keys."""
    payload: dict[str, object] = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "event": event,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "connection_id": "c1",
        "data": {},
        "body": [],
    }
    payload.update(fields)
    return payload


def signed(
    payload: Mapping[str, object] | bytes,
    secret: str = SECRET,
    *,
    event_id: str | None = None,
    **extra: str,
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a delivery signed as Makini signs it."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": sign(raw, secret=secret)}
    if event_id is None and isinstance(payload, Mapping) and isinstance(payload.get("id"), str):
        event_id = str(payload["id"])
    if event_id is not None:
        headers["X-Webhook-Id"] = event_id
    headers.update(extra)
    return raw, headers


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds (state owned by the sandbox or registry has no event)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await asyncio.sleep(0.005)


class Recorder:
    """A handler that records every event it is given."""

    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: WebhookEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` events were recorded."""
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.events]


class Served:
    """A receiver running on 127.0.0.1 behind a real aiohttp server, and a client for it."""

    def __init__(self, receiver: WebhookReceiver, url: str, session: aiohttp.ClientSession) -> None:
        self.receiver = receiver
        self.url = url
        self.session = session

    async def post(
        self, body: bytes, headers: Mapping[str, str] | list[tuple[str, str]] | None = None
    ) -> tuple[int, dict[str, object]]:
        """POST a raw body; return the status and the decoded JSON answer."""
        async with self.session.post(self.url, data=body, headers=headers) as response:
            text = await response.text()
            try:
                decoded = json.loads(text) if text else {}
            except ValueError:
                decoded = {"text": text}
            return response.status, decoded

    async def deliver(self, payload: Mapping[str, object] | bytes, **kwargs: str) -> int:
        """Sign and POST one delivery; return the status."""
        raw, headers = signed(payload, **kwargs)
        status, _ = await self.post(raw, headers)
        return status


#: The ``serve`` fixture: ``await serve(receiver=None, **receiver_kwargs) -> Served``.
Serve = Callable[..., Awaitable[Served]]
#: The ``serve_on`` fixture: ``await serve_on(framework, receiver=None, **kwargs) -> Served``.
ServeOn = Callable[..., Awaitable[Served]]
