"""Scripted-socket faults: each ends in a typed error (or a correct answer), within the call's
deadline, with no socket, task, slot or in-flight count left behind.

These complete tests/test_transport_faults.py with what it does not script: status lines and
header blocks broken in other ways, bodies longer than their Content-Length, a close right after
the headers, more chunked-encoding errors, HTTP/1.0 answers, 1xx answers (then a final one, or
nothing), and servers that drip bytes too slowly to ever finish. A raw server answers ``/fault``
with the scripted bytes, then closes ("close") or goes silent ("stall"); ``/ok`` is healthy, so
that a follow-up call proves the registry still works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import pytest

import makini_async as m
from tests.hostile._wire import (
    NOTHING_HELD,
    TALLY,
    TOKEN,
    WireRequest,
    eventually,
    held_by,
    open_fds,
    other_tasks,
    response,
    serving,
)
from tests.support import by_deadline

#: The deadline of a call that should fail fast (it is far from reached).
FAST_DEADLINE: Final = 10.0
#: The deadline of a call the server leaves hanging: it must end as RequestTimeoutError.
STALL_DEADLINE: Final = 0.5
#: A loose bound on any call (x4 the longest deadline): past it, the call hung.
HANG: Final = 4 * FAST_DEADLINE
JSON: Final = b"Content-Type: application/json\r\n"

Fault = Callable[[asyncio.StreamWriter], Awaitable[None]]


def head(status: bytes, *lines: bytes) -> bytes:
    """A status line and header lines (each ending in CRLF)."""
    return status + b"\r\n" + b"".join(line + b"\r\n" for line in lines)


def case(name: str, wire: bytes, then: str, *allowed: type[Exception] | None) -> Any:
    """One scripted answer, as a test parameter."""
    return pytest.param(wire, then, allowed, id=name)


CHUNKED: Final = head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Transfer-Encoding: chunked") + b"\r\n"
TYPED_FAILURE: Final = (m.TransportError, m.APIError, m.ResponseDecodeError)

OK = None  # the call may succeed (a 200 with {})

# Each: an id, the bytes written, then "close" or "stall", and what the call may end with.
SCRIPTS: Final = [
    case(
        "status-4-digits",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\n{}",
        "close",
        m.TransportError,
    ),
    case(
        "status-2-digits",
        b"HTTP/1.1 99 Odd\r\nContent-Length: 2\r\n\r\n{}",
        "close",
        m.TransportError,
    ),
    case(
        "status-negative",
        b"HTTP/1.1 -200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "close",
        m.TransportError,
    ),
    case(
        "status-two-spaces",
        b"HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "close",
        m.TransportError,
    ),
    case(
        "status-lowercase-http",
        b"http/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "close",
        m.TransportError,
    ),
    case("binary-garbage", b"\x00\x01\x02\xff\xfe\r\n\r\n", "close", m.TransportError),
    case(
        "lf-line-endings",
        b"HTTP/1.1 200 OK\n" + JSON.rstrip() + b"\nContent-Length: 2\n\n{}",
        "close",
        OK,
        m.TransportError,
    ),
    case("nothing-then-close", b"", "close", m.TransportError),
    case("nothing-then-stall", b"", "stall", m.RequestTimeoutError),
    case("status-line-then-close", b"HTTP/1.1 200 OK\r\n", "close", m.TransportError),
    case("status-line-then-stall", b"HTTP/1.1 200 OK\r\n", "stall", m.RequestTimeoutError),
    case("header-cut-then-close", b"HTTP/1.1 200 OK\r\nContent-Ty", "close", m.TransportError),
    case("header-cut-then-stall", b"HTTP/1.1 200 OK\r\nContent-Ty", "stall", m.RequestTimeoutError),
    case(
        "header-without-colon",
        head(b"HTTP/1.1 200 OK", b"NoColon", b"Content-Length: 2") + b"\r\n{}",
        "close",
        m.TransportError,
    ),
    case(
        "cr-in-header-value",
        head(b"HTTP/1.1 200 OK", b"X-A: a\rb", b"Content-Length: 2") + b"\r\n{}",
        "close",
        m.TransportError,
    ),
    case(
        "nul-in-header-value",
        head(b"HTTP/1.1 200 OK", b"X-A: a\x00b", b"Content-Length: 2") + b"\r\n{}",
        "close",
        m.TransportError,
    ),
    case(
        "obs-folded-header",
        head(b"HTTP/1.1 200 OK", b"X-A: a", b" folded", JSON.rstrip(), b"Content-Length: 2")
        + b"\r\n{}",
        "close",
        OK,
        m.TransportError,
    ),
    case(
        "one-header-of-1mb",
        head(b"HTTP/1.1 200 OK", b"X-Big: " + b"a" * 1_000_000, b"Content-Length: 2") + b"\r\n{}",
        "close",
        m.TransportError,
    ),
    case(
        "close-after-headers",
        head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Content-Length: 100") + b"\r\n",
        "close",
        m.TransportError,
    ),
    case(
        "stall-after-headers",
        head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Content-Length: 100") + b"\r\n",
        "stall",
        m.RequestTimeoutError,
    ),
    case(
        "short-body-then-stall",
        head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Content-Length: 100") + b'\r\n{"data":',
        "stall",
        m.RequestTimeoutError,
    ),
    case(
        "body-longer-than-length",
        head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Content-Length: 2") + b"\r\n{}GARBAGE",
        "close",
        OK,
        m.TransportError,
    ),
    case(
        "length-as-a-list",
        head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Content-Length: 2, 2") + b"\r\n{}",
        "close",
        OK,
        m.TransportError,
    ),
    case(
        "length-with-plus",
        head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Content-Length: +2") + b"\r\n{}",
        "close",
        m.TransportError,
    ),
    case("chunked-headers-then-close", CHUNKED, "close", m.TransportError),
    case("chunked-headers-then-stall", CHUNKED, "stall", m.RequestTimeoutError),
    case(
        "chunk-size-overflow",
        CHUNKED + b"FFFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n",
        "close",
        m.TransportError,
    ),
    case("chunk-size-negative", CHUNKED + b"-2\r\n{}\r\n0\r\n\r\n", "close", m.TransportError),
    case("chunk-without-crlf", CHUNKED + b"2\r\n{}0\r\n\r\n", "close", m.TransportError),
    case("chunk-then-stall", CHUNKED + b"2\r\n{}\r\n", "stall", m.RequestTimeoutError),
    case("chunked-trailer", CHUNKED + b"2\r\n{}\r\n0\r\nX-T: a\r\n\r\n", "close", OK),
    case(
        "chunked-bad-trailer",
        CHUNKED + b"2\r\n{}\r\n0\r\nbad trailer\r\n\r\n",
        "close",
        OK,
        m.TransportError,
    ),
    case(
        "te-gzip-chunked-not-gzip",
        head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Transfer-Encoding: gzip, chunked")
        + b"\r\n2\r\n{}\r\n0\r\n\r\n",
        "close",
        OK,
        m.TransportError,
    ),
    case(
        "te-identity-until-close",
        head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Transfer-Encoding: identity") + b"\r\n{}",
        "close",
        OK,
        m.TransportError,
    ),
    case(
        "http10-with-length",
        head(b"HTTP/1.0 200 OK", JSON.rstrip(), b"Content-Length: 2") + b"\r\n{}",
        "stall",
        OK,
    ),
    case("http10-until-close", head(b"HTTP/1.0 200 OK", JSON.rstrip()) + b"\r\n{}", "close", OK),
    case(
        "http10-until-close-stalled",
        head(b"HTTP/1.0 200 OK", JSON.rstrip()) + b"\r\n{}",
        "stall",
        m.RequestTimeoutError,
    ),
    case("100-then-200", b"HTTP/1.1 100 Continue\r\n\r\n" + response(close=True), "close", OK),
    case(
        "103-then-200",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + response(close=True),
        "close",
        OK,
    ),
    case("100-then-close", b"HTTP/1.1 100 Continue\r\n\r\n", "close", m.TransportError),
    case("100-then-stall", b"HTTP/1.1 100 Continue\r\n\r\n", "stall", m.RequestTimeoutError),
    case(
        "101-unasked-for",
        head(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade")
        + b"\r\n\x81\x05hello",
        "close",
        *TYPED_FAILURE,
    ),
    case(
        "204-with-a-body",
        head(b"HTTP/1.1 204 No Content", b"Content-Length: 5") + b"\r\nhello",
        "close",
        OK,
        m.TransportError,
    ),
    case("304-unasked-for", b"HTTP/1.1 304 Not Modified\r\n\r\n", "close", *TYPED_FAILURE),
]


async def run_fault(
    fault: Fault, *, deadline: float
) -> tuple[BaseException | m.APIResponse, float]:
    """One call to ``/fault`` (answered by ``fault``), then one to ``/ok``; returns what the first
    ended with and how long it took. Checks that nothing is held or left open afterwards."""
    loop = asyncio.get_running_loop()
    fds_before = open_fds()
    tasks_before = set(asyncio.all_tasks())

    async def answer(request: WireRequest, writer: asyncio.StreamWriter) -> bool:
        if request.path == "/ok":
            writer.write(response())
            await writer.drain()
            return True
        await fault(writer)
        return False

    async with (
        serving(answer) as server,
        m.ConnectionRegistry(
            server.url,
            retry=m.RetryPolicy(attempts=2, base=0.0, cap=0.0),
            timeout=m.Timeouts(connect=2.0, read=30.0),
        ) as registry,
    ):
        conn = registry.add("c1", TOKEN)
        started = loop.time()
        try:
            async with asyncio.timeout(HANG):
                outcome: BaseException | m.APIResponse = await conn.request(
                    "GET", "/fault", deadline=deadline
                )
        except (m.MakiniError, TimeoutError) as exc:
            outcome = exc
        elapsed = loop.time() - started
        held = held_by(registry, "c1")
        after = await conn.request("GET", "/ok", deadline=FAST_DEADLINE)
    TALLY.leak_checks += 1
    fds_back = await eventually(lambda: open_fds() <= fds_before)
    leftover = other_tasks(tasks_before)
    TALLY.leaks += held != NOTHING_HELD or not fds_back or bool(leftover)
    assert held == NOTHING_HELD
    assert after.status == 200
    assert server.open == 0
    assert fds_back, (open_fds(), fds_before)
    assert not leftover, leftover
    return outcome, elapsed


def writes(wire: bytes, then: str) -> Fault:
    """A fault that writes ``wire``, then closes or stays silent."""

    async def fault(writer: asyncio.StreamWriter) -> None:
        writer.write(wire)
        await writer.drain()
        if then == "stall":
            await asyncio.Event().wait()  # until the server is closed

    return fault


def check_outcome(
    name: str, outcome: BaseException | m.APIResponse, allowed: tuple[type[Exception] | None, ...]
) -> None:
    """The outcome is one of those allowed (None: a 200 with ``{}``), and typed."""
    TALLY.outcome(f"faults: {name}", outcome)
    if isinstance(outcome, m.APIResponse):
        assert None in allowed, f"{name}: expected a failure, got {outcome!r}"
        assert outcome.status == 200
        return
    assert isinstance(outcome, m.MakiniError), f"{name}: untyped {outcome!r}"
    assert not isinstance(outcome, aiohttp.ClientError)
    assert TOKEN not in repr(outcome)
    assert TOKEN not in str(outcome)
    classes = tuple(c for c in allowed if c is not None)
    assert isinstance(outcome, classes), f"{name}: {outcome!r} is none of {classes}"


class TestScriptedAnswers:
    @pytest.mark.parametrize(
        ("wire", "then", "allowed"),
        SCRIPTS,
    )
    async def test_a_broken_answer_is_typed_bounded_and_leaves_nothing(
        self,
        request: pytest.FixtureRequest,
        wire: bytes,
        then: str,
        allowed: tuple[type[Exception] | None, ...],
    ) -> None:
        """Each scripted answer ends typed (or as a 200), by its deadline, leaving nothing."""
        deadline = STALL_DEADLINE if then == "stall" else FAST_DEADLINE
        outcome, elapsed = await run_fault(writes(wire, then), deadline=deadline)
        check_outcome(request.node.callspec.id, outcome, allowed)
        assert elapsed < by_deadline(deadline), f"{elapsed:.2f}s against a {deadline}s deadline"


class TestSlowServers:
    async def test_a_body_dripped_too_slowly_ends_at_the_deadline(self) -> None:
        """A body sent a byte at a time, too slowly to finish, is cut at the call's deadline."""

        async def drip(writer: asyncio.StreamWriter) -> None:
            writer.write(head(b"HTTP/1.1 200 OK", JSON.rstrip(), b"Content-Length: 1000") + b"\r\n")
            for _ in range(1000):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.02)

        outcome, elapsed = await run_fault(drip, deadline=STALL_DEADLINE)
        check_outcome("drip body", outcome, (m.RequestTimeoutError,))
        assert elapsed < by_deadline(STALL_DEADLINE)

    async def test_endless_header_lines_end_typed(self) -> None:
        """Header lines that never end (dripped) are refused or cut at the deadline."""

        async def endless(writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\n")
            for number in range(100_000):
                writer.write(b"X-H%d: v\r\n" % number)
                await writer.drain()
                await asyncio.sleep(0.001)

        outcome, elapsed = await run_fault(endless, deadline=STALL_DEADLINE)
        check_outcome("endless headers", outcome, (m.TransportError,))
        assert elapsed < by_deadline(STALL_DEADLINE)

    async def test_interim_answers_forever_end_at_the_deadline(self) -> None:
        """1xx answers repeated for ever never make a final answer: the deadline ends the call."""

        async def interim(writer: asyncio.StreamWriter) -> None:
            while True:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)

        outcome, elapsed = await run_fault(interim, deadline=STALL_DEADLINE)
        check_outcome("1xx forever", outcome, (m.TransportError,))
        assert elapsed < by_deadline(STALL_DEADLINE)


