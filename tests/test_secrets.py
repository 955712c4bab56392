"""The bearer token never leaks, and tenants never see each other's credentials or cookies.

A fresh canary token per test is pushed down every error path (checklist S2/S3): 401 with and
without a reconnect hook, 403, a 429 given up, a 5xx given up, connect refused, a reset, a
timeout, undecodable bodies, servers that echo the token back, malformed tokens. Each time the
canary must be absent from every sink a user could print or ship: log records (message, args,
formatted with traceback), every exception in the ``__cause__``/``__context__`` graph (``str``,
``repr``, ``args``, attribute values), the formatted traceback, and the reprs of the registry,
the connection and the response. S5 (environment proxies and ``.netrc``), S6 (cookies) and L1
(1,000 connections under concurrent load) check isolation on the server side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import makini_async as m
from makini_async._redact import scrub
from tests.support import MakeRegistry, StartApp, StartRaw, read_request

# --------------------------------------------------------------------------------------------
# The sinks.


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


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken repr is not a leak, but say so
        return f"<repr failed: {type(exc).__name__}>"


def sink_texts(
    *,
    records: Iterable[logging.LogRecord] = (),
    error: BaseException | None = None,
    objects: Iterable[object] = (),
) -> Iterator[tuple[str, str]]:
    """Every text a user could see or ship, as (where, text) pairs."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in records:
        where = f"log record {record.name}:{record.levelname}"
        yield f"{where} getMessage()", record.getMessage()
        yield f"{where} repr(args)", _safe_repr(record.args)
        yield f"{where} formatted", formatter.format(record)
    if error is not None:
        yield "formatted traceback", "".join(traceback.format_exception(error))
        for link in exception_chain(error):
            where = f"chained {type(link).__name__}"
            yield f"{where} str", str(link)
            yield f"{where} repr", _safe_repr(link)
            yield f"{where} args", _safe_repr(link.args)
            for name, value in vars(link).items():
                yield f"{where}.{name}", _safe_repr(value)
    for obj in objects:
        yield f"repr({type(obj).__name__})", _safe_repr(obj)
        yield f"str({type(obj).__name__})", str(obj)


def assert_no_leak(
    secret: str,
    *,
    records: Iterable[logging.LogRecord] = (),
    error: BaseException | None = None,
    objects: Iterable[object] = (),
) -> None:
    """The secret appears in no sink, and no chained exception can carry request headers."""
    leaks = [
        where
        for where, text in sink_texts(records=records, error=error, objects=objects)
        if secret in text
    ]
    assert leaks == [], f"the token leaked into: {leaks}"
    if error is not None:
        for link in exception_chain(error):
            assert not isinstance(link, aiohttp.ClientResponseError), f"S3: chained {link!r}"
            assert not hasattr(link, "request_info"), f"S3: {type(link).__name__} has request_info"


async def failure(call: Awaitable[object]) -> m.MakiniError:
    """Await a call that must fail with a MakiniError and return that error."""
    try:
        await call
    except Exception as exc:  # the class is checked below, outside the handler
        error = exc
    else:
        pytest.fail("the call succeeded")
    assert isinstance(error, m.MakiniError), f"untyped escape: {error!r}"
    return error


# --------------------------------------------------------------------------------------------
# Fixtures and servers.


@pytest.fixture(name="canary")
def _canary() -> str:
    """A unique token for this test."""
    return "tok_CANARY_" + uuid.uuid4().hex


@pytest.fixture(name="logs")
def _logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger (makini_async and backoff included) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="makini_async")
    caplog.set_level(logging.DEBUG, logger="backoff")
    return caplog


def envelope(status: int, code: str, message: str, **details: object) -> web.Response:
    """A Makini error envelope."""
    body = {"error": {"code": code, "type": "x_error", "message": message, "details": details}}
    return web.json_response(body, status=status, headers={"X-Request-Id": "req_s"})


