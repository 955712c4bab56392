"""What each record field holds on the wire, read once from the OpenAPI types for data and writes.

Makini's OpenAPI files type nearly every property as a string, and some numbers and timestamps
as a bare ``object``. The client's typed models (``makini_async/models/_generate.py``) read
them by name, as Makini's own naming does: ``...At``/``...Date`` hold timestamps,
``...Quantity``/``...Value``/``...Time`` numbers carried as strings, ``...Key`` one record key and
``...Keys`` a list of keys. `wire_of` makes the same reading for the sandbox, so that what it
generates and what it stores after a write decode with the client; `coerce` checks a written
value against its `Wire` and returns the value as it is stored (and read back).

What a write may send, per wire (``""`` counts as ``null``, as Laravel's
``ConvertEmptyStringsToNull`` makes it):

- ``TEXT``/``KEY``: a string. ``STRINGS``: a list of strings, or one string (a list of one).
- ``TIME``: an ISO-8601 date or date-time, stored as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC).
- ``DECIMAL``: a finite number or numeric string, stored as a numeric string (``10`` → ``"10"``),
  as the records carry these fields. ``COUNT`` likewise, and integral.
- ``NUMBER``/``INTEGER``: a finite number (or numeric string), stored as a JSON number within
  64 bits; ``INTEGER`` must be integral.
- ``BOOLEAN``: ``true``/``false``, ``0``/``1`` or ``"0"``/``"1"``/``"true"``/``"false"``.
- ``OBJECT``: an object of the field's schema (each known property checked; other properties,
  custom fields, kept as sent). ``OBJECTS``: a list of those, or one object (a list of one).
- ``JSON_OBJECT``/``JSON_LIST``/``JSON``: free-form JSON of that shape, integers within 64 bits.
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, TypeAlias

from makini_async._naming import is_numeric_name
from makini_async.sandbox._spec import Field, Spec

__all__ = [
    "FieldTypes",
    "Wire",
    "coerce",
    "is_numeric_field",
    "is_time_field",
    "iso",
    "parse_iso",
    "rule_wire",
    "wire_of",
]

_FMT: Final = "%Y-%m-%dT%H:%M:%SZ"
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1
_NUMERIC: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGRAL: Final = re.compile(r"[+-]?[0-9]+")
#: Past this depth a nested value is not walked further (bodies are capped at 64 levels).
_MAX_DEPTH: Final = 64
# True == 1 and False == 0, so these sets take the integers too.
_TRUE: Final = frozenset({True, "1", "true"})
_FALSE: Final = frozenset({False, "0", "false"})


class Wire(enum.Enum):
    """The JSON a field holds in records (and takes in writes)."""

    KEY = "key"
    STRINGS = "strings"
    TEXT = "text"
    TIME = "time"
    DECIMAL = "decimal"
    COUNT = "count"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    OBJECT = "object"
    OBJECTS = "objects"
    JSON_OBJECT = "json-object"
    JSON_LIST = "json-list"
    JSON = "json"

    @property
    def is_list(self) -> bool:
        """Whether records hold a list here (``[]`` when empty, never ``null``)."""
        return self in {Wire.STRINGS, Wire.OBJECTS, Wire.JSON_LIST}


def iso(epoch: float) -> str:
    """Format Unix time as the API's ISO-8601 UTC timestamp (seconds precision)."""
    return time.strftime(_FMT, time.gmtime(epoch))


def parse_iso(text: str) -> str | None:
    """Normalise an ISO-8601 date or date-time to the API's canonical UTC form, or ``None``."""
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # isoformat pads the year to four digits, which strftime does not do below 1000.
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    except (ValueError, OverflowError):  # OverflowError: an offset moves it past year 1 or 9999
        return None


def is_time_field(name: str) -> bool:
    """Tell whether a field holds a timestamp (``...At``, ``...Date``, ``..._at``, ``date``)."""
    return name.endswith(("At", "Date", "_at")) or name == "date"


def is_numeric_field(name: str) -> bool:
    """Tell whether a field the files type as a string holds a number, by Makini's naming."""
    return is_numeric_name(name)


