"""Serving the receiver's ASGI app under a real uvicorn server, in Starlette and FastAPI apps."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from makini_async.webhooks import WebhookReceiver

#: The three ways a receiver is served in the parametrized tests.
FRAMEWORKS: Final = ("aiohttp", "starlette", "fastapi")
#: Loose bounds (seconds) on starting and stopping a server: they only turn a hang into a failure.
START_LIMIT: Final = 30.0
STOP_LIMIT: Final = 30.0


class UvicornServer:
    """An ASGI application served by uvicorn on 127.0.0.1, in the test's own event loop."""

    def __init__(self, app: object) -> None:
        # h11 pinned, so the answers to malformed HTTP do not depend on whether httptools is
        # installed; log_config=None leaves the process's logging configuration alone.
        config = uvicorn.Config(
            app,  # type: ignore[arg-type] # any ASGI 3 callable
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_level="warning",
            log_config=None,
            http="h11",
            ws="none",
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start serving; return the base URL (raises if the app's startup failed)."""
        self._task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(START_LIMIT):
            while not self.server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("uvicorn stopped before it started serving")
                await asyncio.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def serve_in_place(self) -> None:
        """Serve in the calling task until uvicorn gives up.

        uvicorn ends a failed lifespan startup with ``sys.exit(3)``; raised in a task of its
        own, that SystemExit would escape to the event loop, so await this in the test itself.
        """
        async with asyncio.timeout(START_LIMIT):
            await self.server.serve()

    async def stop(self) -> None:
        """Stop as on SIGTERM: close the listener and connections, then the app's lifespan."""
        if self._task is None:
            return
        self.server.should_exit = True
        async with asyncio.timeout(STOP_LIMIT):
            await self._task


def starlette_app(receiver: WebhookReceiver, *, route: bool = False) -> Starlette:
    """A Starlette app receiving at ``/hook/`` (a Mount) or ``/hook`` (a POST Route)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with receiver:
            yield

    endpoint = (
        Route("/hook", receiver.asgi(), methods=["POST"])
        if route
        else Mount("/hook", app=receiver.asgi())
    )
    return Starlette(routes=[endpoint], lifespan=lifespan)


def fastapi_app(receiver: WebhookReceiver, *, lifespan: bool = True) -> FastAPI:
    """A FastAPI app with the receiver mounted at ``/hook`` (endpoint ``/hook/``).

    With ``lifespan``, the app's lifespan starts and drains the receiver (``async with``).
    """

    @contextlib.asynccontextmanager
    async def with_receiver(_: FastAPI) -> AsyncIterator[None]:
        async with receiver:
            yield

    app = FastAPI(lifespan=with_receiver if lifespan else None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/hook", receiver.asgi())
    return app
