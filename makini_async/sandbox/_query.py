"""List queries: ``filter[...]``, ``filterMatch``, ``sort[...]``, ``modified_after`` and paging.

Semantics (the sandbox's reading of Makini's list descriptions):

- ``filter[f]=v`` is equality on the value's text (``null`` matches a missing value; booleans match
  ``true``/``false``/``1``/``0``; numbers compare as numbers);
- ``contains``, ``startsWith`` and ``endsWith`` are case-insensitive, like SQL ``LIKE``;
- ``gt``, ``gteq``, ``lt`` and ``lteq`` (and the documented typo ``lted``) compare timestamps as
  instants, numbers as numbers and other text as text; a missing value never matches;
- ``filterMatch=any`` joins the filters with OR, ``all`` (the default) with AND;
- ``sort[f]=0`` sorts ascending, ``=1`` descending; missing values sort first when ascending;
  several sort parameters apply in the order given; ties keep the source order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import attrs

from makini_async.sandbox._data import Record
from makini_async.sandbox._fields import is_time_field, parse_iso

__all__ = [
    "MAX_PAGE",
    "MAX_PER_PAGE",
    "PER_PAGE",
    "ListQuery",
    "QueryError",
    "apply",
    "parse_query",
]

PER_PAGE: Final = 50
MAX_PER_PAGE: Final = 500
#: The largest page number: pages past the end are empty, but meta must stay within 64 bits.
MAX_PAGE: Final = 2**31 - 1
_DIGITS: Final = 19
_OPS: Final = {"eq", "contains", "startsWith", "endsWith", "gt", "gteq", "lt", "lteq"}
_ALIASES: Final = {"lted": "lteq", "equals": "eq", "eq": "eq"}
_V4_ALIASES: Final = {
    "_createdAt": "createdAt",
    "_updatedAt": "updatedAt",
    "_deletedAt": "deletedAt",
    "_idValue": "code",
}


class QueryError(ValueError):
    """A list query the sandbox cannot run; the message names the bad parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@attrs.frozen
class ListQuery:
    """A parsed list query."""

    filters: tuple[tuple[str, str, str], ...]
    match_any: bool
    sorts: tuple[tuple[str, bool], ...]
    page: int
    per_page: int

    @property
    def signature(self) -> tuple[object, ...]:
        """What decides the matching records (not the page): a cache key."""
        return (self.filters, self.match_any, self.sorts)