class Echo:
    """An aiohttp app whose answer is built by ``reply`` and that records every Authorization."""

    def __init__(self, reply: Callable[[str], web.StreamResponse]) -> None:
        self.reply = reply
        self.auth: list[str | None] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record the Authorization header, then reply."""
        auth = request.headers.get("Authorization")
        self.auth.append(auth)
        return self.reply(auth or "")

    async def start(self, app_server: StartApp) -> str:
        """Serve every path with ``handle``."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return await app_server(app)


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --------------------------------------------------------------------------------------------
# S2/S3: the canary down every error path.


class TestAuthErrorsDoNotLeak:
    async def test_401_without_hook(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A 401 echoing the token, with no hook, fails typed and the token appears nowhere."""
        echo = Echo(lambda auth: envelope(401, "TOKEN_EXPIRED", f"expired: {auth}", seen=auth))
        registry = make_registry(await echo.start(app_server))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ReauthorizationRequiredError)
        assert conn.state is m.ConnectionState.REAUTHORIZATION_REQUIRED
        again = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(again, m.ReauthorizationRequiredError)
        assert echo.auth == [f"Bearer {canary}"]
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])
        assert_no_leak(canary, error=again)

    async def test_401_with_a_hook_that_raises(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A reconnect hook that raises leaves the connection typed-failed and the token unseen."""
        calls: list[m.ReconnectEvent] = []

        async def hook(event: m.ReconnectEvent) -> str | None:
            calls.append(event)
            msg = "the refresh service is down"
            raise RuntimeError(msg)

        echo = Echo(lambda auth: envelope(401, "TOKEN_EXPIRED", f"bad {auth}"))
        registry = make_registry(await echo.start(app_server), on_reconnect=hook)
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ReauthorizationRequiredError)
        assert len(calls) == 1
        assert_no_leak(
            canary, records=logs.records, error=error, objects=[registry, conn, calls[0]]
        )

    async def test_401_with_a_hook_whose_error_names_the_token(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A hook exception whose text holds the token is reported by type only, chain included."""

        async def hook(event: m.ReconnectEvent) -> str | None:
            msg = f"refresh of {canary} for {event.connection_id} failed"
            raise RuntimeError(msg)

        echo = Echo(lambda _auth: envelope(401, "TOKEN_EXPIRED", "expired"))
        registry = make_registry(await echo.start(app_server), on_reconnect=hook)
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ReauthorizationRequiredError)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_401_again_after_the_hook_token(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """When the hook's new token is refused too, neither token leaks."""
        second = canary + "_gen2"

        async def hook(_event: m.ReconnectEvent) -> str | None:
            return second

        echo = Echo(lambda auth: envelope(401, "REAUTHORIZATION_REQUIRED", f"no {auth}"))
        registry = make_registry(await echo.start(app_server), on_reconnect=hook)
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ReauthorizationRequiredError)
        assert echo.auth == [f"Bearer {canary}", f"Bearer {second}"]
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])
        assert_no_leak(second, records=logs.records, error=error, objects=[registry, conn])

    async def test_hook_returning_a_malformed_token(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A hook token with a newline is refused without being sent, logged or raised."""
        bad = f"{canary}_new\r\nX-Injected: 1"

        async def hook(_event: m.ReconnectEvent) -> str | None:
            return bad

        echo = Echo(lambda _auth: envelope(401, "TOKEN_EXPIRED", "expired"))
        registry = make_registry(await echo.start(app_server), on_reconnect=hook)
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ReauthorizationRequiredError)
        assert echo.auth == [f"Bearer {canary}"]
        assert any("invalid token" in r.getMessage() for r in logs.records)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_403_echoing_the_token(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A 403 whose message and details echo the token is raised with the token redacted."""
        echo = Echo(
            lambda auth: envelope(
                403, "PERMISSION_DENIED", f"{auth} may not", header=auth, nested={"a": [auth]}
            )
        )
        registry = make_registry(await echo.start(app_server))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.PermissionDeniedError)
        assert "REDACTED" in error.message
        assert "REDACTED" in json.dumps(dict(error.details))
        assert echo.auth == [f"Bearer {canary}"]
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])


