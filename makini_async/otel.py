"""OpenTelemetry spans and metrics for every call: the ``[otel]`` extra.

`OpenTelemetryInstrument` plugs into the instrumentation hooks
(``ConnectionRegistry(instruments=[OpenTelemetryInstrument()])``) and makes:

- one span per logical call, kind CLIENT, named ``{method} {url.template}`` (e.g.
  ``GET /api/eam/work-orders/{key}``), with the HTTP client attributes of the OpenTelemetry
  semantic conventions (``http.request.method``, ``server.address``, ``server.port``,
  ``url.full``, ``url.template``, ``http.response.status_code``, ``http.request.resend_count``,
  ``error.type``) and ``makini.attempts``, ``makini.request_id`` and, on request only,
  ``makini.connection_id``;
- span events, in order, for each attempt (``makini.attempt``), answer (``makini.response``),
  retry (``makini.retry``), rate-limit wait (``makini.rate_limit.wait``) and reconnect
  (``makini.reconnect``);
- the metrics ``http.client.request.duration`` (seconds, per logical call),
  ``makini.client.retries``, ``makini.client.rate_limit.wait``, ``makini.client.reconnects`` and
  ``makini.client.open_sessions`` (for the registries given to `OpenTelemetryInstrument.watch`).

The attempts are span events rather than child spans: they follow one another within the call,
an event carries their timing, and one span per call keeps a registry of thousands of
connections at one span per call however often it retries. Nothing here ever holds a token, a
header, a query string, a request body or an error message: failures are told by their class
name and error code only.

This module imports ``opentelemetry`` (the ``otel`` extra); ``import makini_async`` never
imports it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from makini_async import (
    AttemptSent,
    CallEnded,
    CallObserver,
    CallStarted,
    ConnectionRegistry,
    GateWait,
    MakiniError,
    ReconnectFired,
    ResponseReceived,
    RetryScheduled,
    __version__,
)

__all__ = ["OpenTelemetryInstrument", "url_template"]

logger: Final = logging.getLogger("makini_async")

_SCOPE: Final = "makini_async"
_SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.26.0"
#: The semantic conventions' advice for ``http.client.request.duration``.
_DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
_WAIT_BUCKETS: Final = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: An error code kept as an attribute: a short identifier. Anything else (a server that puts a
#: sentence in ``code``) becomes ``_OTHER``, so no free text and no unbounded cardinality.
_CODE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CANCELLED: Final = "CancelledError"
_FAILED: Final = "The OpenTelemetry instrument's %s hook failed"

# url_template: /api/<domain>/<collection>/<key>/<sub-collection>/<sub-key>
_DATA_DOMAINS: Final = frozenset({"eam", "erp", "wms"})
#: Second segments of a data path that name a collection, not a record.
_NOT_KEYS: Final = frozenset({"custom-fields", "materials"})
_KEY_NAMES: Final = {"system": "{id}", "raw": "{table}"}
_MAX_ID_FREE_SEGMENT: Final = 40
_ORIGINS_CACHED: Final = 64


def _looks_like_id(segment: str) -> bool:
    return (
        any(ch.isdigit() for ch in segment) or "%" in segment or len(segment) > _MAX_ID_FREE_SEGMENT
    )


def url_template(path: str) -> str:
    """The low-cardinality template of a request path: its record keys replaced by names.

    Makini's data paths (``/api/{eam,erp,wms}/<collection>/<key>/<sub-collection>/<key>``) get
    the names of the API's own templates; elsewhere, a segment with a digit, a ``%`` escape or
    more than 40 characters counts as an id.

    Args:
        path: The request path, without the query string.

    Returns:
        e.g. ``/api/eam/work-orders/{key}`` for ``/api/eam/work-orders/WO-10042``.

    .. versionadded:: 0.1.0
    """
    parts = path.split("/")
    if len(parts) < 5 or parts[1] != "api":  # noqa: PLR2004 - "", "api", domain, collection, key
        return "/".join("{id}" if _looks_like_id(part) else part for part in parts)
    domain = parts[2]
    rest = parts[3:]
    if domain in _DATA_DOMAINS:
        if rest[0] == "statuses" or rest[1] in _NOT_KEYS:
            rest[1] = rest[1] if not _looks_like_id(rest[1]) else "{key}"
        elif rest[1]:
            rest[1] = "{key}"
        for i in range(3, len(rest), 2):
            if rest[i]:
                rest[i] = "{materialKey}" if rest[i - 1] == "materials" else "{id}"
    elif domain in _KEY_NAMES:
        for i in range(1, len(rest), 2):
            if rest[i]:
                rest[i] = _KEY_NAMES[domain]
    else:
        rest = ["{id}" if _looks_like_id(part) else part for part in rest]
    return "/".join(["", "api", domain, *rest])


def _code_of(error: MakiniError | None) -> str | None:
    code = getattr(error, "code", None)
    if not isinstance(code, str) or not code:
        return None
    return code if _CODE.fullmatch(code) else "_OTHER"


def _reason(error: MakiniError | None) -> str:
    """A failure as its class name and error code, e.g. ``"RateLimitError RATE_LIMIT_EXCEEDED"``."""
    name = type(error).__name__
    code = _code_of(error)
    return name if code is None else f"{name} {code}"


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme, 0)
    return parts.hostname or "", port


class _Meters:
    """The metric instruments every call records to."""

    __slots__ = ("duration", "rate_limit_wait", "reconnects", "retries")

    def __init__(self, meter: metrics.Meter) -> None:
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of logical calls, retries and reconnects included.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.retries = meter.create_counter(
            "makini.client.retries",
            unit="{retry}",
            description="Retries scheduled after a failed attempt, by reason.",
        )
        self.rate_limit_wait = meter.create_histogram(
            "makini.client.rate_limit.wait",
            unit="s",
            description="Time calls waited because their connection was rate limited.",
            explicit_bucket_boundaries_advisory=_WAIT_BUCKETS,
        )
        self.reconnects = meter.create_counter(
            "makini.client.reconnects",
            unit="{reconnect}",
            description="Reconnects after a refused token, by outcome.",
        )


class OpenTelemetryInstrument:
    """Spans and metrics for every call of a registry, after OpenTelemetry's HTTP conventions.

    Use it as ``ConnectionRegistry(instruments=[OpenTelemetryInstrument()])``; call
    `watch` with the registry to also report its open sessions. It never raises into a call:
    a failure of its own is logged (``makini_async`` logger, warning) and the call goes on.

    Args:
        tracer_provider: Where spans go; None for the global one
            (``opentelemetry.trace.set_tracer_provider``).
        meter_provider: Where metrics go; None for the global one.
        record_connection_ids: Put the connection id on spans as ``makini.connection_id``.
            Off by default: a connection id can identify a customer. Metrics never carry it
            (thousands of connections would each make their own series).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        record_connection_ids: bool = False,
    ) -> None:
        self._tracer = trace.get_tracer(
            _SCOPE, __version__, tracer_provider, schema_url=_SCHEMA_URL
        )
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider, schema_url=_SCHEMA_URL)
        self._meters = _Meters(meter)
        meter.create_observable_gauge(
            "makini.client.open_sessions",
            callbacks=[self._observe_sessions],
            unit="{session}",
            description="Connections holding an open HTTP session.",
        )
        self._record_connection_ids = bool(record_connection_ids)
        self._registries: list[weakref.ref[ConnectionRegistry]] = []
        self._lock = threading.Lock()  # the gauge is read from the metric reader's thread
        # (method, URL prefix) -> the attributes every span and metric of such a call carries.
        self._common: dict[tuple[str, str], dict[str, AttributeValue]] = {}

    def __repr__(self) -> str:
        return f"OpenTelemetryInstrument(record_connection_ids={self._record_connection_ids})"

    def watch(self, registry: ConnectionRegistry) -> None:
        """Report ``registry.open_sessions`` as the ``makini.client.open_sessions`` gauge.

        The registry is held weakly and no longer reported once closed.

        Args:
            registry: The registry this instrument was given to.

        Raises:
            TypeError: ``registry`` is not a `ConnectionRegistry`.
        """
        if not isinstance(registry, ConnectionRegistry):
            raise TypeError(f"registry must be a ConnectionRegistry, not {type(registry).__name__}")
        with self._lock:
            self._registries = [ref for ref in self._registries if ref() is not None]
            self._registries.append(weakref.ref(registry))

    def _observe_sessions(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        with self._lock:
            refs = list(self._registries)
        totals: dict[tuple[str, int], int] = {}
        for ref in refs:
            registry = ref()
            if registry is None or registry.closed:
                continue
            key = _origin(registry.base_url)
            totals[key] = totals.get(key, 0) + registry.open_sessions
        return [
            Observation(count, {"server.address": address, "server.port": port})
            for (address, port), count in totals.items()
        ]

    def _common_for(self, method: str, url: str, path: str) -> dict[str, AttributeValue]:
        """The attributes shared by the span and the metrics of a call (never modified)."""
        prefix = url[: len(url) - len(path)] if path and url.endswith(path) else url
        key = (method, prefix)
        found = self._common.get(key)
        if found is not None:
            return found
        address, port = _origin(prefix)
        common: dict[str, AttributeValue] = {
            "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
            "server.address": address,
            "server.port": port,
        }
        if len(self._common) < _ORIGINS_CACHED:
            self._common[key] = common
        return common

    def call_started(self, event: CallStarted) -> CallObserver | None:
        """Start the call's span (the current span, if any, is its parent).

        Args:
            event: The call that began.

        Returns:
            The observer that adds the call's events to its span and records its metrics, or
            None if the span could not be started (logged).
        """
        try:
            template = url_template(event.path)
            common = self._common_for(event.method, event.url, event.path)
            attributes: dict[str, AttributeValue] = {
                **common,
                "url.full": event.url,
                "url.template": template,
            }
            if common["http.request.method"] == "_OTHER":
                attributes["http.request.method_original"] = event.method
            if self._record_connection_ids and event.connection_id is not None:
                attributes["makini.connection_id"] = event.connection_id
            span = self._tracer.start_span(
                f"{attributes['http.request.method']!s} {template}",
                kind=SpanKind.CLIENT,
                attributes=attributes,
            )
            return _CallSpan(span, common, self._meters)
        except Exception:  # never break the call
            logger.warning(_FAILED, "call_started", exc_info=True)
            return None


class _CallSpan(CallObserver):
    """One call's span and metrics; every hook swallows (and logs) its own failures."""

    __slots__ = ("_common", "_ended", "_meters", "_recording", "_span")

    def __init__(
        self, span: trace.Span, common: dict[str, AttributeValue], meters: _Meters
    ) -> None:
        self._span = span
        self._common = common
        self._meters = meters
        self._recording = span.is_recording()
        self._ended = False

    def attempt_sent(self, event: AttemptSent) -> None:
        """Add a ``makini.attempt`` event."""
        if not self._recording:
            return
        try:
            self._span.add_event(
                "makini.attempt",
                {"makini.attempt": event.attempt, "makini.token_generation": event.generation},
            )
        except Exception:  # never break the call
            logger.warning(_FAILED, "attempt_sent", exc_info=True)

    def response_received(self, event: ResponseReceived) -> None:
        """Add a ``makini.response`` event."""
        if not self._recording:
            return
        try:
            attributes: dict[str, AttributeValue] = {
                "makini.attempt": event.attempt,
                "http.response.status_code": event.status,
                "makini.attempt.duration": event.seconds,
            }
            if event.request_id is not None:
                attributes["makini.request_id"] = event.request_id
            self._span.add_event("makini.response", attributes)
        except Exception:  # never break the call
            logger.warning(_FAILED, "response_received", exc_info=True)

    def retry_scheduled(self, event: RetryScheduled) -> None:
        """Add a ``makini.retry`` event and count the retry."""
        try:
            reason = _reason(event.error)
            if self._recording:
                self._span.add_event(
                    "makini.retry",
                    {
                        "makini.attempt": event.attempt,
                        "makini.retry.wait": event.wait,
                        "makini.retry.reason": reason,
                    },
                )
            self._meters.retries.add(1, {**self._common, "makini.retry.reason": reason})
        except Exception:  # never break the call
            logger.warning(_FAILED, "retry_scheduled", exc_info=True)

    def gate_wait(self, event: GateWait) -> None:
        """Add a ``makini.rate_limit.wait`` event and record the wait."""
        try:
            cause = "budget" if event.cause is None else _reason(event.cause)
            if self._recording:
                self._span.add_event(
                    "makini.rate_limit.wait",
                    {"makini.rate_limit.wait": event.seconds, "makini.rate_limit.cause": cause},
                )
            self._meters.rate_limit_wait.record(
                event.seconds, {**self._common, "makini.rate_limit.cause": cause}
            )
        except Exception:  # never break the call
            logger.warning(_FAILED, "gate_wait", exc_info=True)

    def reconnect_fired(self, event: ReconnectFired) -> None:
        """Add a ``makini.reconnect`` event and count the reconnect."""
        try:
            outcome = "failed" if event.generation is None else "renewed"
            if self._recording:
                attributes: dict[str, AttributeValue] = {
                    "makini.reconnect.outcome": outcome,
                    "makini.reconnect.refused_generation": event.refused_generation,
                }
                if event.generation is not None:
                    attributes["makini.token_generation"] = event.generation
                self._span.add_event("makini.reconnect", attributes)
            self._meters.reconnects.add(1, {**self._common, "makini.reconnect.outcome": outcome})
        except Exception:  # never break the call
            logger.warning(_FAILED, "reconnect_fired", exc_info=True)

    def call_ended(self, event: CallEnded) -> None:
        """End the span with the call's outcome and record its duration."""
        if self._ended:
            return
        self._ended = True
        try:
            error = event.error
            if event.cancelled:
                self._end(event, _CANCELLED)
            else:
                self._end(event, None if error is None else type(error).__name__)
        except Exception:  # never break the call
            logger.warning(_FAILED, "call_ended", exc_info=True)

    def _end(self, event: CallEnded, error_type: str | None) -> None:
        status = event.status
        measured = dict(self._common)
        if status is not None:
            measured["http.response.status_code"] = status
        if error_type is not None:
            measured["error.type"] = error_type
        self._meters.duration.record(event.seconds, measured)
        span = self._span
        if not self._recording:
            span.end()
            return
        attributes: dict[str, AttributeValue] = {"makini.attempts": event.attempts}
        if status is not None:
            attributes["http.response.status_code"] = status
        if event.attempts > 1:
            attributes["http.request.resend_count"] = event.attempts - 1
        if event.request_id is not None:
            attributes["makini.request_id"] = event.request_id
        if error_type is not None:
            attributes["error.type"] = error_type
            code = _code_of(event.error)
            if code is not None:
                attributes["makini.error.code"] = code
            span.set_status(
                Status(StatusCode.ERROR, f"{error_type} {code}" if code else error_type)
            )
        span.set_attributes(attributes)
        span.end()
