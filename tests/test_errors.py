"""Error envelopes → exception classes: the table, every envelope shape, and no second error."""

from __future__ import annotations

import asyncio
import builtins
import importlib
import json
import pickle
import re
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
import trustme
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import makini_async as m
from makini_async import _errors
from makini_async._errors import (
    BODY_SNIPPET_LIMIT,
    MESSAGE_LIMIT,
    error_class_for,
    error_from_response,
)
from makini_async.webhooks import WebhookError, parse, sign, verify
from tests.support import (
    MakeRegistry,
    Reply,
    ScriptedApp,
    StartApp,
    StartRaw,
    error_reply,
    read_request,
)


def envelope(code: str, status_type: str = "x_error", **extra: object) -> bytes:
    inner: dict[str, object] = {"code": code, "type": status_type, "message": f"msg for {code}"}
    inner.update(extra)
    body = {"error": inner}
    return json.dumps(body).encode()


TABLE = [
    (400, "INVALID_REQUEST", m.InvalidRequestError),
    (422, "VALIDATION_ERROR", m.ValidationError),
    (401, "AUTHENTICATION_FAILED", m.AuthenticationError),
    (401, "TOKEN_EXPIRED", m.TokenExpiredError),
    (401, "REAUTHORIZATION_REQUIRED", m.ReauthorizationRequiredError),
    (403, "PERMISSION_DENIED", m.PermissionDeniedError),
    (403, "CONNECTION_INACTIVE", m.ConnectionInactiveError),
    (404, "NOT_FOUND", m.NotFoundError),
    (405, "OPERATION_NOT_SUPPORTED", m.OperationNotSupportedError),
    (409, "IDEMPOTENCY_CONFLICT", m.IdempotencyConflictError),
    (409, "SOMETHING_ELSE", m.ConflictError),
    (429, "RATE_LIMIT_EXCEEDED", m.RateLimitError),
    (500, "INTERNAL_ERROR", m.ServerError),
    (502, "UPSTREAM_ERROR", m.UpstreamError),
    (503, "SYSTEM_UNAVAILABLE", m.ServiceUnavailableError),
    (504, "GATEWAY_TIMEOUT", m.ServerError),
    (599, "WEIRD", m.ServerError),
    (418, "TEAPOT", m.APIError),
    (302, None, m.UnexpectedRedirectError),
    (401, "brand_new_thing", m.AuthenticationError),
    (422, "brand_new_thing", m.ValidationError),
]


class TestTable:
    @pytest.mark.parametrize(("status", "code", "cls"), TABLE)
    def test_status_and_code_pick_the_class(
        self, status: int, code: str | None, cls: type[m.APIError]
    ) -> None:
        """Each (status, code) maps to the most specific class; unknown codes to the status's."""
        body = envelope(code) if code else b""
        error = error_from_response(status, body, request_id="req_h")
        assert type(error) is cls
        assert error.status == status
        assert error.code == code
        assert isinstance(error, m.MakiniError)

    def test_code_is_preserved_for_unknown_codes(self) -> None:
        """An unknown code falls back to the status class but keeps the code string."""
        error = error_from_response(418, envelope("brand_new_thing"))
        assert type(error) is m.APIError
        assert error.code == "brand_new_thing"


