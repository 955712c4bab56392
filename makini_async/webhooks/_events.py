"""Typed webhook events, and `parse`, which turns a delivery's raw body into one.

The envelope (``makini-api.md`` §6)::

    {"id": "evt_...", "event": "connection.sync_completed", "created_at": "...Z",
     "connection_id": "...", "data": {...}, "body": [...]}

The legacy payload ``{"event": "assets.updated", "body": ["<key>", ...]}`` is a subset and decodes
the same way. This module is the only one that knows the envelope's field names; the event-specific
fields are read from ``data`` under their own names, through the shared converter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Final

import attrs

from makini_async import _json
from makini_async._converter import StructureError, converter, structure
from makini_async._errors import WebhookPayloadError

from ._verify import _body_bytes

__all__ = [
    "EntityEvent",
    "FlowEvent",
    "ReauthorizationRequiredEvent",
    "StatusChangedEvent",
    "SyncCompletedEvent",
    "SyncFailedEvent",
    "SystemErrorEvent",
    "UnknownEvent",
    "WebhookEvent",
    "parse",
]

#: Connection statuses that mean "working": the contract's ``online`` and ``active``.
HEALTHY_STATUSES: Final = frozenset({"active", "online"})
#: The actions of entity events (``<entity>.<action>``).
ENTITY_ACTIONS: Final = frozenset({"inserted", "updated", "deleted"})
_RESERVED_PREFIXES: Final = frozenset({"connection", "system", "flow"})
_MAX_NAME: Final = 256


@attrs.frozen(kw_only=True)
class WebhookEvent:
    """A verified webhook event. Every event type below is a subclass.

    Attributes:
        id: The event id (``X-Webhook-Id``); the same on every redelivery. A legacy payload
            without an id gets a stable one derived from its bytes (``sha256:...``).
        type: The event name, e.g. ``"connection.sync_completed"`` or ``"assets.updated"``.
        created_at: When Makini created the event (timezone-aware), or None (legacy payloads).
        connection_id: The Makini connection the event is about, or None (legacy payloads).
        data: The event's ``data`` object as sent, unknown fields included.
        keys: The record keys of an entity event (the ``body`` list), else empty.

    .. versionadded:: 0.1.0
    """

    id: str
    type: str
    created_at: datetime | None = None
    connection_id: str | None = None
    data: Mapping[str, object] = attrs.field(factory=dict, repr=False)
    keys: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class SyncCompletedEvent(WebhookEvent):
    """``connection.sync_completed``: a sync finished.

    Attributes:
        entities: The entities that were synced.
        counts: Records per entity.
        finished_at: When the sync finished, or None.

    .. versionadded:: 0.1.0
    """

    entities: tuple[str, ...] = ()
    counts: Mapping[str, int] = attrs.field(factory=dict)
    finished_at: datetime | None = None


@attrs.frozen(kw_only=True)
class SyncFailedEvent(WebhookEvent):
    """``connection.sync_failed``: a sync ended in an error.

    Attributes:
        code: Makini's error code, e.g. ``"SYSTEM_UNAVAILABLE"``, or None.
        message: A human-readable message, or None.

    .. versionadded:: 0.1.0
    """

    code: str | None = None
    message: str | None = None


@attrs.frozen(kw_only=True)
class ReauthorizationRequiredEvent(WebhookEvent):
    """``connection.reauthorization_required``: the customer must reconnect (Makini Link).

    Attributes:
        reason: Why, when Makini says (e.g. ``"credentials_changed"``), or None.

    .. versionadded:: 0.1.0
    """

    reason: str | None = None


@attrs.frozen(kw_only=True)
class StatusChangedEvent(WebhookEvent):
    """``connection.status_changed``: the connection went online, offline, inactive...

    Attributes:
        previous: The status before, or None.
        current: The status now (``online``, ``offline`` or a connection status), or None.

    .. versionadded:: 0.1.0
    """

    previous: str | None = None
    current: str | None = None

    @property
    def healthy(self) -> bool:
        """True when the current status means the connection works (``active``/``online``)."""
        return self.current in HEALTHY_STATUSES


@attrs.frozen(kw_only=True)
class SystemErrorEvent(WebhookEvent):
    """``system.error``: Makini reports an error on its side.

    Attributes:
        code: The error code, or None.
        message: A human-readable message, or None.

    .. versionadded:: 0.1.0
    """

    code: str | None = None
    message: str | None = None


@attrs.frozen(kw_only=True)
class EntityEvent(WebhookEvent):
    """``<entity>.inserted|updated|deleted``: records changed; ``keys`` says which.

    Attributes:
        entity: The entity, e.g. ``"work-orders"`` or ``"assets"``.
        action: ``"inserted"``, ``"updated"`` or ``"deleted"``.

    .. versionadded:: 0.1.0
    """

    entity: str
    action: str


@attrs.frozen(kw_only=True)
class FlowEvent(WebhookEvent):
    """``flow.<name>``: a custom event sent by a Makini Flow; its payload is in ``data``.

    Attributes:
        name: The part after ``flow.``.

    .. versionadded:: 0.1.0
    """

    name: str


@attrs.frozen(kw_only=True)
class UnknownEvent(WebhookEvent):
    """An event type this version does not know; ``data`` and ``keys`` keep what was sent.

    .. versionadded:: 0.1.0
    """


_BY_TYPE: Final[Mapping[str, type[WebhookEvent]]] = {
    "connection.sync_completed": SyncCompletedEvent,
    "connection.sync_failed": SyncFailedEvent,
    "connection.reauthorization_required": ReauthorizationRequiredEvent,
    "connection.status_changed": StatusChangedEvent,
    "system.error": SystemErrorEvent,
}
_BASE_FIELDS: Final = frozenset(a.name for a in attrs.fields(WebhookEvent))
_NAME_FIELDS: Final = frozenset({"entity", "action", "name"})


def _data_fields(cls: type[WebhookEvent]) -> tuple[str, ...]:
    """The fields of ``cls`` read from the envelope's ``data`` object."""
    return tuple(a.name for a in attrs.fields(cls) if a.name not in _BASE_FIELDS | _NAME_FIELDS)


