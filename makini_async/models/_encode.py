"""Encoding write bodies: only the fields the caller set, under their camelCase wire names.

Writes are strict: an ``...Input`` model is encoded exactly as it is, with no coercion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, cast

import attrs

from ._base import UNSET, Model, Writable

if TYPE_CHECKING:
    from makini_async.typing import JSON

__all__ = ["camel", "encode", "encode_model"]


def camel(name: str) -> str:
    """Turn a snake_case attribute name into its camelCase wire name."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _encode_value(value: object) -> JSON:  # noqa: PLR0911 - one return per type
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        text = aware.astimezone(UTC).isoformat()
        return text.removesuffix("+00:00") + "Z"
    if isinstance(value, Decimal):
        # Integral values go as JSON integers (Laravel's `integer` rule refuses "90"); others as
        # strings, which keep every digit (Makini types amounts as strings).
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, Enum):
        return cast("JSON", value.value)
    if isinstance(value, Writable):
        # Not a Model (no raw dict to send back): only its set fields go, as for the parent.
        return encode(value)
    if isinstance(value, Mapping):
        return {str(k): _encode_value(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_encode_value(v) for v in value]
    if isinstance(value, Model):
        return encode_model(value)
    return cast("JSON", value)


def encode(body: Writable) -> dict[str, JSON]:
    """Turn a write body into its JSON object: only the fields set, under their wire names.

    Nested write bodies (in a field, or in a list in a field) are encoded the same way.

    Returns:
        The JSON object; ``extra`` is merged in last.
    """
    out: dict[str, JSON] = {}
    for field in attrs.fields(type(body)):
        if field.name == "extra":
            continue
        value = getattr(body, field.name)
        if value is UNSET:
            continue
        out[camel(field.name)] = _encode_value(value)
    out.update(body.extra)
    return out


def encode_model(record: Model) -> dict[str, JSON]:
    """Turn a decoded model back into JSON: its raw dict (what the server sent)."""
    return dict(record.raw)