class TestEnvelopes:
    def test_makini_envelope(self) -> None:
        """Our envelope fills code, type, message, request id and details."""
        body = envelope(
            "RATE_LIMIT_EXCEEDED", "rate_limit_error", request_id="req_body", details={"a": 1}
        )
        error = error_from_response(429, body, request_id="req_header", retry_after=3.0)
        assert isinstance(error, m.RateLimitError)
        assert error.type == "rate_limit_error"
        assert error.message == "msg for RATE_LIMIT_EXCEEDED"
        assert error.request_id == "req_body"
        assert error.details == {"a": 1}
        assert error.retry_after == 3.0

    def test_validation_fields_from_details(self) -> None:
        """A 422 exposes details.fields as field → messages."""
        body = envelope(
            "VALIDATION_ERROR", details={"fields": {"title": ["is required"], "x": "bad"}}
        )
        error = error_from_response(422, body)
        assert isinstance(error, m.ValidationError)
        assert error.fields == {"title": ["is required"], "x": ["bad"]}

    def test_laravel_422(self) -> None:
        """Laravel's {message, errors} decodes into a ValidationError with fields."""
        body = json.dumps({"message": "The given data was invalid.", "errors": {"name": ["req"]}})
        error = error_from_response(422, body.encode(), request_id="req_l")
        assert isinstance(error, m.ValidationError)
        assert error.message == "The given data was invalid."
        assert error.fields == {"name": ["req"]}
        assert error.request_id == "req_l"

    def test_bare_message(self) -> None:
        """A bare {message} keeps the message and the status class."""
        error = error_from_response(403, b'{"message": "Forbidden here"}')
        assert isinstance(error, m.PermissionDeniedError)
        assert error.message == "Forbidden here"
        assert error.code is None

    def test_error_as_string(self) -> None:
        """An {"error": "text"} body uses the text as message."""
        error = error_from_response(400, b'{"error": "bad thing"}')
        assert error.message == "bad thing"

    def test_empty_body(self) -> None:
        """An empty body still gives the status class and a useful message."""
        error = error_from_response(503, b"")
        assert isinstance(error, m.ServiceUnavailableError)
        assert "503" in error.message
        assert error.body == ""

    def test_html_502_from_a_proxy(self) -> None:
        """An HTML page becomes its title as message and a bounded snippet as body."""
        page = "<html><head><title>502 Bad Gateway</title></head><body>" + "x" * 50_000
        error = error_from_response(502, page.encode())
        assert isinstance(error, m.UpstreamError)
        assert error.message == "502 Bad Gateway"
        assert len(error.body) <= BODY_SNIPPET_LIMIT
        assert len(str(error)) < 2 * BODY_SNIPPET_LIMIT

    def test_invalid_utf8(self) -> None:
        """Invalid UTF-8 never raises; the text is replaced."""
        error = error_from_response(500, b"\xff\xfe{\x80 oops")
        assert isinstance(error, m.ServerError)
        assert "\ufffd" in error.body

    def test_truncated_json(self) -> None:
        """Truncated JSON keeps the status class and shows the raw snippet."""
        error = error_from_response(404, b'{"error": {"code": "NOT_FO')
        assert isinstance(error, m.NotFoundError)
        assert error.body.startswith('{"error"')

    @pytest.mark.parametrize(
        "body",
        [
            b'{"error": null}',
            b'{"error": []}',
            b'{"error": {"code": 42, "message": ["x"]}}',
            b'{"error": {"details": "not a dict", "code": "NOT_FOUND"}}',
            b"[1, 2, 3]",
            b'"just a string"',
            b"null",
            b"[" * 100_000,
            b'{"message": ' + b'"' + b"m" * 1_000_000 + b'"}',
        ],
    )
    def test_malformed_envelopes(self, body: bytes) -> None:
        """Malformed envelopes still give the status class with bounded fields."""
        error = error_from_response(404, body)
        assert isinstance(error, m.NotFoundError)
        assert len(error.message) <= MESSAGE_LIMIT
        assert len(error.body) <= BODY_SNIPPET_LIMIT

    def test_numeric_code_becomes_a_string(self) -> None:
        """A numeric code is kept as text."""
        error = error_from_response(400, b'{"error": {"code": 42}}')
        assert error.code == "42"

    def test_secrets_are_scrubbed_from_echoed_bodies(self) -> None:
        """A token echoed by the server is redacted from message, body and details."""
        secret = "tok_SECRET_123"
        body = envelope("X", message=f"bad {secret}", details={"token": secret})
        error = error_from_response(400, body, secrets=(secret,))
        text = f"{error} {error!r} {error.body} {error.details} {error.message}"
        assert secret not in text
        assert "[REDACTED]" in error.message


