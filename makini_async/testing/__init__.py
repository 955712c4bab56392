"""Helpers for testing code that uses makini_async.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from ._clock import VirtualClock

__all__ = ["VirtualClock"]
