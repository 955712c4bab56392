"""Connection.request: arguments, decoding, deadlines, cancellation and the caller's timeouts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

import makini_async as m
from makini_async import ConnectionRegistry, RetryPolicy, Timeouts
from makini_async._json import stdlib_dumps, stdlib_loads
from makini_async._transport import _client_timeout
from makini_async.testing import VirtualClock
from tests.support import (
    MakeRegistry,
    Reply,
    ScriptedApp,
    StartRaw,
    by_deadline,
    error_reply,
    read_request,
)


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "exc"),
        [
            ({"method": "BREW"}, ValueError),
            ({"method": "GET\r\nX: y"}, ValueError),
            ({"method": 3}, TypeError),
            ({"path": "api/no-slash"}, ValueError),
            ({"path": "//evil.example/x"}, ValueError),
            ({"path": "/a b"}, ValueError),
            ({"path": "/a\r\nHost: evil"}, ValueError),
            ({"path": "/a#frag"}, ValueError),
            ({"path": b"/bytes"}, TypeError),
            ({"headers": {"X-Ok": "a\r\nInjected: 1"}}, ValueError),
            ({"headers": {"X-Ok": "nul\x00"}}, ValueError),
            ({"headers": {"Bad Name": "v"}}, ValueError),
            ({"headers": {"Authorization": "Bearer other-tenant"}}, ValueError),
            ({"headers": {"cookie": "a=b"}}, ValueError),
            ({"headers": {"X-Num": 1}}, TypeError),
            ({"params": {"a": object()}}, TypeError),
            ({"params": {"at": datetime(2026, 1, 1)}}, ValueError),  # noqa: DTZ001 - naive on purpose
            ({"params": {1: "x"}}, TypeError),
            ({"json": {"x": float("nan")}}, ValueError),
            ({"json": {"x": object()}}, TypeError),
            ({"timeout": 0}, ValueError),
            ({"timeout": "5"}, TypeError),
            ({"deadline": -1}, ValueError),
            ({"deadline": True}, TypeError),
            ({"idempotency_key": ""}, ValueError),
            ({"idempotency_key": "k\n"}, ValueError),
            ({"idempotency_key": 5}, TypeError),
        ],
    )
    async def test_bad_arguments_fail_before_io(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        kwargs: dict[str, object],
        exc: type[Exception],
    ) -> None:
        """Each malformed argument raises TypeError/ValueError and nothing reaches the server."""
        app, url = scripted
        conn = make_registry(url).add("c", "t")
        call: dict[str, object] = {"method": "GET", "path": "/x", **kwargs}
        with pytest.raises(exc):
            await conn.request(**call)  # type: ignore[arg-type]
        assert app.seen == []

    async def test_what_is_sent(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Method, path, query, headers and JSON body reach the server as given."""
        app, url = scripted
        conn = make_registry(url).add("c", "tok_1")
        when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
        await conn.request(
            "post",
            "/api/eam/work-orders",
            params={
                "filter[updatedAt:gt]": when,
                "per_page": 50,
                "flag": True,
                "skip": None,
                "sort[id]": ["0", "1"],
            },
            json={"title": "Pump", "qty": 2},
            headers={"X-Trace": "abc"},
            idempotency_key="key-1",
        )
        seen = app.seen[0]
        assert seen.method == "POST"
        assert seen.path == "/api/eam/work-orders"
        assert seen.query == {
            "filter[updatedAt:gt]": "2026-01-02T01:04:05Z",
            "per_page": "50",
            "flag": "true",
            "sort[id]": "0",
        }
        assert ("sort[id]", "1") in seen.query_items
        assert seen.headers["Authorization"] == "Bearer tok_1"
        assert seen.headers["Accept"] == "application/json"
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.headers["X-Trace"] == "abc"
        assert seen.headers["Idempotency-Key"] == "key-1"
        assert seen.headers["User-Agent"].startswith("makini-async/")
        assert seen.body == b'{"title":"Pump","qty":2}'

    async def test_repeated_query_keys(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A sequence value repeats its key in the query string."""
        app, url = scripted
        conn = make_registry(url).add("c", "t")
        await conn.request("GET", "/x", params=[("k", "a"), ("k", 2)])
        await conn.request("GET", "/y", params={"k": ("a", "b")})
        assert app.seen[0].query_items == [("k", "a"), ("k", "2")]
        assert app.seen[1].query_items == [("k", "a"), ("k", "b")]


class TestDecoding:
    async def test_json_body(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A JSON 200 decodes into data, with status, headers and request id."""
        app, url = scripted
        app.default = Reply(body={"data": [{"key": "1"}]}, headers={"X-Request-Id": "req_7"})
        response = await make_registry(url).add("c", "t").request("GET", "/x")
        assert response.status == 200
        assert response.data == {"data": [{"key": "1"}]}
        assert response.request_id == "req_7"
        assert response.headers["X-Request-Id"] == "req_7"
        assert repr(response) == "<APIResponse 200 request_id='req_7'>"

    async def test_vendor_json_and_empty_bodies(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """+json content types decode; empty bodies and 204 give data None."""
        app, url = scripted
        conn = make_registry(url).add("c", "t")
        app.default = Reply(raw=b'{"a": 1}', content_type="application/vnd.makini+json")
        assert (await conn.request("GET", "/x")).data == {"a": 1}
        app.default = Reply(status=204, raw=b"")
        assert (await conn.request("DELETE", "/x")).data is None
        app.default = Reply(raw=b"", content_type="text/plain")
        assert (await conn.request("GET", "/x")).data is None

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"data": [1, 2',
            b"\xff\xfe\x00garbage",
            b'{"x": NaN}',
            b"[" * 100_000,
            b'{"n": ' + b"9" * 5000 + b"}",
        ],
        ids=["truncated", "invalid-utf8", "nan", "deep", "huge-int"],
    )
    async def test_bad_json_is_a_decode_error(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, raw: bytes
    ) -> None:
        """A 2xx body that is not valid JSON raises ResponseDecodeError with a bounded snippet."""
        app, url = scripted
        app.default = Reply(raw=raw, headers={"X-Request-Id": "req_bad"})
        with pytest.raises(m.ResponseDecodeError) as info:
            await make_registry(url).add("c", "t").request("GET", "/x")
        assert info.value.status == 200
        assert info.value.request_id == "req_bad"
        assert len(info.value.body) <= 1024
        assert len(app.seen) == 1

    @pytest.mark.parametrize(
        "raw", [b'{"x": NaN}', b"[" * 100_000, b'{"a": 1', b"\xff", b'{"n": ' + b"9" * 5000 + b"}"]
    )
    def test_stdlib_decoder_rules(self, raw: bytes) -> None:
        """Without orjson, the standard decoder refuses the same inputs."""
        with pytest.raises((ValueError, RecursionError)):
            stdlib_loads(raw)

    def test_stdlib_codec_round_trip(self) -> None:
        """The standard codec writes compact UTF-8 and reads it back; duplicate keys: last wins."""
        assert (
            stdlib_dumps({"a": "é", "b": [1, 2.5, None]}) == '{"a":"é","b":[1,2.5,null]}'.encode()
        )
        assert stdlib_loads(b'{"a": 1, "a": 2}') == {"a": 2}
        with pytest.raises(ValueError):  # noqa: PT011 - the stdlib's own message
            stdlib_dumps(float("inf"))


class TestDeadlines:
    async def test_deadline_bounds_a_silent_server(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A server that never answers is cut off at the call's deadline, typed."""

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await asyncio.sleep(30)

        url = await raw_server(silent)
        conn = make_registry(url, clock=None).add("c", "t")
        started = time.monotonic()
        with pytest.raises(m.RequestTimeoutError) as info:
            await conn.request("GET", "/x", deadline=0.3)
        elapsed = time.monotonic() - started
        # Not early; and, as a loose sanity limit, nowhere near the server's 30 s of silence.
        assert 0.25 <= elapsed < by_deadline(0.3)
        assert isinstance(info.value, TimeoutError)
        assert info.value.may_have_reached_server is True

    async def test_per_attempt_timeout(
        self, raw_server: StartRaw, make_registry: MakeRegistry
    ) -> None:
        """A per-call read timeout fails each attempt; GETs retry, then raise typed."""
        arrivals: list[float] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            arrivals.append(time.monotonic())
            await asyncio.sleep(30)

        url = await raw_server(silent)
        conn = make_registry(url, retry=RetryPolicy(attempts=2, base=0, cap=0)).add("c", "t")
        with pytest.raises(m.RequestTimeoutError):
            await conn.request("GET", "/x", timeout=Timeouts(connect=0.1, read=0.1))
        assert len(arrivals) == 2

    async def test_deadline_stops_retrying(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        clock: VirtualClock,
    ) -> None:
        """Backoff waits that would pass the deadline are not taken: the last error is raised."""
        app, url = scripted
        app.default = error_reply(503, "SYSTEM_UNAVAILABLE")
        # On the virtual clock: waits of up to 2 s, a 5 s deadline; the attempts take no time.
        policy = RetryPolicy(attempts=100, base=2, cap=2)
        conn = make_registry(url, retry=policy).add("c", "t")
        started = clock.monotonic()
        with pytest.raises(m.ServiceUnavailableError):
            await conn.request("GET", "/x", deadline=5)
        assert clock.monotonic() - started < 5
        assert sum(clock.sleeps) < 5
        assert 2 <= len(app.seen) < 100
        assert all(seen.at - started < 5 for seen in app.seen)

    async def test_callers_timeout_wins(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A caller's asyncio.timeout ends a retrying call on time; nothing is sent after."""
        app, url = scripted
        app.default = error_reply(503, "SYSTEM_UNAVAILABLE")
        app.delay = 0.05  # ten attempts take at least 0.5 s: longer than the caller allows
        conn = make_registry(url, retry=RetryPolicy(attempts=10, base=0, cap=0)).add("c", "t")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await conn.request("GET", "/x")
        assert time.monotonic() - started < by_deadline(0.3)  # a loose sanity limit
        # A request sent just before the timeout may reach the server a little later on a busy
        # machine; once that has settled, no further attempt comes: the retry loop is gone.
        await asyncio.sleep(0.2)
        count = len(app.seen)
        await asyncio.sleep(0.3)
        assert len(app.seen) == count
        assert count < 10


class TestCancellation:
    async def test_cancel_while_waiting_for_headers(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Cancelling a call awaiting its response raises CancelledError and frees its slot."""
        app, url = scripted
        registry = make_registry(url, limit_per_connection=1)
        conn = registry.add("c", "t")
        app.gate = asyncio.Event()
        task = asyncio.create_task(conn.request("GET", "/slow"))
        await app.arrivals(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        app.gate = None
        # The single slot came back: the next call goes through at once.
        async with asyncio.timeout(2):
            assert (await conn.request("GET", "/next")).status == 200
        assert conn._channel.inflight == 0
        assert registry._engine.inflight == 0

    async def test_cancel_mid_body(self, raw_server: StartRaw, make_registry: MakeRegistry) -> None:
        """Cancelling during a stalled body read propagates and leaves no connection behind."""
        sent = asyncio.Event()

        async def half_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"data": '
            )
            await writer.drain()
            sent.set()
            await asyncio.sleep(30)

        url = await raw_server(half_body)
        registry = make_registry(url)
        conn = registry.add("c", "t")
        task = asyncio.create_task(conn.request("GET", "/x"))
        await sent.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        connector = registry._transport._connector
        assert connector is not None
        assert len(connector._acquired) == 0

    async def test_cancel_during_backoff_sleep(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A call sleeping between retries is cancelled promptly."""
        app, url = scripted
        app.default = error_reply(503, "SYSTEM_UNAVAILABLE")
        conn = make_registry(url, retry=RetryPolicy(base=30, cap=30), clock=None).add("c", "t")
        task = asyncio.create_task(conn.request("GET", "/x"))
        await app.arrivals(1)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 5  # a loose sanity limit: the wait is 30 s
        assert len(app.seen) == 1

    async def test_cancel_during_rate_limit_pause(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A call waiting out a Retry-After is cancelled promptly, and nothing more is sent."""
        app, url = scripted
        app.default = error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "30"})
        conn = make_registry(url, clock=None).add("c", "t")
        task = asyncio.create_task(conn.request("GET", "/x"))
        await app.arrivals(1)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(app.seen) == 1

    async def test_cancel_while_queued_for_a_slot(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Cancelling calls queued behind the per-connection limit loses no slot."""
        app, url = scripted
        conn = make_registry(url, limit_per_connection=2).add("c", "t")
        app.gate = asyncio.Event()
        tasks = [asyncio.create_task(conn.request("GET", f"/{i}")) for i in range(10)]
        await app.arrivals(2)
        for task in tasks[2:7]:
            task.cancel()
        app.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 5
        assert sum(isinstance(r, m.APIResponse) for r in results) == 5
        app.gate = None
        done = await asyncio.gather(*(conn.request("GET", "/again") for _ in range(4)))
        assert len(done) == 4


async def test_base_url_with_a_path_prefix(
    scripted: tuple[ScriptedApp, str],
) -> None:
    """A base URL with a path prefix is kept in front of every request path."""
    app, url = scripted
    async with ConnectionRegistry(url + "/prefix/") as registry:
        await registry.add("c", "t").request("GET", "/api/eam/assets")
    assert app.seen[0].path == "/prefix/api/eam/assets"


def test_aware_datetime_param_is_utc() -> None:
    """Query datetimes are sent in UTC with a Z suffix."""
    from makini_async._call import param_value

    assert param_value("k", datetime(2026, 5, 1, 12, tzinfo=UTC)) == "2026-05-01T12:00:00Z"


class TestTimeoutBudget:
    @pytest.mark.parametrize(
        ("timeouts", "remaining", "expected"),
        [
            (Timeouts(), None, 70.0),
            (Timeouts(connect=1, read=2, total=10), None, 3.0),
            (Timeouts(connect=5, read=60, total=20), None, 20.0),
            (Timeouts(connect=None, read=4, total=None), None, 4.0),
            (Timeouts(read=None, total=None), None, None),
            (Timeouts(), 0.5, 0.5),
        ],
    )
    def test_one_timer_per_attempt(
        self, timeouts: Timeouts, remaining: float | None, expected: float | None
    ) -> None:
        """An attempt gets connect + read seconds, capped by total and by the call's deadline."""
        client_timeout = _client_timeout(timeouts, remaining)
        assert client_timeout.total == expected
        assert client_timeout.sock_read is None
        assert client_timeout.sock_connect == timeouts.connect

    def test_bad_timeouts(self) -> None:
        """Zero or negative timeouts are refused when built."""
        with pytest.raises(ValueError, match=r"Timeouts\.read"):
            Timeouts(read=0)
