"""Helpers for the sync tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

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
