"""`WebhookReceiver`: verifies, deduplicates and dispatches Makini's webhook deliveries.

`receive` is the whole request path, with no web framework in it: body bytes (or an async byte
stream) and headers in, a `WebhookAnswer` out. The aiohttp.web and ASGI adapters translate
their requests into it, so both answer alike. The request path only checks and queues; handlers
run on a bounded pool of worker tasks, so the answer (2xx within Makini's 10 s) never waits for
them::

    POST ─► size/encoding/type checks ─► read ≤ max_body_size ─► verify ─► parse ─► claim id
         ─► queue ─► 200                    workers: queue ─► handlers (errors logged, never 5xx)
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self, TypeVar, overload

import attrs
from aiohttp import web

from makini_async._errors import UsageError, WebhookPayloadError, WebhookVerificationError

from . import _aiohttp
from ._asgi import WebhookASGIApp
from ._core import (
    DEFAULT_MAX_BODY_SIZE,
    Headers,
    ReceiverStats,
    WebhookAnswer,
    body_refusal,
    check_body,
    check_headers,
    content_length,
    ok,
    read_capped,
    refusal,
)
from ._dedup import DedupStore, MemoryDedupStore
from ._events import (
    ReauthorizationRequiredEvent,
    StatusChangedEvent,
    WebhookEvent,
    parse,
)
from ._ordering import LatestEventFilter
from ._verify import ID_HEADER, Secrets, header_values, single_header, verify

if TYPE_CHECKING:
    from makini_async._connection import Connection
    from makini_async._registry import ConnectionRegistry

__all__ = ["WebhookHandler", "WebhookReceiver"]

logger: Final = logging.getLogger("makini_async.webhooks")

E = TypeVar("E", bound=WebhookEvent)

#: An event handler: ``async def handler(event) -> None``.
WebhookHandler = Callable[[E], Awaitable[object]]
_AnyHandler = Callable[[WebhookEvent], Awaitable[object]]

_MAX_SELECTOR: Final = 256
_CACHE_LIMIT: Final = 1024
_GLOB_CHARS: Final = frozenset("*?[")


@attrs.frozen
class _Route:
    selector: str | type[WebhookEvent]
    handler: _AnyHandler

    def matches(self, event: WebhookEvent) -> bool:
        selector = self.selector
        if isinstance(selector, str):
            if _GLOB_CHARS.isdisjoint(selector):
                return selector == event.type
            return fnmatch.fnmatchcase(event.type, selector)
        return isinstance(event, selector)


def _is_sync_function(value: object) -> bool:
    return inspect.isfunction(value) and not inspect.iscoroutinefunction(value)


def _positive_int(value: object) -> bool:
    return type(value) is int and value >= 1


def _seconds(value: object) -> bool:
    return type(value) in {int, float} and 0 <= value < float("inf")  # type: ignore[operator] # checked


def _check_selector(selector: object) -> str | type[WebhookEvent]:
    if isinstance(selector, str):
        if not selector or len(selector) > _MAX_SELECTOR:
            raise ValueError("An event selector must be a non-empty name or pattern.")
        return selector
    if isinstance(selector, type) and issubclass(selector, WebhookEvent):
        return selector
    raise TypeError(
        'Select events by name ("connection.sync_completed"), pattern ("*.updated") or '
        f"event class (SyncCompletedEvent), not {type(selector).__name__}"
    )


class WebhookReceiver:
    """Receives Makini's webhooks on aiohttp.web or ASGI and runs your handlers for them.

    Each delivery is size-capped, verified against the active secrets, parsed into a typed
    event, deduplicated by event id and queued; the answer is 200 at once. Worker tasks then run
    every handler registered for the event's type; a failing handler is logged with the event id
    and never changes the answer. Invalid deliveries get 400/401/413/415 and run no handler; a
    delivery that cannot be taken right now (full queue, shutting down) gets 503 so that Makini
    retries it later. Nothing answers 500.

    In aiohttp.web, mount it as a sub-application or as a route of your own app::

        receiver = WebhookReceiver(secret)

        @receiver.on("connection.sync_completed")
        async def synced(event: WebhookEvent) -> None: ...

        app.add_subapp("/webhooks/makini", receiver.app())   # POST /webhooks/makini
        # or: receiver.setup(app, "/webhooks/makini")

    Either way the app's ``on_shutdown`` lets accepted events finish (up to ``drain_timeout``);
    those still unfinished are logged by id, kept in `abandoned`, and released from the dedup
    store so that a redelivery runs them. In Starlette or FastAPI, mount `asgi` and wrap the
    app's lifespan in ``async with receiver:``, which starts the workers and drains them; in any
    other framework, answer with `receive`.

    Args:
        secrets: The endpoint's signing secret, or several while rotating (``[new, old]``).
        store: Where accepted event ids are remembered (default: a `MemoryDedupStore`). The
            receiver closes it when it closes.
        max_body_size: Largest body accepted, in bytes; larger deliveries get 413 unread.
        workers: How many handlers run at once.
        queue_size: How many accepted events may wait for a worker.
        enqueue_timeout: Seconds a delivery waits for room in a full queue before 503.
        handler_timeout: Seconds each handler run may take (None: no limit).
        drain_timeout: Seconds accepted events get to finish when the receiver closes.
        require_json: Answer 415 to a ``Content-Type`` naming something other than JSON
            (a missing one, or ``application/octet-stream``, passes).

    Raises:
        TypeError: Bad argument types.
        ValueError: Bad argument values (no secret, non-positive sizes).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        secrets: str | bytes | Iterable[str | bytes] | Secrets,
        *,
        store: DedupStore | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        workers: int = 8,
        queue_size: int = 1024,
        enqueue_timeout: float = 5.0,
        handler_timeout: float | None = None,
        drain_timeout: float = 8.0,
        require_json: bool = True,
    ) -> None:
        self._secrets = Secrets(secrets)
        for name, value in (
            ("max_body_size", max_body_size),
            ("workers", workers),
            ("queue_size", queue_size),
        ):
            if not _positive_int(value):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, seconds in (
            ("enqueue_timeout", enqueue_timeout),
            ("drain_timeout", drain_timeout),
            ("handler_timeout", handler_timeout),
        ):
            if not (seconds is None and name == "handler_timeout") and not _seconds(seconds):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {seconds!r}")
        if store is not None and not isinstance(store, DedupStore):
            raise TypeError("store must implement DedupStore (claim, release, aclose)")
        self.store: DedupStore = store if store is not None else MemoryDedupStore()
        self.max_body_size = max_body_size
        self.workers = workers
        self.queue_size = queue_size
        self.enqueue_timeout = float(enqueue_timeout)
        self.handler_timeout = handler_timeout
        self.drain_timeout = float(drain_timeout)
        self.require_json = require_json
        self.stats = ReceiverStats()
        #: Accepted events that did not finish before shutdown (their ids were released).
        self.abandoned: list[WebhookEvent] = []
        self._routes: list[_Route] = []
        self._cache: dict[tuple[type[WebhookEvent], str], tuple[_AnyHandler, ...]] = {}
        self._queue: asyncio.Queue[WebhookEvent] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._current: dict[int, WebhookEvent] = {}
        self._closing = False
        self._closed = False

    # -- configuration -----------------------------------------------------------------------

    def rotate(self, secrets: str | bytes | Iterable[str | bytes] | Secrets) -> None:
        """Replace the active secrets (e.g. ``[new, old]`` during a rotation, then ``new``).

        Raises:
            TypeError: A secret is neither str nor bytes.
            ValueError: No secret or an empty one.

        .. versionadded:: 0.1.0
        """
        self._secrets = Secrets(secrets)

    @overload
    def on(self, selector: type[E], /) -> Callable[[WebhookHandler[E]], WebhookHandler[E]]: ...

    @overload
    def on(
        self, selector: str, /, *selectors: str
    ) -> Callable[[WebhookHandler[WebhookEvent]], WebhookHandler[WebhookEvent]]: ...

    def on(
        self, selector: str | type[WebhookEvent], /, *selectors: str
    ) -> Callable[[WebhookHandler[E]], WebhookHandler[E]]:
        """Register the decorated coroutine function as a handler for some events.

        Select events by exact name (``"connection.sync_completed"``), by glob pattern
        (``"*"``, ``"work-orders.*"``, ``"*.updated"``) or by event class
        (`SyncCompletedEvent`, which also types the handler's argument). Handlers of one
        event run one after another, in registration order.

        Args:
            selector: The first name, pattern or class.
            *selectors: More names or patterns.

        Returns:
            A decorator that registers the function and returns it unchanged.

        Raises:
            TypeError: A selector is neither a string nor a `WebhookEvent` class.
            ValueError: An empty selector.

        .. versionadded:: 0.1.0
        """
        checked = [_check_selector(s) for s in (selector, *selectors)]

        def register(handler: WebhookHandler[E]) -> WebhookHandler[E]:
            self._add(checked, handler)  # type: ignore[arg-type] # E is checked by `on`'s overloads
            return handler

        return register

    def add_handler(
        self, handler: WebhookHandler[WebhookEvent], *selectors: str | type[WebhookEvent]
    ) -> Callable[[], None]:
        """Register ``handler`` for the selected events (as `on` does), without a decorator.

        Returns:
            A function that removes the handler again.

        Raises:
            TypeError: A selector is neither a string nor a `WebhookEvent` class, or the
                handler is not callable.
            ValueError: No selector, or an empty one.

        .. versionadded:: 0.1.0
        """
        if not selectors:
            raise ValueError("Give at least one event name, pattern or class.")
        return self._add([_check_selector(s) for s in selectors], handler)

    def _add(
        self, selectors: list[str | type[WebhookEvent]], handler: _AnyHandler
    ) -> Callable[[], None]:
        if _is_sync_function(handler) or not callable(handler):
            raise TypeError(
                "A webhook handler must be an async callable taking the event "
                "(define it with `async def`)."
            )
        routes = [_Route(selector, handler) for selector in selectors]
        self._routes.extend(routes)
        self._cache.clear()

        def remove() -> None:
            for route in routes:
                with contextlib.suppress(ValueError):
                    self._routes.remove(route)
            self._cache.clear()

        return remove

    def handlers_for(self, event: WebhookEvent) -> tuple[_AnyHandler, ...]:
        """The handlers an event runs, in order (each at most once).

        Args:
            event: A parsed event.

        Returns:
            The matching handlers, in registration order.

        .. versionadded:: 0.1.0
        """
        key = (type(event), event.type)
        found = self._cache.get(key)
        if found is None:
            chosen: list[_AnyHandler] = []
            for route in self._routes:
                if route.matches(event) and route.handler not in chosen:
                    chosen.append(route.handler)
            found = tuple(chosen)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    def bind(self, registry: ConnectionRegistry) -> Callable[[], None]:
        """Reflect connection events in ``registry``'s connection states.

        * ``connection.reauthorization_required``: the connection is treated exactly as after a
          401 ``REAUTHORIZATION_REQUIRED``: the reconnect hook runs (once per token
          generation); without a new token the connection becomes ``REAUTHORIZATION_REQUIRED``
          and its calls fail at once, with no I/O.
        * ``connection.status_changed`` to ``active``/``online``: a connection parked as
          ``REAUTHORIZATION_REQUIRED`` is reactivated (``registry.update_token`` does the same
          with a new token).

        An event for a connection the registry does not hold is logged and ignored. Events
        older than one already applied to the same connection are dropped (see
        `LatestEventFilter`). Watch the changes with ``registry.subscribe``.

        Args:
            registry: The registry whose connections Makini's connection ids name.

        Returns:
            A function that unbinds the registry again.

        .. versionadded:: 0.1.0
        """
        latest = LatestEventFilter()

        async def reauthorization_required(event: WebhookEvent) -> None:
            connection = _lookup(registry, event, latest)
            if connection is not None:
                state = await connection.credentials_changed()
                logger.info(
                    "Webhook %s: connection %s needs reauthorization; its state is now %s",
                    event.id,
                    connection.id,
                    state.value,
                )

        async def status_changed(event: WebhookEvent) -> None:
            connection = _lookup(registry, event, latest)
            if isinstance(event, StatusChangedEvent) and connection is not None:
                if event.healthy:
                    connection.reactivate()
                logger.info(
                    "Webhook %s: connection %s is %s (state %s)",
                    event.id,
                    connection.id,
                    event.current,
                    connection.state.value,
                )

        removers = [
            self._add([ReauthorizationRequiredEvent], reauthorization_required),
            self._add([StatusChangedEvent], status_changed),
        ]

        def unbind() -> None:
            for remove in removers:
                remove()

        return unbind

    # -- receiving ---------------------------------------------------------------------------

    async def receive(
        self,
        body: bytes | AsyncIterable[bytes],
        headers: Headers,
        *,
        method: str = "POST",
        remote: str | None = None,
    ) -> WebhookAnswer:
        """Check, verify, parse, deduplicate and queue one delivery, with no web framework.

        The aiohttp.web and ASGI adapters call this; call it yourself to receive deliveries in
        any other framework, then send the answer's status, headers and body as they are.

        Args:
            body: The raw request body: bytes, or an async iterable of chunks (read only up to
                ``max_body_size``; a larger body is answered 413 without reading the rest).
            headers: The request headers (a multidict, so that a repeated header is seen).
            method: The request's method; anything but ``POST`` is answered 405.
            remote: The sender's address, for log messages.

        Returns:
            200 once the event is queued (``"accepted"``) or was already (``"duplicate"``);
            400, 401, 405, 413 or 415 for an invalid delivery; 503 with ``Retry-After`` when it
            cannot be taken now (queue full, shutting down, failing store). Never 500.

        Raises:
            TypeError: ``body`` is neither bytes nor an async iterable, or ``headers`` is not a
                mapping (raised before anything is read or counted).

        .. versionadded:: 0.1.0
        """
        checked_body = check_body(body)
        checked_headers = check_headers(headers)
        self.stats.received += 1
        try:
            return await self._receive(checked_body, checked_headers, method, remote)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or a broken store must not become a 500, which reveals nothing useful; 503
            # makes Makini retry the delivery later.
            logger.exception("Unexpected error while receiving a webhook")
            return self._refuse(503, "unavailable", "Try again later.")

    def _refuse(self, status: int, code: str, message: str) -> WebhookAnswer:
        if status == 503:  # noqa: PLR2004 - the one retry-later status
            self.stats.unavailable += 1
        else:
            self.stats.rejected += 1
        return refusal(status, code, message)

    def _precheck(self, headers: Headers, method: str) -> WebhookAnswer | None:
        """Refuse before reading the body: closing, not POST, compressed, too large, not JSON."""
        if len(header_values(headers, "Content-Type")) > 1:
            # Which label holds is anyone's guess; aiohttp.web's own parser refuses it too.
            return self._refuse(400, "duplicate_content_type", "Send one Content-Type header.")
        if self._closing:
            return self._refuse(503, "shutting_down", "The receiver is shutting down.")
        if method != "POST":
            return self._refuse(405, "method_not_allowed", "Deliveries are POSTed.")
        refused = body_refusal(headers, self.max_body_size, require_json=self.require_json)
        return None if refused is None else self._refuse(*refused)

    async def _receive(
        self,
        body: bytes | AsyncIterable[bytes],
        headers: Headers,
        method: str,
        remote: str | None,
    ) -> WebhookAnswer:
        refused = self._precheck(headers, method)
        if refused is not None:
            return refused
        raw = await self._read(body, headers)
        if isinstance(raw, WebhookAnswer):
            return raw
        try:
            verify(raw, headers, self._secrets)
        except WebhookVerificationError as exc:
            logger.info("Refused a webhook delivery from %s: %s", remote, exc.reason)
            return self._refuse(exc.status, exc.reason, exc.message)
        try:
            event_id = single_header(headers, ID_HEADER, error=WebhookPayloadError)
            event = parse(raw, event_id=event_id)
        except WebhookPayloadError as exc:
            # Signed by Makini but not an event we can read: 400 (a retry would not help).
            logger.warning("Refused a signed webhook delivery: %s (%s)", exc.reason, exc.message)
            return self._refuse(exc.status, exc.reason, exc.message)
        return await self._accept(event)

    async def _read(
        self, body: bytes | AsyncIterable[bytes], headers: Headers
    ) -> bytes | WebhookAnswer:
        """The body, or the refusal when it passes the cap or cannot be read whole."""
        try:
            raw = await read_capped(body, self.max_body_size)
        except Exception as exc:  # noqa: BLE001 - a peer that hangs up mid-body is no server bug
            logger.info("A webhook delivery's body could not be read: %s", type(exc).__name__)
            return self._refuse(400, "unreadable_body", "The body could not be read.")
        if raw is None:
            return self._refuse(413, "body_too_large", "The body is larger than allowed.")
        length = content_length(headers)
        if length is not None and length != len(raw):
            return self._refuse(400, "unreadable_body", "The body is shorter or longer than sent.")
        return raw

    async def _accept(self, event: WebhookEvent) -> WebhookAnswer:
        if not await self.store.claim(event.id):
            self.stats.duplicates += 1
            logger.debug("Webhook %s (%s) is a duplicate; not run again", event.id, event.type)
            return ok("duplicate")
        queue = self._queue
        if queue is None:
            await self.start()
            queue = self._queue
        if self._closing or queue is None:
            await self.store.release(event.id)
            return self._refuse(503, "shutting_down", "The receiver is shutting down.")
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            try:
                async with asyncio.timeout(self.enqueue_timeout):
                    await queue.put(event)
            except TimeoutError:
                await self.store.release(event.id)
                logger.warning(
                    "Webhook %s refused: every worker is busy and the queue full", event.id
                )
                return self._refuse(503, "busy", "Too many events are waiting; retry later.")
        self.stats.accepted += 1
        return ok("accepted")

    # -- aiohttp.web and ASGI adapters -------------------------------------------------------

    def app(self) -> web.Application:
        """A sub-application that receives deliveries on ``POST /`` below its mount point.

        Mount it with ``app.add_subapp("/webhooks/makini", receiver.app())``; Makini's endpoint
        is then ``https://your.host/webhooks/makini`` (with or without the final slash). Its
        startup, shutdown and cleanup signals start the workers, drain them and close the store.

        Returns:
            A new ``aiohttp.web.Application``.

        .. versionadded:: 0.1.0
        """
        return _aiohttp.sub_app(self)

    def setup(self, app: web.Application, path: str) -> None:
        """Add ``POST path`` to ``app`` and tie the receiver to the app's lifecycle.

        Args:
            app: The aiohttp.web application.
            path: The route's path, e.g. ``"/webhooks/makini"``.

        Raises:
            ValueError: ``path`` does not start with ``/``.

        .. versionadded:: 0.1.0
        """
        _aiohttp.setup(self, app, path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp.web handler: answer one delivery with `receive`'s answer.

        Use it directly as a route (``app.router.add_post(path, receiver.handle)``); then call
        `aclose` (or `setup`, which does it on the app's shutdown) when the app stops.

        Args:
            request: The aiohttp.web request.

        Returns:
            200 once the event is queued (or was already), 4xx for an invalid delivery, 503 when
            it cannot be taken now. Never 500.

        .. versionadded:: 0.1.0
        """
        return await _aiohttp.handle(self, request)

    def asgi(self) -> WebhookASGIApp:
        """An ASGI 3 application receiving deliveries, for Starlette, FastAPI or any server.

        Mount it (``Mount("/webhooks/makini", app=receiver.asgi())`` in Starlette,
        ``app.mount("/webhooks/makini", receiver.asgi())`` in FastAPI) and start and drain the
        receiver from the framework's lifespan with ``async with receiver:``; frameworks do not
        pass their lifespan to mounted apps. As a server's only application it handles the
        lifespan itself. It needs no optional dependency.

        Returns:
            A new `WebhookASGIApp` answering as `receive` does.

        .. versionadded:: 0.1.0
        """
        return WebhookASGIApp(self)

    # -- workers -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker tasks (done for you by the app's startup or the first delivery).

        Raises:
            UsageError: The receiver has been closed.

        .. versionadded:: 0.1.0
        """
        if self._closed:
            raise UsageError("The webhook receiver is closed; create a new one.")
        if self._queue is not None:
            return
        self._queue = asyncio.Queue(self.queue_size)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._work(n), name=f"makini-webhook-worker-{n}")
            for n in range(self.workers)
        ]

    async def _work(self, slot: int) -> None:
        queue = self._queue
        assert queue is not None  # noqa: S101 - start() creates it before any worker
        while True:
            event = await queue.get()
            self._current[slot] = event
            try:
                await self._dispatch(event)
            finally:
                del self._current[slot]
                queue.task_done()

    async def _dispatch(self, event: WebhookEvent) -> None:
        handlers = self.handlers_for(event)
        if not handlers:
            logger.debug("Webhook %s (%s) has no handler", event.id, event.type)
        for handler in handlers:
            name = getattr(handler, "__qualname__", type(handler).__name__)
            try:
                if self.handler_timeout is None:
                    await handler(event)
                else:
                    async with asyncio.timeout(self.handler_timeout):
                        await handler(event)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the worker itself is being stopped
                # A handler let a cancellation of its own escape: a failure, not a dead worker.
                self.stats.failed += 1
                logger.exception(
                    "Webhook handler %s was cancelled for event %s (%s)", name, event.id, event.type
                )
            except Exception:
                self.stats.failed += 1
                logger.exception(
                    "Webhook handler %s failed for event %s (%s)", name, event.id, event.type
                )
            else:
                self.stats.handled += 1

    async def join(self) -> None:
        """Wait until every accepted event has been through its handlers (for tests).

        .. versionadded:: 0.1.0
        """
        if self._queue is not None:
            await self._queue.join()

    async def drain(self, timeout: float | None = None) -> None:
        """Stop taking deliveries (503), let accepted events finish, then stop the workers.

        Events still queued or running after ``timeout`` seconds (default ``drain_timeout``)
        are cancelled, logged by id, appended to `abandoned` and released from the store, so
        that Makini's redelivery runs them (after a restart, with a persistent store).

        Args:
            timeout: Seconds to wait for accepted events.

        .. versionadded:: 0.1.0
        """
        self._closing = True
        queue = self._queue
        wait = self.drain_timeout if timeout is None else timeout
        tasks, self._tasks = self._tasks, []
        unfinished: list[WebhookEvent] = []
        if queue is not None and tasks:
            try:
                async with asyncio.timeout(wait):
                    await queue.join()
            except TimeoutError:
                logger.warning("Webhook handlers still running after %.1fs; cancelling them", wait)
            unfinished.extend(self._current.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if queue is not None:
            while not queue.empty():
                unfinished.append(queue.get_nowait())
                queue.task_done()
        await self._abandon(unfinished)

    async def _abandon(self, events: list[WebhookEvent]) -> None:
        if not events:
            return
        self.abandoned.extend(events)
        self.stats.abandoned += len(events)
        logger.warning(
            "%d accepted webhook event(s) did not finish before shutdown: %s",
            len(events),
            ", ".join(e.id for e in events),
        )
        for event in events:
            try:
                await self.store.release(event.id)
            except Exception:  # noqa: BLE001 - shutdown goes on; the ids are logged above
                logger.warning("Could not release webhook %s from the dedup store", event.id)

    async def aclose(self, timeout: float | None = None) -> None:
        """Drain (see `drain`), then close the dedup store. Idempotent.

        Args:
            timeout: Seconds to wait for accepted events.

        .. versionadded:: 0.1.0
        """
        if self._closed:
            return
        await self.drain(timeout)
        self._closed = True
        try:
            await self.store.aclose()
        except Exception:
            logger.warning("Closing the webhook dedup store failed", exc_info=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closing(self) -> bool:
        """True once the receiver stopped taking deliveries."""
        return self._closing

    @property
    def pending(self) -> int:
        """Accepted events waiting for or running in a worker."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return queued + len(self._current)

    def __repr__(self) -> str:
        return (
            f"<WebhookReceiver secrets={len(self._secrets)} handlers={len(self._routes)} "
            f"pending={self.pending}{' closing' if self._closing else ''}>"
        )


def _lookup(
    registry: ConnectionRegistry, event: WebhookEvent, latest: LatestEventFilter
) -> Connection | None:
    connection_id = event.connection_id
    if connection_id is None or connection_id not in registry:
        logger.info(
            "Webhook %s (%s) names connection %r, which the registry does not hold; ignored",
            event.id,
            event.type,
            connection_id,
        )
        return None
    if not latest.accept(event):
        logger.info(
            "Webhook %s (%s) is older than one already applied; ignored", event.id, event.type
        )
        return None
    return registry[connection_id]
