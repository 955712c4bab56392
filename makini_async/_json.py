"""JSON encoding and decoding: orjson when it is installed, the standard library otherwise.

Both decoders follow the same rules so that behaviour never depends on the extra: bodies are UTF-8,
``NaN``/``Infinity`` are rejected, a duplicate key keeps its last value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

__all__ = ["BACKEND", "dumps", "loads", "stdlib_dumps", "stdlib_loads"]


def _reject_constant(name: str) -> object:
    msg = f"non-finite number {name} is not valid JSON"
    raise ValueError(msg)


_stdlib_decoder: Final = json.JSONDecoder(parse_constant=_reject_constant)
_stdlib_encoder: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
)


def stdlib_loads(data: bytes) -> object:
    """Decode UTF-8 JSON bytes with the standard library.

    Raises:
        ValueError: Invalid UTF-8, invalid JSON, or a non-finite number.
        RecursionError: Absurdly deep nesting.
    """
    return _stdlib_decoder.decode(data.decode("utf-8"))


def stdlib_dumps(value: object) -> bytes:
    """Encode a value as compact UTF-8 JSON with the standard library.

    Raises:
        TypeError: A value that JSON cannot represent.
        ValueError: A non-finite float.
    """
    return _stdlib_encoder.encode(value).encode("utf-8")


# Request bodies are small and always go through the standard library, so that a non-finite
# float is refused the same way with or without orjson (orjson would write it as null).
dumps: Final = stdlib_dumps
loads: Callable[[bytes], object]

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by installs without the extra
    BACKEND: Final[str] = "json"
    loads = stdlib_loads
else:
    BACKEND = "orjson"  # type: ignore[misc] # assigned once, in exactly one branch
    loads = orjson.loads
