"""Tolerant decoding: a value that does not fit its field never fails its record, or the page.

The strict structure functions of `_wire` stay the fast path: a record whose every value fits
(after the lossless coercions they apply) goes through them and nothing else, so tolerance costs
nothing on clean data. A record with a value that does not fit is decoded again by its model's
*careful* function, generated from the same field code with each field converted on its own:
a field whose value does not fit gets its invalid value (None, or ``()`` for a list), the
original goes into the record's ``invalid`` mapping under its wire name, and one warning per
model and field is logged (logger ``makini_async.models``), however many records carry one.
Nested objects decode the same way, each keeping its own ``invalid``.

Only a record that is not a JSON object at all still fails, in both modes: the page is then not a
list of records.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, TypeVar, cast

from makini_async._json import gc_paused

from ._base import Model
from ._wire import (
    RecordDecodeError,
    compile_source,
    decode,
    decode_list,
    decoded_fields,
    environment,
    field_source,
    record_tail,
    structure_function,
    wire_names,
)

if TYPE_CHECKING:
    from makini_async.typing import JSON

__all__ = [
    "decode_record",
    "decode_records",
    "forget_warnings",
    "invalid_count",
    "keep_invalid",
    "tolerant_function",
]

M = TypeVar("M", bound=Model)
_Structure = Callable[[object], object]

logger: Final = logging.getLogger("makini_async.models")
#: Lists at least this long are decoded with the garbage collector paused (as in `_wire`).
_BULK_RECORDS: Final = 64
_warned: set[tuple[type, str]] = set()
#: How many values did not fit so far (`invalid_count`): a decoder compares it before and after.
_kept: list[int] = [0]
_tolerant: dict[type, _Structure] = {}
_careful: dict[type, _Structure] = {}


def forget_warnings() -> None:
    """Forget which fields were warned about, so that the next invalid value warns again."""
    _warned.clear()


def invalid_count() -> int:
    """How many values that did not fit have been kept so far, by every decoder."""
    return _kept[0]


def keep_invalid(
    cls: type,
    bad: dict[str, JSON],
    record: Mapping[str, JSON],
    names: tuple[str, ...],
    empty: object,
) -> object:
    """Keep the value that did not fit (under the wire name it came in) and warn once.

    Args:
        cls: The model.
        bad: The record's invalid values so far; the value is added.
        record: Where the field's values are, by wire name.
        names: The field's wire names (the first one whose value is not None was read).
        empty: The attribute's invalid value, returned.

    Returns:
        ``empty``.
    """
    _kept[0] += 1
    name = names[0]
    for name in names:  # the name whose value was read is the one kept
        if record.get(name) is not None:
            break
    value = record.get(name)
    bad[name] = value
    if (cls, name) not in _warned:
        _warned.add((cls, name))
        # The value itself is not logged: it is customer data, and may be large.
        logger.warning(
            "%s.%s: a value of type %s does not fit the field and was decoded as %r; it is "
            "kept in the record's .invalid (logged once per field)",
            cls.__name__,
            name,
            type(value).__name__,
            empty,
        )
    return empty


def _careful_function(cls: type) -> _Structure:
    """The function that decodes each field of ``cls`` on its own, keeping what does not fit."""
    found = _careful.get(cls)
    if found is not None:
        return found
    env = environment(cls)
    env["_invalid"] = keep_invalid
    direct = env["_twin"] is not cls
    body = [
        "def careful(d):",
        "    get = d.get",
        "    o = _twin()" if direct else "    o = _new(_cls)",
        "    bad = {}",
    ]
    for field in decoded_fields(cls):
        *convert, store_line = field_source(
            cls, field, env, direct=direct, nested=tolerant_function
        )
        empty = "()" if str(field.type).startswith("tuple[") else "None"
        names = wire_names(cls, field.name)
        body += [
            "    try:",
            textwrap.indent("\n".join(convert), "    "),
            "    except RecordDecodeError:",
            f"        v = _invalid(_cls, bad, d, {names!r}, {empty})",
            store_line,
        ]
    body += record_tail(direct=direct, invalid="_proxy(bad) if bad else _EMPTY")
    careful = cast("_Structure", compile_source(body, cls, "careful", env))
    _careful[cls] = careful
    return careful


def tolerant_function(cls: type[M]) -> Callable[[object], M]:
    """The function that decodes one JSON object into ``cls`` whatever its values.

    It tries the strict function first; only a record with a value that does not fit is decoded
    again, field by field.

    Raises:
        RecordDecodeError: Only when the value is not a JSON object.
    """
    found = _tolerant.get(cls)
    if found is not None:
        return cast("Callable[[object], M]", found)
    strict = structure_function(cls)

    def tolerant(record: object) -> object:
        try:
            return strict(record)
        except RecordDecodeError:
            if record.__class__ is not dict:
                raise
        return _careful_function(cls)(record)

    _tolerant[cls] = tolerant
    return cast("Callable[[object], M]", tolerant)


def decode_record(data: object, cls: type[M], path: str = "", *, strict: bool = False) -> M:
    """Decode one JSON object into ``cls``.

    Args:
        data: The decoded JSON object.
        cls: The model.
        path: Where the object is, for messages (``.data``).
        strict: Raise for a value that does not fit, instead of keeping it in ``invalid``.

    Returns:
        The record.

    Raises:
        RecordDecodeError: ``data`` is not an object; with ``strict``, also a value that does
            not fit (``path`` names it).
    """
    if strict:
        return decode(data, cls, path)
    try:
        return tolerant_function(cls)(data)
    except RecordDecodeError as exc:
        raise exc.under(path) from None


def decode_records(data: object, cls: type[M], path: str = "", *, strict: bool = False) -> list[M]:
    """Decode a JSON array of objects into a list of ``cls``.

    Args:
        data: The decoded JSON array.
        cls: The model.
        path: Where the array is, for messages (``.data``).
        strict: Raise for a value that does not fit, instead of keeping it in ``invalid``.

    Returns:
        The records, in order.

    Raises:
        RecordDecodeError: ``data`` is not a list or an item is not an object; with ``strict``,
            also a value that does not fit (``path`` names it: ``.data[3].dueAt``).
    """
    if strict or data.__class__ is not list:
        return decode_list(data, cls, path)
    items = cast("list[object]", data)
    for function in (structure_function(cls), tolerant_function(cls)):
        try:
            if len(items) < _BULK_RECORDS:
                return [function(item) for item in items]
            return gc_paused(_all, (function, items))
        except RecordDecodeError:
            pass
    for index, item in enumerate(items):  # only an item that is not an object gets here
        if item.__class__ is not dict:
            raise RecordDecodeError(f"{path}[{index}]", "expected an object")
    raise AssertionError  # pragma: no cover - the tolerant pass failed, so an item is no object


def _all(job: tuple[Callable[[object], M], list[object]]) -> list[M]:
    function, items = job
    return [function(item) for item in items]
