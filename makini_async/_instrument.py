"""Instrumentation hooks: what a call does, told to whoever listens (tracing, metrics, logs).

An `Instrument` is asked once per logical call (`Instrument.call_started`) and may return a
`CallObserver`, which then hears that call's attempts, answers, retry waits, rate-limit waits,
reconnects and its end, each as a frozen details object. With no instrument registered the
engine builds none of these objects; an observer that raises is logged and ignored, never
breaking the call. Hooks are plain functions called in the task making the call: keep them
quick, and hand slow work (an exporter's I/O) to a queue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

import attrs

if TYPE_CHECKING:
    from ._errors import APIError, MakiniError

__all__ = [
    "AttemptSent",
    "CallEnded",
    "CallObserver",
    "CallStarted",
    "GateWait",
    "Instrument",
    "ReconnectFired",
    "ResponseReceived",
    "RetryScheduled",
    "observer_for",
]

logger: Final = logging.getLogger("makini_async")


@attrs.frozen
class CallStarted:
    """A logical call began.

    Attributes:
        connection_id: The connection, or None for the registry's tokenless channel.
        method: The HTTP method.
        path: The request path (no query string).
        url: The full URL, without the query string.
        deadline: The call's deadline in seconds, or None.

    .. versionadded:: 0.1.0
    """

    connection_id: str | None
    method: str
    path: str
    url: str
    deadline: float | None


@attrs.frozen
class AttemptSent:
    """An attempt is about to be sent.

    Attributes:
        attempt: 1 for the first attempt, +1 for each retry or replay.
        generation: The token generation it carries.

    .. versionadded:: 0.1.0
    """

    attempt: int
    generation: int


@attrs.frozen
class ResponseReceived:
    """An attempt got a complete answer.

    Attributes:
        attempt: The attempt's number.
        status: The HTTP status.
        request_id: The ``X-Request-Id`` header, or None.
        seconds: How long the attempt took.

    .. versionadded:: 0.1.0
    """

    attempt: int
    status: int
    request_id: str | None
    seconds: float


@attrs.frozen
class RetryScheduled:
    """A failed attempt will be retried after a wait.

    Attributes:
        attempt: The number of the attempt that failed.
        wait: Seconds until the next attempt.
        reason: The failure's class name and error code, e.g. ``"ServerError"`` or
            ``"RateLimitError RATE_LIMIT_EXCEEDED"``.
        error: The failure.

    .. versionadded:: 0.1.0
    """

    attempt: int
    wait: float
    reason: str
    error: MakiniError


@attrs.frozen
class GateWait:
    """The call waits because the rate budget paused its connection.

    Attributes:
        seconds: How long it waits.
        cause: The error that paused the connection (a 429), or None for an exhausted budget.

    .. versionadded:: 0.1.0
    """

    seconds: float
    cause: APIError | None


@attrs.frozen
class ReconnectFired:
    """A 401 (or a reported credential change) went through the reconnect step.

    Attributes:
        refused_generation: The token generation the server refused.
        generation: The generation the call goes on with, or None when it gave up.

    .. versionadded:: 0.1.0
    """

    refused_generation: int
    generation: int | None


@attrs.frozen
class CallEnded:
    """A logical call ended.

    Attributes:
        attempts: How many attempts were sent.
        status: The final HTTP status, or None when no answer arrived.
        request_id: The final answer's ``X-Request-Id``, or None.
        error: The error the call raised, or None when it succeeded or was cancelled.
        seconds: How long the whole call took.
        cancelled: The call was cancelled (its task, or a timeout around it); ``status`` is
            then None unless an answer had arrived.

    .. versionadded:: 0.1.0
    """

    attempts: int
    status: int | None
    request_id: str | None
    error: MakiniError | None
    seconds: float
    cancelled: bool = False


class CallObserver:
    """Hears the progress of one call; subclass it and override what you need.

    .. versionadded:: 0.1.0
    """

    def attempt_sent(self, event: AttemptSent) -> None:
        """An attempt is about to be sent."""

    def response_received(self, event: ResponseReceived) -> None:
        """An attempt got an answer."""

    def retry_scheduled(self, event: RetryScheduled) -> None:
        """A retry will follow after ``event.wait`` seconds."""

    def gate_wait(self, event: GateWait) -> None:
        """The call waits for its connection's rate-limit pause."""

    def reconnect_fired(self, event: ReconnectFired) -> None:
        """The call went through the reconnect step after a 401."""

    def call_ended(self, event: CallEnded) -> None:
        """The call ended, with an answer or an error."""


class Instrument(Protocol):
    """Told of every call of a registry: ``ConnectionRegistry(instruments=[...])``.

    .. versionadded:: 0.1.0
    """

    def call_started(self, event: CallStarted) -> CallObserver | None:
        """A call began; return an observer for its progress, or None to ignore it."""
        ...


class _Fanned(CallObserver):
    """Passes each event to several observers; one that raises is logged and skipped."""

    __slots__ = ("_observers",)

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self._observers = tuple(observers)

    def _each(self, name: str, event: object) -> None:
        for observer in self._observers:
            try:
                getattr(observer, name)(event)
            except Exception:
                logger.warning("An instrument's %s hook failed", name, exc_info=True)

    def attempt_sent(self, event: AttemptSent) -> None:
        """Pass it on."""
        self._each("attempt_sent", event)

    def response_received(self, event: ResponseReceived) -> None:
        """Pass it on."""
        self._each("response_received", event)

    def retry_scheduled(self, event: RetryScheduled) -> None:
        """Pass it on."""
        self._each("retry_scheduled", event)

    def gate_wait(self, event: GateWait) -> None:
        """Pass it on."""
        self._each("gate_wait", event)

    def reconnect_fired(self, event: ReconnectFired) -> None:
        """Pass it on."""
        self._each("reconnect_fired", event)

    def call_ended(self, event: CallEnded) -> None:
        """Pass it on."""
        self._each("call_ended", event)


def observer_for(instruments: Sequence[Instrument], event: CallStarted) -> CallObserver | None:
    """The observer of one call: what every instrument returned, fanned out and guarded."""
    observers: list[CallObserver] = []
    for instrument in instruments:
        try:
            observer = instrument.call_started(event)
        except Exception:
            logger.warning("An instrument's call_started hook failed", exc_info=True)
            continue
        if observer is not None:
            observers.append(observer)
    return _Fanned(observers) if observers else None
