"""The rate budget: when each connection may send, learned from what the answers said.

It is asked before each attempt whether a connection may send, and told what each answer said
about the server's limits. `RateBudget` is the seam; `LocalRateBudget`, the default, keeps one
pause per connection in memory: a 429 (or a 5xx) with ``Retry-After`` pauses every call of that
connection, not just the one that got it, and a 2xx saying ``X-RateLimit-Remaining: 0`` pauses
it until the announced reset. An implementation shared by several processes (e.g. on Redis)
fits the same protocol: `admit` and `observe` are coroutines so that they may do I/O.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from ._types import SystemClock

if TYPE_CHECKING:
    from ._errors import APIError
    from ._response import RateLimit
    from ._types import Clock

__all__ = ["LocalRateBudget", "Pause", "RateBudget", "RateSignal"]

logger: Final = logging.getLogger("makini_async")

# Statuses whose Retry-After pauses the whole connection.
_PAUSING_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


@attrs.frozen
class RateSignal:
    """What one answer said about the server's rate limits.

    Attributes:
        status: The HTTP status.
        rate_limit: Its ``X-RateLimit-*`` headers, or None when it had none.
        retry_after: Seconds it asked us to wait (``Retry-After``; for a 429 without one, the
            time left until ``X-RateLimit-Reset``), or None.
        error: The typed error of a failed answer, or None for a 2xx.

    .. versionadded:: 0.1.0
    """

    status: int
    rate_limit: RateLimit | None
    retry_after: float | None = None
    error: APIError | None = None


@attrs.frozen
class Pause:
    """A connection may not send for ``seconds`` more.

    Attributes:
        seconds: How long until it may send again (> 0).
        cause: The error that paused it (a 429, say), or None for an exhausted budget.

    .. versionadded:: 0.1.0
    """

    seconds: float
    cause: APIError | None = None


class RateBudget(Protocol):
    """Decides when each connection may send, from what the server's answers said.

    The engine calls `admit` before every attempt of a call and `observe` after every answer
    that carried rate-limit information (a 2xx with ``X-RateLimit-*`` headers, or a failure).
    Keys are connection ids; the registry's tokenless channel has a key of its own.

    .. versionadded:: 0.1.0
    """

    async def admit(self, key: str) -> Pause | None:
        """None when ``key`` may send now, or how long it must wait first."""
        ...

    async def observe(self, key: str, signal: RateSignal) -> None:
        """Learn from an answer to ``key``'s request."""
        ...

    def paused_for(self, key: str) -> float:
        """Seconds ``key`` is known to be paused, without I/O (a scheduling hint; 0 if none)."""
        ...

    def forget(self, key: str) -> None:
        """Drop what is known of ``key`` (its connection was removed)."""
        ...

    async def aclose(self) -> None:
        """Release what the budget holds; the registry calls it when it closes."""
        ...


class LocalRateBudget:
    """One in-memory pause per connection: the default `RateBudget`.

    Args:
        clock: The clock pauses are measured on (the registry's, so a virtual clock in tests).
        max_pause: The longest pause an exhausted budget (``Remaining: 0``) imposes; a reset
            further away is left to the server's 429.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_clock", "_max_pause", "_pauses")

    def __init__(self, *, clock: Clock | None = None, max_pause: float = 60.0) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._max_pause = max_pause
        # key -> (monotonic time the pause ends, the error that caused it)
        self._pauses: dict[str, tuple[float, APIError | None]] = {}

    async def admit(self, key: str) -> Pause | None:
        """None when ``key`` may send now, or the `Pause` it is under."""
        pause = self._pauses.get(key)
        if pause is None:
            return None
        remaining = pause[0] - self._clock.monotonic()
        if remaining <= 0:
            del self._pauses[key]
            return None
        return Pause(remaining, pause[1])

    async def observe(self, key: str, signal: RateSignal) -> None:
        """Pause ``key`` after a ``Retry-After``, or until the reset of an exhausted budget."""
        if signal.retry_after is not None and signal.status in _PAUSING_STATUSES:
            self._pause(key, signal.retry_after, signal.error)
            return
        limit = signal.rate_limit
        if signal.error is None and limit is not None and limit.remaining == 0 and limit.reset:
            wait = limit.reset.timestamp() - self._clock.time()
            if 0 < wait <= self._max_pause:
                self._pause(key, wait, None)

    def _pause(self, key: str, seconds: float, cause: APIError | None) -> None:
        until = self._clock.monotonic() + seconds
        current = self._pauses.get(key)
        if current is None or until > current[0]:
            self._pauses[key] = (until, cause)
            logger.info("Connection %s paused for %.2fs by the server", key, seconds)

    def paused_for(self, key: str) -> float:
        """Seconds ``key`` stays paused (0 when it may send)."""
        pause = self._pauses.get(key)
        if pause is None:
            return 0.0
        return max(0.0, pause[0] - self._clock.monotonic())

    def forget(self, key: str) -> None:
        """Drop ``key``'s pause."""
        self._pauses.pop(key, None)

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"<LocalRateBudget paused={sum(1 for k in self._pauses if self.paused_for(k))}>"
