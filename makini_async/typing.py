"""Public type aliases and protocols, for annotating code that uses makini_async.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from ._bodies import BinaryReadable
from ._budget import RateBudget
from ._channel import ReconnectEvent, ReconnectHook, StateListener
from ._credentials import CredentialSource
from ._instrument import Instrument
from ._requester import Requester
from ._types import JSON, Clock

__all__ = [
    "JSON",
    "BinaryReadable",
    "Clock",
    "CredentialSource",
    "Instrument",
    "RateBudget",
    "ReconnectEvent",
    "ReconnectHook",
    "Requester",
    "StateListener",
]