class TestOtherShapes:
    """Error bodies that are not Makini's envelope still give a message, fields and a code."""

    def test_problem_details_with_a_dict_of_lists(self) -> None:
        """RFC 9457 problem details: detail is the message, errors the fields, type kept."""
        body = {
            "type": "https://example.com/probs/validation",
            "title": "Your request is not valid.",
            "status": 422,
            "detail": "2 fields are wrong",
            "instance": "/api/eam/assets",
            "errors": {"name": ["is required"], "qty": ["must be > 0", "must be an int"]},
        }
        error = error_from_response(422, json.dumps(body).encode(), request_id="req_h")
        assert isinstance(error, m.ValidationError)
        assert error.message == "2 fields are wrong"
        assert error.fields == {"name": ["is required"], "qty": ["must be > 0", "must be an int"]}
        assert error.type == "https://example.com/probs/validation"
        assert error.details["instance"] == "/api/eam/assets"
        assert error.request_id == "req_h"
        assert error.code is None

    def test_problem_details_with_a_list_of_pointers(self) -> None:
        """RFC 9457's own example: errors as a list of {detail, pointer}, pointers made paths."""
        body = {
            "type": "about:blank",
            "title": "Your request is not valid.",
            "errors": [
                {"detail": "must be a positive integer", "pointer": "#/age"},
                {"detail": "must be 'green', 'red' or 'blue'", "pointer": "#/profile/color"},
                {"detail": "slash", "pointer": "/a~1b/c~0d"},
            ],
        }
        error = error_from_response(422, json.dumps(body).encode())
        assert isinstance(error, m.ValidationError)
        assert error.message == "Your request is not valid."
        assert error.type is None  # about:blank says nothing
        assert error.fields == {
            "age": ["must be a positive integer"],
            "profile.color": ["must be 'green', 'red' or 'blue'"],
            "a/b.c~d": ["slash"],
        }

    @pytest.mark.parametrize(
        ("errors", "fields"),
        [
            pytest.param(
                [{"field": "name", "message": "required"}, {"field": "name", "message": "short"}],
                {"name": ["required", "short"]},
                id="field-message",
            ),
            pytest.param(
                [{"source": {"pointer": "/data/attributes/firstName"}, "detail": "too short"}],
                {"firstName": ["too short"]},
                id="json-api",
            ),
            pytest.param(
                [{"path": ["items", 0, "qty"], "message": "negative"}],
                {"items.0.qty": ["negative"]},
                id="path-list",
            ),
            pytest.param({"name": "required"}, {"name": ["required"]}, id="dict-of-str"),
        ],
    )
    def test_error_lists(self, errors: object, fields: dict[str, list[str]]) -> None:
        """Each common list shape names its field; the first one is the message when none."""
        error = error_from_response(422, json.dumps({"errors": errors}).encode())
        assert isinstance(error, m.ValidationError)
        assert error.fields == fields
        first, messages = next(iter(fields.items()))
        assert error.message.startswith(f"{first}: {messages[0]}")

    def test_fastapi_detail_list(self) -> None:
        """FastAPI's 422 puts its list in ``detail``; ``loc`` loses its leading location."""
        body = {"detail": [{"loc": ["body", "title"], "msg": "field required", "type": "x"}]}
        error = error_from_response(422, json.dumps(body).encode())
        assert isinstance(error, m.ValidationError)
        assert error.fields == {"title": ["field required"]}
        assert error.message == "title: field required"

    def test_fieldless_errors_make_the_message(self) -> None:
        """Errors naming no field (GraphQL style, bare strings) become the message."""
        body = {"errors": [{"message": "quota reached"}, "try later"]}
        error = error_from_response(429, json.dumps(body).encode())
        assert isinstance(error, m.RateLimitError)
        assert error.message == "quota reached; try later"
        assert "fields" not in error.details

    def test_oauth_error(self) -> None:
        """OAuth 2.0's {error, error_description}: the error is the code (RFC 6749 5.2)."""
        body = b'{"error": "invalid_grant", "error_description": "The code has expired."}'
        error = error_from_response(400, body)
        assert isinstance(error, m.InvalidRequestError)
        assert (error.code, error.message) == ("invalid_grant", "The code has expired.")

    @pytest.mark.parametrize(
        ("body", "request_id"),
        [
            (b'{"message": "x", "request_id": "req_body"}', "req_body"),
            (b'{"title": "x", "requestId": "req_camel"}', "req_camel"),
            (b'{"title": "x", "traceId": "00-abc-01"}', "00-abc-01"),
            (b'{"title": "x"}', "req_header"),
            (b'{"title": "x", "request_id": "bad\\u0007id"}', "req_header"),
        ],
    )
    def test_request_id_from_the_body_or_the_header(self, body: bytes, request_id: str) -> None:
        """The body's request id wins; an unprintable one gives way to the header's."""
        error = error_from_response(500, body, request_id="req_header")
        assert error.request_id == request_id

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"<html><body><h1>Service Unavailable</h1></body></html>", "Service Unavailable"),
            (b"<!DOCTYPE html>\n<html><body>\n<p>Gateway down</p></body></html>", "Gateway down"),
            (b'"Not here"', "Not here"),
            (b'\xef\xbb\xbf{"message": "with a BOM"}', "with a BOM"),
            (b"oops\x1b[31m red\r\nsecond line", "oops [31m red"),
        ],
    )
    def test_text_bodies(self, body: bytes, message: str) -> None:
        """HTML headings, JSON strings and BOM-led JSON give messages without control chars."""
        assert error_from_response(503, body).message == message

    def test_control_characters_never_reach_a_message(self) -> None:
        """A message with newlines or escapes is one printable line (no forged log lines)."""
        body = json.dumps({"error": {"message": "bad\n2026-01-01 INFO forged\x1b[0m"}})
        error = error_from_response(400, body.encode())
        assert error.message.isprintable()
        assert "\n" not in str(error)

    def test_duplicate_names_keep_the_last(self) -> None:
        """RFC 8259 leaves duplicate names open: the last one wins, as on the success path."""
        error = error_from_response(404, b'{"message": "first", "message": "last"}')
        assert error.message == "last"

    def test_a_redirect_names_no_code(self) -> None:
        """A 3xx's body is no envelope: the code is None whatever the body holds."""
        error = error_from_response(302, envelope("MOVED"))
        assert type(error) is m.UnexpectedRedirectError
        assert error.code is None