class TestGiveUpsDoNotLeak:
    async def test_429_above_max_retry_after(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A 429 asking for longer than max_retry_after is given up at once, token unseen."""

        def reply(auth: str) -> web.Response:
            response = envelope(429, "RATE_LIMIT_EXCEEDED", f"slow down {auth}")
            response.headers["Retry-After"] = "7200"
            return response

        echo = Echo(reply)
        registry = make_registry(await echo.start(app_server))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.RateLimitError)
        assert error.retry_after == 7200
        assert len(echo.auth) == 1
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_503_until_retries_run_out(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A 503 on every attempt is given up after the policy's attempts, token unseen."""
        echo = Echo(lambda auth: envelope(503, "SYSTEM_UNAVAILABLE", f"down for {auth}"))
        registry = make_registry(await echo.start(app_server))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ServiceUnavailableError)
        assert echo.auth == [f"Bearer {canary}"] * 4
        assert any("Retrying" in r.getMessage() for r in logs.records)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_html_502_echoing_the_token(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A proxy's HTML error page that prints the request headers keeps no token."""

        def reply(auth: str) -> web.Response:
            page = f"<html><title>502 Bad Gateway</title><pre>Authorization: {auth}</pre></html>"
            return web.Response(status=502, text=page, content_type="text/html")

        echo = Echo(reply)
        registry = make_registry(await echo.start(app_server), retry=m.RetryPolicy.no_retries())
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.UpstreamError)
        assert "REDACTED" in error.body
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])


