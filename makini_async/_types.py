"""Type aliases and the clock protocol that every layer shares; it imports nothing of ours."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, TypeAlias

__all__ = ["JSON", "Clock", "SystemClock"]

#: A decoded JSON value, as `APIResponse.data` holds it.
JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"


class Clock(Protocol):
    """Time as the library sees it: deadlines, backoff and pauses (tests pass a virtual one).

    .. versionadded:: 0.1.0
    """

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def time(self) -> float:
        """The Unix time (for HTTP-dates in ``Retry-After`` and ``X-RateLimit-Reset``)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep: every backoff wait and rate-limit pause goes through here."""
        ...


class SystemClock:
    """The real clock.

    .. versionadded:: 0.1.0
    """

    def monotonic(self) -> float:
        """Seconds on ``time.monotonic``."""
        return time.monotonic()

    def time(self) -> float:
        """The Unix time."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)
