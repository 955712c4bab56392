"""Protocol and network faults over real loopback servers: every failure is typed and bounded.

Each case follows the reliability checklist (F1-F17, B8, S1): a raw ``asyncio`` socket server or
a small ``aiohttp.web`` app misbehaves in one precise way, and the test pins both what the caller
sees (exception class and attributes) and what the server saw (connections, arrivals, keys).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web

import makini_async as m
from makini_async.testing import VirtualClock
from tests.support import (
    MakeRegistry,
    RawHandler,
    StartApp,
    StartRaw,
    by_deadline,
    read_request,
)

E = TypeVar("E", bound=BaseException)
T = TypeVar("T")

TOKEN = "tok_faults_0123456789"
OK_BODY = b'{"data": [1, 2, 3]}'


# --------------------------------------------------------------------------------------------
# The oracle: what every escaping exception must satisfy.


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """Every exception reachable through ``__cause__`` and ``__context__``, the first included."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(x for x in (current.__cause__, current.__context__) if x is not None)


def assert_oracle(exc: BaseException) -> None:
    """A public call raised a MakiniError, and nothing in its chain can carry request headers."""
    assert isinstance(exc, m.MakiniError), f"untyped escape: {exc!r}"
    assert not isinstance(exc, aiohttp.ClientError), f"aiohttp exception escaped: {exc!r}"
    for linked in exception_chain(exc):
        assert not isinstance(linked, aiohttp.ClientResponseError), (
            f"{type(exc).__name__} chains an aiohttp ClientResponseError (holds request headers)"
        )
        assert not hasattr(linked, "request_info"), f"{linked!r} carries request_info"


async def outcome(call: Awaitable[T]) -> T | m.MakiniError:
    """Await a call; return its result, or its error once the error passed the oracle."""
    try:
        return await call
    except Exception as exc:  # every escape is checked below
        error = exc
    assert_oracle(error)
    assert isinstance(error, m.MakiniError)
    return error


async def fails(call: Awaitable[object], cls: type[E]) -> E:
    """Await a call that must fail: check the oracle, then the class; return the error."""
    result = await outcome(call)
    assert isinstance(result, cls), f"expected {cls.__name__}, got {result!r}"
    return result


# --------------------------------------------------------------------------------------------
# Raw-server helpers.


@dataclasses.dataclass(frozen=True)
class Arrival:
    """One request as a raw server read it."""

    connection: int
    line: str
    headers: dict[str, str]

    @property
    def method(self) -> str:
        """The request method."""
        return self.line.split(" ", 1)[0]

    @property
    def path(self) -> str:
        """The request target."""
        return self.line.split(" ")[1]


@dataclasses.dataclass
class Recorder:
    """Counts connections and requests on the server side."""

    connections: int = 0
    arrivals: list[Arrival] = dataclasses.field(default_factory=list)

    def connect(self) -> int:
        """Count a new connection and return its number (1-based)."""
        self.connections += 1
        return self.connections

    async def read(self, reader: asyncio.StreamReader, connection: int) -> Arrival:
        """Read one request and record it."""
        line, headers, _ = await read_request(reader)
        arrival = Arrival(connection, line, headers)
        self.arrivals.append(arrival)
        return arrival

    def paths(self) -> list[str]:
        """The request targets in arrival order."""
        return [a.path for a in self.arrivals]


