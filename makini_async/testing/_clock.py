"""A virtual clock, so that rate-limit pauses and deadlines take no real time in tests."""

from __future__ import annotations

import asyncio

__all__ = ["VirtualClock"]


class VirtualClock:
    """A clock whose time moves only when something sleeps on it (or `advance` is called).

    ``sleep(d)`` moves the clock to at least the sleeper's wake-up time and returns at once, so
    several tasks pausing for a ``Retry-After`` of 2 s all wake at virtual second 2. Pass it as
    ``ConnectionRegistry(clock=...)``; a test server can stamp arrivals with `monotonic`.

    Args:
        start: The initial monotonic reading.
        epoch: The Unix time at ``start`` (for HTTP-dates in ``Retry-After``).

    .. versionadded:: 0.1.0
    """

    def __init__(self, start: float = 1000.0, epoch: float = 1_800_000_000.0) -> None:
        self._now = start
        self._epoch_offset = epoch - start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The virtual monotonic time, in seconds."""
        return self._now

    def time(self) -> float:
        """The virtual Unix time."""
        return self._now + self._epoch_offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        """Record the sleep, yield to the loop once, then jump to the wake-up time.

        The wake-up time is fixed before yielding, so tasks that start sleeping at the same
        virtual moment wake at the same virtual moment.
        """
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        wake = self._now + seconds
        await asyncio.sleep(0)
        self._now = max(self._now, wake)
