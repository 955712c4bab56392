"""What an error response's body says, whatever its shape: `read_error_body`.

Makini answers with its envelope, but a gateway, a proxy or a mock in front of it may not. The
shapes understood, in the order a field is looked for:

* Makini's envelope ``{"error": {code, type, message, request_id, details}}``;
* OAuth 2.0's ``{"error": "invalid_grant", "error_description": "..."}`` (RFC 6749 section
  5.2): the ``error`` is the code;
* a bare ``{"error": "text"}``, ``{"message": "text"}`` or a JSON string;
* RFC 9457 problem details (``application/problem+json``): ``detail``, else ``title``, is the
  message; a ``type`` other than ``about:blank`` is the type; ``instance`` goes to ``details``;
* validation errors in ``errors`` (or FastAPI's list in ``detail``): a mapping of field to
  messages (Laravel, many problem+json producers), or a list of items naming their field
  (``field``, a JSON pointer, JSON:API's ``source.pointer``, a ``loc`` or ``path`` list...)
  and their message; items without a field make the message when the body has none;
* anything else: HTML (its ``<title>`` or ``<h1>``), plain text (its first line), empty.

JSON bodies follow RFC 8259 as the success path does, with two decisions: a leading UTF-8 byte
order mark is ignored (the RFC allows a parser to), and a duplicate name keeps its last value
(as both of makini_async's JSON decoders do). Nothing here raises, whatever the body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Final

__all__ = ["BOM", "ErrorBody", "read_error_body"]

#: The UTF-8 byte order mark.
BOM: Final = b"\xef\xbb\xbf"
# Only this much of a non-JSON body is read for its message.
_TEXT_BYTES: Final = 4096
_MAX_FIELDS: Final = 200
_MAX_MESSAGES: Final = 20
_MESSAGE_KEYS: Final = ("message", "detail", "msg", "title", "reason", "description")
_FIELD_KEYS: Final = (
    "field",
    "pointer",
    "loc",
    "path",
    "property",
    "attribute",
    "param",
    "parameter",
    "name",
)
_REQUEST_ID_KEYS: Final = ("request_id", "requestId", "traceId")
# FastAPI's ``loc`` starts with where the value was.
_LOCATIONS: Final = frozenset({"body", "query", "path", "header", "cookie"})
_TAG: Final = re.compile(r"<[^>]*>")
_JSON_STARTS: Final = frozenset(b'{["')


class ErrorBody:
    """The fields an error body carried (each None, or empty, when it did not)."""

    __slots__ = ("code", "details", "message", "request_id", "type")

    def __init__(self) -> None:
        self.code: str | None = None
        self.type: str | None = None
        self.message: str | None = None
        self.request_id: str | None = None
        self.details: dict[str, object] = {}


def read_error_body(body: bytes) -> ErrorBody:
    """Read code, type, message, request id and details out of an error body. Never raises.

    The values are as the server sent them: unbounded and unredacted.
    """
    said = ErrorBody()
    decoded, is_json = _decode(body)
    if not is_json:
        said.message = _first_line(body[:_TEXT_BYTES].decode("utf-8", "replace"))
    elif isinstance(decoded, Mapping):
        _read_object(decoded, said)
    elif isinstance(decoded, list):
        _read_errors(decoded, said)
    elif isinstance(decoded, str):
        said.message = decoded or None
    return said


def _decode(body: bytes) -> tuple[object, bool]:
    """The decoded JSON value and True, or None and False when the body is not JSON."""
    body = body.removeprefix(BOM)
    start = body.lstrip(b" \t\r\n")[:1]
    if not start or start[0] not in _JSON_STARTS:
        return None, False
    try:
        return json.loads(body), True
    except (ValueError, RecursionError):
        return None, False


def _scalar(value: object) -> str | None:
    """A scalar field as text; None for missing, empty or structured values."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _first_scalar(mapping: Mapping[str, object], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = _scalar(mapping.get(key))
        if value is not None:
            return value
    return None


