"""What Makini's field names say about their values, where the OpenAPI files say only "string".

Shared by the models' generator (which types such fields) and the sandbox (which generates and
validates their values), so that both read a name the same way.
"""

from __future__ import annotations

from typing import Final

__all__ = ["is_numeric_name"]

#: Name parts that make a string field a number (``unitPrice``, ``meterReading``, ...).
_NUMERIC_PARTS: Final = (
    "quantity",
    "reading",
    "level",
    "point",
    "interval",
    "time",
    "price",
    "cost",
    "value",
    "rate",
    "discount",
    "budget",
    "total",
)
#: Names that hold text even though a numeric part is in them (``completionRemarks``: ``rate``...).
_TEXT_NAMES: Final = frozenset(
    {"title", "name", "description", "notes", "instructions", "completionremarks"}
)


def is_numeric_name(name: str) -> bool:
    """Tell whether a field the files type as a string holds a number, by Makini's naming."""
    low = name.lower()
    if low in _TEXT_NAMES or low.endswith(("code", "no", "number")):
        return False
    return low in {"lat", "lng"} or any(part in low for part in _NUMERIC_PARTS)
