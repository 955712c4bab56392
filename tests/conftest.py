"""Shared fixtures: real loopback servers (aiohttp apps and scripted raw sockets) and registries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from makini_async import ConnectionRegistry
from makini_async.sandbox import Sandbox
from makini_async.testing import VirtualClock
from tests.examples import Mode, collect
from tests.support import (
    ZERO_WAIT,
    MakeRegistry,
    RawHandler,
    ScriptedApp,
    StartApp,
    StartRaw,
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how many README and docs examples the suite runs (`tests/test_docs.py`)."""
    examples = collect()
    run = [example for example in examples if example.mode is not Mode.SKIP]
    python = [example for example in run if example.mode is not Mode.SHELL]
    terminalreporter.write_line(
        f"docs examples: {len(run)} run ({len(python)} Python, {len(run) - len(python)} shell), "
        f"{len(examples) - len(run)} skipped with a reason"
    )


@pytest.fixture(name="raw_server")
async def _raw_server() -> AsyncIterator[StartRaw]:
    """Start scripted raw-socket HTTP servers on 127.0.0.1; returns their base URL."""
    servers: list[asyncio.Server] = []
    writers: set[asyncio.StreamWriter] = set()

    async def start(handler: RawHandler) -> str:
        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass
            finally:
                writers.discard(writer)
                with contextlib.suppress(Exception):
                    writer.close()

        server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for writer in list(writers):
        writer.close()
    for server in servers:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


@pytest.fixture(name="app_server")
async def _app_server() -> AsyncIterator[StartApp]:
    """Start aiohttp.web apps on 127.0.0.1; returns their base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(name="sandbox_options")
def _sandbox_options() -> dict[str, Any]:
    """`Sandbox` arguments of the `sandbox` fixture; a directory's conftest may override them."""
    return {"connections": 2, "seed": 1, "time_scale": 0.001}


@pytest.fixture(name="sandbox")
async def _sandbox(sandbox_options: dict[str, Any]) -> AsyncIterator[Sandbox]:
    """A running sandbox built with `sandbox_options`, closed after the test."""
    async with Sandbox(**sandbox_options) as sandbox:
        yield sandbox


@pytest.fixture(name="clock")
def _clock() -> VirtualClock:
    """A virtual clock for rate-limit pauses and deadlines."""
    return VirtualClock()


@pytest.fixture(name="make_registry")
async def _make_registry(clock: VirtualClock) -> AsyncIterator[MakeRegistry]:
    """Build registries with zero-wait retries and the virtual clock; all closed at teardown."""
    made: list[ConnectionRegistry] = []

    def make(base_url: str, **kwargs: object) -> ConnectionRegistry:
        kwargs.setdefault("retry", ZERO_WAIT)
        kwargs.setdefault("clock", clock)
        registry = ConnectionRegistry(base_url, **kwargs)  # type: ignore[arg-type]
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.aclose(timeout=1)


@pytest.fixture(name="scripted")
async def _scripted(app_server: StartApp, clock: VirtualClock) -> tuple[ScriptedApp, str]:
    """A running ScriptedApp and its base URL."""
    scripted = ScriptedApp(clock)
    url = await app_server(scripted.app())
    return scripted, url
