"""What the hostile tier shares: a raw-socket server that keeps every request as it came off the
wire, resource counts (descriptors, tasks, slots, in-flight calls), and the tier's tallies."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

import makini_async as m
from makini_async import ConnectionRegistry

TOKEN: Final = "tok_hostile_0123456789"
FD_DIR: Final = Path("/proc/self/fd")


# --------------------------------------------------------------------------------------------
# The tier's tallies, printed by tests/hostile/conftest.py when MAKINI_HOSTILE_REPORT is set.


@dataclasses.dataclass
class Tally:
    """Counts across the tier: examples per test, outcomes by type, comparisons, leaks."""

    examples: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    outcomes: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    compared: int = 0
    altered: int = 0
    leak_checks: int = 0
    leaks: int = 0

    def outcome(self, test: str, result: object) -> None:
        """Count one example of ``test`` ending with ``result`` (an exception or a value)."""
        self.examples[test] += 1
        name = type(result).__name__ if isinstance(result, BaseException) else "ok"
        self.outcomes[test, name] += 1

    def by_type(self, test: str | None = None) -> dict[str, int]:
        """Outcomes by type, for one test or for all of them."""
        counts: collections.Counter[str] = collections.Counter()
        for (name, kind), count in self.outcomes.items():
            if test is None or name == test:
                counts[kind] += count
        return dict(sorted(counts.items()))


TALLY: Final = Tally()


# --------------------------------------------------------------------------------------------
# The raw server.


@dataclasses.dataclass(frozen=True)
class WireRequest:
    """One request exactly as it came off the socket."""

    connection: int
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        """The target up to its ``?``."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str | None:
        """The raw query string, or None when the target has no ``?``."""
        _, mark, query = self.target.partition("?")
        return query if mark else None

    def values(self, name: str) -> list[str]:
        """The values of every header line called ``name`` (case-insensitive), in order."""
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]


async def read_wire_request(
    reader: asyncio.StreamReader, connection: int, *, read_body: bool = True
) -> WireRequest:
    """Read one request: request line, header lines (OWS stripped, as RFC 9110 says), body
    (unless ``read_body`` is false: a server answering before the body is in)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = tuple(
        (name, value.strip(" \t")) for name, _, value in (line.partition(":") for line in lines[1:])
    )
    length = int({k.lower(): v for k, v in headers}.get("content-length", "0"))
    body = await reader.readexactly(length) if length and read_body else b""
    return WireRequest(connection, method, target, headers, body)


Answer = Callable[[WireRequest, asyncio.StreamWriter], Awaitable[bool]]


def response(
    status: str = "200 OK", body: bytes = b'{"data": {}}', *, extra: str = "", close: bool = False
) -> bytes:
    """A complete HTTP/1.1 response with a correct Content-Length."""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


class WireServer:
    """A loopback server that records every request and answers with ``answer``.

    ``answer(request, writer)`` writes the response and returns whether to keep the connection
    open for another request. Connections and handler tasks are counted, so that a test can
    check the client left none behind.
    """

    def __init__(self, answer: Answer, *, read_body: bool = True) -> None:
        self.answer = answer
        self.read_body = read_body
        self.requests: list[WireRequest] = []
        self.arrived = asyncio.Event()
        self.opened = 0
        self.open = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The base URL."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> str:
        """Listen on 127.0.0.1 (a free port); returns the base URL."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.url

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.opened += 1
        self.open += 1
        number = self.opened
        try:
            while True:
                request = await read_wire_request(reader, number, read_body=self.read_body)
                self.requests.append(request)
                self.arrived.set()
                if not await self.answer(request, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # `aclose` ends the handlers it owns: not an error
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def aclose(self) -> None:
        """Stop listening, drop every connection and wait for the handlers to end."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def serving(answer: Answer, *, read_body: bool = True) -> AsyncIterator[WireServer]:
    """A started `WireServer`, closed on exit."""
    server = WireServer(answer, read_body=read_body)
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


# --------------------------------------------------------------------------------------------
# Resources.


def open_fds() -> int:
    """How many file descriptors this process holds (Linux' /proc)."""
    return sum(1 for _ in FD_DIR.iterdir())


def other_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """The tasks still pending that were not there ``before`` (the current one aside)."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and t not in before and not t.done()}


def held_by(registry: ConnectionRegistry, connection_id: str) -> dict[str, int]:
    """What a registry holds for one connection: busy slots, queued callers, calls in flight."""
    channel = registry._connections[connection_id][1]
    slots = channel.slots
    assert slots is not None
    return {
        "slots_taken": slots.capacity - slots.free,
        "slot_waiters": slots.waiting,
        "channel_inflight": channel.inflight,
        "engine_inflight": registry._engine.inflight,
        "sessions_busy": sum(entry.busy for entry in registry._transport._open.values()),
    }


NOTHING_HELD: Final = {
    "slots_taken": 0,
    "slot_waiters": 0,
    "channel_inflight": 0,
    "engine_inflight": 0,
    "sessions_busy": 0,
}


async def eventually(check: Callable[[], bool], *, turns: int = 5000) -> bool:
    """Whether ``check()`` holds within ``turns`` short sleeps (loose: a busy machine is slow)."""
    for _ in range(turns):
        if check():
            return True
        await asyncio.sleep(0.001)
    return check()


def typed(exc: BaseException) -> bool:
    """An exception a public call may raise: ours, a bad-argument one, or a cancellation."""
    return isinstance(exc, m.MakiniError | TypeError | ValueError | asyncio.CancelledError)
