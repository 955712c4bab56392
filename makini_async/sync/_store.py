"""The store protocol that `sync` writes to, the record it writes, and the store's error."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar, runtime_checkable

import attrs

from makini_async._errors import StoreError
from makini_async._optional import optional

__all__ = ["Row", "Store", "record_encoder", "record_json", "run_on_thread"]


def _stdlib_dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@functools.cache
def record_encoder() -> Callable[[object], str]:
    """The function that writes a record as compact JSON text; bind it once per page.

    orjson's (the `speedups` extra: about four times faster on records) when installed, imported
    on the first call rather than with the package; the standard library's otherwise, and for
    what orjson cannot write (an integer beyond 64 bits).
    """
    module = optional("orjson")
    if module is None:
        return _stdlib_dumps
    dumps = module.dumps

    def encode(value: object) -> str:
        try:
            return str(dumps(value), "utf-8")
        except TypeError:
            return _stdlib_dumps(value)

    return encode


def record_json(value: object) -> str:
    """A record as compact JSON text (orjson when installed).

    Raises:
        TypeError: A value JSON cannot represent.
    """
    return record_encoder()(value)


@attrs.frozen
class Row:
    """One record as a store keeps it.

    The record travels as its compact JSON text, not as a dict: `sync` turns each page into rows
    as soon as it arrives and lets the decoded page go, so that pages waiting for the store do
    not keep tens of thousands of objects alive for the garbage collector to walk, and stores
    write the text as it is. `data` decodes it when you need the object.

    Attributes:
        key: The record's key (unique per connection and entity).
        updated_at: Its ``updatedAt`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sorts as text), or None.
        deleted_at: Its ``deletedAt`` in the same form when it is soft-deleted, else None.
        json: The record's JSON object as compact text, unknown fields included.

    .. versionadded:: 0.1.0
    """

    key: str
    updated_at: str | None
    deleted_at: str | None
    json: str = attrs.field(repr=False)

    @classmethod
    def from_record(
        cls,
        key: str,
        updated_at: str | None,
        deleted_at: str | None,
        record: Mapping[str, object],
    ) -> Row:
        """Make a row from a decoded record (written as compact JSON text).

        Raises:
            TypeError: The record holds something JSON cannot represent.

        .. versionadded:: 0.1.0
        """
        return cls(key, updated_at, deleted_at, record_json(record))

    @property
    def data(self) -> dict[str, object]:
        """The record's JSON object, decoded afresh on every access."""
        decoded: dict[str, object] = json.loads(self.json)
        return decoded

    @property
    def deleted(self) -> bool:
        """True when the record is soft-deleted at the source."""
        return self.deleted_at is not None


@runtime_checkable
class Store(Protocol):
    """Where `sync` keeps records and watermarks; plug your own by implementing these methods.

    Implementations must make `write` atomic: either every row and the new watermark are
    stored, or none of them (a crash in the middle must not leave a watermark past records that
    were not written). Rows are keyed by ``(connection, entity, key)``: writing a key again
    replaces the stored row.

    .. versionadded:: 0.1.0
    """

    async def open(self) -> None:
        """Prepare the store (create files and tables); called once before any other method.

        Raises:
            StoreError: The store is locked, corrupt or unusable.
        """
        ...

    async def watermark(self, connection_id: str, entity: str) -> str | None:
        """The stored watermark (an ``updatedAt`` in `Row` form), or None before the first sync.

        Raises:
            StoreError: The store failed.
        """
        ...

    async def write(
        self, connection_id: str, entity: str, rows: Sequence[Row], watermark: str | None
    ) -> int:
        """Store the rows and then the watermark, atomically.

        Args:
            connection_id: The connection the rows belong to.
            entity: The entity, e.g. ``eam/work-orders``.
            rows: The rows to upsert.
            watermark: The new watermark (None: leave it).

        Returns:
            How many rows were new or different from the stored ones.

        Raises:
            StoreError: The store failed; nothing was stored.
        """
        ...

    async def aclose(self) -> None:
        """Flush and close the store (idempotent)."""
        ...


T = TypeVar("T")


async def run_on_thread(executor: ThreadPoolExecutor | None, fn: Callable[[], T], where: str) -> T:
    """Run a store's blocking ``fn`` on its own thread; refuse when the store is not open.

    Raises:
        StoreError: The store has no thread (not opened, or closed).
    """
    if executor is None:
        raise StoreError(f"The store {where!r} is not open; call open() first.")
    return await asyncio.get_running_loop().run_in_executor(executor, fn)
