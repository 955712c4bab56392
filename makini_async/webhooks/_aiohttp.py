"""The aiohttp.web adapter: a route handler, a sub-application and the app's lifecycle signals.

The request's body is handed to the receiver as a stream, so a delivery larger than
``max_body_size`` is refused without reading past the cap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from ._core import Endpoint

__all__: list[str] = []

_READ_CHUNK: Final = 64 * 1024


async def handle(endpoint: Endpoint, request: web.Request) -> web.Response:
    """Answer one aiohttp.web request with the receiver's answer."""
    answer = await endpoint.receive(
        request.content.iter_chunked(_READ_CHUNK),
        request.headers,
        method=request.method,
        remote=request.remote,
    )
    return web.Response(status=answer.status, body=answer.body, headers=answer.headers)


def _route(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(request: web.Request) -> web.Response:
        return await handle(endpoint, request)

    return route


def setup(endpoint: Endpoint, app: web.Application, path: str) -> None:
    """Route ``POST path`` of ``app`` to the receiver and tie it to the app's lifecycle.

    Raises:
        ValueError: ``path`` does not start with ``/``.
    """
    if not path.startswith("/"):
        raise ValueError("The webhook path must start with '/'.")

    async def on_startup(_: web.Application) -> None:
        await endpoint.start()

    async def on_shutdown(_: web.Application) -> None:
        await endpoint.drain()

    async def on_cleanup(_: web.Application) -> None:
        await endpoint.aclose()

    app.router.add_post(path, _route(endpoint))
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)


def sub_app(endpoint: Endpoint) -> web.Application:
    """A sub-application answering ``POST`` at its mount point, with or without the slash."""
    app = web.Application()
    setup(endpoint, app, "/")
    app.router.add_post("", _route(endpoint))
    return app
