"""Fan-out: run an async function for many connections, fairly, and yield outcomes as they finish.

The scheduler works on *jobs*: one per connection, or one per connection and item when
``items`` is given (e.g. one per entity in a sync). It keeps a round-robin ring of connections
and starts the next job of the connection at the front, so that a connection with many jobs
(or one long job) never keeps the others waiting; at most ``per_connection`` jobs of one
connection run at once. A connection that needs reauthorization (or is closed) gets ``skipped``
outcomes without any I/O. A connection behind a closed rate-limit gate (a 429 with
Retry-After) does not count against ``concurrency`` while it waits, so its slot goes to another
connection, and its jobs that have not started are parked until the gate reopens.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Final, Generic, Self, TypeVar

import attrs

from ._channel import ConnectionState
from ._errors import RequestTimeoutError
from ._transport import check_seconds

if TYPE_CHECKING:
    from ._connection import Connection
    from ._types import Clock

__all__ = ["FanOut", "Outcome", "OutcomeStatus", "fan_out"]

logger: Final = logging.getLogger("makini_async")

T = TypeVar("T")

#: How often running jobs are checked for a newly closed rate-limit gate.
_GATE_POLL: Final = 0.1
#: Running jobs may exceed ``concurrency`` by this factor while some of them wait at a gate.
_OVERSHOOT: Final = 2


class OutcomeStatus(enum.Enum):
    """How a job ended.

    .. versionadded:: 0.1.0
    """

    #: The function returned; ``Outcome.value`` holds what it returned.
    OK = "ok"
    #: The function was not run; ``Outcome.reason`` says why.
    SKIPPED = "skipped"
    #: The function raised; ``Outcome.error`` holds the exception.
    FAILED = "failed"


@attrs.frozen
class Outcome(Generic[T]):
    """The result of one job of a fan-out: ok with its value, skipped, or failed.

    Attributes:
        connection_id: The connection the job ran for.
        status: An `OutcomeStatus`.
        value: What the function returned (``None`` unless ok).
        item: The job's item when the fan-out was given ``items``, else ``None``.
        error: The exception the function raised (``None`` unless failed).
        reason: Why the job was skipped or failed, in a few words.
        request_id: The failed request's id, when the error carries one.
        elapsed: Seconds the function ran.

    .. versionadded:: 0.1.0
    """

    connection_id: str
    status: OutcomeStatus
    value: T | None = None
    item: object = None
    error: Exception | None = None
    reason: str | None = None
    request_id: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the function returned."""
        return self.status is OutcomeStatus.OK

    @property
    def skipped(self) -> bool:
        """True when the function was not run."""
        return self.status is OutcomeStatus.SKIPPED

    @property
    def failed(self) -> bool:
        """True when the function raised."""
        return self.status is OutcomeStatus.FAILED

    @property
    def code(self) -> str | None:
        """The error's Makini code (e.g. ``"SYSTEM_UNAVAILABLE"``), when it has one."""
        code = getattr(self.error, "code", None)
        return code if isinstance(code, str) else None


def _reason(error: Exception) -> str:
    code = getattr(error, "code", None)
    name = type(error).__name__
    return f"{name} {code}" if isinstance(code, str) and code else name


@attrs.define(eq=False)
class _Lane:
    """One connection's pending jobs and how many of them run."""

    connection: Connection
    paused_for: Callable[[], float]
    pending: deque[object]
    running: int = 0
    queued: bool = False