_DATA_FIELDS: Final[Mapping[type[WebhookEvent], tuple[str, ...]]] = {
    cls: _data_fields(cls) for cls in (*_BY_TYPE.values(), EntityEvent, FlowEvent, UnknownEvent)
}


def event_class(event_type: str) -> tuple[type[WebhookEvent], dict[str, str]]:
    """The class for an event name, and the fields the name itself supplies."""
    cls = _BY_TYPE.get(event_type)
    if cls is not None:
        return cls, {}
    prefix, dot, rest = event_type.partition(".")
    if prefix == "flow" and dot and rest:
        return FlowEvent, {"name": rest}
    entity, dot, action = event_type.rpartition(".")
    if dot and entity and action in ENTITY_ACTIONS and prefix not in _RESERVED_PREFIXES:
        return EntityEvent, {"entity": entity, "action": action}
    return UnknownEvent, {}


def _fail(message: str, *, reason: str = "malformed_payload") -> WebhookPayloadError:
    return WebhookPayloadError(message, reason=reason)


def _optional_name(envelope: Mapping[str, object], field: str) -> str | None:
    value = envelope.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise _fail(f"$.{field} must be a non-empty string of at most {_MAX_NAME} characters.")
    return value


def _data_and_keys(envelope: Mapping[str, object]) -> tuple[Mapping[str, object], list[object]]:
    data = envelope.get("data")
    body = envelope.get("body")
    if isinstance(body, Mapping) and data is None:
        data, body = body, None  # a legacy payload carrying an object in "body"
    if data is None:
        data = {}
    elif not isinstance(data, Mapping):
        raise _fail("$.data must be an object.")
    if body is None:
        body = []
    elif not isinstance(body, list):
        raise _fail("$.body must be a list of record keys.")
    return data, body


