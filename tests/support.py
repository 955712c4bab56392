"""Shared test helpers: scripted servers, canned replies and the types of the fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from makini_async import ConnectionRegistry, RetryPolicy
from makini_async.testing import VirtualClock

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
StartRaw = Callable[[RawHandler], Awaitable[str]]
StartApp = Callable[[web.Application], Awaitable[str]]
MakeRegistry = Callable[..., ConnectionRegistry]

#: Retries with no backoff waits: retry tests never sleep for real.
ZERO_WAIT = RetryPolicy(attempts=4, base=0.0, cap=0.0)

#: Seconds a busy machine may add to a call that ends at its deadline or timeout. Real-time
#: bounds are sanity limits only: a call that ignored its limit would run into the default
#: `Timeouts` (70 s) or pytest's timeout instead.
BUSY_SLACK = 10.0


def descriptors_of(path: Path) -> list[str]:
    """This process's open file descriptors on ``path`` (or its -wal and -shm files)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if str(fd.readlink()).startswith(str(path)):
                found.append(fd.name)
    return found


def by_deadline(seconds: float) -> float:
    """The sanity bound of a call limited to ``seconds``: never tighter than 4x."""
    return max(4 * seconds, seconds + BUSY_SLACK)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """Read one HTTP/1.1 request (request line, headers, Content-Length body) from a raw socket."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    length = int(headers.get("content-length", "0"))
    if length:
        body = await reader.readexactly(length)
    return lines[0], headers, body


class Seen:
    """One request as a scripted server saw it."""

    __slots__ = ("at", "body", "headers", "method", "path", "query", "query_items")

    def __init__(self, request: web.Request, body: bytes, at: float) -> None:
        self.method = request.method
        self.path = request.path
        self.query = dict(request.query)
        self.query_items = list(request.query.items())
        self.headers = dict(request.headers)
        self.body = body
        self.at = at

    @property
    def token(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ")


class Reply:
    """A canned response."""

    def __init__(
        self,
        status: int = 200,
        body: object = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.status = status
        self.headers = headers or {}
        if raw is None:
            raw = json.dumps({"data": {"ok": True}} if body is None else body).encode()
        self.raw = raw
        self.content_type = content_type


def error_reply(status: int, code: str, **headers: str) -> Reply:
    """A reply carrying Makini's error envelope."""
    return Reply(
        status,
        {"error": {"code": code, "type": "t", "message": f"{code} here", "request_id": "req_e"}},
        headers={"X-Request-Id": "req_e", **headers},
    )


class ScriptedApp:
    """An aiohttp app that answers from a script (then a default) and records every request.

    ``script`` replies are used first, in order, for any path; ``by_token`` maps a token to a
    reply used whenever that token is seen (for 401 storms).
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.seen: list[Seen] = []
        self.script: deque[Reply] = deque()
        self.by_token: dict[str, Reply] = {}
        self.default = Reply()
        self.gate: asyncio.Event | None = None
        self.delay = 0.0
        self._wanted: tuple[int, asyncio.Event] | None = None

    async def arrivals(self, count: int) -> None:
        """Wait until ``count`` requests have arrived in all."""
        if len(self.seen) < count:
            event = asyncio.Event()
            self._wanted = (count, event)
            await event.wait()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request, body, self.clock.monotonic())
        self.seen.append(seen)
        if self._wanted is not None and len(self.seen) >= self._wanted[0]:
            self._wanted[1].set()
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = self.by_token.get(seen.token)
        if reply is None:
            reply = self.script.popleft() if self.script else self.default
        return web.Response(
            status=reply.status,
            body=reply.raw,
            headers=reply.headers,
            content_type=reply.content_type,
        )