class TestTransportFailuresDoNotLeak:
    async def test_connect_refused(
        self, make_registry: MakeRegistry, logs: pytest.LogCaptureFixture, canary: str
    ) -> None:
        """A refused connection, retried to the end, never shows the token."""
        registry = make_registry(f"http://127.0.0.1:{closed_port()}")
        conn = registry.add("c1", canary)
        error = await failure(conn.request("POST", "/api/work-orders", json={"t": 1}))
        assert isinstance(error, m.ConnectError)
        assert any("Giving up" in r.getMessage() for r in logs.records)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_reset_after_the_request(
        self,
        raw_server: StartRaw,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A TCP reset after the server read the request never shows the token."""
        seen: list[str] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            _, headers, _ = await read_request(reader)
            seen.append(headers["authorization"])
            reset(writer)

        registry = make_registry(await raw_server(handler))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.TransportError)
        assert not isinstance(error, m.ConnectError)
        assert seen
        assert set(seen) == {f"Bearer {canary}"}
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_read_timeout(
        self,
        raw_server: StartRaw,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A read timeout against a silent server never shows the token."""

        async def handler(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await reader.read()

        registry = make_registry(await raw_server(handler), retry=m.RetryPolicy.no_retries())
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/x", timeout=m.Timeouts(connect=0.1, read=0.2)))
        assert isinstance(error, m.RequestTimeoutError)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_deadline(
        self,
        raw_server: StartRaw,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A call deadline passing mid-request never shows the token."""

        async def handler(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await reader.read()

        registry = make_registry(await raw_server(handler))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/x", deadline=0.2))
        assert isinstance(error, m.RequestTimeoutError)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_malformed_response(
        self,
        raw_server: StartRaw,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A response the HTTP parser rejects leaves no request headers in the exception graph."""

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

        registry = make_registry(await raw_server(handler), retry=m.RetryPolicy.no_retries())
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/x"))
        assert isinstance(error, m.TransportError)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])


class TestEchoedBodiesDoNotLeak:
    @pytest.mark.parametrize(
        ("content_type", "template"),
        [
            pytest.param("text/html", "<pre>Authorization: {auth}</pre>", id="html"),
            pytest.param("application/json", '{{"echo": "{auth}", "cut": [1,', id="bad-json"),
        ],
    )
    async def test_undecodable_2xx_echoing_the_token(
        self,
        *,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
        content_type: str,
        template: str,
    ) -> None:
        """A 200 that cannot be decoded and echoes the token raises without the token."""
        echo = Echo(
            lambda auth: web.Response(
                status=200, body=template.format(auth=auth).encode(), content_type=content_type
            )
        )
        registry = make_registry(await echo.start(app_server))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ResponseDecodeError)
        assert echo.auth == [f"Bearer {canary}"]
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_undecodable_2xx_without_echo(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A 200 with truncated JSON raises ResponseDecodeError without the token."""
        echo = Echo(
            lambda _auth: web.Response(
                status=200, body=b'{"data": [1,', content_type="application/json"
            )
        )
        registry = make_registry(await echo.start(app_server))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ResponseDecodeError)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_every_envelope_field_echoing_the_token(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """An envelope whose code, type and request_id echo the token keeps it nowhere."""

        def reply(auth: str) -> web.Response:
            token = auth.removeprefix("Bearer ")
            body = {
                "error": {
                    "code": token,
                    "type": token,
                    "message": token,
                    "request_id": token,
                    "details": {token: token},
                }
            }
            return web.json_response(body, status=400)

        echo = Echo(reply)
        registry = make_registry(await echo.start(app_server))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.InvalidRequestError)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_token_cut_by_the_length_limits(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A token straddling the message/body length limits leaves no long prefix behind."""
        kept = len(canary) - 8  # the limit cuts the token's last 8 characters off
        message = "m" * (500 - kept) + canary
        body = ("b" * (1024 - kept) + canary).encode()
        echo_message = Echo(lambda _auth: envelope(400, "INVALID", message))
        echo_body = Echo(lambda _auth: web.Response(status=400, body=body))
        registry = make_registry(await echo_message.start(app_server))
        other = make_registry(await echo_body.start(app_server))
        by_message = await failure(registry.add("c1", canary).request("GET", "/x"))
        by_body = await failure(other.add("c1", canary).request("GET", "/x"))
        assert isinstance(by_message, m.InvalidRequestError)
        assert isinstance(by_body, m.InvalidRequestError)
        assert_no_leak(canary[:kept], records=logs.records, error=by_message)
        assert_no_leak(canary[:kept], error=by_body)


class TestMalformedTokens:
    @pytest.mark.parametrize(
        "suffix", ["\n", "\r\nX-Injected: 1", "\x00", " trailing", "\u00e9"], ids=repr
    )
    async def test_bad_token_is_value_error_before_io(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
        suffix: str,
    ) -> None:
        """A token with a newline, NUL, space or non-ASCII is a ValueError that does not echo it."""
        echo = Echo(lambda _auth: web.json_response({}))
        registry = make_registry(await echo.start(app_server))
        bad = canary + suffix
        with pytest.raises(ValueError, match="token") as info:
            registry.add("c1", bad)
        assert len(registry) == 0
        good = registry.add("c2", "tok_good")
        with pytest.raises(ValueError, match="token") as update_info:
            registry.update_token("c2", bad)
        assert good.generation == 1
        await good.request("GET", "/x")
        assert echo.auth == ["Bearer tok_good"]
        assert_no_leak(canary, records=logs.records, error=info.value, objects=[registry, good])
        assert_no_leak(canary, error=update_info.value)

    async def test_non_string_token_is_type_error(
        self, make_registry: MakeRegistry, canary: str
    ) -> None:
        """A bytes token is a TypeError that does not echo it."""
        registry = make_registry("http://127.0.0.1:9")
        with pytest.raises(TypeError, match="str") as info:
            registry.add("c1", canary.encode())  # type: ignore[arg-type]
        assert_no_leak(canary, error=info.value, objects=[registry])


# --------------------------------------------------------------------------------------------
# Every token the connection has sent, in every sink, and nothing else redacted.


class Recorder:
    """An instrument that keeps every event of every call."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def call_started(self, event: m.CallStarted) -> Recorder:
        self.events.append(event)
        return self

    def attempt_sent(self, event: m.AttemptSent) -> None:
        self.events.append(event)

    def response_received(self, event: m.ResponseReceived) -> None:
        self.events.append(event)

    def retry_scheduled(self, event: m.RetryScheduled) -> None:
        self.events.append(event)

    def gate_wait(self, event: m.GateWait) -> None:
        self.events.append(event)

    def reconnect_fired(self, event: m.ReconnectFired) -> None:
        self.events.append(event)

    def call_ended(self, event: m.CallEnded) -> None:
        self.events.append(event)


class TestEveryTokenSent:
    async def test_a_token_replaced_while_the_call_is_in_flight(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A call sent with T1 that fails after update_token(T2) shows neither token."""
        second = canary + "_gen2"
        arrived = asyncio.Event()
        release = asyncio.Event()

        async def handler(request: web.Request) -> web.Response:
            auth = request.headers.get("Authorization", "")
            arrived.set()
            await release.wait()
            response = envelope(400, "INVALID_REQUEST", f"bad {auth}", seen=auth)
            response.headers["X-Request-Id"] = f"req-{auth.removeprefix('Bearer ')}"
            return response

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        registry = make_registry(await app_server(app))
        conn = registry.add("c1", canary)
        call = asyncio.create_task(conn.request("GET", "/api/assets"))
        await arrived.wait()
        registry.update_token("c1", second)
        release.set()
        error = await failure(call)
        assert isinstance(error, m.InvalidRequestError)
        assert "bad Bearer [REDACTED]" in error.message
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_the_refused_token_echoed_by_the_replay(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """After the hook's token replaces T1, an answer quoting T1 still shows no T1."""
        second = "tok_NEXT_" + uuid.uuid4().hex

        async def hook(_event: m.ReconnectEvent) -> str | None:
            return second

        async def handler(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") == f"Bearer {canary}":
                return envelope(401, "TOKEN_EXPIRED", "expired")
            return envelope(409, "CONFLICT", f"{canary} was replaced by {second}")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        registry = make_registry(await app_server(app), on_reconnect=hook)
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ConflictError)
        assert error.message == "[REDACTED] was replaced by [REDACTED]"
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])
        assert_no_leak(second, records=logs.records, error=error, objects=[registry, conn])