def from_envelope(
    envelope: Mapping[str, object], *, event_id: str | None = None, raw_body: bytes = b""
) -> WebhookEvent:
    """Build the typed event for a decoded envelope (see `parse`).

    Raises:
        WebhookPayloadError: The envelope is not a webhook event.
    """
    event_type = _optional_name(envelope, "event")
    if event_type is None:
        raise _fail("$.event is missing; this is not a webhook event.")
    body_id = _optional_name(envelope, "id")
    if event_id is not None and not 0 < len(event_id) <= _MAX_NAME:
        raise _fail(f"The X-Webhook-Id header must hold 1 to {_MAX_NAME} characters.")
    if event_id is not None and body_id is not None and event_id != body_id:
        raise _fail("The X-Webhook-Id header and the body's id differ.", reason="id_mismatch")
    identifier = body_id or event_id
    if identifier is None:
        identifier = "sha256:" + hashlib.sha256(raw_body).hexdigest()[:40]
    data, body = _data_and_keys(envelope)
    cls, from_name = event_class(event_type)
    fields: dict[str, object] = {
        "id": identifier,
        "type": event_type,
        "created_at": envelope.get("created_at"),
        "connection_id": envelope.get("connection_id"),
        "data": data,
        "keys": body,
        **from_name,
    }
    for name in _DATA_FIELDS[cls]:
        if name in data:
            fields[name] = data[name]
    try:
        return structure(fields, cls)
    except StructureError as exc:
        data_names = _DATA_FIELDS[cls]
        paths = tuple(_envelope_path(path, data_names) for path in exc.paths)
        raise WebhookPayloadError(
            "The event's fields have the wrong types: " + "; ".join(paths), paths=paths
        ) from None


def _envelope_path(path: str, data_names: tuple[str, ...]) -> str:
    """Rewrite a converter path (``... @ $.counts['a']``) to the envelope's field names."""
    message, at, where = path.rpartition(" @ ")
    if not at:
        return path
    field = where.removeprefix("$.").split("[", 1)[0].split(".", 1)[0]
    renamed = {"type": "$.event", "keys": "$.body"}.get(field)
    if renamed is not None:
        where = renamed + where.removeprefix(f"$.{field}")
    elif field in data_names:
        where = "$.data." + where.removeprefix("$.")
    return f"{message} @ {where}"


def parse(raw_body: bytes | bytearray | memoryview, *, event_id: str | None = None) -> WebhookEvent:
    """Decode a delivery's raw body into a typed event. Verify the signature first.

    Known event names give their own class (`SyncCompletedEvent`, `EntityEvent`, ...); any
    other name gives an `UnknownEvent` that keeps ``data`` and ``keys``. Unknown fields are
    ignored but stay in ``data``.

    Args:
        raw_body: The request body as received.
        event_id: The ``X-Webhook-Id`` header, if any: it must equal the body's ``id``, and
            names a legacy payload that has none.

    Returns:
        The event.

    Raises:
        WebhookPayloadError: The body is not UTF-8 JSON, not an object, or not a webhook event
            (``paths`` says which fields are wrong).
        TypeError: ``raw_body`` is not bytes.

    .. versionadded:: 0.1.0
    """
    body = _body_bytes(raw_body)
    try:
        decoded = _json.loads(body)
    except (ValueError, RecursionError):
        raise _fail("The body is not valid UTF-8 JSON.", reason="invalid_json") from None
    if not isinstance(decoded, dict):
        raise _fail("The body is not a JSON object.")
    return from_envelope(decoded, event_id=event_id, raw_body=body)


# Fail at import, not at the first delivery, if a class cannot be structured.
for _cls in _DATA_FIELDS:
    converter.get_structure_hook(_cls)
