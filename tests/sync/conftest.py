"""Fixtures for the fan-out, sync and CLI tests: sandboxes, registries and stores."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from makini_async import ConnectionRegistry, ReconnectEvent
from makini_async.sandbox import Sandbox
from makini_async.sync import SQLiteStore
from tests.support import ZERO_WAIT
from tests.sync.helpers import ThreadedSandbox


@pytest.fixture(name="sandbox_options")
def _sandbox_options() -> dict[str, Any]:
    """The `sandbox` here has ten small connections (seed 3)."""
    sizes = {"work-orders": 120, "assets": 40, "purchase-orders": 20}
    return {"connections": 10, "seed": 3, "sizes": sizes, "time_scale": 0.01}


@pytest.fixture(name="registry")
async def _registry(sandbox: Sandbox) -> AsyncIterator[ConnectionRegistry]:
    """A registry holding every sandbox connection; its reconnect hook reconnects at the sandbox."""

    async def reconnect(event: ReconnectEvent) -> str | None:
        return sandbox.reconnect(event.connection_id)

    async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT, on_reconnect=reconnect) as registry:
        for connection_id, token in sandbox.connections.items():
            registry.add(connection_id, token)
        yield registry


@pytest.fixture(name="store")
async def _store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store in a temporary directory."""
    async with SQLiteStore(tmp_path / "sync.db") as store:
        yield store


@pytest.fixture(name="threaded_sandbox")
def _threaded_sandbox() -> Iterator[ThreadedSandbox]:
    """A sandbox served from its own thread, for tests that call the synchronous `main()`."""
    ready = threading.Event()
    holder = ThreadedSandbox()

    def serve() -> None:
        async def run() -> None:
            sizes = {"work-orders": 60, "assets": 20}
            async with Sandbox(connections=4, seed=5, sizes=sizes, time_scale=0.01) as sandbox:
                holder.loop = asyncio.get_running_loop()
                holder.sandbox = sandbox
                holder.stop = asyncio.Event()
                ready.set()
                await holder.stop.wait()

        asyncio.run(run())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(20)
    yield holder
    assert holder.loop is not None
    assert holder.stop is not None
    holder.loop.call_soon_threadsafe(holder.stop.set)
    thread.join(20)
