"""OpenTelemetry instrument: one CLIENT span per call with its steps as events, and the metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

import makini_async as m
from makini_async.otel import OpenTelemetryInstrument, url_template
from makini_async.sandbox._spec import load_spec
from makini_async.testing import VirtualClock
from tests.support import MakeRegistry, Reply, ScriptedApp, error_reply

TOKEN = "tok_SECRET_0123456789abcdef"  # a fake token
FRESH = "tok_FRESH_fedcba9876543210"  # a fake token


class Otel:
    """An SDK tracer provider and meter provider that keep everything in memory."""

    def __init__(self, *, sampler: Any = None) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, **kwargs: bool) -> OpenTelemetryInstrument:
        return OpenTelemetryInstrument(self.tracer_provider, self.meter_provider, **kwargs)

    def only_span(self) -> ReadableSpan:
        spans = self.spans.get_finished_spans()
        assert len(spans) == 1, [span.name for span in spans]
        return spans[0]

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Every metric point by metric name: (attributes, the point)."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = [
                        (dict(point.attributes or {}), point) for point in metric.data.data_points
                    ]
        return found

    def exported_text(self) -> str:
        """Everything exported, as text: every span (events included) and every metric."""
        spans = "\n".join(span.to_json() for span in self.spans.get_finished_spans())
        data = self.reader.get_metrics_data()
        return spans + ("" if data is None else data.to_json())

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture(name="otel")
def _otel() -> Iterator[Otel]:
    """In-memory span exporter and metric reader; shut down after the test."""
    otel = Otel()
    yield otel
    otel.shutdown()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def common(url: str) -> dict[str, Any]:
    return {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": port_of(url),
    }


def events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(event.name, dict(event.attributes or {})) for event in span.events]


class TestSpans:
    async def test_a_retried_and_reconnected_call(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, otel: Otel
    ) -> None:
        """A 503, a 401 and a reconnect, then a 200: one span, its events in order, the metrics."""
        app, url = scripted
        app.script.extend(
            [error_reply(503, "SYSTEM_UNAVAILABLE"), error_reply(401, "TOKEN_EXPIRED")]
        )
        app.default = Reply(headers={"X-Request-Id": "req_ok"})

        async def renew(event: m.ReconnectEvent) -> str:
            return FRESH

        registry = make_registry(url, instruments=[otel.instrument()], on_reconnect=renew)
        conn = registry.add("acme", TOKEN)
        response = await conn.request(
            "GET", "/api/eam/work-orders/WO-10042", params={"filter[site]": "query-value"}
        )
        assert response.status == 200

        span = otel.only_span()
        assert span.name == "GET /api/eam/work-orders/{key}"
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "makini_async"
        assert span.instrumentation_scope.version == m.__version__
        assert dict(span.attributes or {}) == {
            **common(url),
            "url.full": f"{url}/api/eam/work-orders/WO-10042",
            "url.template": "/api/eam/work-orders/{key}",
            "http.response.status_code": 200,
            "http.request.resend_count": 2,
            "makini.attempts": 3,
            "makini.request_id": "req_ok",
        }
        seen = events(span)
        assert [name for name, _ in seen] == [
            "makini.attempt",
            "makini.response",
            "makini.retry",
            "makini.attempt",
            "makini.response",
            "makini.reconnect",
            "makini.attempt",
            "makini.response",
        ]
        for _, attributes in seen:
            duration = attributes.pop("makini.attempt.duration", 0.0)
            assert isinstance(duration, float)
            assert duration >= 0.0
        assert [attributes for _, attributes in seen] == [
            {"makini.attempt": 1, "makini.token_generation": 1},
            {"makini.attempt": 1, "http.response.status_code": 503, "makini.request_id": "req_e"},
            {
                "makini.attempt": 1,
                "makini.retry.wait": 0.0,
                "makini.retry.reason": "ServiceUnavailableError SYSTEM_UNAVAILABLE",
            },
            {"makini.attempt": 2, "makini.token_generation": 1},
            {"makini.attempt": 2, "http.response.status_code": 401, "makini.request_id": "req_e"},
            {
                "makini.reconnect.outcome": "renewed",
                "makini.reconnect.refused_generation": 1,
                "makini.token_generation": 2,
            },
            {"makini.attempt": 3, "makini.token_generation": 2},
            {"makini.attempt": 3, "http.response.status_code": 200, "makini.request_id": "req_ok"},
        ]
        assert [event.timestamp for event in span.events] == sorted(
            event.timestamp for event in span.events
        )

        points = otel.points()
        [(attributes, duration_point)] = points["http.client.request.duration"]
        assert attributes == {**common(url), "http.response.status_code": 200}
        assert duration_point.count == 1
        [(attributes, retries)] = points["makini.client.retries"]
        assert attributes == {
            **common(url),
            "makini.retry.reason": "ServiceUnavailableError SYSTEM_UNAVAILABLE",
        }
        assert retries.value == 1
        [(attributes, reconnects)] = points["makini.client.reconnects"]
        assert attributes == {**common(url), "makini.reconnect.outcome": "renewed"}
        assert reconnects.value == 1
        assert "makini.client.rate_limit.wait" not in points

    async def test_a_rate_limit_wait(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        clock: VirtualClock,
        otel: Otel,
    ) -> None:
        """A 429's Retry-After wait is a span event, a wait histogram point and call duration."""
        app, url = scripted
        app.script.append(error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "7"}))
        conn = make_registry(url, instruments=[otel.instrument()]).add("acme", TOKEN)
        await conn.request("GET", "/api/eam/assets")
        span = otel.only_span()
        assert span.name == "GET /api/eam/assets"
        waits = [
            attributes for name, attributes in events(span) if name == "makini.rate_limit.wait"
        ]
        [wait] = waits
        assert wait["makini.rate_limit.cause"] == "RateLimitError RATE_LIMIT_EXCEEDED"
        assert wait["makini.rate_limit.wait"] == pytest.approx(clock.sleeps[-1])
        assert 7.0 <= wait["makini.rate_limit.wait"] <= 8.0
        points = otel.points()
        [(attributes, histogram)] = points["makini.client.rate_limit.wait"]
        assert attributes == {
            **common(url),
            "makini.rate_limit.cause": wait["makini.rate_limit.cause"],
        }
        assert (histogram.count, histogram.sum) == (
            1,
            pytest.approx(wait["makini.rate_limit.wait"]),
        )
        [(_, duration)] = points["http.client.request.duration"]
        # Measured on the registry's clock: the virtual wait is all of the call's time.
        assert duration.sum == pytest.approx(wait["makini.rate_limit.wait"])

    async def test_a_failed_call(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, otel: Otel
    ) -> None:
        """A 404 ends the span in ERROR, told by class name and code, never by the message."""
        app, url = scripted
        app.default = error_reply(404, "NOT_FOUND")
        conn = make_registry(url, instruments=[otel.instrument()]).add("acme", TOKEN)
        with pytest.raises(m.NotFoundError):
            await conn.request("GET", "/api/erp/invoices/INV-7")
        span = otel.only_span()
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "NotFoundError NOT_FOUND"
        attributes = dict(span.attributes or {})
        assert attributes["error.type"] == "NotFoundError"
        assert attributes["makini.error.code"] == "NOT_FOUND"
        assert attributes["http.response.status_code"] == 404
        assert "http.request.resend_count" not in attributes
        assert "NOT_FOUND here" not in otel.exported_text()  # the error's message
        [(measured, _)] = otel.points()["http.client.request.duration"]
        assert measured == {
            **common(url),
            "http.response.status_code": 404,
            "error.type": "NotFoundError",
        }

    async def test_a_call_that_never_got_an_answer(
        self, make_registry: MakeRegistry, otel: Otel
    ) -> None:
        """A refused connection ends the span in ERROR with no status code, after the retries."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        conn = make_registry(url, instruments=[otel.instrument()]).add("acme", TOKEN)
        with pytest.raises(m.ConnectError):
            await conn.request("GET", "/api/eam/sites")
        span = otel.only_span()
        assert span.status.status_code is StatusCode.ERROR
        attributes = dict(span.attributes or {})
        assert attributes["error.type"] == "ConnectError"
        assert "http.response.status_code" not in attributes
        assert attributes["makini.attempts"] == 4
        assert attributes["http.request.resend_count"] == 3
        assert [name for name, _ in events(span)].count("makini.retry") == 3
        [(measured, _)] = otel.points()["http.client.request.duration"]
        assert measured == {**common(url), "error.type": "ConnectError"}

    async def test_a_cancelled_call(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, otel: Otel
    ) -> None:
        """A call cancelled mid-flight ends its span at once, as CancelledError."""
        app, url = scripted
        app.gate = asyncio.Event()
        conn = make_registry(url, instruments=[otel.instrument()]).add("acme", TOKEN)
        task = asyncio.create_task(conn.request("GET", "/api/eam/meters"))
        await app.arrivals(1)
        assert otel.spans.get_finished_spans() == ()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        span = otel.only_span()
        app.gate.set()
        assert span.status.status_code is StatusCode.ERROR
        attributes = dict(span.attributes or {})
        assert attributes["error.type"] == "CancelledError"
        assert attributes["makini.attempts"] == 1
        [(measured, _)] = otel.points()["http.client.request.duration"]
        assert measured == {**common(url), "error.type": "CancelledError"}

    async def test_the_current_span_is_the_parent(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, otel: Otel
    ) -> None:
        """A call made inside the application's span is that span's child."""
        _, url = scripted
        conn = make_registry(url, instruments=[otel.instrument()]).add("acme", TOKEN)
        tracer = otel.tracer_provider.get_tracer("app")
        with tracer.start_as_current_span("sync job") as parent:
            await conn.request("GET", "/x")
        child, outer = otel.spans.get_finished_spans()
        assert outer is not None
        assert child.parent is not None
        assert child.parent.span_id == parent.get_span_context().span_id


class TestPrivacy:
    async def test_connection_ids_only_when_asked(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, otel: Otel
    ) -> None:
        """``makini.connection_id`` is on spans only with ``record_connection_ids=True``."""
        _, url = scripted
        plain = make_registry(url, instruments=[otel.instrument()])
        await plain.add("acme-corp", TOKEN).request("GET", "/x")
        opted = make_registry(url, instruments=[otel.instrument(record_connection_ids=True)])
        await opted.add("acme-corp", TOKEN).request("GET", "/y")
        await opted.tokenless().request("GET", "/z")
        by_path = {
            span.name: dict(span.attributes or {}) for span in otel.spans.get_finished_spans()
        }
        assert "makini.connection_id" not in by_path["GET /x"]
        assert by_path["GET /y"]["makini.connection_id"] == "acme-corp"
        assert "makini.connection_id" not in by_path["GET /z"]
        assert "acme-corp" not in otel.exported_text().replace(
            by_path["GET /y"]["makini.connection_id"], "", 1
        )

    async def test_tokens_never_leave(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, otel: Otel
    ) -> None:
        """No token reaches any span, event or metric, even when the server echoes it back."""
        app, url = scripted
        app.script.extend(
            [
                Reply(
                    503,
                    {"error": {"code": TOKEN, "message": TOKEN}},
                    headers={"X-Request-Id": TOKEN},
                ),
                error_reply(401, "TOKEN_EXPIRED", **{"X-Request-Id": TOKEN}),
                Reply(headers={"X-Request-Id": f"id-{FRESH}"}),
            ]
        )

        async def renew(event: m.ReconnectEvent) -> str:
            return FRESH

        instrument = otel.instrument(record_connection_ids=True)
        conn = make_registry(url, instruments=[instrument], on_reconnect=renew).add("acme", TOKEN)
        await conn.request("GET", "/api/eam/work-orders", headers={"X-Trace": TOKEN})
        assert [seen.token for seen in app.seen] == [TOKEN, TOKEN, FRESH]
        text = otel.exported_text()
        assert "makini.request_id" in text
        assert TOKEN not in text
        assert FRESH not in text
        assert "X-Trace" not in text

    async def test_a_free_text_error_code_is_not_kept(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, otel: Otel
    ) -> None:
        """A server that puts a sentence in the error code gets ``_OTHER``, never the sentence."""
        app, url = scripted
        app.default = error_reply(403, "Customer Acme Corp may not read work orders")
        conn = make_registry(url, instruments=[otel.instrument()]).add("acme", TOKEN)
        with pytest.raises(m.PermissionDeniedError):
            await conn.request("GET", "/x")
        span = otel.only_span()
        assert dict(span.attributes or {})["makini.error.code"] == "_OTHER"
        assert span.status.description == "PermissionDeniedError _OTHER"
        assert "Acme Corp" not in otel.exported_text()


class TestRobustness:
    async def test_a_failing_exporter_never_breaks_the_call(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A span processor that raises is caught by the instrument itself, and logged."""

        class Broken(SpanProcessor):
            def on_start(self, span: Span, parent_context: Context | None = None) -> None:
                del span, parent_context

            def on_end(self, span: ReadableSpan) -> None:
                raise RuntimeError(f"cannot export {span.name}")

        provider = TracerProvider()
        provider.add_span_processor(Broken())
        _, url = scripted
        instrument = OpenTelemetryInstrument(provider, NoOpMeterProvider())
        conn = make_registry(url, instruments=[instrument]).add("acme", TOKEN)
        with caplog.at_level(logging.WARNING, logger="makini_async"):
            response = await conn.request("GET", "/x")
        assert response.status == 200
        assert "OpenTelemetry instrument's call_ended hook failed" in caplog.text
        assert "An instrument's" not in caplog.text  # the engine's own guard was not needed
        provider.shutdown()

    async def test_no_op_providers(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """With the API's no-op providers the calls run unchanged (nothing is recorded)."""
        app, url = scripted
        app.script.append(error_reply(503, "SYSTEM_UNAVAILABLE"))
        instrument = OpenTelemetryInstrument(NoOpTracerProvider(), NoOpMeterProvider())
        conn = make_registry(url, instruments=[instrument]).add("acme", TOKEN)
        assert (await conn.request("GET", "/x")).status == 200
        assert len(app.seen) == 2

    async def test_an_unsampled_call_still_counts(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A span the sampler drops is not exported, but the call's metrics are recorded."""
        otel = Otel(sampler=ALWAYS_OFF)
        try:
            _, url = scripted
            conn = make_registry(url, instruments=[otel.instrument()]).add("acme", TOKEN)
            await conn.request("GET", "/x")
            assert otel.spans.get_finished_spans() == ()
            [(_, duration)] = otel.points()["http.client.request.duration"]
            assert duration.count == 1
        finally:
            otel.shutdown()


class TestOpenSessions:
    async def test_the_gauge_follows_the_watched_registry(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, otel: Otel
    ) -> None:
        """``makini.client.open_sessions`` reports the watched registry until it closes."""
        _, url = scripted
        instrument = otel.instrument()
        registry = make_registry(url, instruments=[instrument])
        instrument.watch(registry)
        assert otel.points()["makini.client.open_sessions"][0][1].value == 0
        await registry.add("a", TOKEN).request("GET", "/x")
        await registry.add("b", FRESH).request("GET", "/x")
        [(attributes, gauge)] = otel.points()["makini.client.open_sessions"]
        assert attributes == {"server.address": "127.0.0.1", "server.port": port_of(url)}
        assert gauge.value == registry.open_sessions == 2
        await registry.aclose()
        assert otel.points().get("makini.client.open_sessions", []) == []

    def test_watch_wants_a_registry(self, otel: Otel) -> None:
        """Watching anything but a registry is a TypeError."""
        with pytest.raises(TypeError, match="ConnectionRegistry"):
            otel.instrument().watch(object())  # type: ignore[arg-type]


class TestTemplates:
    @pytest.mark.parametrize(
        "template", sorted({route.template for route in load_spec().routes}), ids=str
    )
    def test_every_api_route(self, template: str) -> None:
        """Each route of the API contract maps back to its own template from a concrete path."""
        concrete = re.sub(r"\{[^}]+\}", "WO-10042", template)
        assert url_template(concrete) == template

    @pytest.mark.parametrize(
        ("path", "template"),
        [
            ("/api/eam/work-orders/opaque-key", "/api/eam/work-orders/{key}"),
            ("/api/eam/work-orders/", "/api/eam/work-orders/"),
            ("/api/integrations/sync/status", "/api/integrations/sync/status"),
            ("/api/passthrough", "/api/passthrough"),
            ("/api/unknown/things/123/parts", "/api/unknown/things/{id}/parts"),
            ("/other/a%2Fb/7", "/other/{id}/{id}"),
            ("/x", "/x"),
        ],
    )
    def test_other_paths(self, path: str, template: str) -> None:
        """Record keys become names; paths outside the contract lose their id-like segments."""
        assert url_template(path) == template


def test_importing_the_package_does_not_import_opentelemetry() -> None:
    """``import makini_async`` (and its public submodules but otel) leaves opentelemetry alone."""
    code = (
        "import sys, makini_async, makini_async.testing, makini_async.webhooks\n"
        "loaded = sorted(n for n in sys.modules if n.split('.')[0] == 'opentelemetry')\n"
        "assert not loaded, loaded\n"
        "import makini_async.otel\n"
        "assert 'opentelemetry.trace' in sys.modules\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
