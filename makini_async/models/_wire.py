"""The wire side of the models: camelCase names, decoding rules and generated structure functions.

This is the only module of the models that knows JSON. For every model class it writes structure
functions (Python source compiled once, at first use) that read each known field, convert it
inline only when the record carries a value, and set the slots directly: no per-record
reflection and no per-field dispatch. Records of one endpoint share a key layout, so each layout
seen (up to ``_MAX_SHAPES`` per model) gets its own function that unpacks ``d.values()`` by
position instead of looking every key up, and knows its unknown keys in advance; any other
layout takes the generic function, which looks keys up with ``dict.get``. The first layout
seen is compiled into the structure function itself (one call per record, not two). Records are
built on a mutable twin of the frozen class (`_builder`, a subclass that adds no slot) with plain
attribute stores, then turned into the class by assigning ``__class__``; ``raw`` keeps the
decoded dict and wraps it read-only on access. The functions are also registered as hooks on
the shared cattrs converter, so that ``converter.structure(data, WorkOrder)`` takes the same
path.

The decoding rules (the lossless coercions) are the table in the docstring of
`makini_async.models`. These functions are strict: a value that does not fit raises
`RecordDecodeError` naming the path, which the resources turn into `ResponseDecodeError`;
`_tolerant` builds the tolerant decoders on them, and `_fast` the msgspec path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeVar, cast

import attrs
import cattrs
from cattrs.errors import ClassValidationError

from makini_async._converter import converter
from makini_async._json import gc_paused

from ._base import EMPTY, Entity, Model, Writable
from ._encode import camel, encode, encode_model

if TYPE_CHECKING:
    from makini_async.typing import JSON

__all__ = [
    "BOOKKEEPING",
    "RecordDecodeError",
    "camel",
    "compile_source",
    "decode",
    "decode_list",
    "decoded_fields",
    "encode",
    "encode_model",
    "environment",
    "field_source",
    "record_tail",
    "register",
    "resolve_type",
    "store",
    "structure_function",
    "wire_name",
    "wire_names",
]

M = TypeVar("M", bound=Model)
_Structure = Callable[[object], object]

#: Wire names that are not the camelCase of the attribute (v4 standard fields first).
_STANDARD_WIRE: Final[dict[str, tuple[str, ...]]] = {
    "id_value": ("_idValue",),
    "display_value": ("_displayValue",),
    "implements": ("_implements",),
    "created_at": ("createdAt", "_createdAt"),
    "updated_at": ("updatedAt", "_updatedAt"),
    "deleted_at": ("deletedAt", "_deletedAt"),
}
#: Classes whose wire names are already snake_case (the system API).
_SNAKE_CASE: set[type] = set()
_MISSING: Final = object()
#: Key layouts compiled per model; records in other layouts take the generic path.
_MAX_SHAPES: Final = 16
_MAX_TIMESTAMP: Final = 64
#: Lists at least this long are structured with the garbage collector paused.
_BULK_RECORDS: Final = 64
_FRACTION: Final = re.compile(r"([.,])(\d+)")
_LONG_FRACTION: Final = re.compile(r"[.,]\d{7}").search
_ONE_SECOND: Final = 1_000_000
#: ``/Date(1405344000000)/`` or ``/Date(1405344000000+0200)/`` (the milliseconds are UTC).
_MS_DATE: Final = re.compile(r"/Date\((-?\d{1,15})(?:[+-]\d{4})?\)/")
#: JSON numbers in a timestamp field: Unix seconds from 2001-09-09, milliseconds from 1973-03-03.
_EPOCH_SECONDS: Final = 1e9
_EPOCH_MILLISECONDS: Final = 1e11
_EPOCH_END: Final = 1e14
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class RecordDecodeError(ValueError):
    """A value of the wrong type at ``path`` (``.dueAt``, ``[3].tasks[0].title``...)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{message} at ${path}")
        self.path = path
        self.message = message

    def under(self, prefix: str) -> RecordDecodeError:
        """The same problem, one level further down from the root."""
        return RecordDecodeError(prefix + self.path, self.message)


