"""Serving one sandbox: its listening socket, its address and its background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine

from aiohttp import web

__all__ = ["Lifecycle"]


class Lifecycle:
    """Owns the aiohttp runner and the background tasks, which stop together.

    Args:
        host: The interface to listen on.
        port: The port (0: a free one, known once serving).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        """Whether the socket is listening."""
        return self._runner is not None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8600``.

        Raises:
            RuntimeError: Not serving.
        """
        if self._runner is None:
            raise RuntimeError("The sandbox is not running: use `async with Sandbox()` first.")
        return f"http://{self.host}:{self.port}"

    async def serve(self, app: web.Application) -> None:
        """Listen on ``host`` and ``port`` with ``app``; ``port`` is the real one afterwards."""
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run a coroutine in the background until it ends or `cancel_tasks` runs."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_tasks(self) -> None:
        """Cancel every background task and wait until they have ended."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop_serving(self) -> None:
        """Close the socket and every open connection (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