def _read_object(obj: Mapping[str, object], said: ErrorBody) -> None:
    inner = obj.get("error")
    if isinstance(inner, Mapping):
        said.code = _scalar(inner.get("code"))
        said.type = _scalar(inner.get("type"))
        said.message = _scalar(inner.get("message"))
        said.request_id = _scalar(inner.get("request_id"))
        details = inner.get("details")
        if isinstance(details, Mapping):
            said.details = {str(k): v for k, v in details.items()}
    elif isinstance(inner, str) and inner:
        description = _scalar(obj.get("error_description"))
        if description is None:
            said.message = inner
        else:
            said.code, said.message = inner, description
    # The other shapes' fields; none overrides what Makini's envelope said.
    said.message = said.message or _first_scalar(obj, ("message", "detail", "title"))
    said.code = said.code or _scalar(obj.get("code"))
    said.request_id = said.request_id or _first_scalar(obj, _REQUEST_ID_KEYS)
    problem_type = _scalar(obj.get("type"))
    if said.type is None and problem_type != "about:blank":
        said.type = problem_type
    instance = _scalar(obj.get("instance"))
    if instance is not None:
        said.details.setdefault("instance", instance)
    if "fields" not in said.details:
        for key in ("errors", "detail"):
            errors = obj.get(key)
            if isinstance(errors, Mapping | list):
                _read_errors(errors, said)
                break


def _read_errors(errors: Mapping[object, object] | list[object], said: ErrorBody) -> None:
    """Validation errors into ``details["fields"]``; fieldless ones into the message."""
    fields: dict[str, list[str]] = {}
    loose: list[str] = []
    pairs: Iterable[tuple[object, object]] = (
        errors.items() if isinstance(errors, Mapping) else ((None, item) for item in errors)
    )
    for name, value in islice(pairs, _MAX_FIELDS):
        field: str | None = None if name is None else str(name)
        if field is None and isinstance(value, Mapping):
            field = _field_name(value)
        messages = _messages(value)
        if not messages:
            continue
        if field:
            fields.setdefault(field, []).extend(messages)
        else:
            loose.extend(messages)
    if fields:
        said.details["fields"] = fields
    if said.message is None:
        if loose:
            said.message = "; ".join(loose)
        elif fields:
            first, messages = next(iter(fields.items()))
            more = sum(len(m) for m in fields.values()) - 1
            said.message = f"{first}: {messages[0]}" + (f" (and {more} more)" if more else "")


def _messages(value: object) -> list[str]:
    """The messages one error entry holds: a text, a list of texts, or objects with one."""
    if isinstance(value, Mapping):
        message = _first_scalar(value, _MESSAGE_KEYS)
        return [] if message is None else [message]
    if isinstance(value, list):
        found: list[str] = []
        for item in islice(value, _MAX_MESSAGES):
            found.extend(_messages(item) if isinstance(item, Mapping) else _texts(item))
        return found
    return _texts(value)


def _texts(value: object) -> list[str]:
    text = _scalar(value)
    return [] if text is None else [text]


def _field_name(item: Mapping[str, object]) -> str | None:
    """The field an error item names, as a dotted path (``profile.color``), or None."""
    candidates = [item.get(key) for key in _FIELD_KEYS]
    source = item.get("source")
    if isinstance(source, Mapping):
        candidates[1:1] = [source.get("pointer"), source.get("parameter")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            if candidate.startswith(("/", "#/")):
                return _from_pointer(candidate)
            return candidate
        if isinstance(candidate, list) and candidate:
            parts = [str(p) for p in candidate if isinstance(p, str | int)]
            if len(parts) > 1 and parts[0] in _LOCATIONS:
                parts = parts[1:]
            return ".".join(parts) or None
    return None


def _from_pointer(pointer: str) -> str | None:
    """A JSON pointer (RFC 6901) as a dotted path; JSON:API's ``/data/attributes/`` dropped."""
    parts = [
        part.replace("~1", "/").replace("~0", "~")
        for part in pointer.removeprefix("#").split("/")[1:]
    ]
    if parts[:2] == ["data", "attributes"]:
        parts = parts[2:]
    return ".".join(parts) or None


def _first_line(text: str) -> str | None:
    """A short human summary of a non-JSON body: an HTML title or heading, or the first line."""
    lowered = text.lower()
    for opening, closing in (("<title", "</title>"), ("<h1", "</h1>")):
        start = lowered.find(opening)
        if start == -1:
            continue
        start = lowered.find(">", start) + 1
        end = lowered.find(closing, start)
        if start and end != -1:
            inner = " ".join(_TAG.sub(" ", text[start:end]).split())
            if inner:
                return inner
    if text.lstrip().startswith("<"):
        text = _TAG.sub("\n", text)
    for line in text.splitlines():
        stripped = line.strip()
        if stripped:
            return stripped
    return None