class TestEarlyAnswers:
    async def test_an_answer_before_the_upload_is_read_is_typed(self) -> None:
        """A server that answers 413 and closes without reading a 1 MB body gives a typed error
        (the 413, or a transport error), and leaves nothing open. (Just under aiohttp's 1 MiB:
        over it, aiohttp warns about sending raw bytes.)"""

        async def refuse(writer: asyncio.StreamWriter) -> None:
            payload = b'{"error": {"code": "TOO_LARGE", "message": "no"}}'
            writer.write(response("413 Payload Too Large", payload, close=True))
            await writer.drain()

        async def answer(request: WireRequest, writer: asyncio.StreamWriter) -> bool:
            del request
            await refuse(writer)
            return False

        fds_before = open_fds()
        async with (
            serving(answer, read_body=False) as server,
            m.ConnectionRegistry(server.url, retry=m.RetryPolicy.no_retries()) as registry,
        ):
            conn = registry.add("c1", TOKEN)
            try:
                async with asyncio.timeout(HANG):
                    outcome: object = await conn.request(
                        "POST", "/fault", json={"blob": "x" * 1_000_000}, deadline=FAST_DEADLINE
                    )
            except m.MakiniError as exc:
                outcome = exc
            assert held_by(registry, "c1") == NOTHING_HELD
        check_outcome("early answer", outcome, (m.APIError, m.TransportError))  # type: ignore[arg-type]
        assert await eventually(lambda: open_fds() <= fds_before)