def wire_name(cls: type, attribute: str) -> str:
    """The (first) wire name of ``cls.attribute``."""
    if cls in _SNAKE_CASE:
        return attribute
    names = _STANDARD_WIRE.get(attribute) if issubclass(cls, Entity) else None
    return names[0] if names else camel(attribute)


def wire_names(cls: type, attribute: str) -> tuple[str, ...]:
    """Every wire name of ``cls.attribute``, in the order decoding reads them.

    Args:
        cls: A model class, e.g. ``WorkOrder``.
        attribute: One of its attributes, e.g. ``updated_at``.

    Returns:
        The names, the v3 one first: ``("updatedAt", "_updatedAt")``, ``("key",)``.

    .. versionadded:: 0.1.0
    """
    return _wire_names(cls, attribute)


def register_snake_case(cls: type) -> None:
    """Declare that ``cls`` comes from the system API, whose wire names are snake_case."""
    _SNAKE_CASE.add(cls)


# -- value converters (called only for values a record carries, never for None) ---------------


def _str(value: object, path: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # source systems send numeric ids
    raise RecordDecodeError(path, "expected a string")


def _keys(value: object, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if value == {}:
        return ()
    if isinstance(value, list | tuple):
        out = tuple(value)
        for index, item in enumerate(out):
            if item.__class__ is not str:
                if isinstance(item, int) and not isinstance(item, bool):
                    return tuple(str(i) if isinstance(i, int) else i for i in out)
                raise RecordDecodeError(f"{path}[{index}]", "expected a string")
        return out
    raise RecordDecodeError(path, "expected a list of strings")


def parse_timestamp(value: object, path: str) -> datetime | None:
    """Parse a timestamp into an aware datetime (no offset: UTC).

    Any ISO-8601 form, ``/Date(ms)/`` (Microsoft JSON, SAP OData v2), or a JSON number of Unix
    seconds (``1e9 <= n < 1e11``) or milliseconds (``1e11 <= n < 1e14``); ``""`` and ``{}``
    read as unset.
    """
    if isinstance(value, str):
        parsed: datetime | None
        if _LONG_FRACTION(value) is not None:  # fromisoformat would cut the digits off
            parsed = _lenient_timestamp(value, path)
        else:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = _lenient_timestamp(value, path)
        if parsed is None or parsed.tzinfo is not None:
            return parsed
        return parsed.replace(tzinfo=UTC)
    if value == {}:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if _EPOCH_SECONDS <= value < _EPOCH_MILLISECONDS:
            return _EPOCH + timedelta(seconds=value)
        if _EPOCH_MILLISECONDS <= value < _EPOCH_END:
            return _EPOCH + timedelta(milliseconds=value)
    raise RecordDecodeError(path, "expected an ISO-8601 timestamp")


def _lenient_timestamp(text: str, path: str) -> datetime | None:
    stripped = text.strip()
    if not stripped:
        return None
    if match := _MS_DATE.fullmatch(stripped):
        return _EPOCH + timedelta(milliseconds=int(match.group(1)))
    if len(stripped) <= _MAX_TIMESTAMP:
        # Forms fromisoformat refuses: lower-case t/z, a decimal comma; and more than six
        # fraction digits, which are rounded to the microsecond (half up, on the seventh digit,
        # as msgspec does, so that both decoders agree).
        carry: list[bool] = []

        def micro(match: re.Match[str]) -> str:
            digits = match.group(2)
            value = int(digits[:6].ljust(6, "0")) + (digits[6:7] >= "5")
            if value == _ONE_SECOND:
                carry.append(True)
                value = 0
            return f".{value:06d}"

        fixed = _FRACTION.sub(micro, stripped.upper(), count=1)
        if fixed.endswith("Z"):
            fixed = fixed[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(fixed)
            return parsed + timedelta(seconds=1) if carry else parsed
        except (ValueError, OverflowError):
            pass
    raise RecordDecodeError(path, "expected an ISO-8601 timestamp")


def _num(value: object, path: str) -> Decimal | None:
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise RecordDecodeError(path, "expected a number") from None
        if number.is_finite():
            return number
        raise RecordDecodeError(path, "expected a finite number")
    if isinstance(value, bool):
        raise RecordDecodeError(path, "expected a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        number = Decimal(repr(value))
        if number.is_finite():
            return number
        raise RecordDecodeError(path, "expected a finite number")
    if value == {}:
        return None
    raise RecordDecodeError(path, "expected a number")


def _int(value: object, path: str) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _num(value, path)
    if number is None:
        return None
    if number == number.to_integral_value():
        return int(number)
    raise RecordDecodeError(path, "expected an integer")


_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})


def _bool(value: object, path: str) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        if not low:
            return None
    if value in (0, 1) and isinstance(value, int):
        return bool(value)
    if value == {}:
        return None
    raise RecordDecodeError(path, "expected a boolean")


def _open(value: object, path: str) -> str:
    """A value of an open enumeration that is not a string: only an integer code is kept."""
    return _str(value, path)


def _nested(value: object, path: str, structure: _Structure) -> object:
    if value.__class__ is not dict:
        raise RecordDecodeError(path, "expected an object")
    try:
        return structure(value)
    except RecordDecodeError as exc:
        raise exc.under(path) from None


def _nested_list(value: object, path: str, structure: _Structure) -> tuple[object, ...]:
    if value.__class__ is not list:
        if value.__class__ is dict:  # {} reads as unset, one object as a list of one
            return (_nested(value, f"{path}[0]", structure),) if value else ()
        raise RecordDecodeError(path, "expected a list")
    items = cast("list[object]", value)
    try:
        return tuple([structure(item) for item in items])
    except RecordDecodeError:
        pass
    for index, item in enumerate(items):  # the slow path only finds which item failed
        try:
            structure(item)
        except RecordDecodeError as exc:
            raise exc.under(f"{path}[{index}]") from None
    raise AssertionError  # pragma: no cover - the fast path failed, so one item fails


# -- generated structure functions -----------------------------------------------------------

_SIMPLE: Final[dict[str, tuple[str, str]]] = {
    # annotation → (how the value is checked inline, converter used otherwise)
    "str | None": ("v.__class__ is not str", "_str"),
    "Decimal | None": ("True", "_num"),
    "int | None": ("v.__class__ is not int", "_int"),
    "bool | None": ("v.__class__ is not bool", "_bool"),
}
_INLINE: Final[dict[str, str]] = {
    # Converted inline (``{path}`` is the field's path), the common case first; the converter
    # functions handle the rest.
    "datetime | None": (
        # fromisoformat takes the common forms (but cuts a fraction of more than six digits,
        # which `parse_timestamp` rounds); {} reads as unset.
        "    if v is not None:\n"
        "        if v.__class__ is str:\n"
        "            try:\n                t = _fromiso(v)\n"
        "            except ValueError:\n"
        "                t = _dt(v, {path})\n"
        "            else:\n"
        "                if len(v) > 26 and _long_fraction(v) is not None:\n"
        "                    t = _dt(v, {path})\n"
        "                elif t.tzinfo is None:\n                    t = t.replace(tzinfo=_UTC)\n"
        "            v = t\n"
        "        elif v.__class__ is dict and not v:\n            v = None\n"
        "        else:\n            v = _dt(v, {path})"
    ),
    "Decimal | None": (
        # A plain numeric string (no NaN/Infinity) is the common case; {} reads as unset.
        "    if v is not None:\n"
        "        if v.__class__ is str and 'n' not in v and 'N' not in v:\n"
        "            try:\n                v = _Decimal(v)\n"
        "            except _InvalidOperation:\n                v = _num(v, {path})\n"
        "        elif v.__class__ is dict and not v:\n            v = None\n"
        "        else:\n            v = _num(v, {path})"
    ),
    "int | None": (
        # Numeric strings of ASCII digits are the common non-int case.
        "    if v.__class__ is not int and v is not None:\n"
        "        if v.__class__ is str and v.isdigit() and v.isascii():\n"
        "            v = _int_of(v)\n"
        "        else:\n            v = _int(v, {path})"
    ),
    "tuple[str, ...]": (
        "    if v is None or v == _EMPTY_LIST:\n        v = ()\n"
        "    elif v.__class__ is list and _only_str(map(_type, v)):\n        v = tuple(v)\n"
        "    elif v.__class__ is str:\n        v = (v,)\n"
        "    else:\n        v = _keys(v, {path})"
    ),
}
_NESTED_ONE: Final = re.compile(r"^(\w+) \| None$")
_OPEN_ENUM: Final = re.compile(r"^(\w+) \| str \| None$")
_NESTED_MANY: Final = re.compile(r"^tuple\[(\w+), \.\.\.\]$")
_functions: dict[type, _Structure] = {}


def resolve_type(cls: type, name: str) -> type:
    """The model or enum class named ``name`` in the module of ``cls``."""
    module = __import__(cls.__module__, fromlist=["_"])
    found = getattr(module, name, None)
    if not (isinstance(found, type) and (attrs.has(found) or issubclass(found, Enum))):
        raise TypeError(f"{cls.__name__}: cannot resolve the type {name!r}")
    return found


def _wire_names(cls: type, name: str) -> tuple[str, ...]:
    if cls in _SNAKE_CASE:
        return (name,)
    if issubclass(cls, Entity) and name in _STANDARD_WIRE:
        return _STANDARD_WIRE[name]
    return (camel(name),)


def _by_get(name: str) -> str:
    return f"get({name!r})"


def field_source(
    cls: type,
    field: attrs.Attribute[object],
    env: dict[str, object],
    source: Callable[[str], str] = _by_get,
    *,
    direct: bool = False,
    nested: Callable[[type], _Structure] | None = None,
) -> list[str]:
    """The lines that read, convert and set one field; ``source`` says where a wire name is.

    ``direct`` sets the slot with a plain attribute store (on a `_builder` instance) instead of
    calling its descriptor. ``nested`` gives the function for a nested model's objects (default:
    its `structure_function`). The store is always the last line.
    """
    nested_function = nested if nested is not None else structure_function
    annotation = str(field.type)  # the generated models keep annotations as strings
    names = _wire_names(cls, field.name)
    path = "." + names[0]
    first, *others = sources = [source(name) for name in names]
    if all(text == "None" for text in sources):  # a layout without the field: nothing to read
        empty = annotation == "tuple[str, ...]" or _NESTED_MANY.match(annotation)
        return [store(field.name, "()" if empty else "None", direct=direct)]
    lines = [f"    v = {first}"]
    lines += [f"    if v is None:\n        v = {other}" for other in others if other != "None"]
    if annotation in _INLINE:
        lines.append(_INLINE[annotation].format(path=repr(path)))
    elif annotation in _SIMPLE:
        check, function = _SIMPLE[annotation]
        # The expected type is the common case: test it first, None second.
        condition = "v is not None" if check == "True" else f"{check} and v is not None"
        lines.append(f"    if {condition}:\n        v = {function}(v, {path!r})")
        if annotation.startswith("tuple["):
            lines.append("    else:\n        v = ()")
    elif annotation == "JSON":
        pass
    elif match := _OPEN_ENUM.match(annotation):
        target = resolve_type(cls, match.group(1))
        env[f"_map_{target.__name__}"] = {member.value: member for member in target}  # type: ignore[attr-defined]
        lines.append(
            f"    if v is not None:\n        v = _map_{target.__name__}.get(v, v)"
            f" if v.__class__ is str else _open(v, {path!r})"
        )
    elif match := _NESTED_MANY.match(annotation):
        function = f"_f_{match.group(1)}"
        env[function] = nested_function(resolve_type(cls, match.group(1)))
        lines.append(
            "    if v.__class__ is list and v:\n"
            f"        try:\n            v = tuple(map({function}, v))\n"
            "        except RecordDecodeError:\n"
            f"            v = _nested_list(v, {path!r}, {function})\n"
            "    elif v is None or v == _EMPTY_LIST:\n        v = ()\n"
            f"    else:\n        v = _nested_list(v, {path!r}, {function})"
        )
    elif match := _NESTED_ONE.match(annotation):
        function = f"_f_{match.group(1)}"
        env[function] = nested_function(resolve_type(cls, match.group(1)))
        lines.append(f"    if v is not None:\n        v = _nested(v, {path!r}, {function})")
    else:
        raise TypeError(f"{cls.__name__}.{field.name}: no decoding rule for {annotation!r}")
    lines.append(store(field.name, "v", direct=direct))
    return lines


def store(name: str, value: str, *, direct: bool) -> str:
    return f"    o.{name} = {value}" if direct else f"    _set_{name}(o, {value})"


def _builder(cls: type) -> type | None:
    """A mutable twin of the frozen ``cls``: a subclass adding no slot, or None if none fits.

    The generated functions fill a twin instance with plain attribute stores (which the
    interpreter specialises, unlike descriptor calls) and then turn it into ``cls`` by assigning
    ``__class__``, which CPython allows between classes of the same slot layout (and checks
    fastest when one is the other's subclass). The object users get is an ordinary, frozen
    instance of ``cls``; the twin never escapes.
    """
    if "__slots__" not in cls.__dict__ or "__dict__" in cls.__dict__:
        return None
    namespace = {
        # A subclass that adds no slot: the same layout, so assigning __class__ back is cheap
        # (CPython compares layouts by walking up to the common base).
        "__slots__": (),
        "__module__": __name__,
        "__qualname__": f"_builder.<{cls.__qualname__}>",
        # Both, so that the type gets the generic attribute store of `object` back.
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
        # Instances come from calling the twin: no attrs __init__, nothing to initialise.
        "__init__": object.__init__,
    }
    try:
        twin = type(f"_{cls.__name__}Builder", (cls,), namespace)
        probe: object = twin()
        probe.__class__ = cls
    except TypeError:  # pragma: no cover - a layout CPython refuses to swap
        return None
    return twin


#: The slots every model has that are not decoded from a field of its own.
BOOKKEEPING: Final = frozenset({"extra", "_raw", "invalid"})


def environment(cls: type) -> dict[str, object]:
    """The names the generated functions of ``cls`` use, before its fields add theirs."""
    env: dict[str, object] = {
        "_M": _MISSING,
        "_new": object.__new__,
        "_cls": cls,
        "_EMPTY": EMPTY,
        "_proxy": MappingProxyType,
        "_dict": dict,
        "RecordDecodeError": RecordDecodeError,
        "_str": _str,
        "_dt": parse_timestamp,
        "_fromiso": datetime.fromisoformat,
        "_long_fraction": _LONG_FRACTION,
        "_Decimal": Decimal,
        "_InvalidOperation": InvalidOperation,
        "_only_str": frozenset({str}).issuperset,
        "_EMPTY_LIST": [],
        "_type": type,
        "_UTC": UTC,
        "_num": _num,
        "_int": _int,
        "_int_of": int,
        "_bool": _bool,
        "_open": _open,
        "_keys": _keys,
        "_nested": _nested,
        "_nested_list": _nested_list,
    }
    known: list[str] = []
    for field in attrs.fields(cls):
        slot = next(k.__dict__[field.name] for k in cls.__mro__ if field.name in k.__dict__)
        env[f"_set_{field.name}"] = slot.__set__
        if field.name not in BOOKKEEPING:
            known += _wire_names(cls, field.name)
    env["_KNOWN"] = frozenset(known)
    twin = _builder(cls)
    env["_twin"] = twin if twin is not None else cls
    return env


def decoded_fields(cls: type) -> list[attrs.Attribute[object]]:
    """The fields of ``cls`` that are read from the record (all but the bookkeeping ones)."""
    return [f for f in attrs.fields(cls) if f.name not in BOOKKEEPING]


def structure_function(cls: type[M]) -> Callable[[object], M]:
    """The generated function that turns one decoded JSON object into ``cls``.

    A value that does not fit its field raises `RecordDecodeError`: this is the strict decoder
    (`_tolerant` builds the tolerant one around it).

    Raises:
        TypeError: ``cls`` has a field whose annotation has no decoding rule.
    """
    found = _functions.get(cls)
    if found is not None:
        return cast("Callable[[object], M]", found)
    env = environment(cls)

    def placeholder(value: object) -> object:
        return _functions[cls](value)

    # A self-referencing model finds this placeholder instead of recursing for ever.
    _functions[cls] = placeholder
    fields = decoded_fields(cls)
    direct = env["_twin"] is not cls
    compile_source(_generic_body(cls, fields, env, direct=direct), cls, "generic", env)
    shapes: dict[tuple[str, ...], Callable[[dict[str, object]], object]] = {}
    check = [
        "    if d.__class__ is not _dict:",
        "        raise RecordDecodeError('', 'expected an object')",
    ]

    def specialise(keys: tuple[str, ...]) -> Callable[[dict[str, object]], object]:
        """A function for records whose keys come in exactly this order (no lookups)."""
        if len(shapes) >= _MAX_SHAPES or len(set(keys)) != len(keys):
            return cast("Callable[[dict[str, object]], object]", env["generic"])
        lines = _shape_body(cls, fields, env, keys, direct=direct)
        found = compile_source(["def shaped(d):", *lines], cls, "shaped", dict(env))
        shapes[keys] = found
        if env["_K"] is None:
            # The first layout is the primary one: `structure` itself takes it from now on,
            # which saves a call per record.
            primary = [*check, "    if [*d] != _K:", "        return _other(d)", *lines]
            env["_K"] = list(keys)
            code = compile_source(["def _primary(d):", *primary], cls, "_primary", env).__code__
            function.__code__ = code
        return found

    def other(d: dict[str, object]) -> object:
        keys = tuple(d)
        shaped = shapes.get(keys)
        if shaped is None:
            shaped = specialise(keys)
        return shaped(d)

    env["_K"] = None
    env["_other"] = other
    dispatch = ["def structure(d):", *check, "    return _other(d)"]
    function = cast("Callable[[object], M]", compile_source(dispatch, cls, "structure", env))
    _functions[cls] = function
    return function


def _generic_body(
    cls: type, fields: list[attrs.Attribute[object]], env: dict[str, object], *, direct: bool
) -> list[str]:
    """The function for records in any layout: it looks every key up."""
    body = [
        "def generic(d):",
        "    get = d.get",
        "    o = _twin()" if direct else "    o = _new(_cls)",
    ]
    for field in fields:
        body += field_source(cls, field, env, direct=direct)
    return [*body, *record_tail(direct=direct)]


def record_tail(*, direct: bool, extra: str | None = None, invalid: str = "_EMPTY") -> list[str]:
    """The end of a generated structure function: ``extra``, ``_raw``, ``invalid``, return.

    Args:
        direct: Whether the function fills a twin (plain stores) or calls the setters.
        extra: The expression of the record's unknown fields; None: those of ``d`` that are
            not in ``_KNOWN``.
        invalid: The expression of the values that did not fit.
    """
    if extra is None:
        unknown = "_proxy({k: x for k, x in d.items() if k not in _KNOWN})"
        extras = [
            "    if not d.keys() <= _KNOWN:",
            "    " + store("extra", unknown, direct=direct),
            "    else:",
            "    " + store("extra", "_EMPTY", direct=direct),
        ]
    else:
        extras = [store("extra", extra, direct=direct)]
    return [
        *extras,
        store("_raw", "d", direct=direct),
        store("invalid", invalid, direct=direct),
        "    o.__class__ = _cls" if direct else "",
        "    return o",
    ]


def _shape_body(
    cls: type,
    fields: list[attrs.Attribute[object]],
    env: dict[str, object],
    keys: tuple[str, ...],
    *,
    direct: bool,
) -> list[str]:
    """The body of a function for records whose keys come in exactly this order."""
    local = {name: f"w{index}" for index, name in enumerate(keys)}
    unpack = ", ".join(local.values())
    lines = [
        f"    ({unpack},) = d.values()" if keys else "",
        "    o = _twin()" if direct else "    o = _new(_cls)",
    ]
    for field in fields:
        lines += field_source(cls, field, env, lambda name: local.get(name, "None"), direct=direct)
    known_keys = cast("frozenset[str]", env["_KNOWN"])
    extra = ", ".join(f"{k!r}: {local[k]}" for k in keys if k not in known_keys)
    return [
        *lines,
        *record_tail(direct=direct, extra=f"_proxy({{{extra}}})" if extra else "_EMPTY"),
    ]


def compile_source(
    lines: list[str], cls: type, name: str, env: dict[str, object]
) -> Callable[[dict[str, object]], object]:
    source = "\n".join(lines)
    exec(compile(source, f"<makini {name} {cls.__name__}>", "exec"), env)  # noqa: S102 - our own generated source
    return cast("Callable[[dict[str, object]], object]", env[name])


def decode(data: object, cls: type[M], path: str = "") -> M:
    """Structure one decoded JSON object into ``cls``.

    Raises:
        RecordDecodeError: A known field has the wrong type; ``path`` says where.
    """
    try:
        return structure_function(cls)(data)
    except RecordDecodeError as exc:
        raise exc.under(path) from None


def decode_list(data: object, cls: type[M], path: str = "") -> list[M]:
    """Structure a JSON array of objects into a list of ``cls``.

    Raises:
        RecordDecodeError: An item does not fit ``cls``; ``path`` says where (``[3].dueAt``).
    """
    if data.__class__ is not list:
        raise RecordDecodeError(path, "expected a list")
    function = structure_function(cls)
    items = cast("list[object]", data)
    try:
        if len(items) < _BULK_RECORDS:
            return [function(item) for item in items]
        # A big page: every record, timestamp and nested object stays alive (see gc_paused).
        return gc_paused(_structure_all, (function, items))
    except RecordDecodeError:
        pass
    for index, item in enumerate(items):
        try:
            function(item)
        except RecordDecodeError as exc:
            raise exc.under(f"{path}[{index}]") from None
    raise AssertionError  # pragma: no cover


def _structure_all(job: tuple[Callable[[object], M], list[object]]) -> list[M]:
    function, items = job
    return [function(item) for item in items]


# -- the shared converter --------------------------------------------------------------------


_MODELS: set[type] = set()
_WRITABLES: set[type] = set()


def _structure_hook(value: object, cls: type[Model]) -> Model:
    try:
        return structure_function(cls)(value)
    except RecordDecodeError as exc:
        inner = ValueError(exc.message)
        inner.__notes__ = [cattrs.AttributeValidationNote(exc.message, exc.path[1:], object)]
        raise ClassValidationError(str(exc), [inner], cls) from None


def _unstructure_hook(value: Writable) -> dict[str, JSON]:
    return encode(value)


def register(classes: Sequence[type]) -> None:
    """Route the converter's structuring of models and unstructuring of write bodies here.

    Predicate hooks are used so that cattrs never resolves (and rewrites) the annotations the
    generated functions read.
    """
    if not _MODELS and not _WRITABLES:
        converter.register_structure_hook_func(lambda t: t in _MODELS, _structure_hook)
        converter.register_unstructure_hook_func(lambda t: t in _WRITABLES, _unstructure_hook)
    for cls in classes:
        if attrs.has(cls):
            if issubclass(cls, Model):
                _MODELS.add(cls)
            elif issubclass(cls, Writable):
                _WRITABLES.add(cls)