def wire_of(field: Field, nested: Callable[[str], bool]) -> Wire:  # noqa: C901, PLR0911 - a decision table
    """Read what a schema property holds, in the order the client's models decide it.

    Args:
        field: The property as ``_spec.json`` declares it.
        nested: Tells whether a schema name has properties (an object the sandbox can build).

    Returns:
        The property's wire type.
    """
    name, kind, detail = field.name, field.kind, field.detail
    if name == "materialCount":
        return Wire.COUNT
    if name.endswith("Key"):
        # A few ...Key fields are declared arrays (SupplyOption.uomKey): they hold keys.
        return Wire.STRINGS if kind == "array" else Wire.KEY
    if name.endswith("Keys") or name == "checkList":
        return Wire.STRINGS
    if kind == "array" and nested(detail):
        return Wire.OBJECTS
    if kind == "object" and nested(detail):
        return Wire.OBJECT
    if kind == "boolean":
        return Wire.BOOLEAN
    if kind == "array":
        return Wire.JSON_LIST
    if is_time_field(name):
        return Wire.TIME
    if kind == "integer":
        return Wire.INTEGER
    if kind == "number":
        return Wire.NUMBER
    if is_numeric_field(name):
        return Wire.DECIMAL
    if kind == "object":
        return Wire.JSON_OBJECT
    return Wire.TEXT


def rule_wire(name: str, rule: str) -> Wire:  # noqa: PLR0911 - a decision table
    """Read what a write-body field takes from its Laravel-style rule (e.g. ``numeric|required``).

    Used for the body fields a record's schema does not declare.
    """
    parts = set(rule.split("|"))
    if name.endswith("Key"):
        return Wire.KEY
    if name.endswith("Keys") or name == "checkList":
        return Wire.STRINGS
    if "boolean" in parts:
        return Wire.BOOLEAN
    if "array" in parts:
        return Wire.JSON_LIST
    if "object" in parts:
        return Wire.JSON_OBJECT
    if "date" in parts or is_time_field(name):
        return Wire.TIME
    if "integer" in parts:
        return Wire.INTEGER
    if parts & {"numeric", "number"} or is_numeric_field(name):
        return Wire.DECIMAL
    return Wire.TEXT


_Nested: TypeAlias = Callable[[str], Sequence[tuple[Field, Wire]]]
_Errors: TypeAlias = dict[str, list[str]]


class FieldTypes:
    """The wire type of every property of every schema, read once per schema.

    Args:
        spec: The route and schema table.
    """

    def __init__(self, spec: Spec) -> None:
        self._spec = spec
        self._typed: dict[tuple[str, str], tuple[tuple[Field, Wire], ...]] = {}

    def fields(self, domain: str, schema: str) -> tuple[tuple[Field, Wire], ...]:
        """Return the properties of ``schema`` in ``domain`` with their wire types."""
        found = self._typed.get((domain, schema))
        if found is None:
            found = tuple(
                (field, wire_of(field, lambda name: bool(self._spec.fields(domain, name))))
                for field in self._spec.fields(domain, schema)
            )
            self._typed[domain, schema] = found
        return found

    def nested(self, domain: str) -> _Nested:
        """Return a lookup of the typed properties of ``domain``'s schemas (for `coerce`)."""
        return lambda schema: self.fields(domain, schema)


def coerce(
    wire: Wire, value: object, name: str, *, detail: str = "", nested: _Nested | None = None
) -> tuple[object, _Errors]:
    """Check a written value against its wire type and return it as records hold it.

    Args:
        wire: The field's wire type.
        value: The value the write sent.
        name: The field's name (its dotted path for a nested field), for the messages.
        detail: The schema of an ``OBJECT``/``OBJECTS`` field.
        nested: Returns the properties (with their wire types) of a schema.

    Returns:
        ``(stored value, errors)``: errors map field paths to messages; when there are any,
        the stored value is meaningless.
    """
    if value is None or value == "":
        return ([] if wire.is_list else None), {}
    if wire in {Wire.OBJECT, Wire.OBJECTS}:
        return _objects(wire, value, name, detail, nested)
    stored, message = _SCALARS[wire](value, name)
    return stored, ({name: [message]} if message else {})


def _objects(
    wire: Wire, value: object, name: str, detail: str, nested: _Nested | None
) -> tuple[object, _Errors]:
    fields = nested(detail) if nested else ()
    if wire is Wire.OBJECT:
        if not isinstance(value, dict):
            return None, {name: [f"The {name} field must be an object."]}
        return _object(value, name, fields, nested)
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return [], {name: [f"The {name} field must be an object or a list of objects."]}
    cleaned: list[object] = []
    errors: _Errors = {}
    for index, item in enumerate(items):
        stored, found = _object(item, f"{name}.{index}", fields, nested)
        cleaned.append(stored)
        errors.update(found)
    return cleaned, errors