class TestSuccessBodies:
    """What a 2xx must be to decode: RFC 8259 JSON under a JSON media type (RFC 9110 8.3)."""

    @pytest.mark.parametrize(
        "content_type",
        [
            "application/json",
            "Application/JSON; charset=utf-8",
            "APPLICATION/JSON;charset=UTF-8",
            "application/problem+json",
            "application/vnd.api+json; ext=x",
        ],
    )
    async def test_json_media_types(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, content_type: str
    ) -> None:
        """Media types are case-insensitive, take parameters, and +json is JSON."""
        app, url = scripted
        app.default = Reply(raw=b'{"data": {"a": 1}}', headers={"Content-Type": content_type})
        app.default.content_type = None  # type: ignore[assignment] # the header above rules
        response = await make_registry(url).add("c", "t").request("GET", "/x")
        assert response.data == {"data": {"a": 1}}

    @pytest.mark.parametrize(
        "content_type", ["text/json", "application/jsonx", "text/plain", "application/ json"]
    )
    async def test_other_media_types(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, content_type: str
    ) -> None:
        """A body under another media type is a ResponseDecodeError naming it as sent."""
        app, url = scripted
        app.default = Reply(raw=b'{"data": {}}', headers={"Content-Type": content_type})
        app.default.content_type = None  # type: ignore[assignment] # the header above rules
        with pytest.raises(m.ResponseDecodeError) as caught:
            await make_registry(url).add("c", "t").request("GET", "/x")
        assert repr(content_type) in caught.value.message

    async def test_a_byte_order_mark_is_ignored(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """RFC 8259 8.1 lets a parser ignore a leading UTF-8 BOM; we do."""
        app, url = scripted
        app.default = Reply(raw=b'\xef\xbb\xbf{"data": {"a": 1}}')
        response = await make_registry(url).add("c", "t").request("GET", "/x")
        assert response.data == {"data": {"a": 1}}

    async def test_duplicate_names_keep_the_last(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """RFC 8259 4 leaves duplicate names open: the last one wins, with or without orjson."""
        app, url = scripted
        app.default = Reply(raw=b'{"data": {"a": 1, "a": 2}}')
        response = await make_registry(url).add("c", "t").request("GET", "/x")
        assert response.data == {"data": {"a": 2}}


class TestExceptionObjects:
    def test_str_starts_with_request_id_and_repr_is_short(self) -> None:
        """str() leads with the request id; repr() names status, code and id only."""
        error = error_from_response(
            404, envelope("NOT_FOUND"), request_id="req_9", method="GET", path="/api/x"
        )
        assert str(error).startswith("[req_9] 404 NOT_FOUND")
        assert "GET /api/x" in str(error)
        assert repr(error) == "NotFoundError(status=404, code='NOT_FOUND', request_id='req_9')"

    @pytest.mark.parametrize(
        "error",
        [
            error_from_response(429, envelope("RATE_LIMIT_EXCEEDED"), retry_after=2.0),
            m.ConnectError("refused", method="GET", path="/x"),
            m.RequestTimeoutError("slow", method="GET", path="/x", may_have_reached_server=False),
            m.ResponseDecodeError("bad", status=200, request_id="r", body="x"),
            m.ConnectionNotFoundError("acme"),
        ],
        ids=repr,
    )
    def test_errors_pickle(self, error: Exception) -> None:
        """Errors survive pickling (e.g. across a process pool) with their attributes."""
        clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own objects
        assert type(clone) is type(error)
        assert str(clone) == str(error)

    def test_timeout_is_a_builtin_timeout(self) -> None:
        """RequestTimeoutError is also a TimeoutError."""
        assert issubclass(m.RequestTimeoutError, TimeoutError)
        assert issubclass(m.ConnectionNotFoundError, KeyError)

    def test_connect_error_never_reached_the_server(self) -> None:
        """A ConnectError always says the request never left."""
        assert m.ConnectError("x").may_have_reached_server is False
        assert m.TransportError("x").may_have_reached_server is True


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.integers(min_value=100, max_value=599),
    body=st.one_of(
        st.binary(max_size=2048),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
            lambda inner: (
                st.lists(inner, max_size=5)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            *("error", "code", "message", "errors", "details", "fields", "x"),
                            *("type", "title", "detail", "instance", "error_description"),
                            *("field", "pointer", "source", "loc", "path", "request_id"),
                        ]
                    ),
                    inner,
                    max_size=5,
                )
            ),
            max_leaves=30,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_decoding_never_raises(status: int, body: bytes) -> None:
    """Any status and any body decode into an APIError subclass, never a second error."""
    error = error_from_response(status, body, request_id="r", secrets=("tok",))
    assert isinstance(error, m.APIError)
    assert isinstance(str(error), str)
    assert isinstance(repr(error), str)
    assert len(error.body) <= BODY_SNIPPET_LIMIT


