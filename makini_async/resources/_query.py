"""Filters, sorting and paging as Makini's list endpoints take them in the query string."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final, Literal
from urllib.parse import quote

import attrs

from makini_async.models import Model
from makini_async.models._wire import wire_name

__all__ = ["Filter", "FilterMatch", "FilterOp", "build_query", "quote_key"]


class FilterOp(enum.StrEnum):
    """The comparison operators of Makini's ``filter[field:op]`` query syntax.

    .. versionadded:: 0.1.0
    """

    EQ = "eq"
    CONTAINS = "contains"
    STARTS_WITH = "startsWith"
    ENDS_WITH = "endsWith"
    GT = "gt"
    GTEQ = "gteq"
    LT = "lt"
    LTEQ = "lteq"


def _op(value: FilterOp | str) -> FilterOp:
    try:
        return FilterOp(value)
    except ValueError:
        known = ", ".join(op.value for op in FilterOp)
        raise ValueError(f"Unknown filter operator {value!r}; use one of {known}.") from None


def _check_field(_instance: object, _attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"A filter's field must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError("A filter's field must not be empty")


@attrs.frozen(slots=True)
class Filter:
    """One condition of a listing, e.g. ``Filter("updated_at", "gt", watermark)``.

    Args:
        field: An attribute of the listed model (``updated_at``) or a wire name
            (``x_costCenter``, for custom fields).
        op: A `FilterOp` or its value (``"contains"``, ``"gteq"``...).
        value: A string, number, boolean or aware datetime.

    .. versionadded:: 0.1.0
    """

    field: str = attrs.field(validator=_check_field)
    op: FilterOp = attrs.field(converter=_op)
    value: object


FilterMatch = Literal["all", "any"]

_DOT_SEGMENTS: Final = frozenset({".", ".."})
# Sub-delimiters, ":" and "@": legal in a path segment, and sent as they are by yarl.
_SEGMENT_SAFE: Final = "!$&'()*,;=:@"


def quote_key(key: object) -> str:
    """Quote a record key as one path segment (``/`` and ``?`` included).

    The result is what reaches the server: the sub-delimiters ``!$&'()*,;=`` and ``:@`` stay
    as they are, since yarl would decode their escapes anyway, and everything else outside the
    unreserved characters is percent-encoded as UTF-8. The server decodes the segment back to
    ``key``.

    Raises:
        TypeError: The key is not a string.
        ValueError: The key is empty, is ``.`` or ``..`` (URL normalisation would remove the
            segment, sending the call to another resource), or holds a lone surrogate.
    """
    if not isinstance(key, str):
        raise TypeError(f"A record key must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError("A record key must not be empty")
    if key in _DOT_SEGMENTS:
        raise ValueError(
            f"A record key cannot be {key!r}: URL normalisation would remove the segment"
        )
    try:
        return quote(key, safe=_SEGMENT_SAFE)
    except UnicodeEncodeError:
        raise ValueError(f"The record key {key!r} holds a lone surrogate") from None


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("Filter datetimes must be timezone-aware (e.g. tzinfo=UTC)")
        try:
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, ValueError):  # e.g. 9999-12-31T23:00-05:00 has no UTC year
            raise ValueError(f"The filter datetime {value!r} has no UTC equivalent") from None
    if isinstance(value, enum.Enum):
        value = value.value
    if (isinstance(value, float) and not math.isfinite(value)) or (
        isinstance(value, Decimal) and not value.is_finite()
    ):
        raise ValueError(f"Cannot filter on {value!r}; use a finite number")
    if isinstance(value, str | int | float | Decimal):
        try:
            return str(value)
        except ValueError:  # an int longer than sys.get_int_max_str_digits()
            raise ValueError("Cannot filter on an int that long") from None
    raise TypeError(f"Cannot filter on a {type(value).__name__}; use a str, number or datetime")


def _field(model: type[Model], name: str) -> str:
    fields = attrs.fields_dict(model)
    return wire_name(model, name) if name in fields else name


def build_query(  # noqa: C901, PLR0912 - one flat checklist of arguments
    model: type[Model],
    *,
    where: Mapping[str, object] | Iterable[Filter] | None,
    match: FilterMatch | None,
    sort: str | Sequence[str] | None,
    modified_after: datetime | None,
    per_page: int | None,
) -> list[tuple[str, str]]:
    """Turn listing arguments into Makini's query parameters.

    Raises:
        TypeError: A value of a type the query cannot carry.
        ValueError: A bad operator, match, per_page or naive datetime.
    """
    params: list[tuple[str, str]] = []
    conditions: list[object]
    given: object = where  # checked as what it may be at run time, not as annotated
    if given is None:
        conditions = []
    elif isinstance(given, Mapping):
        conditions = [Filter(name, FilterOp.EQ, value) for name, value in given.items()]
    elif isinstance(given, Iterable) and not isinstance(given, str | bytes):
        conditions = list(given)
    else:
        raise TypeError("where must be a mapping of equalities or an iterable of Filter")
    for condition in conditions:
        if not isinstance(condition, Filter):
            raise TypeError("where must be a mapping of equalities or an iterable of Filter")
        name = _field(model, condition.field)
        suffix = "" if condition.op is FilterOp.EQ else f":{condition.op.value}"
        params.append((f"filter[{name}{suffix}]", _query_value(condition.value)))
    if match is not None:
        if match not in {"all", "any"}:
            raise ValueError(f"match must be 'all' or 'any', got {match!r}")
        params.append(("filterMatch", match))
    if sort is not None:
        items: object = [sort] if isinstance(sort, str) else sort
        if not isinstance(items, Iterable) or isinstance(items, bytes):
            raise TypeError("sort must be a field name or a sequence of them")
        for item in items:
            if not isinstance(item, str):
                raise TypeError(f"sort names fields as str, not {type(item).__name__}")
            descending = item.startswith("-")
            name = item.removeprefix("-")
            if not name:
                raise ValueError("sort names a field, e.g. '-created_at' for newest first")
            params.append((f"sort[{_field(model, name)}]", "1" if descending else "0"))
    if modified_after is not None:
        params.append(("modified_after", _query_value(modified_after)))
    if per_page is not None:
        if type(per_page) is not int or per_page < 1:
            raise ValueError(f"per_page must be an int >= 1, got {per_page!r}")
        params.append(("per_page", str(per_page)))
    return params
