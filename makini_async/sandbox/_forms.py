"""Multipart bodies parsed from bytes already read.

The sandbox reads every request body once, before routing, so that the request log and the
handlers see the same bytes (``request.read()`` caches them). ``request.post()`` and
``request.multipart()`` read the socket stream instead, which is spent by then, so uploads are
parsed here, from the cached bytes, with aiohttp's own `MultipartReader`: the parser
``request.post()`` uses, fed from memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import attrs
from aiohttp import BodyPartReader, MultipartReader, StreamReader, hdrs
from aiohttp.base_protocol import BaseProtocol

__all__ = ["FormField", "read_multipart"]


@attrs.frozen
class FormField:
    """One part of a multipart body, its content decoded (``Content-Transfer-Encoding``)."""

    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes = attrs.field(repr=False)
    charset: str = "utf-8"

    def text(self) -> str:
        """The content as text, in the part's charset (UTF-8 unless it names one)."""
        return self.data.decode(self.charset, errors="replace")


async def read_multipart(headers: Mapping[str, str], raw: bytes) -> list[FormField]:
    """Parse a multipart body that has been read in full.

    Args:
        headers: The request headers; ``Content-Type`` gives the boundary.
        raw: The whole body.

    Returns:
        The parts in the order sent (nameless parts included: callers decide).

    Raises:
        ValueError: No boundary, a nested multipart part, or another of the parser's complaints.
            aiohttp's parser raises other types too (e.g. ``AssertionError`` for a Content-Type
            that is not multipart), so callers catch ``Exception``.
    """
    loop = asyncio.get_running_loop()
    # A stream that never waits: it holds the whole body and its end. Its high-water mark is
    # above the body's length, so it never asks its protocol (connected to nothing) to pause.
    stream = StreamReader(BaseProtocol(loop), limit=len(raw) + 1, loop=loop)
    stream.feed_data(raw)
    stream.feed_eof()
    reader = MultipartReader(headers, stream)
    fields: list[FormField] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            # A malformed body rather than a wrong type: request.post() says ValueError too.
            raise ValueError("A nested multipart part is not supported.")  # noqa: TRY004
        fields.append(
            FormField(
                name=part.name,
                filename=part.filename,
                content_type=part.headers.get(hdrs.CONTENT_TYPE),
                data=bytes(await part.read(decode=True)),
                charset=part.get_charset(default="utf-8"),
            )
        )
    return fields
