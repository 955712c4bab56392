"""Webhook endpoints, signed deliveries, retries with backoff, and the delivery log."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import random
import secrets
from collections.abc import Callable, Mapping
from typing import Final

import aiohttp

from makini_async.sandbox._data import iso
from makini_async.sandbox._errors import dumps
from makini_async.sandbox._state import Delivery, WebhookEndpoint

__all__ = ["WebhookHub", "sign"]

BACKOFF_START: Final = 30.0
MAX_AGE: Final = 86400.0


def sign(secret: str, body: bytes) -> str:
    """Return the contract's signature: base64(HMAC-SHA256(secret, raw body)).

    Args:
        secret: The endpoint's secret.
        body: The raw request body.

    Returns:
        The value of the ``X-Webhook-Signature`` header.
    """
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class WebhookHub:
    """Registers endpoints and delivers events to them in background tasks.

    Args:
        clock: Returns the sandbox's current Unix time.
        time_scale: Returns the factor applied to every wait (e.g. ``0.001``: 30 s → 30 ms).
        timeout: Seconds a receiver has to answer (not scaled).
        seed: Seeds the duplicate and reordering choices.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        time_scale: Callable[[], float],
        timeout: float = 10.0,
        seed: int = 0,
    ) -> None:
        self._clock = clock
        self._scale = time_scale
        self.timeout = timeout
        self.endpoints: dict[str, WebhookEndpoint] = {}
        self.deliveries: list[Delivery] = []
        self.events: list[dict[str, object]] = []
        self.duplicates = 0.0
        self.reorder = 0.0
        self.backoff_start = BACKOFF_START
        self.max_age = MAX_AGE
        self._rng = random.Random(seed)  # noqa: S311 - chaos, not secrets
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    async def start(self) -> None:
        """Open the HTTP session deliveries go through."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": "makini-sandbox-webhooks"},
        )

    async def aclose(self) -> None:
        """Cancel pending deliveries and close the session."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def add(
        self, connection: str, url: str, events: tuple[str, ...], secret: str | None
    ) -> WebhookEndpoint:
        """Register an endpoint and return it (a secret is generated when none is given)."""
        endpoint = WebhookEndpoint(
            id=f"we_{secrets.token_hex(6)}",
            connection=connection,
            url=url,
            events=events or ("*",),
            secret=secret or f"whsec_{secrets.token_hex(16)}",
        )
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    def remove(self, endpoint_id: str) -> None:
        """Forget an endpoint (deliveries already scheduled still run)."""
        self.endpoints.pop(endpoint_id, None)

    def emit(
        self,
        connection: str,
        event: str,
        data: Mapping[str, object] | None = None,
        body: list[str] | None = None,
    ) -> str:
        """Build an event, log it and schedule its delivery to every interested endpoint.

        Returns:
            The event id (also the ``X-Webhook-Id`` header of every delivery).
        """
        event_id = f"evt_{secrets.token_hex(12)}"
        payload: dict[str, object] = {
            "id": event_id,
            "event": event,
            "created_at": iso(self._clock()),
            "connection_id": connection,
            "data": dict(data or {}),
            "body": list(body or []),
        }
        self.events.append(payload)
        raw = dumps(payload)
        for endpoint in list(self.endpoints.values()):
            if endpoint.connection == connection and endpoint.wants(event):
                self._spawn(endpoint, raw, event_id, event, duplicate=False)
                if self.duplicates and self._rng.random() < self.duplicates:
                    self._spawn(endpoint, raw, event_id, event, duplicate=True)
        return event_id

    def _spawn(
        self, endpoint: WebhookEndpoint, raw: bytes, event_id: str, event: str, *, duplicate: bool
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._deliver(endpoint, raw, event_id, event, duplicate=duplicate)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, endpoint: WebhookEndpoint, raw: bytes, event_id: str, event: str, *, duplicate: bool
    ) -> None:
        if self.reorder:
            await asyncio.sleep(self._rng.random() * self.reorder * self._scale())
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Id": event_id,
            "X-Webhook-Signature": sign(endpoint.secret, raw),
        }
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            delivery = Delivery(
                event_id,
                event,
                endpoint.id,
                endpoint.url,
                attempt,
                self._clock(),
                duplicate=duplicate,
            )
            self.deliveries.append(delivery)
            await self._post(endpoint.url, raw, headers, delivery)
            self._changed.set()
            delay = self.backoff_start * 2 ** (attempt - 1)
            if delivery.ok or waited + delay > self.max_age:
                return
            waited += delay
            await asyncio.sleep(delay * self._scale())

    async def _post(
        self, url: str, raw: bytes, headers: Mapping[str, str], delivery: Delivery
    ) -> None:
        if self._session is None:
            delivery.error = "the sandbox is closed"
            return
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with self._session.post(
                url, data=raw, headers=dict(headers), timeout=timeout
            ) as response:
                await response.read()
                delivery.status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds after some delivery, or raise ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def drain(self, timeout: float) -> None:
        """Wait until every delivery, retries included, has finished.

        Raises:
            TimeoutError: Deliveries are still running after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.wait(list(self._tasks))

    @property
    def pending(self) -> int:
        """How many deliveries (with their retries) are still running."""
        return len(self._tasks)