class FanOut(AsyncIterator[Outcome[T]]):
    """An async iterator of `Outcome`, one per job, in the order the jobs finish.

    Returned by `ConnectionRegistry.map`. Closing it (``aclose()``, leaving ``async with``, or
    ``contextlib.aclosing``) cancels every running job and waits for them to end. Breaking out of
    ``async for`` without closing cancels them when the iterator is garbage-collected.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        lanes: list[_Lane],
        call: Callable[[Connection, object], Awaitable[T]],
        *,
        has_items: bool,
        concurrency: int,
        per_connection: int,
        clock: Clock,
        timeout: float | None,
        deadline_at: float | None,
    ) -> None:
        self._monotonic = clock.monotonic
        self._timeout = timeout
        self._deadline_at = deadline_at
        self._ring: deque[_Lane] = deque()
        for lane in lanes:
            if lane.pending:
                lane.queued = True
                self._ring.append(lane)
        self._call = call
        self._has_items = has_items
        self._concurrency = concurrency
        self._per_connection = per_connection
        self._running: dict[asyncio.Task[T], tuple[_Lane, object, float]] = {}
        self._parked: list[tuple[float, int, _Lane]] = []
        self._parked_count = 0
        self._ready: deque[Outcome[T]] = deque()
        self._closed = False

    # -- the async-iterator protocol -------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Outcome[T]:
        while True:
            if self._closed:
                raise StopAsyncIteration
            self._admit()
            if self._ready:
                return self._ready.popleft()
            if not self._running and not self._parked and not self._ring:
                self._closed = True
                raise StopAsyncIteration
            await self._wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel every running job and wait until they have ended (idempotent).

        .. versionadded:: 0.1.0
        """
        self._closed = True
        self._ring.clear()
        self._parked.clear()
        tasks = list(self._running)
        self._running.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def __del__(self) -> None:
        for task in getattr(self, "_running", {}):
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                task.cancel()

    # -- scheduling --------------------------------------------------------------------------

    def _open_slots(self) -> int:
        waiting = sum(1 for lane, _, _ in self._running.values() if lane.paused_for() > 0)
        active = len(self._running) - waiting
        hard_cap = self._concurrency * _OVERSHOOT - len(self._running)
        return min(self._concurrency - active, hard_cap)

    def _admit(self) -> None:
        """Start jobs while slots are free, round-robin across connections."""
        now = self._monotonic()
        while self._parked and self._parked[0][0] <= now:
            _, _, lane = heapq.heappop(self._parked)
            lane.queued = True
            self._ring.append(lane)
        if self._deadline_at is not None and now >= self._deadline_at:
            self._skip_remaining("the deadline passed")
            return
        slots = self._open_slots()
        while slots > 0 and self._ring:
            lane = self._ring.popleft()
            lane.queued = False
            connection = lane.connection
            if connection.state is not ConnectionState.ACTIVE:
                self._skip_all(lane)
                continue
            gate = lane.paused_for()
            if gate > 0:
                self._parked_count += 1
                heapq.heappush(self._parked, (now + gate, self._parked_count, lane))
                lane.queued = True
                continue
            item = lane.pending.popleft()
            self._start(lane, item)
            slots -= 1
            if lane.pending and lane.running < self._per_connection:
                lane.queued = True
                self._ring.append(lane)

    def _skip_remaining(self, reason: str) -> None:
        """Skip every job not yet started."""
        lanes = [*self._ring, *(lane for _, _, lane in self._parked)]
        self._ring.clear()
        self._parked.clear()
        for lane in lanes:
            lane.queued = False
            self._skip_all(lane, reason)

    def _skip_all(self, lane: _Lane, reason: str | None = None) -> None:
        if reason is None:
            reason = (
                "the customer must reconnect"
                if lane.connection.state is ConnectionState.REAUTHORIZATION_REQUIRED
                else "the connection is closed"
            )
        while lane.pending:
            item = lane.pending.popleft()
            self._ready.append(
                Outcome(
                    connection_id=lane.connection.id,
                    status=OutcomeStatus.SKIPPED,
                    item=item if self._has_items else None,
                    reason=reason,
                )
            )

    def _start(self, lane: _Lane, item: object) -> None:
        lane.running += 1
        task = asyncio.ensure_future(self._run(lane.connection, item))
        self._running[task] = (lane, item, time.monotonic())

    async def _run(self, connection: Connection, item: object) -> T:
        """One job, cut at its timeout or the fan-out's deadline, whichever comes first."""
        limit = self._timeout
        if self._deadline_at is not None:
            left = max(0.0, self._deadline_at - self._monotonic())
            limit = left if limit is None else min(limit, left)
        if limit is None:
            return await self._call(connection, item)
        budget = asyncio.timeout(limit)
        try:
            async with budget:
                return await self._call(connection, item)
        except TimeoutError:
            if not budget.expired():
                raise
            raise RequestTimeoutError(
                f"The job ran out of time ({limit:.3f}s left for it)"
            ) from None

    async def _wait(self) -> None:
        timeout: float | None = None
        if self._parked:
            now = self._monotonic()
            timeout = max(0.0, self._parked[0][0] - now)
        if self._deadline_at is not None and (self._ring or self._parked):
            left = max(0.0, self._deadline_at - self._monotonic())
            timeout = left if timeout is None else min(timeout, left)
        if self._running and self._ring:
            # A running job may meet a 429 at any time and so free its slot for a waiting one.
            timeout = _GATE_POLL if timeout is None else min(timeout, _GATE_POLL)
        if not self._running:
            if timeout:
                await asyncio.sleep(timeout)
            return
        done, _ = await asyncio.wait(
            list(self._running), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            # `aclose` (from another task) may have taken the jobs over while this one waited.
            if task in self._running:
                self._finish(task)

    def _finish(self, task: asyncio.Task[T]) -> None:
        lane, item, started = self._running.pop(task)
        lane.running -= 1
        elapsed = time.monotonic() - started
        shown = item if self._has_items else None
        connection_id = lane.connection.id
        if task.cancelled():
            outcome: Outcome[T] = Outcome(
                connection_id=connection_id,
                status=OutcomeStatus.FAILED,
                item=shown,
                reason="cancelled",
                elapsed=elapsed,
            )
        else:
            error = task.exception()
            if error is None:
                outcome = Outcome(
                    connection_id=connection_id,
                    status=OutcomeStatus.OK,
                    value=task.result(),
                    item=shown,
                    elapsed=elapsed,
                )
            elif isinstance(error, Exception):
                request_id = getattr(error, "request_id", None)
                outcome = Outcome(
                    connection_id=connection_id,
                    status=OutcomeStatus.FAILED,
                    item=shown,
                    error=error,
                    reason=_reason(error),
                    request_id=request_id if isinstance(request_id, str) else None,
                    elapsed=elapsed,
                )
            else:  # pragma: no cover - KeyboardInterrupt and friends propagate
                raise error
        self._ready.append(outcome)
        if lane.pending and not lane.queued and lane.running < self._per_connection:
            lane.queued = True
            self._ring.append(lane)


def _check_seconds(name: str, value: object) -> float | None:
    return None if value is None else check_seconds(name, value)


def fan_out(
    connections: Iterable[tuple[Connection, Callable[[], float]]],
    fn: Callable[..., Awaitable[T]],
    *,
    items: Iterable[object] | None,
    concurrency: int,
    per_connection: int,
    timeout: float | None,
    deadline: float | None,
    clock: Clock,
) -> FanOut[T]:
    """A `FanOut` of ``fn`` over ``connections`` (each with its rate-limit pause probe).

    Raises:
        TypeError: ``fn`` is not callable, ``items`` is not iterable, or ``timeout`` or
            ``deadline`` is not a number.
        ValueError: ``concurrency`` or ``per_connection`` below 1, or a limit not > 0, not
            finite or over `MAX_SECONDS`.
    """
    if not callable(fn):
        raise TypeError(f"fn must be an async callable, not {type(fn).__name__}")
    for name, value in (("concurrency", concurrency), ("per_connection", per_connection)):
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    job_timeout = _check_seconds("timeout", timeout)
    seconds = _check_seconds("deadline", deadline)
    jobs = list(items) if items is not None else [None]
    lanes = [_Lane(connection, probe, deque(jobs)) for connection, probe in connections]
    has_items = items is not None

    def call(connection: Connection, item: object) -> Awaitable[T]:
        return fn(connection, item) if has_items else fn(connection)

    return FanOut(
        lanes,
        call,
        has_items=has_items,
        concurrency=concurrency,
        per_connection=per_connection,
        clock=clock,
        timeout=job_timeout,
        deadline_at=None if seconds is None else clock.monotonic() + seconds,
    )
