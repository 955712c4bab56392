"""Helpers for the sync tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from aiohttp import web

from makini_async.sandbox import Sandbox
from makini_async.sync import SQLiteStore

T = TypeVar("T")


class ThreadedSandbox:
    """A sandbox running on another thread's event loop; `call` runs code on that loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sandbox: Sandbox | None = None
        self.stop: asyncio.Event | None = None

    def call(self, fn: Callable[[Sandbox], T]) -> T:
        """Run ``fn(sandbox)`` on the sandbox's loop and return its result."""
        assert self.loop is not None
        sandbox = self.sandbox
        assert sandbox is not None

        async def run() -> T:
            return fn(sandbox)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(20)

    @property
    def url(self) -> str:
        """The sandbox's base URL."""
        return self.call(lambda sandbox: sandbox.url)


async def dump(store: SQLiteStore, entities: list[str]) -> dict[str, list[tuple[object, ...]]]:
    """Every stored row of each entity, with its connection, in a comparable form."""
    result: dict[str, list[tuple[object, ...]]] = {}
    for entity in entities:
        rows: list[tuple[object, ...]] = []
        for connection in sorted({c for c, _ in (await store.watermarks())}):
            rows.extend(
                (connection, row.key, row.updated_at, row.deleted_at, repr(row.data))
                for row in await store.rows(entity, connection)
            )
        result[entity] = rows
    return result


@contextlib.contextmanager
def threaded_app(app: web.Application) -> Iterator[str]:
    """Serve ``app`` from its own thread, for the synchronous `main()`; yield its base URL."""
    ready = threading.Event()
    state: dict[str, object] = {}

    async def run() -> None:
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stop = asyncio.Event()
        state.update(url=f"http://127.0.0.1:{runner.addresses[0][1]}", stop=stop)
        state["loop"] = asyncio.get_running_loop()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(20)
    try:
        yield str(state["url"])
    finally:
        loop, stop = state["loop"], state["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
