"""Deduplication stores: remember which event ids were accepted, for at least 25 hours.

Makini retries a delivery for up to 24 hours and may deliver the same event twice at once, so
a receiver claims each id before it runs handlers; only the first claim wins.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Protocol, TypeVar, runtime_checkable

from makini_async._errors import StoreError

__all__ = ["DEFAULT_TTL", "DedupStore", "MemoryDedupStore", "SQLiteDedupStore"]

logger: Final = logging.getLogger("makini_async.webhooks")

#: How long an event id is remembered: Makini's 24 h of retries plus an hour of margin.
DEFAULT_TTL: Final = 25 * 3600.0
_MAX_ID: Final = 512
_PURGE_EVERY: Final = 1000

T = TypeVar("T")


@runtime_checkable
class DedupStore(Protocol):
    """Where a receiver remembers the event ids it accepted.

    Implementations must make `claim` atomic: when two deliveries of one event race, exactly
    one of them gets True.

    .. versionadded:: 0.1.0
    """

    async def claim(self, event_id: str) -> bool:
        """Record ``event_id``.

        Args:
            event_id: The event's id.

        Returns:
            True if the id was new (run the handlers), False if it is a duplicate.

        .. versionadded:: 0.1.0
        """
        ...

    async def release(self, event_id: str) -> None:
        """Forget a claim whose event was not processed, so that a redelivery is accepted.

        Args:
            event_id: The event's id.

        .. versionadded:: 0.1.0
        """
        ...

    async def aclose(self) -> None:
        """Release the store's resources (idempotent).

        .. versionadded:: 0.1.0
        """
        ...


def _check_ttl(ttl: float) -> float:
    if type(ttl) not in {int, float}:
        raise TypeError("ttl must be a number of seconds")
    if not ttl >= DEFAULT_TTL:
        raise ValueError(
            f"ttl must be at least {DEFAULT_TTL:.0f} s (25 h): Makini retries a delivery for "
            "24 h, and a shorter memory would let a retry or a replay run twice."
        )
    return float(ttl)


def _check_id(event_id: object) -> str:
    if not isinstance(event_id, str) or not event_id or len(event_id) > _MAX_ID:
        raise ValueError(f"An event id must be a non-empty str of at most {_MAX_ID} characters.")
    return event_id


class MemoryDedupStore:
    """Keeps event ids in memory for ``ttl`` seconds (at least 25 h); lost on restart.

    Args:
        ttl: Seconds an id is remembered.
        max_entries: Most ids kept; past it the oldest are forgotten early (logged).
        clock: A monotonic time source in seconds (tests pass a fake one).

    Raises:
        TypeError: Bad argument types.
        ValueError: ``ttl`` under 25 h or ``max_entries`` under 1.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = _check_ttl(ttl)
        if type(max_entries) is not int or max_entries < 1:
            raise ValueError("max_entries must be an int >= 1")
        self.max_entries = max_entries
        self._clock = clock
        # Insertion order is expiry order, as every id lives exactly `ttl` seconds.
        self._expiry: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._warned = False

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        expiry = self._expiry
        while expiry:
            oldest, until = next(iter(expiry.items()))
            if until > now:
                break
            del expiry[oldest]
        overflow = len(expiry) - self.max_entries
        if overflow > 0:
            if not self._warned:
                logger.warning(
                    "The webhook dedup store is full (%d ids); forgetting the oldest early",
                    self.max_entries,
                )
                self._warned = True
            for _ in range(overflow):
                expiry.popitem(last=False)

    async def claim(self, event_id: str) -> bool:
        """Record ``event_id``; True if it was new, False if it was seen within ``ttl``.

        Raises:
            ValueError: An empty or overlong id.

        .. versionadded:: 0.1.0
        """
        _check_id(event_id)
        now = self._clock()
        self._purge(now)
        # No await between the check and the write: concurrent claims cannot both win.
        if event_id in self._expiry:
            return False
        self._expiry[event_id] = now + self.ttl
        self._purge(now)
        return True

    async def release(self, event_id: str) -> None:
        """Forget ``event_id`` so a redelivery is accepted.

        .. versionadded:: 0.1.0
        """
        self._expiry.pop(event_id, None)

    async def aclose(self) -> None:
        """Nothing to release; present for the `DedupStore` protocol.

        .. versionadded:: 0.1.0
        """

    def __repr__(self) -> str:
        return f"<MemoryDedupStore ids={len(self._expiry)} ttl={self.ttl:.0f}s>"


class SQLiteDedupStore:
    """Keeps event ids in a SQLite file for ``ttl`` seconds, so they survive a restart.

    Every SQLite call runs on one dedicated thread, never on the event loop. Claims are a
    single ``INSERT ... ON CONFLICT`` statement, so they are atomic even across processes that
    share the file.

    Args:
        path: The database file (created if missing); ``":memory:"`` for tests.
        ttl: Seconds an id is remembered (wall-clock time, as it must survive restarts).
        clock: A wall-clock time source in seconds (tests pass a fake one).

    Raises:
        TypeError: Bad argument types.
        ValueError: ``ttl`` under 25 h.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.fspath(path)
        self.ttl = _check_ttl(ttl)
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._claims = 0
        self._closed = False

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError(f"The SQLite dedup store {self.path!r} is closed.")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="makini-webhook-dedup")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except (sqlite3.Error, OSError) as exc:
            # The message is SQLite's own (no event data); the chain is dropped with it.
            raise StoreError(
                f"The SQLite dedup store {self.path!r} failed: {type(exc).__name__}: {exc}"
            ) from None

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Runs on the store's own thread.
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS makini_webhook_events "
                    "(id TEXT PRIMARY KEY, expires_at REAL NOT NULL)"
                )
            except BaseException:
                db.close()  # a file that is not a database, or locked: the next call tries again
                raise
            self._db = db
        return fn(self._db)

    async def claim(self, event_id: str) -> bool:
        """Record ``event_id``; True if it was new (or expired), False if seen within ``ttl``.

        Raises:
            ValueError: An empty or overlong id.
            StoreError: The store is closed, or the database failed (locked, corrupt, not a
                database, unwritable).

        .. versionadded:: 0.1.0
        """
        _check_id(event_id)
        now = self._clock()
        self._claims += 1
        purge = self._claims % _PURGE_EVERY == 1

        def claim(db: sqlite3.Connection) -> bool:
            if purge:
                db.execute("DELETE FROM makini_webhook_events WHERE expires_at <= ?", (now,))
            cursor = db.execute(
                "INSERT INTO makini_webhook_events (id, expires_at) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE makini_webhook_events.expires_at <= ?",
                (event_id, now + self.ttl, now),
            )
            return cursor.rowcount == 1

        return await self._run(claim)

    async def release(self, event_id: str) -> None:
        """Forget ``event_id`` so a redelivery is accepted.

        .. versionadded:: 0.1.0
        """

        def release(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM makini_webhook_events WHERE id = ?", (event_id,))

        await self._run(release)

    async def aclose(self) -> None:
        """Close the database and its thread (idempotent).

        .. versionadded:: 0.1.0
        """
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def close() -> None:
            db, self._db = self._db, None
            if db is not None:
                db.close()

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, close)
        finally:
            # The close job runs even if this call was cancelled; the thread exits after it.
            executor.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"<SQLiteDedupStore {self.path!r} ttl={self.ttl:.0f}s>"
