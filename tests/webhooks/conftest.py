"""Fixtures for the webhook tests: a client session and receivers served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware

from makini_async.webhooks import WebhookReceiver
from tests.webhooks.asgi_support import UvicornServer, fastapi_app, starlette_app
from tests.webhooks.support import SECRET, Serve, Served, ServeOn


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for posting deliveries."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(name="serve")
async def _serve(session: aiohttp.ClientSession) -> AsyncIterator[Serve]:
    """Serve receivers at ``POST /hook`` on 127.0.0.1; stopped (and drained) at teardown."""
    runners: list[web.AppRunner] = []

    async def serve(
        receiver: WebhookReceiver | None = None,
        *,
        middlewares: tuple[Middleware, ...] = (),
        **kwargs: object,
    ) -> Served:
        if receiver is None:
            receiver = WebhookReceiver(SECRET, **kwargs)  # type: ignore[arg-type]
        app = web.Application(middlewares=middlewares)
        receiver.setup(app, "/hook")
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return Served(receiver, f"http://127.0.0.1:{port}/hook", session)

    yield serve
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(name="serve_on")
async def _serve_on(serve: Serve, session: aiohttp.ClientSession) -> AsyncIterator[ServeOn]:
    """Serve a receiver by framework name: aiohttp.web, or Starlette or FastAPI under uvicorn.

    The ASGI apps mount ``receiver.asgi()`` at ``/hook`` and start and drain the receiver from
    their lifespan (``async with receiver``); the servers stop at teardown.
    """
    servers: list[UvicornServer] = []

    async def serve_on(
        framework: str, receiver: WebhookReceiver | None = None, **kwargs: object
    ) -> Served:
        if receiver is None:
            receiver = WebhookReceiver(SECRET, **kwargs)  # type: ignore[arg-type]
        if framework == "aiohttp":
            return await serve(receiver)
        app = starlette_app(receiver) if framework == "starlette" else fastapi_app(receiver)
        server = UvicornServer(app)
        servers.append(server)
        base = await server.start()
        return Served(receiver, f"{base}/hook/", session)

    yield serve_on
    for server in reversed(servers):
        await server.stop()


@pytest.fixture(name="sandbox_options")
def _sandbox_options(sandbox_options: dict[str, Any]) -> dict[str, Any]:
    """The `sandbox` here has seed 5; its webhook retries wait 30 ms, not 30 s."""
    return {**sandbox_options, "seed": 5}