def _drawn_tree() -> dict[str, str | None]:
    """The class -> parent pairs drawn in the docstring of ``makini_async._errors``."""

    doc = _errors.__doc__ or ""
    drawing = doc.split("::", 1)[1].split("\n\n", 2)[1]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in drawing.splitlines():
        match = re.match(r"^([│ ]*)(?:[├└]── )?(\w+)", line.removeprefix("    "))
        assert match, line
        depth = len(match.group(1)) // 4 + (1 if "── " in line else 0)
        name = match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


class TestTree:
    def test_the_drawing_and_the_classes_agree(self) -> None:
        """Every MakiniError class is drawn under its own base class, and nothing else is."""
        classes = {
            name: obj
            for name in m.__all__
            if isinstance(obj := getattr(m, name), type) and issubclass(obj, m.MakiniError)
        }
        actual: dict[str, str | None] = {}
        for name, cls in classes.items():
            bases = [b for b in cls.__bases__ if issubclass(b, m.MakiniError)]
            actual[name] = bases[0].__name__ if bases else None
        assert _drawn_tree() == actual

    @pytest.mark.parametrize("package", ["makini_async.sync", "makini_async.webhooks"])
    def test_subpackages_export_the_same_classes(self, package: str) -> None:
        """An error a subpackage exports is the very class ``makini_async`` exports."""
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                assert getattr(m, name) is obj

    def test_every_error_class_in_the_package_is_exported(self) -> None:
        """No module defines an exception class users cannot import from ``makini_async``."""
        seen: list[type[BaseException]] = [m.MakiniError]
        found: set[type[BaseException]] = set()
        while seen:
            cls = seen.pop()
            for sub in cls.__subclasses__():
                if sub.__module__.startswith("makini_async") and sub not in found:
                    found.add(sub)
                    seen.append(sub)
        exported = {getattr(m, name) for name in m.__all__}
        assert {c.__name__ for c in found - exported} == set()


# --------------------------------------------------------------------------------------------
# README's "Errors: what each situation raises", row by row, through real servers.

README = Path(__file__).resolve().parent.parent / "README.md"
TABLE_TITLE = "## Errors: what each situation raises"
WEBHOOK_SECRET = "whsec_table_" + "k" * 24
# The "code" cell of a row whose class has no code at all.
NO_CODE = "\N{EN DASH}"


def _readme_rows() -> list[tuple[str, str, str]]:
    """The (situation, raises, code) rows of the README's table."""
    text = README.read_text(encoding="utf-8")
    if TABLE_TITLE not in text:
        return []
    section = text.split(TABLE_TITLE, 1)[1].split("\n## ", 1)[0]
    rows: list[tuple[str, str, str]] = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| Situation "):
            situation, raises, code = (cell.strip() for cell in line.strip("| \n").split(" | "))
            rows.append((situation, raises, code))
    return rows


class Outcome(NamedTuple):
    """What one call of a scenario raised, and what the server had answered (if it did)."""

    error: BaseException
    status: int | None = None
    code: str | None = None


class Env:
    """The real servers a scenario may use, and registries built for it."""

    def __init__(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        app_server: StartApp,
        raw_server: StartRaw,
    ) -> None:
        self.app, self.url = scripted
        self.make_registry = make_registry
        self.app_server = app_server
        self.raw_server = raw_server
        self._count = 0

    def conn(self, url: str | None = None, **kwargs: Any) -> m.Connection:
        """A new connection on a new registry (``kwargs`` for the registry)."""
        self._count += 1
        registry = self.make_registry(url or self.url, **kwargs)
        return registry.add(f"c{self._count}", f"tok_{self._count}")

    async def answer(self, reply: Reply, **kwargs: Any) -> Outcome:
        """What a GET on a new connection raises when the server answers ``reply``."""
        self.app.default = reply
        body = json.loads(reply.raw) if reply.raw[:1] == b"{" else None
        inner = body.get("error") if isinstance(body, dict) else None
        code = inner.get("code") if isinstance(inner, dict) else None
        if isinstance(inner, str) and isinstance(body, dict) and "error_description" in body:
            code = inner
        error = await raised(self.conn(**kwargs).request("GET", "/api/eam/assets"))
        return Outcome(error, reply.status, code)


async def raised(call: Awaitable[object]) -> BaseException:
    """The exception ``call`` raises (the test fails if it returns)."""
    try:
        await call
    except Exception as exc:  # every class: what the table checks
        return exc
    pytest.fail("the call succeeded")


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


Scenario = Callable[[Env], Awaitable[list[Outcome]]]
SCENARIOS: dict[str, Scenario] = {}


def row(situation: str) -> Callable[[Scenario], Scenario]:
    """Register the scenario that produces the README row ``situation``."""

    def register(scenario: Scenario) -> Scenario:
        SCENARIOS[situation] = scenario
        return scenario

    return register


def _status_row(situation: str, *replies: Reply) -> None:
    async def scenario(env: Env) -> list[Outcome]:
        return [await env.answer(reply) for reply in replies]

    SCENARIOS[situation] = scenario