def _int(params: Mapping[str, str], name: str, default: int, maximum: int, *, clamp: bool) -> int:
    """A positive integer parameter of ASCII digits, at most ``maximum`` (or clamped to it)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    # int() would take " 5", "+5", "1_0" and other scripts' digits, and 5000 digits not at all.
    digits = raw.lstrip("0")
    if not (raw.isascii() and raw.isdigit()) or not digits:
        raise QueryError(name, f"`{name}` must be a positive integer, not {raw!r}.")
    if len(digits) < _DIGITS and int(digits) <= maximum:
        return int(digits)
    if clamp:
        return maximum
    raise QueryError(name, f"`{name}` must be an integer from 1 to {maximum}, not {raw!r}.")


def parse_query(  # noqa: C901, PLR0912 - one pass over the parameters
    items: Sequence[tuple[str, str]], fields: Mapping[str, str]
) -> ListQuery:
    """Parse list query parameters against a schema's fields.

    Args:
        items: The query's ``(name, value)`` pairs in order.
        fields: Field name → JSON kind for the collection's schema.

    Returns:
        The parsed query.

    Raises:
        QueryError: A parameter is malformed or names an unknown field or operator.
    """
    filters: list[tuple[str, str, str]] = []
    sorts: list[tuple[str, bool]] = []
    match = "all"
    params: dict[str, str] = {}
    for name, value in items:
        if name in {"filterMatch", "filter[filterMatch]"}:
            match = value
            continue
        if name == "modified_after":
            stamp = parse_iso(value)
            if stamp is None:
                raise QueryError(name, f"`modified_after` must be an ISO-8601 time, not {value!r}.")
            filters.append(("updatedAt", "gt", stamp))
            continue
        if name.startswith(("filter", "sort")):
            head, bracket, rest = name.partition("[")
            if head not in {"filter", "sort"} or not bracket or not rest.endswith("]"):
                raise QueryError(name, f"Malformed parameter `{name}`: use `{head}[field]`.")
            inner = rest[:-1]
            field, _, op = inner.partition(":")
            field = _V4_ALIASES.get(field, field)
            if field not in fields:
                raise QueryError(name, f"Unknown field `{field}` in `{name}`.")
            if fields[field] in {"array", "object"}:
                raise QueryError(name, f"Field `{field}` is not a scalar and cannot be used here.")
            if head == "sort":
                if op or value not in {"0", "1"}:
                    raise QueryError(name, f"`{name}` must be 0 (ascending) or 1 (descending).")
                sorts.append((field, value == "1"))
                continue
            op = _ALIASES.get(op, op) if op else "eq"
            if op not in _OPS:
                raise QueryError(name, f"Unknown filter operator `{op}` in `{name}`.")
            wanted = value
            textual = op in {"contains", "startsWith", "endsWith"}
            if is_time_field(field) and not textual and (value.lower() != "null" or op != "eq"):
                stamp = parse_iso(value)
                if stamp is None:
                    raise QueryError(name, f"`{name}` must be an ISO-8601 time, not {value!r}.")
                wanted = stamp
            filters.append((field, op, wanted))
            continue
        params[name] = value
    if match not in {"all", "any"}:
        raise QueryError("filterMatch", f"`filterMatch` must be `all` or `any`, not {match!r}.")
    page = _int(params, "page", 1, MAX_PAGE, clamp=False)
    per_page = _int(params, "per_page", PER_PAGE, MAX_PER_PAGE, clamp=True)
    return ListQuery(tuple(filters), match == "any", tuple(sorts), page, per_page)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _predicate(field: str, op: str, want: str) -> Callable[[Record], bool]:
    want_low = want.lower()
    want_num = _number(want)
    if op == "eq":

        def equal(record: Record) -> bool:
            got = record.get(field)
            if got is None:
                return want_low in {"null", ""}
            if isinstance(got, bool):
                return want_low in ({"true", "1"} if got else {"false", "0"})
            if want_num is not None and (num := _number(got)) is not None:
                return num == want_num
            return _text(got) == want

        return equal
    if op in {"contains", "startsWith", "endsWith"}:
        test: Callable[[str], bool] = {
            "contains": lambda text: want_low in text,
            "startsWith": lambda text: text.startswith(want_low),
            "endsWith": lambda text: text.endswith(want_low),
        }[op]
        return lambda record: (got := record.get(field)) is not None and test(_text(got).lower())
    compare: Callable[[object, object], bool] = {
        "gt": lambda a, b: a > b,
        "gteq": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lteq": lambda a, b: a <= b,
    }[op]

    def ordered(record: Record) -> bool:
        got = record.get(field)
        if got is None:
            return False
        if want_num is not None and (num := _number(got)) is not None:
            return compare(num, want_num)
        return compare(_text(got), want)

    return ordered


def _sort_key(field: str) -> Callable[[Record], tuple[int, float, str]]:
    def key(record: Record) -> tuple[int, float, str]:
        got = record.get(field)
        if got is None:
            return (0, 0.0, "")
        num = _number(got)
        if num is not None:
            return (1, num, "")
        return (2, 0.0, _text(got))

    return key


def apply(records: Sequence[Record], query: ListQuery) -> list[Record]:
    """Filter and sort records as the query says (paging is left to the caller).

    Args:
        records: The collection in source order.
        query: The parsed query.

    Returns:
        The matching records in the requested order.
    """
    result = list(records)
    if query.filters:
        tests = [_predicate(*spec) for spec in query.filters]
        if query.match_any:
            result = [r for r in result if any(test(r) for test in tests)]
        else:
            result = [r for r in result if all(test(r) for test in tests)]
    for field, descending in reversed(query.sorts):
        result.sort(key=_sort_key(field), reverse=descending)
    return result
