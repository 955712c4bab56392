"""The one private cattrs `Converter`, and the hooks every structured type shares.

Nothing else in makini_async builds a converter or touches cattrs' global one. Modules that own
typed objects (webhook events today, resource models later) register their own hooks on
`converter` when they are imported.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, TypeVar, get_origin

import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, is_sequence, list_structure_factory

__all__ = ["StructureError", "converter", "make_converter", "parse_datetime", "structure"]

T = TypeVar("T")

#: Longest datetime string looked at; anything longer is not an ISO-8601 timestamp.
_MAX_DATETIME_LENGTH: Final = 64


class StructureError(ValueError):
    """A value could not be structured; ``paths`` lists where (``$.counts['a']``...).

    Callers turn this into their own public error (e.g. a webhook payload error).
    """

    def __init__(self, message: str, paths: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.paths = paths


def parse_datetime(value: object) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` or an offset) into a timezone-aware datetime.

    A timestamp without an offset is taken as UTC, as Makini's timestamps are UTC.

    Raises:
        ValueError: Not a string, or not ISO-8601.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value or len(value) > _MAX_DATETIME_LENGTH:
        raise ValueError("expected an ISO-8601 timestamp string")
    text = value.strip()
    if text[-1:] in {"z", "Z"}:
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _structure_datetime(value: object, _: type) -> datetime:
    return parse_datetime(value)


def _structure_str(value: object, _: type) -> str:
    # cattrs' default would be str(value), turning null or an object into text silently.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # source systems send numeric ids
    raise ValueError("expected a string")


def _structure_int(value: object, _: type) -> int:
    # cattrs' default would be int(value), truncating 2.7 and accepting "12" and True.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("expected an integer")


def _sequence_factory(cls: type, built: cattrs.BaseConverter) -> Callable[[object, type], object]:
    # cattrs would iterate a string into its characters ("ab" → ("a", "b")) or a dict into keys.
    inner = (
        homogenous_tuple_structure_factory(cls, built)
        if get_origin(cls) is tuple
        else list_structure_factory(cls, built)
    )

    def structure_sequence(value: object, target: type) -> object:
        if not isinstance(value, list | tuple):
            raise TypeError("expected a list")
        return inner(value, target)

    return structure_sequence


def _keep_json(value: object, _: type) -> object:
    return value


def _unstructure_datetime(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    text = aware.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def make_converter(*, forbid_extra_keys: bool = False) -> cattrs.Converter:
    """Build a converter with the shared hooks.

    Scalars are strict where cattrs is lenient: a ``str`` field takes a string or an integer
    (numeric ids), an ``int`` field an integer (not a bool, float or numeric string), a
    homogeneous list or tuple a JSON array (never a string split into characters), and a
    datetime an ISO-8601 string. A field typed ``object`` keeps the decoded JSON as it is.

    The shipped `converter` ignores unknown keys because servers add fields; tests build one
    with ``forbid_extra_keys=True`` so that drift fails loudly.
    """
    built = cattrs.Converter(forbid_extra_keys=forbid_extra_keys, detailed_validation=True)
    built.register_structure_hook(datetime, _structure_datetime)
    built.register_unstructure_hook(datetime, _unstructure_datetime)
    built.register_structure_hook(str, _structure_str)
    built.register_structure_hook(int, _structure_int)
    built.register_structure_hook_factory(is_sequence, _sequence_factory)
    # A field typed `object` holds decoded JSON as it came (e.g. an event's free-form data).
    built.register_structure_hook_func(lambda t: t is object, _keep_json)
    return built


#: The converter makini_async uses.
converter: Final = make_converter()


def structure(value: object, cls: type[T], using: cattrs.Converter | None = None) -> T:
    """Structure ``value`` into ``cls``; every failure becomes one `StructureError`.

    Raises:
        StructureError: The value does not fit ``cls``; ``paths`` says where.
    """
    try:
        return (using or converter).structure(value, cls)
    except cattrs.BaseValidationError as exc:
        paths = tuple(cattrs.transform_error(exc))
        raise StructureError("; ".join(paths) or "invalid value", paths) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StructureError(f"invalid value ({type(exc).__name__})") from None
