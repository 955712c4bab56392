"""Error envelopes → exception classes: the table, every envelope shape, and no second error."""

from __future__ import annotations

import importlib
import json
import pickle
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import makini_async as m
from makini_async import _errors
from makini_async._errors import BODY_SNIPPET_LIMIT, MESSAGE_LIMIT, error_from_response


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
                        ["error", "code", "message", "errors", "details", "fields", "x"]
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