class TestServerControlledHeaders:
    @pytest.mark.parametrize("status", [200, 201, 204])
    async def test_a_2xx_request_id_echoing_the_token(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
        status: int,
    ) -> None:
        """A 2xx whose X-Request-Id echoes the token: no DEBUG record, repr or event shows it."""
        recorder = Recorder()

        def reply(auth: str) -> web.Response:
            headers = {"X-Request-Id": f"req-{auth.removeprefix('Bearer ')}"}
            if status == 204:
                return web.Response(status=204, headers=headers)
            return web.json_response({"data": {}}, status=status, headers=headers)

        echo = Echo(reply)
        registry = make_registry(await echo.start(app_server), instruments=[recorder])
        conn = registry.add("c1", canary)
        response = await conn.request("GET", "/api/assets")
        assert response.request_id == "req-[REDACTED]"
        assert any(
            r.levelno == logging.DEBUG and "req-[REDACTED]" in r.getMessage() for r in logs.records
        )
        assert_no_leak(
            canary, records=logs.records, objects=[registry, conn, response, *recorder.events]
        )

    async def test_request_ids_with_control_characters_are_dropped(
        self, raw_server: StartRaw, make_registry: MakeRegistry, logs: pytest.LogCaptureFixture
    ) -> None:
        """An X-Request-Id carrying escapes (log forging) is not kept, logged or raised."""
        answers = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"X-Request-Id: req\x1b[2Jforged\r\nContent-Length: 2\r\n\r\n{}"
            ),
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                b"X-Request-Id: req\x7fdel\r\nContent-Length: 2\r\n\r\n{}"
            ),
        ]

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while answers:
                await read_request(reader)
                writer.write(answers.pop(0))
                await writer.drain()

        conn = make_registry(await raw_server(handler)).add("c1", "tok_1")
        response = await conn.request("GET", "/x")
        assert response.request_id is None
        error = await failure(conn.request("GET", "/x"))
        assert isinstance(error, m.NotFoundError)
        assert error.request_id is None
        assert all(r.getMessage().isprintable() for r in logs.records)

    async def test_a_content_type_echoing_the_token(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """A 2xx whose Content-Type quotes the token fails typed, the token nowhere."""
        echo = Echo(
            lambda auth: web.Response(
                status=200,
                body=b"{}",
                headers={"Content-Type": f"text/{auth.removeprefix('Bearer ')}"},
            )
        )
        registry = make_registry(await echo.start(app_server))
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ResponseDecodeError)
        assert "text/[REDACTED]" in str(error)
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    async def test_a_too_large_body_with_an_echoing_request_id(
        self,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
    ) -> None:
        """ResponseTooLargeError keeps the request id only redacted."""
        echo = Echo(
            lambda auth: web.json_response(
                {"data": "x" * 500}, headers={"X-Request-Id": f"req-{auth}"}
            )
        )
        registry = make_registry(await echo.start(app_server), max_response_size=100)
        conn = registry.add("c1", canary)
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ResponseTooLargeError)
        assert error.request_id == "req-Bearer [REDACTED]"
        assert_no_leak(canary, records=logs.records, error=error, objects=[registry, conn])

    @pytest.mark.parametrize(
        ("status", "extra"),
        [
            (200, {}),
            (400, {}),
            (401, {}),
            (403, {}),
            (404, {}),
            (422, {}),
            (429, {"Retry-After": "7200"}),
            (429, {"Retry-After": "0"}),
            (500, {}),
            (503, {"Retry-After": "0"}),
            (302, {"Location": "/elsewhere"}),
        ],
    )
    async def test_no_log_record_at_any_level_quotes_the_token(
        self,
        *,
        app_server: StartApp,
        make_registry: MakeRegistry,
        logs: pytest.LogCaptureFixture,
        canary: str,
        status: int,
        extra: dict[str, str],
    ) -> None:
        """Every record the library writes, DEBUG included, is redacted like the errors."""
        recorder = Recorder()

        def reply(auth: str) -> web.Response:
            token = auth.removeprefix("Bearer ")
            body = {
                "error": {"code": token, "message": token, "request_id": token},
                "data": {"echo": token},
            }
            headers = {"X-Request-Id": token, "Content-Type": "application/json", **extra}
            return web.Response(status=status, body=json.dumps(body), headers=headers)

        echo = Echo(reply)
        registry = make_registry(await echo.start(app_server), instruments=[recorder])
        conn = registry.add("c1", canary)
        try:
            result: object = await conn.request("GET", "/api/assets")
        except m.MakiniError as exc:
            result = exc
        assert logs.records
        error = result if isinstance(result, BaseException) else None
        objects = [registry, conn, *recorder.events, *([] if error else [result])]
        assert_no_leak(canary, records=logs.records, error=error, objects=objects)


