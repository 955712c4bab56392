"""JSON encoding and decoding: orjson when it is installed, the standard library otherwise.

Both decoders follow the same rules so that behaviour never depends on the extra: bodies are UTF-8,
``NaN``/``Infinity`` are rejected, a duplicate key keeps its last value.

Large bodies are decoded with the cyclic garbage collector paused (`gc_paused`). Decoding a page
of records allocates tens of thousands of dicts and lists, all alive and none in a cycle, and
each allocation burst sets off collections that walk them (and, every few pages, the whole heap)
for nothing: measured on a 500-record page of work orders, the collector took a fifth of the
decode time. The pause covers one synchronous call, never an ``await``, and leaves the collector
as it found it (a program that disabled it keeps it disabled); the allocations made meanwhile
still count, so the next collection runs as soon as the call returns.

A task may ask for its bodies to be decoded another way first (`use_body_decoder`): the typed
services do so around one list request, to decode the page straight into records (with msgspec,
when the ``speedups`` extra brings it). The decoder returns None for a body it does not take,
which is then decoded as usual; what it returns in place of the JSON is a read-only `Mapping`
that reads as the decoded body, so a caller that does not know it still sees the JSON.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Final, TypeVar

from ._optional import installed, optional

__all__ = [
    "BACKEND",
    "BULK_BYTES",
    "BodyDecoder",
    "decode_plain",
    "dumps",
    "gc_paused",
    "loads",
    "reset_body_decoder",
    "stdlib_dumps",
    "stdlib_loads",
    "use_body_decoder",
]

#: Decodes a body its own way, or returns None to leave it to `loads`.
BodyDecoder = Callable[[bytes], object]
_body_decoder: Final[ContextVar[BodyDecoder | None]] = ContextVar(
    "makini_async_body_decoder", default=None
)

T = TypeVar("T")
A = TypeVar("A")

#: Bodies at least this long are decoded with the garbage collector paused.
BULK_BYTES: Final = 64 * 1024


def gc_paused(function: Callable[[A], T], argument: A) -> T:
    """Call ``function(argument)`` with the cyclic garbage collector paused.

    For one bounded, synchronous burst of allocations that all stay alive (decoding a page):
    no collection runs during the call; the collector is re-enabled afterwards, also when the
    call raises, unless it was disabled before.
    """
    if not gc.isenabled():
        return function(argument)
    gc.disable()
    try:
        return function(argument)
    finally:
        gc.enable()


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

#: The JSON library bodies are decoded with: orjson when installed, else the standard library.
BACKEND: Final = "orjson" if installed("orjson") else "json"


def _first_loads(data: bytes) -> object:
    """Import the decoder on the first body (``import makini_async`` imports no extra)."""
    module = optional("orjson")
    decode: Callable[[bytes], object] = stdlib_loads if module is None else module.loads
    _decoder[0] = decode
    return decode(data)


# The body decoder in use: `_first_loads` until the first body, then orjson's or ours.
_decoder: Final[list[Callable[[bytes], object]]] = [_first_loads]


def use_body_decoder(decoder: BodyDecoder | None) -> Token[BodyDecoder | None]:
    """Have `loads` try ``decoder`` first on the bodies it decodes in this task, until reset.

    Returns:
        The token for `reset_body_decoder`.
    """
    return _body_decoder.set(decoder)


def reset_body_decoder(token: Token[BodyDecoder | None]) -> None:
    """Undo `use_body_decoder`."""
    _body_decoder.reset(token)


def loads(data: bytes) -> object:
    """Decode a UTF-8 JSON body (orjson when installed); large ones with the collector paused.

    A decoder set with `use_body_decoder` is tried first, under the same pause.

    Raises:
        ValueError: Invalid UTF-8, invalid JSON, or a non-finite number (orjson's
            ``JSONDecodeError`` is a ``ValueError``).
        RecursionError: Absurdly deep nesting (standard library only).
    """
    decoder = _body_decoder.get()
    if decoder is not None:
        decoded = decoder(data) if len(data) < BULK_BYTES else gc_paused(decoder, data)
        if decoded is not None:
            return decoded
    return decode_plain(data)


def decode_plain(data: bytes) -> object:
    """Decode a UTF-8 JSON body as `loads` does, without trying a task's body decoder.

    Raises:
        ValueError: Invalid UTF-8, invalid JSON, or a non-finite number.
        RecursionError: Absurdly deep nesting (standard library only).
    """
    decode = _decoder[0]
    if len(data) < BULK_BYTES:
        return decode(data)
    return gc_paused(decode, data)