def _object(
    value: Mapping[str, object],
    path: str,
    fields: Sequence[tuple[Field, Wire]],
    nested: _Nested | None,
) -> tuple[dict[str, object], _Errors]:
    typed = {field.name: (field, wire) for field, wire in fields}
    cleaned: dict[str, object] = {}
    errors: _Errors = {}
    for name, item in value.items():
        if name in typed:
            field, wire = typed[name]
            stored, found = coerce(wire, item, f"{path}.{name}", detail=field.detail, nested=nested)
        else:  # a custom field of the nested object: kept as sent, as the models keep it
            stored, message = _json(item, f"{path}.{name}")
            found = {f"{path}.{name}": [message]} if message else {}
        cleaned[name] = stored
        errors.update(found)
    return cleaned, errors


def _text(value: object, name: str) -> tuple[object, str | None]:
    if isinstance(value, str):
        return value, None
    return None, f"The {name} field must be a string."


def _strings(value: object, name: str) -> tuple[object, str | None]:
    if isinstance(value, str):
        return [value], None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value), None
    return [], f"The {name} field must be an array of strings."


def _time(value: object, name: str) -> tuple[object, str | None]:
    stamp = parse_iso(value) if isinstance(value, str) else None
    if stamp is None:
        return None, f"The {name} field must be a valid date."
    return stamp, None


def _number_text(value: object) -> str | None:
    """The numeric string of a finite JSON number or numeric string, or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str) and _NUMERIC.fullmatch(text := value.strip()):
        return text
    return None


def _decimal(value: object, name: str) -> tuple[object, str | None]:
    text = _number_text(value)
    if text is None:
        return None, f"The {name} field must be a number."
    return text, None


def _count(value: object, name: str) -> tuple[object, str | None]:
    number, message = _integer(value, name)
    return (None if message else str(number)), message


def _number(value: object, name: str) -> tuple[object, str | None]:
    text = _number_text(value)
    if text is None:
        return None, f"The {name} field must be a number."
    if _INTEGRAL.fullmatch(text):
        return _in_range(int(text), name)
    number = float(text)
    if not math.isfinite(number):
        return None, f"The {name} field must be a finite number."
    return number, None


def _integer(value: object, name: str) -> tuple[object, str | None]:
    text = _number_text(value)
    if text is not None and isinstance(value, float) and value.is_integer():
        text = str(int(value))
    if text is None or not _INTEGRAL.fullmatch(text):
        return None, f"The {name} field must be an integer."
    return _in_range(int(text), name)


def _in_range(number: int, name: str) -> tuple[object, str | None]:
    if _INT_MIN <= number <= _INT_MAX:
        return number, None
    return None, f"The {name} field must be between {_INT_MIN} and {_INT_MAX}."


def _boolean(value: object, name: str) -> tuple[object, str | None]:
    if isinstance(value, bool | int | str):
        if value in _TRUE:
            return True, None
        if value in _FALSE:
            return False, None
    return None, f"The {name} field must be true or false."


def _json_object(value: object, name: str) -> tuple[object, str | None]:
    if not isinstance(value, dict):
        return None, f"The {name} field must be an object."
    return _json(value, name)


def _json_list(value: object, name: str) -> tuple[object, str | None]:
    if not isinstance(value, list):
        return [], f"The {name} field must be an array."
    return _json(value, name)


def _json(value: object, name: str) -> tuple[object, str | None]:
    if _fits(value, 0):
        return value, None
    return None, f"The {name} field must hold integers between {_INT_MIN} and {_INT_MAX}."


def _fits(value: object, depth: int) -> bool:
    """Whether every integer in ``value`` fits in 64 bits (what the JSON encoder can write)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _INT_MIN <= value <= _INT_MAX
    if depth > _MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return all(_fits(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return all(_fits(item, depth + 1) for item in value)
    return True


_SCALARS: Final[dict[Wire, Callable[[object, str], tuple[object, str | None]]]] = {
    Wire.KEY: _text,
    Wire.TEXT: _text,
    Wire.STRINGS: _strings,
    Wire.TIME: _time,
    Wire.DECIMAL: _decimal,
    Wire.COUNT: _count,
    Wire.NUMBER: _number,
    Wire.INTEGER: _integer,
    Wire.BOOLEAN: _boolean,
    Wire.JSON_OBJECT: _json_object,
    Wire.JSON_LIST: _json_list,
    Wire.JSON: _json,
}