def response(
    body: bytes = OK_BODY,
    *,
    status: str = "200 OK",
    content_type: str = "application/json",
    extra: str = "",
    close: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response with a correct Content-Length."""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def request_counter() -> tuple[aiohttp.TraceConfig, list[str]]:
    """A trace config recording each request aiohttp starts and each connection it opens."""
    events: list[str] = []
    trace = aiohttp.TraceConfig()

    async def on_start(
        _session: aiohttp.ClientSession,
        _context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        events.append(params.method)

    async def on_connect(
        _session: aiohttp.ClientSession,
        _context: SimpleNamespace,
        _params: aiohttp.TraceConnectionCreateStartParams,
    ) -> None:
        events.append("connect")

    trace.on_request_start.append(on_start)
    trace.on_connection_create_start.append(on_connect)
    return trace, events


async def start_scripted(raw_server: StartRaw, recorder: Recorder, wire: bytes) -> str:
    """A raw server that reads each request, writes ``wire`` verbatim and closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await recorder.read(reader, recorder.connect())
        writer.write(wire)
        await writer.drain()
        writer.close()

    return await raw_server(handler)


# --------------------------------------------------------------------------------------------
# F1: nothing listens.


class TestConnectRefused:
    @pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
    async def test_refused_is_connect_error_retried_for_every_method(
        self, make_registry: MakeRegistry, method: str
    ) -> None:
        """A refused connection is a ConnectError that never left, tried `attempts` times."""
        trace, started = request_counter()
        policy = m.RetryPolicy(attempts=3, base=0.0, cap=0.0)
        registry = make_registry(
            f"http://127.0.0.1:{closed_port()}", retry=policy, trace_configs=[trace]
        )
        conn = registry.add("c1", TOKEN)
        body = None if method == "GET" else {"a": 1}
        error = await fails(conn.request(method, "/api/work-orders", json=body), m.ConnectError)
        assert error.may_have_reached_server is False
        assert error.method == method
        assert error.path == "/api/work-orders"
        assert started == [method, "connect"] * 3


# --------------------------------------------------------------------------------------------
# F2, F7, F8: the connection dies after the request left.


class TestResetAfterRequest:
    async def test_get_is_retried_on_a_new_connection(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A GET reset after the server read it succeeds on the second connection."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            n = rec.connect()
            while True:
                await rec.read(reader, n)
                if n == 1:
                    reset(writer)
                    return
                writer.write(response())
                await writer.drain()

        conn = make_registry(await raw_server(handler)).add("c1", TOKEN)
        result = await conn.request("GET", "/api/assets")
        assert result.data == {"data": [1, 2, 3]}
        assert rec.connections == 2
        assert [a.connection for a in rec.arrivals] == [1, 2]

    async def test_post_without_key_is_not_retried(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A POST without key reset after arrival surfaces once, flagged as maybe applied."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await rec.read(reader, rec.connect())
            reset(writer)

        conn = make_registry(await raw_server(handler)).add("c1", TOKEN)
        error = await fails(
            conn.request("POST", "/api/work-orders", json={"title": "pump"}), m.TransportError
        )
        assert not isinstance(error, m.ConnectError | m.RequestTimeoutError)
        assert error.may_have_reached_server is True
        assert error.method == "POST"
        assert len(rec.arrivals) == 1

    async def test_post_with_key_is_retried_with_the_same_key(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A POST with an idempotency key is retried after a reset, carrying the same key."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            n = rec.connect()
            while True:
                await rec.read(reader, n)
                if n == 1:
                    reset(writer)
                    return
                writer.write(response(b'{"id": "wo_1"}', status="201 Created"))
                await writer.drain()

        conn = make_registry(await raw_server(handler)).add("c1", TOKEN)
        result = await conn.request(
            "POST", "/api/work-orders", json={"title": "pump"}, idempotency_key="k1"
        )
        assert result.status == 201
        assert [a.method for a in rec.arrivals] == ["POST", "POST"]
        assert [a.headers.get("idempotency-key") for a in rec.arrivals] == ["k1", "k1"]

    async def test_put_without_key_is_not_resent(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A PUT without idempotency key reset after arrival reaches the server exactly once."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await rec.read(reader, rec.connect())
            reset(writer)

        conn = make_registry(await raw_server(handler)).add("c1", TOKEN)
        error = await fails(
            conn.request("PUT", "/api/work-orders/1", json={"status": "done"}), m.TransportError
        )
        assert error.may_have_reached_server is True
        assert [a.method for a in rec.arrivals] == ["PUT"]


Fault = Callable[[Recorder, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _half_close(
    rec: Recorder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await rec.read(reader, rec.connect())
    writer.write_eof()
    await reader.read()  # until the client gives up and closes


async def _rst(rec: Recorder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await rec.read(reader, rec.connect())
    reset(writer)


async def _short_body(
    rec: Recorder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await rec.read(reader, rec.connect())
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    writer.write(b"Content-Length: 100\r\n\r\n" + b'{"data": [1,')
    await writer.drain()


async def _close_before_status(
    rec: Recorder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await rec.read(reader, rec.connect())
    writer.close()


class TestAttemptCount:
    @pytest.mark.parametrize(
        "fault",
        [
            pytest.param(_rst, id="F2-rst"),
            pytest.param(_half_close, id="F7-half-close"),
            pytest.param(_close_before_status, id="F17-eof-before-status"),
            pytest.param(_short_body, id="F4-short-body"),
        ],
    )
    async def test_get_arrives_exactly_attempts_times(
        self, raw_server: StartRaw, make_registry: MakeRegistry, fault: Fault
    ) -> None:
        """A GET that always fails after arrival reaches the server exactly `attempts` times."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await fault(rec, reader, writer)

        conn = make_registry(await raw_server(handler)).add("c1", TOKEN)
        error = await fails(conn.request("GET", "/api/assets"), m.TransportError)
        assert error.may_have_reached_server is True
        assert len(rec.arrivals) == 4

    @pytest.mark.parametrize(
        "fault",
        [
            pytest.param(_rst, id="F2-rst"),
            pytest.param(_half_close, id="F7-half-close"),
            pytest.param(_close_before_status, id="F17-eof-before-status"),
            pytest.param(_short_body, id="F4-short-body"),
        ],
    )
    async def test_post_without_key_arrives_once(
        self, raw_server: StartRaw, make_registry: MakeRegistry, fault: Fault
    ) -> None:
        """A POST without key that fails after arrival is surfaced after exactly one arrival."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await fault(rec, reader, writer)

        conn = make_registry(await raw_server(handler)).add("c1", TOKEN)
        error = await fails(conn.request("POST", "/api/assets", json={}), m.TransportError)
        assert error.may_have_reached_server is True
        assert len(rec.arrivals) == 1


class TestHalfClose:
    async def test_half_close_is_a_typed_disconnect(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A server that shuts down its write side without answering gives a TransportError."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _half_close(rec, reader, writer)

        registry = make_registry(await raw_server(handler), retry=m.RetryPolicy.no_retries())
        error = await fails(
            registry.add("c1", TOKEN).request("DELETE", "/api/x/1"), m.TransportError
        )
        assert not isinstance(error, m.ConnectError | m.RequestTimeoutError)
        assert error.may_have_reached_server is True
        assert rec.arrivals
        assert {a.method for a in rec.arrivals} == {"DELETE"}


class TestStaleKeepAlive:
    async def test_idle_close_between_calls_is_transparent(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A pooled connection the server closed while idle is replaced; the next GET succeeds."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            n = rec.connect()
            await rec.read(reader, n)
            writer.write(response())  # keep-alive: no Connection: close
            await writer.drain()
            writer.close()  # then drop the idle connection

        conn = make_registry(await raw_server(handler)).add("c1", TOKEN)
        assert (await conn.request("GET", "/a")).status == 200
        await asyncio.sleep(0.05)  # let the FIN reach the pooled connection
        assert (await conn.request("GET", "/b")).status == 200
        assert rec.connections == 2
        assert rec.paths() == ["/a", "/b"]

    async def test_close_crossing_the_next_request_is_retried_for_get(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A keep-alive connection closed as the next GET arrives: the GET is resent and works."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            n = rec.connect()
            await rec.read(reader, n)
            writer.write(response())
            await writer.drain()
            if n == 1:
                await rec.read(reader, n)  # the second request arrives on the stale connection
                writer.close()
                return
            while True:
                await rec.read(reader, n)
                writer.write(response())
                await writer.drain()

        conn = make_registry(await raw_server(handler)).add("c1", TOKEN)
        assert (await conn.request("GET", "/a")).status == 200
        assert (await conn.request("GET", "/b")).data == {"data": [1, 2, 3]}
        assert rec.connections == 2
        assert [(a.connection, a.path) for a in rec.arrivals] == [(1, "/a"), (1, "/b"), (2, "/b")]

    async def test_close_crossing_a_post_without_key_surfaces(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A POST without key that hits a stale connection after arrival is surfaced, not resent."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            n = rec.connect()
            await rec.read(reader, n)
            writer.write(response())
            await writer.drain()
            await rec.read(reader, n)
            writer.close()

        conn = make_registry(await raw_server(handler)).add("c1", TOKEN)
        assert (await conn.request("GET", "/a")).status == 200
        error = await fails(conn.request("POST", "/b", json={"x": 1}), m.TransportError)
        assert error.may_have_reached_server is True
        assert [a.method for a in rec.arrivals] == ["GET", "POST"]


# --------------------------------------------------------------------------------------------
# F4, F5, F6: broken bodies.


class TestBrokenBodies:
    async def test_short_content_length_body_is_transport_error(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A body shorter than its Content-Length, then a close, is a TransportError."""
        rec = Recorder()
        wire = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"data": [1,'
        )
        registry = make_registry(
            await start_scripted(raw_server, rec, wire), retry=m.RetryPolicy.no_retries()
        )
        error = await fails(registry.add("c1", TOKEN).request("GET", "/x"), m.TransportError)
        assert error.may_have_reached_server is True
        assert len(rec.arrivals) == 1

    async def test_reset_mid_body_is_transport_error_and_not_pooled(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A reset after 100 of 1,000 announced bytes is a TransportError; the socket is dropped."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            n = rec.connect()
            while True:
                arrival = await rec.read(reader, n)
                if arrival.path == "/cut":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                    writer.write(b"Content-Length: 1000\r\n\r\n" + b"[" + b"1," * 50)
                    await writer.drain()
                    await asyncio.sleep(0.02)
                    reset(writer)
                    return
                writer.write(response())
                await writer.drain()

        registry = make_registry(await raw_server(handler), retry=m.RetryPolicy.no_retries())
        conn = registry.add("c1", TOKEN)
        assert (await conn.request("GET", "/ok")).status == 200
        error = await fails(conn.request("GET", "/cut"), m.TransportError)
        assert error.may_have_reached_server is True
        assert (await conn.request("GET", "/ok")).status == 200
        assert [(a.connection, a.path) for a in rec.arrivals] == [
            (1, "/ok"),
            (1, "/cut"),
            (2, "/ok"),
        ]

    async def test_read_until_close_truncated_json_is_decode_error(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A read-until-close body cut mid-JSON is a ResponseDecodeError (200), not retried."""
        rec = Recorder()
        wire = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
            b'{"data": [1,2'
        )
        conn = make_registry(await start_scripted(raw_server, rec, wire)).add("c1", TOKEN)
        error = await fails(conn.request("GET", "/x"), m.ResponseDecodeError)
        assert not isinstance(error, m.ResponseTooLargeError)
        assert error.status == 200
        assert error.body == '{"data": [1,2'
        assert len(rec.arrivals) == 1

    @pytest.mark.parametrize(
        "chunks",
        [
            pytest.param(b"5\r\nhello\r\n", id="no-final-chunk"),
            pytest.param(b"ZZ\r\nhello\r\n0\r\n\r\n", id="bad-chunk-size"),
            pytest.param(b"5;ext\nx\r\nhello\r\n0\r\n\r\n", id="lf-in-extension"),
            pytest.param(b"3\r\nhello\r\n0\r\n\r\n", id="chunk-longer-than-size"),
        ],
    )
    async def test_broken_chunked_encoding_is_transport_error(
        self, raw_server: StartRaw, make_registry: MakeRegistry, chunks: bytes
    ) -> None:
        """Malformed or unterminated chunked encoding is a TransportError, without hanging."""
        rec = Recorder()
        wire = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks
        )
        registry = make_registry(
            await start_scripted(raw_server, rec, wire),
            retry=m.RetryPolicy.no_retries(),
            timeout=m.Timeouts(connect=0.5, read=2.0),
        )
        error = await fails(registry.add("c1", TOKEN).request("GET", "/x"), m.TransportError)
        assert not isinstance(error, m.RequestTimeoutError)
        assert len(rec.arrivals) == 1


# --------------------------------------------------------------------------------------------
# F9: the server never answers.


class TestNeverAnswers:
    async def test_stall_times_out_then_the_registry_still_works(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A silent server gives RequestTimeoutError; a healthy call then uses a fresh socket."""
        rec = Recorder()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            n = rec.connect()
            while True:
                arrival = await rec.read(reader, n)
                if arrival.path == "/stall":
                    await reader.read()  # never answer; return when the client hangs up
                    return
                writer.write(response())
                await writer.drain()

        registry = make_registry(
            await raw_server(handler), retry=m.RetryPolicy(attempts=2, base=0.0, cap=0.0)
        )
        conn = registry.add("c1", TOKEN)
        loop = asyncio.get_running_loop()
        started = loop.time()
        error = await fails(
            conn.request("GET", "/stall", timeout=m.Timeouts(connect=0.1, read=0.2)),
            m.RequestTimeoutError,
        )
        assert loop.time() - started < by_deadline(2 * 0.3)  # two attempts of 0.1 + 0.2 s
        assert isinstance(error, TimeoutError)
        assert error.may_have_reached_server is True
        assert rec.paths() == ["/stall", "/stall"]
        result = await conn.request("GET", "/ok")
        assert result.data == {"data": [1, 2, 3]}
        stalled = {a.connection for a in rec.arrivals if a.path == "/stall"}
        healthy = [a.connection for a in rec.arrivals if a.path == "/ok"]
        assert len(healthy) == 1
        assert healthy[0] not in stalled

    async def test_per_call_float_timeout_bounds_a_stall(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A numeric per-call timeout bounds one attempt against a silent server."""

        async def handler(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await reader.read()

        registry = make_registry(await raw_server(handler), retry=m.RetryPolicy.no_retries())
        loop = asyncio.get_running_loop()
        started = loop.time()
        await fails(registry.add("c1", TOKEN).request("GET", "/x", timeout=0.2), TimeoutError)
        assert loop.time() - started < by_deadline(0.2)


# --------------------------------------------------------------------------------------------
# F12, F13: answers that are not JSON.

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    + "<!-- a padding to make the page big -->\r\n" * 1300
    + "</body>\r\n</html>\r\n"
)


class TestNonJsonAnswers:
    async def test_html_502_from_a_proxy(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """A 50 KB HTML 502 page is an UpstreamError with a bounded body, retried for a GET."""
        assert len(NGINX_502) > 50_000
        hits: list[str] = []

        async def bad_gateway(request: web.Request) -> web.Response:
            hits.append(request.method)
            return web.Response(
                status=502,
                text=NGINX_502,
                content_type="text/html",
                headers={"X-Request-Id": "req_502"},
            )

        app = web.Application()
        app.router.add_route("*", "/x", bad_gateway)
        conn = make_registry(await app_server(app)).add("c1", TOKEN)
        error = await fails(conn.request("GET", "/x"), m.UpstreamError)
        assert error.status == 502
        assert error.message == "502 Bad Gateway"
        assert error.request_id == "req_502"
        assert len(error.body) <= 1024
        assert error.body.startswith("<html>")
        assert len(str(error)) < 1024
        assert hits == ["GET"] * 4

    async def test_html_502_for_post_without_key_is_not_retried(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """A 502 to a POST without idempotency key is surfaced after one arrival."""
        hits: list[str] = []

        async def bad_gateway(request: web.Request) -> web.Response:
            hits.append(request.method)
            return web.Response(status=502, text=NGINX_502, content_type="text/html")

        app = web.Application()
        app.router.add_route("*", "/x", bad_gateway)
        conn = make_registry(await app_server(app)).add("c1", TOKEN)
        await fails(conn.request("POST", "/x", json={}), m.UpstreamError)
        assert hits == ["POST"]

    @pytest.mark.parametrize(
        "content_type", ["text/html", "application/octet-stream", "text/plain"]
    )
    async def test_200_with_wrong_content_type_is_decode_error(
        self, app_server: StartApp, make_registry: MakeRegistry, content_type: str
    ) -> None:
        """A 200 whose body is not JSON is a ResponseDecodeError, not retried."""
        hits: list[str] = []

        async def captive(request: web.Request) -> web.Response:
            hits.append(request.method)
            return web.Response(
                status=200,
                body=b"<html><title>Sign in to Wi-Fi</title></html>",
                content_type=content_type,
            )

        app = web.Application()
        app.router.add_get("/x", captive)
        conn = make_registry(await app_server(app)).add("c1", TOKEN)
        error = await fails(conn.request("GET", "/x"), m.ResponseDecodeError)
        assert error.status == 200
        assert content_type in error.message
        assert "Sign in" in error.body
        assert hits == ["GET"]


# --------------------------------------------------------------------------------------------
# F14, F15: bodies too big to keep.


def _dispatch_small_or(
    rec: Recorder, big: bytes | None = None, *, stream_bytes: int = 0
) -> tuple[list[bool], RawHandler]:
    """Serve ``/small`` with a tiny JSON body and ``/big`` with ``big`` or an endless stream."""
    finished: list[bool] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = rec.connect()
        while True:
            arrival = await rec.read(reader, n)
            if arrival.path == "/small":
                writer.write(response(b'{"small": true}'))
                await writer.drain()
                continue
            if big is not None:
                writer.write(big)
                await writer.drain()
                continue
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"7" * 65536
            frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
            for _ in range(stream_bytes // len(chunk)):
                writer.write(frame)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            finished.append(True)

    return finished, handler


class TestOversizedBodies:
    async def test_announced_length_over_the_cap(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A Content-Length above max_response_size is refused unread; the registry lives on."""
        rec = Recorder()
        _, handler = _dispatch_small_or(rec, response(b"[" + b"1," * 1023 + b"1]"))
        registry = make_registry(await raw_server(handler), max_response_size=1024)
        conn = registry.add("c1", TOKEN)
        error = await fails(conn.request("GET", "/big"), m.ResponseTooLargeError)
        assert error.status == 200
        assert "1024" in error.message
        assert (await conn.request("GET", "/small")).data == {"small": True}
        assert rec.paths() == ["/big", "/small"]

    async def test_endless_chunked_body_is_cut_at_the_cap(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A 32 MB chunked stream is abandoned at max_response_size; the registry lives on."""
        rec = Recorder()
        finished, handler = _dispatch_small_or(rec, stream_bytes=32 * 1024 * 1024)
        registry = make_registry(await raw_server(handler), max_response_size=1024)
        conn = registry.add("c1", TOKEN)
        error = await fails(conn.request("GET", "/big"), m.ResponseTooLargeError)
        assert error.status == 200
        assert (await conn.request("GET", "/small")).data == {"small": True}
        assert rec.paths() == ["/big", "/small"]
        assert rec.connections == 2  # the abandoned connection was not pooled
        assert finished == []  # the client hung up long before the stream ended

    async def test_gzip_bomb_is_cut_on_decoded_bytes(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A small gzip body that inflates past max_response_size is a ResponseTooLargeError."""
        rec = Recorder()
        bomb = gzip.compress(b"\0" * (5 * 1024 * 1024))
        assert len(bomb) < 64 * 1024
        wire = response(bomb, extra="Content-Encoding: gzip\r\n")
        _, handler = _dispatch_small_or(rec, wire)
        registry = make_registry(await raw_server(handler), max_response_size=1024 * 1024)
        conn = registry.add("c1", TOKEN)
        error = await fails(conn.request("GET", "/big"), m.ResponseTooLargeError)
        assert error.status == 200
        assert (await conn.request("GET", "/small")).data == {"small": True}

    async def test_small_gzip_body_within_the_cap_decodes(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A gzip body under the cap decodes normally (the cap counts decoded bytes only)."""
        rec = Recorder()
        wire = response(gzip.compress(OK_BODY), extra="Content-Encoding: gzip\r\n")
        _, handler = _dispatch_small_or(rec, wire)
        registry = make_registry(await raw_server(handler), max_response_size=1024)
        result = await registry.add("c1", TOKEN).request("GET", "/big")
        assert result.data == {"data": [1, 2, 3]}

    async def test_invalid_gzip_is_typed(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A body labelled gzip that is not gzip is a typed error, not zlib's or aiohttp's."""
        rec = Recorder()
        wire = response(b"this is not gzip at all" * 10, extra="Content-Encoding: gzip\r\n")
        registry = make_registry(
            await start_scripted(raw_server, rec, wire), retry=m.RetryPolicy.no_retries()
        )
        error = await fails(registry.add("c1", TOKEN).request("GET", "/x"), m.MakiniError)
        assert isinstance(error, m.TransportError | m.ResponseDecodeError)
        assert len(rec.arrivals) == 1


# --------------------------------------------------------------------------------------------
# F16, F17, B8: protocol garbage.


class TestProtocolGarbage:
    @pytest.mark.parametrize(
        "wire",
        [
            pytest.param(
                b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\n{}",
                id="F16-header-over-8190",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\n"
                + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
                + b"Content-Length: 2\r\n\r\n{}",
                id="F16-200-headers",
            ),
            pytest.param(
                b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}",
                id="F17-bad-status",
            ),
            pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", id="F17-not-http"),
            pytest.param(
                b"HTTP/9.9 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                id="F17-bad-version",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}",
                id="B8-length-not-digits",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}",
                id="B8-length-negative",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\n{}",
                id="B8-length-conflicting",
            ),
        ],
    )
    async def test_garbage_is_transport_error(
        self, raw_server: StartRaw, make_registry: MakeRegistry, wire: bytes
    ) -> None:
        """Responses the HTTP parser rejects are a TransportError, promptly and not as aiohttp's."""
        rec = Recorder()
        registry = make_registry(
            await start_scripted(raw_server, rec, wire),
            retry=m.RetryPolicy.no_retries(),
            timeout=m.Timeouts(connect=0.5, read=2.0),
        )
        error = await fails(registry.add("c1", TOKEN).request("GET", "/x"), m.TransportError)
        assert not isinstance(error, m.RequestTimeoutError | m.ConnectError)
        assert error.may_have_reached_server is True
        assert TOKEN not in repr(error)
        assert len(rec.arrivals) == 1

    async def test_length_and_chunked_together_is_handled(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """Both Content-Length and Transfer-Encoding: a typed error or the chunked body."""
        rec = Recorder()
        wire = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        )
        registry = make_registry(
            await start_scripted(raw_server, rec, wire),
            retry=m.RetryPolicy.no_retries(),
            timeout=m.Timeouts(connect=0.5, read=2.0),
        )
        result = await outcome(registry.add("c1", TOKEN).request("GET", "/x"))
        if isinstance(result, m.MakiniError):
            assert isinstance(result, m.TransportError)
        else:
            assert result.data == {}
        assert len(rec.arrivals) == 1

    async def test_garbled_content_type_on_a_200(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A 200 with Content-Type ';;;' is a ResponseDecodeError or decodes, never untyped."""
        rec = Recorder()
        wire = response(content_type=";;;")
        conn = make_registry(await start_scripted(raw_server, rec, wire)).add("c1", TOKEN)
        result = await outcome(conn.request("GET", "/x"))
        if isinstance(result, m.MakiniError):
            assert isinstance(result, m.ResponseDecodeError)
            assert result.status == 200
        else:
            assert result.data == {"data": [1, 2, 3]}
        assert len(rec.arrivals) == 1

    async def test_retry_after_on_a_200_is_ignored(
        self, app_server: StartApp, make_registry: MakeRegistry, clock: VirtualClock
    ) -> None:
        """A Retry-After on a success neither fails the call nor pauses the next one."""
        hits: list[str] = []

        async def handler(request: web.Request) -> web.Response:
            hits.append(request.path)
            return web.json_response({"ok": True}, headers={"Retry-After": "30"})

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        conn = make_registry(await app_server(app)).add("c1", TOKEN)
        assert (await conn.request("GET", "/a")).data == {"ok": True}
        assert (await conn.request("GET", "/b")).data == {"ok": True}
        assert hits == ["/a", "/b"]
        assert clock.sleeps == []

    async def test_huge_request_id_header_is_handled(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A 100 KB X-Request-Id is a typed error or a success, never a crash or a hang."""
        rec = Recorder()
        wire = response(extra="X-Request-Id: " + "r" * 100_000 + "\r\n")
        registry = make_registry(
            await start_scripted(raw_server, rec, wire),
            retry=m.RetryPolicy.no_retries(),
            timeout=m.Timeouts(connect=0.5, read=2.0),
        )
        result = await outcome(registry.add("c1", TOKEN).request("GET", "/x"))
        if isinstance(result, m.MakiniError):
            assert isinstance(result, m.TransportError)
            assert len(str(result)) < 1024
        else:
            assert result.data == {"data": [1, 2, 3]}
        assert len(rec.arrivals) == 1


# --------------------------------------------------------------------------------------------
# S1: redirects are never followed.


class TestRedirects:
    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    @pytest.mark.parametrize("method", ["GET", "POST"])
    async def test_redirect_to_another_origin_is_not_followed(
        self, app_server: StartApp, make_registry: MakeRegistry, status: int, method: str
    ) -> None:
        """A 3xx is an UnexpectedRedirectError naming the status; the other origin sees nothing."""
        evil_hits: list[dict[str, str]] = []
        origin_hits: list[str] = []

        async def evil(request: web.Request) -> web.Response:
            evil_hits.append(dict(request.headers))
            return web.json_response({"stolen": True})

        evil_app = web.Application()
        evil_app.router.add_route("*", "/{tail:.*}", evil)
        evil_base = await app_server(evil_app)

        async def redirect(request: web.Request) -> web.Response:
            origin_hits.append(request.method)
            return web.Response(
                status=status,
                headers={"Location": f"{evil_base}/steal", "X-Request-Id": "req_3xx"},
            )

        app = web.Application()
        app.router.add_route("*", "/x", redirect)
        conn = make_registry(await app_server(app)).add("c1", TOKEN)
        error = await fails(conn.request(method, "/x", json={"a": 1}), m.UnexpectedRedirectError)
        assert error.status == status
        assert str(status) in str(error)
        assert error.request_id == "req_3xx"
        assert origin_hits == [method]
        assert evil_hits == []