_CODES_401 = ("AUTHENTICATION_FAILED", "TOKEN_EXPIRED", "REAUTHORIZATION_REQUIRED", "NEW_CODE")


@row("A 401 on a connection with no reconnect hook, whatever its code")
async def _401_without_hook(env: Env) -> list[Outcome]:
    outcomes = [await env.answer(error_reply(401, code)) for code in _CODES_401]
    for outcome, code in zip(outcomes, _CODES_401, strict=True):
        cause = outcome.error.__cause__
        assert isinstance(cause, m.AuthenticationError)
        assert cause.code == code  # the server's own answer is kept as the cause
    return outcomes


@row("A 401 on a connection whose hook returns None or raises")
async def _401_hook_fails(env: Env) -> list[Outcome]:
    async def none(_event: m.ReconnectEvent) -> str | None:
        return None

    async def fails(_event: m.ReconnectEvent) -> str | None:
        raise RuntimeError("the refresh service is down")

    reply = error_reply(401, "TOKEN_EXPIRED")
    return [await env.answer(reply, on_reconnect=hook) for hook in (none, fails)]


@row("A 401 again for the token the hook returned")
async def _401_hook_token_refused(env: Env) -> list[Outcome]:
    async def hook(_event: m.ReconnectEvent) -> str | None:
        return "tok_from_the_hook"

    outcome = await env.answer(error_reply(401, "AUTHENTICATION_FAILED"), on_reconnect=hook)
    assert env.app.seen[-1].token == "tok_from_the_hook"
    return [outcome]


@row("Any later call on that connection, until `update_token()` (no I/O)")
async def _later_calls(env: Env) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for code in _CODES_401:
        env.app.default = error_reply(401, code)
        conn = env.conn()
        first = await raised(conn.request("GET", "/x"))
        sent = len(env.app.seen)
        later = [await raised(conn.request("GET", "/x")) for _ in range(2)]
        assert len(env.app.seen) == sent
        assert [str(e).split(":")[0] for e in later] == [str(later[0]).split(":")[0]] * 2
        outcomes += [Outcome(first), *(Outcome(e) for e in later)]
    return outcomes


@row("A 401 on the tokenless channel (`/link/token`, `LinkClient`)")
async def _401_tokenless(env: Env) -> list[Outcome]:
    env.app.default = error_reply(401, "AUTHENTICATION_FAILED")
    channel = env.make_registry(env.url).tokenless()
    outcomes = []
    for _ in range(2):  # no state: the same answer gives the same error each time
        call = channel.request("POST", "/link/token", form={"grant_type": "client_credentials"})
        outcomes.append(Outcome(await raised(call), 401, "AUTHENTICATION_FAILED"))
    return outcomes


_status_row("A 400", error_reply(400, "INVALID_REQUEST"))
_status_row("A 403 `CONNECTION_INACTIVE`", error_reply(403, "CONNECTION_INACTIVE"))
_status_row("Any other 403", error_reply(403, "PERMISSION_DENIED"), error_reply(403, "NEW"))
_status_row("A 404", error_reply(404, "NOT_FOUND"))
_status_row("A 405 `OPERATION_NOT_SUPPORTED`", error_reply(405, "OPERATION_NOT_SUPPORTED"))
_status_row("A 409 `IDEMPOTENCY_CONFLICT`", error_reply(409, "IDEMPOTENCY_CONFLICT"))
_status_row("Any other 409", error_reply(409, "CONFLICT"))
_status_row("A 500", error_reply(500, "INTERNAL_ERROR"))
_status_row("A 502", error_reply(502, "UPSTREAM_ERROR"))
_status_row("A 503", error_reply(503, "SYSTEM_UNAVAILABLE"))
_status_row("Any other 5xx", error_reply(504, "GATEWAY_TIMEOUT"), error_reply(599, "ODD"))
_status_row("Any other status", error_reply(418, "TEAPOT"), error_reply(410, "GONE"))
_status_row(
    "A 3xx: redirects are never followed",
    Reply(302, {"error": {"code": "MOVED"}}, headers={"Location": "/elsewhere"}),
    Reply(307, raw=b"", headers={"Location": "/elsewhere"}),
)


@row("A 422, as Makini's envelope, Laravel's, RFC 9457 problem details or JSON:API")
async def _422(env: Env) -> list[Outcome]:
    problem = {
        "type": "about:blank",
        "title": "Unprocessable",
        "status": 422,
        "errors": [{"pointer": "#/title", "detail": "is required"}],
    }
    json_api = {"errors": [{"source": {"pointer": "/data/attributes/title"}, "detail": "req"}]}
    replies = [
        Reply(
            422,
            {"error": {"code": "VALIDATION_ERROR", "details": {"fields": {"title": ["req"]}}}},
        ),
        Reply(422, {"message": "The given data was invalid.", "errors": {"title": ["req"]}}),
        Reply(422, problem, content_type="application/problem+json"),
        Reply(422, json_api, content_type="application/vnd.api+json"),
    ]
    outcomes = [await env.answer(reply) for reply in replies]
    for outcome in outcomes:
        assert isinstance(outcome.error, m.ValidationError)
        assert list(outcome.error.fields) == ["title"]
    return outcomes


