"""The sandbox's clock: the wall clock plus any ``advance()``, and waits scaled by a factor."""

from __future__ import annotations

import asyncio
import time

__all__ = ["SandboxClock"]


class SandboxClock:
    """Simulated time for one sandbox.

    Args:
        scale: The factor applied to every simulated wait (``0.001``: 30 s pass in 30 ms).
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._offset = 0.0

    def now(self) -> float:
        """The sandbox's Unix time (the wall clock plus any ``advance()``)."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward, e.g. to expire tokens or rate-limit windows."""
        self._offset += seconds

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time (scaled by ``scale``)."""
        await asyncio.sleep(seconds * self.scale)
