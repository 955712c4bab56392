"""What every HTTP handler of the sandbox shares: the call being served, bodies and responses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

import attrs
from aiohttp import hdrs, web

from makini_async.sandbox._connections import SandboxConnection
from makini_async.sandbox._errors import SandboxError, envelope
from makini_async.sandbox._request_log import RequestRecord
from makini_async.sandbox._tokens import Token

__all__ = [
    "JSON",
    "MAX_DEPTH",
    "Call",
    "bearer",
    "error_response",
    "json_response",
    "media_type",
    "read_json",
    "read_object",
    "seconds",
    "too_large",
]

JSON: Final = "application/json"
#: The deepest nesting of objects and arrays a JSON body may have.
MAX_DEPTH: Final = 32
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


@attrs.define
class Call:
    """One request on its way through the pipeline, with what its bearer token opens."""

    request: web.Request
    request_id: str
    headers: dict[str, str]
    token: Token | None
    conn: SandboxConnection | None
    record: RequestRecord


def json_response(status: int, body: bytes, headers: Mapping[str, str]) -> web.Response:
    """Answer with encoded JSON."""
    return web.Response(status=status, body=body, headers=headers, content_type=JSON)


def error_response(exc: SandboxError, request_id: str, headers: dict[str, str]) -> web.Response:
    """Answer with the contract's error envelope (and the error's own headers)."""
    headers.update(exc.headers)
    return json_response(
        exc.status, envelope(exc.code, request_id, exc.message, exc.details), headers
    )


def seconds(value: float) -> str:
    """Format seconds for a header: ``30``, not ``30.0``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def media_type(request: web.Request) -> str:
    """The body's media type, or ``""`` when the request sent no ``Content-Type``."""
    # aiohttp says application/octet-stream when the header is missing; the log says "" then.
    return request.content_type if hdrs.CONTENT_TYPE in request.headers else ""


def bearer(request: web.Request) -> str:
    """The bearer token of the ``Authorization`` header, or ``""``."""
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def too_large(max_body: int) -> SandboxError:
    """The error for a body over ``max_body`` bytes."""
    return SandboxError("PAYLOAD_TOO_LARGE", f"Bodies are limited to {max_body} bytes.")


async def read_json(request: web.Request, max_body: int) -> object:
    """Read a JSON body (an empty one reads as ``{}``).

    Raises:
        SandboxError: The body is too large, not JSON by its type, or not valid JSON.
    """
    if request.content_length is not None and request.content_length > max_body:
        raise too_large(max_body)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(max_body) from None
    if not raw.strip():
        return {}
    content_type = request.content_type
    if content_type != JSON and not content_type.endswith("+json"):
        raise SandboxError(
            "UNSUPPORTED_MEDIA_TYPE", f"Send JSON (`Content-Type: {JSON}`), not {content_type}."
        )
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise SandboxError("INVALID_REQUEST", f"The body is not valid JSON: {exc}.") from None
    problem = _unusable(body)
    if problem:
        raise SandboxError("INVALID_REQUEST", f"The body is not usable JSON: {problem}.")
    return body


def _no_constant(name: str) -> object:
    # Python's json takes NaN and Infinity, which JSON (RFC 8259) has no words for.
    raise ValueError(f"{name} is not a JSON value")


def _unusable(body: object) -> str | None:
    """What makes a decoded body one the sandbox cannot store or echo, or ``None``.

    JSON escapes can spell lone UTF-16 surrogates, which no UTF-8 encoder writes back, and
    nesting past `MAX_DEPTH` is deeper than any record goes (and than the JSON encoder takes).
    """
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return "a string holds a lone UTF-16 surrogate"
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return f"it nests deeper than {MAX_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for name, item in items:
                stack.append((item, depth + 1))
                if isinstance(name, str):
                    stack.append((name, depth))
    return None


async def read_object(request: web.Request, max_body: int) -> dict[str, object]:
    """Read a JSON object body.

    Raises:
        SandboxError: As `read_json`, or the body is not an object.
    """
    body = await read_json(request, max_body)
    if not isinstance(body, dict):
        raise SandboxError("INVALID_REQUEST", "The body must be a JSON object.")
    return body
