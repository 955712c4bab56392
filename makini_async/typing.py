"""Public type aliases and protocols, for annotating code that uses makini_async.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import TypeAlias

from ._bodies import BinaryReadable
from ._request import Clock, ReconnectEvent, ReconnectHook, StateListener

__all__ = ["JSON", "BinaryReadable", "Clock", "ReconnectEvent", "ReconnectHook", "StateListener"]

#: A decoded JSON value, as `APIResponse.data` holds it.
JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
