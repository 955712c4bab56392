"""Shared Redis plumbing: owning or borrowing a client, running Lua scripts, typed errors.

Every failure of Redis (unreachable, timed out, an error reply) becomes a `CoordinationError`
whose message names the operation and the error's type, never the URL (it may hold a password)
nor the command's arguments (they may hold a token).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, TypeAlias

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from makini_async._errors import CoordinationError

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["RedisClient", "RedisHandle", "as_text", "token_hash"]

logger: Final = logging.getLogger("makini_async")

RedisClient: TypeAlias = "aioredis.Redis"

#: Seconds to connect to Redis and to wait for one reply: a coordination store that answers
#: slower than this is treated as unavailable.
_CONNECT_TIMEOUT: Final = 2.0
_REPLY_TIMEOUT: Final = 5.0
_SCHEMES: Final = ("redis://", "rediss://", "unix://")
# What a broken socket, a closed client or a timed-out reply raise besides RedisError.
_FAILURES: Final = (RedisError, OSError, TimeoutError, RuntimeError)


def token_hash(token: str) -> str:
    """The SHA-256 of a token, in hex: how Redis keys and sets name a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def as_text(value: object) -> str:
    """A Redis reply as text, whether the client decodes responses or not."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


class RedisHandle:
    """A Redis client, made from a URL (and then owned) or given by the application.

    Args:
        url_or_client: ``redis://``, ``rediss://`` or ``unix://`` URL, or a
            ``redis.asyncio.Redis`` the application keeps (and closes).
        what: What uses it, for error messages (``"the rate budget"``).

    Raises:
        TypeError: Neither a str nor a ``redis.asyncio.Redis``.
        ValueError: A str that is not a Redis URL.
    """

    __slots__ = ("client", "owned", "what")

    def __init__(self, url_or_client: str | RedisClient, *, what: str) -> None:
        self.what = what
        given: object = url_or_client  # checked at run time: callers may not be type-checked
        if isinstance(given, str):
            if not given.startswith(_SCHEMES):
                # The message never echoes the URL: it may carry a password.
                msg = "a Redis URL must start with redis://, rediss:// or unix://"
                raise ValueError(msg)
            self.client: RedisClient = aioredis.Redis.from_url(
                given,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_timeout=_REPLY_TIMEOUT,
            )
            self.owned = True
        elif isinstance(given, aioredis.Redis):
            self.client = given
            self.owned = False
        else:
            msg = (
                f"expected a Redis URL or a redis.asyncio.Redis client, not {type(given).__name__}"
            )
            raise TypeError(msg)

    def script(self, source: str) -> AsyncScript:
        """Register a Lua script: run with EVALSHA, loaded again after a Redis restart."""
        return self.client.register_script(source)

    async def run(
        self, script: AsyncScript, operation: str, keys: Sequence[str], args: Sequence[object]
    ) -> list[object]:
        """Run ``script``; its reply as a list.

        Raises:
            CoordinationError: Redis failed; the message names ``operation`` only.
        """
        try:
            reply = await script(keys=list(keys), args=list(args))  # type: ignore[arg-type]
        except _FAILURES as exc:
            raise self.error(operation, exc) from None
        return list(reply) if isinstance(reply, list | tuple) else [reply]

    async def call(self, operation: str, *command: str | float) -> object:
        """Run one plain Redis command.

        Raises:
            CoordinationError: Redis failed; the message names ``operation`` only.
        """
        try:
            return await self.client.execute_command(*command)  # type: ignore[no-untyped-call]
        except _FAILURES as exc:
            raise self.error(operation, exc) from None

    def error(self, operation: str, exc: BaseException) -> CoordinationError:
        """The `CoordinationError` for ``exc``: its type only, as its text may quote a secret."""
        return CoordinationError(
            f"Redis failed while {self.what} was {operation} ({type(exc).__name__})"
        )

    async def aclose(self) -> None:
        """Close the client if it was made here; an application's client is left open."""
        if not self.owned:
            return
        try:
            await self.client.aclose()
        except _FAILURES:
            logger.warning("Closing the Redis client of %s failed", self.what)