class TestShortTokens:
    @pytest.mark.parametrize(
        ("text", "secret", "expected"),
        [
            ("The title is required", "t", "The title is required"),
            ("Bearer t", "t", "Bearer [REDACTED]"),
            ('{"token": "t"}', "t", '{"token": "[REDACTED]"}'),
            ("t2 and t22 and xt2", "t2", "[REDACTED] and t22 and xt2"),
            ("tok_1_old", "tok_1", "[REDACTED]_old"),
            ("access_token%3D" + "k" * 16 + "&x", "k" * 16, "access_token%3D[REDACTED]&x"),
            ("m" * 3 + "k" * 20 + "z", "k" * 20, "mmm[REDACTED]z"),
        ],
    )
    def test_what_is_redacted(self, text: str, secret: str, expected: str) -> None:
        """Long secrets go wherever they are; short ones only where they stand whole."""
        assert scrub(text, (secret,)) == expected

    async def test_a_one_letter_token_leaves_the_error_readable(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """Token "t": the message, code, fields and request id of a 422 arrive intact."""
        body = {
            "error": {
                "code": "VALIDATION_ERROR",
                "message": "The title is required",
                "request_id": "req_t1",
                "details": {"fields": {"title": ["must not be empty"]}},
            }
        }
        echo = Echo(lambda _auth: web.json_response(body, status=422))
        conn = make_registry(await echo.start(app_server)).add("c1", "t")
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.ValidationError)
        assert error.message == "The title is required"
        assert error.code == "VALIDATION_ERROR"
        assert error.request_id == "req_t1"
        assert error.fields == {"title": ["must not be empty"]}

    async def test_a_digit_token_does_not_break_the_json(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """Token "1": the body is still read as JSON, numbers untouched, strings redacted."""
        body = {"error": {"code": "INVALID_REQUEST", "message": "token 1 refused"}, "line": 1}
        echo = Echo(lambda _auth: web.json_response(body, status=400))
        conn = make_registry(await echo.start(app_server)).add("c1", "1")
        error = await failure(conn.request("GET", "/api/assets"))
        assert isinstance(error, m.InvalidRequestError)
        assert error.code == "INVALID_REQUEST"
        assert error.message == "token [REDACTED] refused"


# --------------------------------------------------------------------------------------------
# S5: the environment injects neither a proxy nor credentials.


class TestEnvironment:
    async def test_env_proxies_and_netrc_are_ignored(
        self,
        *,
        app_server: StartApp,
        raw_server: StartRaw,
        make_registry: MakeRegistry,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
        canary: str,
    ) -> None:
        """With proxy variables and a .netrc set, no proxy is used and only our bearer is sent."""
        proxy_connections: list[int] = []

        async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            proxy_connections.append(1)
            await read_request(reader)
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

        proxy_url = await raw_server(proxy)
        netrc = tmp_path / ".netrc"
        netrc.write_text("machine 127.0.0.1\n  login netrc_user\n  password netrc_pass\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("NETRC", str(netrc))
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY"):
            monkeypatch.setenv(name, proxy_url)
            monkeypatch.setenv(name.lower(), proxy_url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)

        seen: list[dict[str, str]] = []

        async def handler(request: web.Request) -> web.Response:
            seen.append(dict(request.headers))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_get("/x", handler)
        registry = make_registry(await app_server(app))
        result = await registry.add("c1", canary).request("GET", "/x")
        assert result.data == {"ok": True}
        assert proxy_connections == []
        assert len(seen) == 1
        assert seen[0]["Authorization"] == f"Bearer {canary}"
        assert "Proxy-Authorization" not in seen[0]
        assert "netrc_pass" not in json.dumps(seen[0])

    async def test_control_trust_env_does_use_the_env_proxy(
        self,
        raw_server: StartRaw,
        make_registry: MakeRegistry,
        monkeypatch: pytest.MonkeyPatch,
        canary: str,
    ) -> None:
        """Control: trust_env=True does honour the proxy variables, so the test above can fail."""
        proxy_lines: list[str] = []

        async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line, _, _ = await read_request(reader)
            proxy_lines.append(line)
            body = b'{"via": "proxy"}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()

        proxy_url = await raw_server(proxy)
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("http_proxy", proxy_url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        registry = make_registry(f"http://127.0.0.1:{closed_port()}", trust_env=True)
        result = await registry.add("c1", canary).request("GET", "/x")
        assert result.data == {"via": "proxy"}
        assert len(proxy_lines) == 1
        assert proxy_lines[0].startswith("GET http://127.0.0.1:")

    async def test_netrc_entry_with_trust_env_sends_only_the_bearer(
        self,
        *,
        app_server: StartApp,
        make_registry: MakeRegistry,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
        canary: str,
    ) -> None:
        """trust_env=True and a .netrc for the host: no netrc credentials, no untyped error."""
        netrc = tmp_path / ".netrc"
        netrc.write_text("machine 127.0.0.1\n  login netrc_user\n  password netrc_pass\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("NETRC", str(netrc))
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("all_proxy", raising=False)
        seen: list[str | None] = []

        async def handler(request: web.Request) -> web.Response:
            seen.append(request.headers.get("Authorization"))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_get("/x", handler)
        registry = make_registry(await app_server(app), trust_env=True)
        try:
            result = await registry.add("c1", canary).request("GET", "/x")
        except Exception as exc:  # checked below, outside the handler
            error: Exception | None = exc
        else:
            error = None
            assert result.data == {"ok": True}
        assert error is None or isinstance(error, m.MakiniError), f"untyped escape: {error!r}"
        if error is not None:
            assert_no_leak(canary, error=error)
        assert seen in ([], [f"Bearer {canary}"])


# --------------------------------------------------------------------------------------------
# S6: cookies.


class TestCookies:
    async def test_set_cookie_is_never_sent_back(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """Set-Cookie on every response: no later request, on any connection, carries a Cookie."""
        seen: list[tuple[str, str | None]] = []

        async def handler(request: web.Request) -> web.Response:
            tenant = request.match_info["tenant"]
            seen.append((tenant, request.headers.get("Cookie")))
            response = web.json_response({"tenant": tenant})
            response.set_cookie("session", f"sess_{tenant}", path="/")
            response.set_cookie("tracker", "t1", path="/", domain="localhost")
            return response

        app = web.Application()
        app.router.add_get("/t/{tenant}", handler)
        # A host name, not an IP: aiohttp's default jar ignores cookies from IP addresses.
        base = (await app_server(app)).replace("127.0.0.1", "localhost")

        # Control: a plain aiohttp session with a real jar does send these cookies back.
        async with aiohttp.ClientSession() as plain:
            for _ in range(2):
                async with plain.get(f"{base}/t/control") as reply:
                    await reply.read()
        assert seen[1][1] is not None
        assert "sess_control" in seen[1][1]
        seen.clear()

        registry = make_registry(base)
        a = registry.add("a", "tok_a")
        b = registry.add("b", "tok_b")
        first = await a.request("GET", "/t/a")
        assert "sess_a" in first.headers.get("Set-Cookie", "")
        await a.request("GET", "/t/a")
        await b.request("GET", "/t/b")
        await asyncio.gather(*(c.request("GET", f"/t/{c.id}") for c in (a, b, a, b)))
        assert sorted(tenant for tenant, _ in seen) == ["a"] * 4 + ["b"] * 3
        assert [cookie for _, cookie in seen] == [None] * 7


# --------------------------------------------------------------------------------------------
# L1/S6: many tenants at once.


class TestIsolationUnderLoad:
    async def test_1000_connections_each_send_only_their_token(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """3,000 concurrent requests over 1,000 connections: each carries only its own token."""
        run = uuid.uuid4().hex[:8]
        mismatches: list[tuple[str, str | None]] = []
        arrivals = 0

        async def handler(request: web.Request) -> web.Response:
            nonlocal arrivals
            arrivals += 1
            tenant = request.match_info["tenant"]
            auth = request.headers.get("Authorization")
            if auth != f"Bearer tok_{run}_{tenant}" or "Cookie" in request.headers:
                mismatches.append((tenant, auth))
            await asyncio.sleep(0)
            response = web.json_response({"auth": auth})
            response.set_cookie("sid", f"sid_{tenant}")
            return response

        app = web.Application()
        app.router.add_get("/t/{tenant}", handler)
        base = (await app_server(app)).replace("127.0.0.1", "localhost")  # cookies need a name
        registry = make_registry(base, limit=100)
        conns = [registry.add(f"c{i}", f"tok_{run}_c{i}") for i in range(1000)]

        async def call(conn: m.Connection) -> tuple[str, object]:
            result = await conn.request("GET", f"/t/{conn.id}")
            assert isinstance(result.data, dict)
            return conn.id, result.data["auth"]

        results = await asyncio.gather(*(call(c) for _ in range(3) for c in conns))
        client_mismatches = [
            (cid, auth) for cid, auth in results if auth != f"Bearer tok_{run}_{cid}"
        ]
        assert len(results) == 3000
        assert arrivals == 3000
        assert mismatches == []
        assert client_mismatches == []
        assert registry.open_sessions == 1000
