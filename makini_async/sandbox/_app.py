"""The aiohttp.web application of a sandbox: one catch-all route into the request pipeline."""

from __future__ import annotations

from aiohttp import web

from makini_async.sandbox._core import Core
from makini_async.sandbox._http_auth import AuthHandlers
from makini_async.sandbox._http_control import ControlPlane
from makini_async.sandbox._http_pipeline import Pipeline
from makini_async.sandbox._http_reads import ReadHandlers
from makini_async.sandbox._http_system import SystemHandlers
from makini_async.sandbox._http_writes import WriteHandlers

__all__ = ["build_app"]


def build_app(core: Core) -> web.Application:
    """Build the web application serving a sandbox.

    Args:
        core: The sandbox's collaborators.

    Returns:
        An application with one catch-all route.
    """
    auth = AuthHandlers(core)
    pipeline = Pipeline(
        core,
        reads=ReadHandlers(core),
        writes=WriteHandlers(core),
        auth=auth,
        system=SystemHandlers(core, auth),
        control=ControlPlane(core),
    )
    app = web.Application(client_max_size=core.settings.max_body)
    app.router.add_route("*", "/{tail:.*}", pipeline.handle)
    return app