@row(
    "A 429 whose retries are spent, or whose `Retry-After` passes `max_retry_after` or the deadline"
)
async def _429(env: Env) -> list[Outcome]:
    code = "RATE_LIMIT_EXCEEDED"
    spent = await env.answer(error_reply(429, code))
    too_long = await env.answer(error_reply(429, code, **{"Retry-After": "7200"}))
    env.app.default = error_reply(429, code, **{"Retry-After": "30"})
    past_deadline = await raised(env.conn().request("GET", "/x", deadline=10))
    assert getattr(past_deadline, "retry_after", None) == 30.0
    return [spent, too_long, Outcome(past_deadline, 429, code)]


@row("A later call while a 429 pauses the connection past `max_retry_after` (no I/O)")
async def _paused(env: Env) -> list[Outcome]:
    env.app.default = error_reply(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "7200"})
    conn = env.conn()
    await raised(conn.request("GET", "/x"))
    sent = len(env.app.seen)
    later = await raised(conn.request("GET", "/x"))
    assert len(env.app.seen) == sent
    return [Outcome(later, 429, "RATE_LIMIT_EXCEEDED")]


_status_row(
    'An error body that is not Makini\'s envelope: problem details, `{"error": ...}`, '
    "text, HTML, empty",
    Reply(
        404,
        {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No asset A1"},
        content_type="application/problem+json",
    ),
    Reply(400, {"error": "invalid_grant", "error_description": "The code has expired."}),
    Reply(403, {"error": "Forbidden here"}),
    Reply(404, raw=b"no such route\n", content_type="text/plain"),
    Reply(502, raw=b"<html><title>502 Bad Gateway</title></html>", content_type="text/html"),
    Reply(409, raw=b"", content_type="text/plain"),
)


@row("The connection was refused: nothing was sent")
async def _refused(env: Env) -> list[Outcome]:
    conn = env.conn(f"http://127.0.0.1:{_closed_port()}")
    return [Outcome(await raised(conn.request("POST", "/x", json={"a": 1})))]


@row("The TLS handshake failed")
async def _tls(env: Env) -> list[Outcome]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost").configure_cert(context)  # an authority nobody trusts
    runner = web.AppRunner(web.Application(), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        conn = env.conn(f"https://localhost:{port}")
        return [Outcome(await raised(conn.request("GET", "/x")))]
    finally:
        await runner.cleanup()


async def _silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await reader.read()


@row("A timeout, or the call's `deadline` passed")
async def _timeout(env: Env) -> list[Outcome]:
    url = await env.raw_server(_silent)
    read_timeout = env.conn(url, retry=m.RetryPolicy.no_retries()).request(
        "GET", "/x", timeout=m.Timeouts(connect=5, read=0.2)
    )
    deadline = env.conn(url).request("GET", "/x", deadline=0.2)
    return [Outcome(await raised(read_timeout)), Outcome(await raised(deadline))]


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()


@row("The connection was reset, or the response was cut short or malformed")
async def _broken(env: Env) -> list[Outcome]:
    outcomes = []
    for handler in (_reset, _garbage):
        conn = env.conn(await env.raw_server(handler))
        outcomes.append(Outcome(await raised(conn.request("GET", "/x"))))
    return outcomes


@row("A 2xx whose body is not JSON")
async def _not_json(env: Env) -> list[Outcome]:
    replies = [
        Reply(200, raw=b"<html>ok</html>", content_type="text/html"),
        Reply(200, raw=b'{"data": [1,', content_type="application/json"),
    ]
    outcomes = []
    for reply in replies:
        env.app.default = reply
        outcomes.append(Outcome(await raised(env.conn().request("GET", "/x"))))
    return outcomes


@row("A body larger than `max_response_size`")
async def _too_large(env: Env) -> list[Outcome]:
    env.app.default = Reply(200, {"data": "x" * 1000})
    conn = env.conn(max_response_size=100)
    return [Outcome(await raised(conn.request("GET", "/x")))]


@row("A call on a removed or closed connection")
async def _removed(env: Env) -> list[Outcome]:
    registry = env.make_registry(env.url)
    conn = registry.add("gone", "tok_gone")
    await registry.remove("gone")
    return [Outcome(await raised(conn.request("GET", "/x")))]


@row("A call after the registry closed")
async def _registry_closed(env: Env) -> list[Outcome]:
    registry = env.make_registry(env.url)
    conn = registry.add("c", "tok_c")
    await conn.request("GET", "/x")
    await registry.aclose()
    return [Outcome(await raised(conn.request("GET", "/x")))]


@row("`registry[id]` of an unknown id")
async def _unknown_id(env: Env) -> list[Outcome]:
    registry = env.make_registry(env.url)
    with pytest.raises(m.ConnectionNotFoundError) as caught:
        registry["nope"]
    return [Outcome(caught.value)]


@row("A bad argument, refused before any I/O")
async def _bad_argument(env: Env) -> list[Outcome]:
    conn = env.conn()
    sent = len(env.app.seen)
    calls = [
        conn.request("FETCH", "/x"),
        conn.request("GET", "no-slash"),
        conn.request("GET", 5),  # type: ignore[arg-type]
        conn.request("GET", "/x", params={"since": object()}),
    ]
    outcomes = [Outcome(await raised(call)) for call in calls]
    assert len(env.app.seen) == sent
    return outcomes


async def _webhook_refusals(
    env: Env, deliveries: list[tuple[bytes, dict[str, str]]]
) -> list[Outcome]:
    """POST each delivery to an app that verifies and parses it; what verify/parse raised."""
    caught: list[WebhookError] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(body, request.headers, WEBHOOK_SECRET)
            parse(body, event_id=request.headers.get("X-Webhook-Id"))
        except WebhookError as exc:
            caught.append(exc)
            return web.Response(status=exc.status)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks", handler)
    url = await env.app_server(app)
    statuses = []
    async with aiohttp.ClientSession() as session:
        for body, headers in deliveries:
            async with session.post(f"{url}/hooks", data=body, headers=headers) as answer:
                statuses.append(answer.status)
    assert statuses == [error.status for error in caught]
    return [Outcome(error) for error in caught]


_EVENT = json.dumps({"id": "evt_1", "event": "assets.updated", "body": ["A1"]}).encode()


@row("A webhook delivery whose signature is missing, malformed or wrong")
async def _webhook_unsigned(env: Env) -> list[Outcome]:
    wrong = sign(_EVENT, secret="whsec_someone_else")
    return await _webhook_refusals(
        env,
        [
            (_EVENT, {}),
            (_EVENT, {"X-Webhook-Signature": "not base64!"}),
            (_EVENT, {"X-Webhook-Signature": wrong}),
        ],
    )


@row("A signed webhook delivery that is not an event, or whose `X-Webhook-Id` is unusable")
async def _webhook_not_an_event(env: Env) -> list[Outcome]:
    def signed(body: bytes, **headers: str) -> tuple[bytes, dict[str, str]]:
        return body, {"X-Webhook-Signature": sign(body, secret=WEBHOOK_SECRET), **headers}

    return await _webhook_refusals(
        env,
        [
            signed(b"not json"),
            signed(b'{"id": "evt_2"}'),
            signed(_EVENT, **{"X-Webhook-Id": "evt_other"}),
        ],
    )


@pytest.fixture(name="env")
def _env(
    scripted: tuple[ScriptedApp, str],
    make_registry: MakeRegistry,
    app_server: StartApp,
    raw_server: StartRaw,
) -> Env:
    """The servers and registries of one table row."""
    return Env(scripted, make_registry, app_server, raw_server)


def _classes(raises: str) -> set[type[BaseException]]:
    """The classes a row's "Raises" cell names before any parenthesis (none: by status)."""
    names = re.findall(r"`(\w+)`", raises.split("(", 1)[0])
    return {getattr(m, name, None) or getattr(builtins, name) for name in names}


def _ids() -> Iterator[str]:
    for situation, _, _ in _readme_rows():
        yield re.sub(r"\W+", "-", situation.lower()).strip("-")[:60]


class TestTheReadmeTable:
    def test_every_row_has_a_scenario_and_every_scenario_a_row(self) -> None:
        """The README's table and this file's scenarios name the same situations."""
        rows = [situation for situation, _, _ in _readme_rows()]
        assert len(rows) == len(set(rows))
        assert set(rows) == set(SCENARIOS)

    @pytest.mark.parametrize(("situation", "raises", "code"), _readme_rows(), ids=list(_ids()))
    async def test_row(self, env: Env, situation: str, raises: str, code: str) -> None:
        """Every call of the row's situation raises the row's class with the row's code."""
        outcomes = await SCENARIOS[situation](env)
        assert outcomes
        classes = _classes(raises)
        for outcome in outcomes:
            error = outcome.error
            if classes:
                assert type(error) in classes, (type(error), raises)
            else:  # "the class of the status"
                assert outcome.status is not None
                assert type(error) is error_class_for(outcome.status, outcome.code)
            if code == NO_CODE:
                assert not isinstance(error, m.APIError)
            elif code == "None":
                assert getattr(error, "code", "missing") is None
            elif code == "the server's":
                assert getattr(error, "code", "missing") == outcome.code
            else:
                assert getattr(error, "code", "missing") == code.strip("`")
