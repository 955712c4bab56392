"""Webhooks: endpoints, signed deliveries with retries and backoff, and the delivery log.

Deliveries are signed with `makini_async.webhooks.sign`, the function receivers verify with, so
the sandbox and the client cannot disagree on the scheme.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import random
import secrets
from collections.abc import Mapping
from typing import Final

import aiohttp
import attrs

from makini_async.sandbox._clock import SandboxClock
from makini_async.sandbox._data import iso
from makini_async.sandbox._errors import dumps
from makini_async.webhooks import sign

__all__ = ["Delivery", "WebhookEndpoint", "WebhookHub"]

BACKOFF_START: Final = 30.0
MAX_AGE: Final = 86400.0


@attrs.define
class WebhookEndpoint:
    """A receiver registered for one connection's events.

    .. versionadded:: 0.1.0
    """

    id: str
    connection: str
    url: str
    events: tuple[str, ...] = ("*",)
    secret: str = attrs.field(default="", repr=False)

    def wants(self, event: str) -> bool:
        """Tell whether the event filter lets an event through.

        Args:
            event: The event name, e.g. ``assets.updated``.

        Returns:
            ``True`` when one of the ``events`` globs (e.g. ``assets.*``) matches.
        """
        return any(fnmatch.fnmatchcase(event, pattern) for pattern in self.events)


@attrs.define
class Delivery:
    """One attempt to deliver one event to one endpoint.

    .. versionadded:: 0.1.0
    """

    event_id: str
    event: str
    endpoint_id: str
    url: str
    attempt: int
    time: float
    status: int | None = None
    error: str | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status is not None and 200 <= self.status < 300  # noqa: PLR2004 - 2xx


class WebhookHub:
    """Registers endpoints and delivers events to them in background tasks.

    Args:
        clock: The sandbox's clock: event times, and the scale of every wait (``0.001``: a
            30 s backoff passes in 30 ms).
        timeout: Seconds a receiver has to answer (not scaled).
        seed: Seeds the duplicate and reordering choices.
    """

    def __init__(self, clock: SandboxClock, timeout: float = 10.0, seed: int = 0) -> None:
        self._clock = clock
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

    def configure(
        self,
        *,
        duplicates: float | None = None,
        reorder: float | None = None,
        timeout: float | None = None,
        backoff_start: float | None = None,
        max_age: float | None = None,
    ) -> dict[str, float]:
        """Tune deliveries (``Sandbox.configure_webhooks`` documents the arguments).

        Returns:
            Every setting after the change.
        """
        if duplicates is not None:
            self.duplicates = duplicates
        if reorder is not None:
            self.reorder = reorder
        if timeout is not None:
            self.timeout = timeout
        if backoff_start is not None:
            self.backoff_start = backoff_start
        if max_age is not None:
            self.max_age = max_age
        return {
            "duplicates": self.duplicates,
            "reorder": self.reorder,
            "timeout": self.timeout,
            "backoff_start": self.backoff_start,
            "max_age": self.max_age,
        }

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
            "created_at": iso(self._clock.now()),
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

    def deliveries_of(self, event_id: str | None) -> list[Delivery]:
        """Return the delivery log (every attempt), or one event's part of it."""
        return [d for d in self.deliveries if event_id is None or d.event_id == event_id]

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
            await self._clock.sleep(self._rng.random() * self.reorder)
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Id": event_id,
            "X-Webhook-Signature": sign(raw, secret=endpoint.secret),
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
                self._clock.now(),
                duplicate=duplicate,
            )
            self.deliveries.append(delivery)
            await self._post(endpoint.url, raw, headers, delivery)
            self._changed.set()
            delay = self.backoff_start * 2 ** (attempt - 1)
            if delivery.ok or waited + delay > self.max_age:
                return
            waited += delay
            await self._clock.sleep(delay)

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

    async def wait_for_deliveries(self, count: int, *, ok: bool, timeout: float) -> None:
        """Wait until ``count`` deliveries (successful ones when ``ok``) are logged.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while sum(1 for d in self.deliveries if d.ok or not ok) < count:
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
