"""The aiohttp.web application of a sandbox: one catch-all route into the request pipeline.

The pipeline answers every error with the contract's envelope; `envelope_errors` does the same
for what reaches the app without reaching the pipeline (aiohttp's own 404 and 405 when the route
cannot match a path, e.g. one holding a decoded newline).
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from makini_async.sandbox._core import Core
from makini_async.sandbox._errors import SandboxError, code_for_status, new_request_id
from makini_async.sandbox._http_auth import AuthHandlers
from makini_async.sandbox._http_common import error_response
from makini_async.sandbox._http_control import ControlPlane
from makini_async.sandbox._http_pipeline import Pipeline
from makini_async.sandbox._http_reads import ReadHandlers
from makini_async.sandbox._http_system import SystemHandlers
from makini_async.sandbox._http_writes import WriteHandlers

__all__ = ["build_app", "envelope_errors"]

_log: Final = logging.getLogger("makini_async.sandbox")


@web.middleware
async def envelope_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn an error aiohttp raises before or around the pipeline into the error envelope.

    Args:
        request: The request.
        handler: The matched handler (aiohttp's own for a path or method no route takes).

    Returns:
        The handler's answer, or the envelope of the error it raised.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # noqa: PLR2004 - redirects and successes pass through
            raise
        request_id = new_request_id()
        headers = {"X-Request-Id": request_id}
        allow = exc.headers.get("Allow")
        if allow is not None:
            headers["Allow"] = allow
        error = SandboxError(code_for_status(exc.status), exc.reason, status=exc.status)
        return error_response(error, request_id, headers)
    except Exception:  # noqa: BLE001 - a sandbox bug still answers with the envelope
        _log.exception("sandbox bug while serving %s %r", request.method, request.path)
        request_id = new_request_id()
        return error_response(
            SandboxError("INTERNAL_ERROR"), request_id, {"X-Request-Id": request_id}
        )


def build_app(core: Core) -> web.Application:
    """Build the web application serving a sandbox.

    Args:
        core: The sandbox's collaborators.

    Returns:
        An application with one catch-all route, whose errors are all envelopes.
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
    app = web.Application(client_max_size=core.settings.max_body, middlewares=[envelope_errors])
    # [\s\S], not ".": a path may hold a decoded newline (%0A), which "." does not match.
    app.router.add_route("*", r"/{tail:[\s\S]*}", pipeline.handle)
    return app
