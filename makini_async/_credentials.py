"""The credential source: where each connection's token and its generation live.

It also keeps the rule that one renewal runs per connection and refused generation.
`CredentialSource` is the seam; `MemoryCredentials`, the default, keeps them in this process. A
source shared by several processes (e.g. on Redis, with a lock per connection) fits the same
protocol: `renew` is a coroutine so that it may do I/O and wait for another process's result.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs

__all__ = [
    "Credential",
    "CredentialCache",
    "CredentialSource",
    "MemoryCredentials",
    "Refresh",
    "check_token",
]

#: Runs the reconnect hook: a new token, or None when none can be had. Never raises.
Refresh = Callable[[], Awaitable[str | None]]


def check_token(token: object) -> str:
    """Validate a token before it is stored.

    Any length is accepted: Makini issues JWTs hundreds of characters long, while tests and
    local setups use tokens such as ``"t"``. A token shorter than 16 characters could turn up
    in an error by chance, so it is redacted only where it stands whole (``makini_async._redact``).

    Raises:
        TypeError: Not a string.
        ValueError: Empty, or containing whitespace or control characters.
    """
    if not isinstance(token, str):
        msg = f"a connection token must be a str, not {type(token).__name__}"
        raise TypeError(msg)
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        # The message never echoes the token.
        msg = "a connection token must be non-empty printable ASCII without spaces"
        raise ValueError(msg)
    return token


@attrs.frozen
class Credential:
    """A connection's bearer token and its generation (1 for the first, +1 per new token).

    The token never appears in a repr.

    .. versionadded:: 0.1.0
    """

    token: str = attrs.field(repr=False)
    generation: int


class CredentialSource(Protocol):
    """Holds every connection's current `Credential` and renews a refused one.

    .. versionadded:: 0.1.0
    """

    def install(self, key: str, token: str) -> Credential:
        """Store a token the application gave (``registry.add``, ``update_token``); no I/O.

        Returns:
            The credential: one generation after the key's current one (1 for a new key), or
            the current one when it already holds ``token``.
        """
        ...

    async def renew(self, key: str, refused: Credential, refresh: Refresh) -> Credential | None:
        """The server refused ``refused``: return a newer credential, or None.

        If a newer one is already stored (another call or process renewed it), return it
        without running ``refresh``. Otherwise run ``refresh`` at most once per key and refused
        generation, however many callers ask together, and store what it returns as the next
        generation. Cancelling one caller must not cancel the renewal for the others.
        """
        ...

    def forget(self, key: str) -> None:
        """Drop the key's credential and cancel a renewal still running for it."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds; the registry calls it when it closes."""
        ...


class CredentialCache(abc.ABC):
    """The part every credential source shares: this process's credentials and renewals.

    It keeps each key's `Credential` (local generations) and runs one renewal per key and
    refused generation, however many callers ask, shielded so that cancelling one caller cancels
    nobody else; a renewal that fails (raises) is dropped, so that the next 401 tries again.
    Subclasses say how a renewal gets its token (`_renew`).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_current", "_renewals")

    def __init__(self) -> None:
        self._current: dict[str, Credential] = {}
        # key -> (the refused generation, the task renewing it)
        self._renewals: dict[str, tuple[int, asyncio.Future[Credential | None]]] = {}

    def install(self, key: str, token: str) -> Credential:
        """Store ``token`` as the key's next generation (the same token keeps its generation)."""
        current = self._current.get(key)
        if current is not None and current.token == token:
            return current
        credential = Credential(token, 1 if current is None else current.generation + 1)
        self._current[key] = credential
        return credential

    async def renew(self, key: str, refused: Credential, refresh: Refresh) -> Credential | None:
        """A newer credential than ``refused``, from one `_renew` per refused generation."""
        current = self._current.get(key)
        if current is None:
            return None
        if current.generation != refused.generation:
            return current
        running = self._renewals.get(key)
        if running is None or running[0] != refused.generation:
            task = asyncio.ensure_future(self._renew(key, refused, refresh))
            running = self._renewals[key] = (refused.generation, task)
            task.add_done_callback(lambda done: self._renewal_done(key, done))
        return await asyncio.shield(running[1])

    def _renewal_done(self, key: str, task: asyncio.Future[Credential | None]) -> None:
        if task.cancelled() or task.exception() is not None:
            running = self._renewals.get(key)
            if running is not None and running[1] is task:
                del self._renewals[key]

    @abc.abstractmethod
    async def _renew(self, key: str, refused: Credential, refresh: Refresh) -> Credential | None:
        """Get the token after ``refused`` (``refresh``, or another process's) and store it."""

    def _adopt(self, key: str, refused: Credential, token: str) -> Credential | None:
        """Make ``token`` the generation after ``refused`` (unless one already is).

        Returns:
            The key's credential now; None when the key's token is ``token`` already, so nothing
            newer exists.
        """
        current = self._current.get(key)
        if current is None or current.generation != refused.generation:
            return current  # forgotten, or a token installed while the renewal ran
        if current.token == token:
            return None
        credential = Credential(token, refused.generation + 1)
        self._current[key] = credential
        return credential

    def forget(self, key: str) -> None:
        """Drop the key and cancel its renewal."""
        self._current.pop(key, None)
        running = self._renewals.pop(key, None)
        if running is not None and not running[1].done():
            running[1].cancel()

    def _cancel_renewals(self) -> list[asyncio.Future[Credential | None]]:
        """Cancel every renewal still running; the renewals, for a caller to wait on."""
        renewals = [task for _, task in self._renewals.values()]
        for task in renewals:
            if not task.done():
                task.cancel()
        self._renewals.clear()
        return renewals


class MemoryCredentials(CredentialCache):
    """Credentials in this process's memory: the default `CredentialSource`.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def _renew(self, key: str, refused: Credential, refresh: Refresh) -> Credential | None:
        token = await refresh()
        if token is None:
            current = self._current.get(key)
            if current is None or current.generation != refused.generation:
                return current  # forgotten, or a token installed while the hook ran
            return None
        return self._adopt(key, refused, token)

    async def aclose(self) -> None:
        """Cancel every renewal still running."""
        self._cancel_renewals()

    def __repr__(self) -> str:
        return f"<MemoryCredentials connections={len(self._current)}>"
