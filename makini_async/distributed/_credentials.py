"""`RedisCredentials`: every process's token for a connection, and one refresh for the fleet.

The fleet's current token per connection lives in Redis with the SHA-256 of it; tokens the
fleet replaced are remembered by hash (a set with a TTL), so that a stale token (say, read from
the application's database at start-up) is never put back. After a 401, a process adopts the
fleet's newer token if Redis holds one; otherwise exactly one process runs the reconnect hook,
under a lock named by the refused token's hash, while the others wait for its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING, Final

from makini_async._credentials import Credential, CredentialCache
from makini_async._errors import CoordinationError
from makini_async._transport import check_seconds
from makini_async._types import SystemClock

from ._redis import RedisHandle, as_text, token_hash

if TYPE_CHECKING:
    from makini_async._credentials import Refresh
    from makini_async._types import Clock

    from ._redis import RedisClient

__all__ = ["RedisCredentials"]

logger: Final = logging.getLogger("makini_async")

# The longest wait between two looks at a lock someone else holds (seconds).
_POLL_MAX: Final = 1.0

# KEYS: current, retired. ARGV: token, its hash, TTL (ms). Returns what happened.
_PUBLISH: Final = """
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return 'retired' end
local cur = redis.call('HGET', KEYS[1], 'sha')
if cur == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 'same'
end
if cur then
  redis.call('SADD', KEYS[2], cur)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'sha', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 'set'
"""

# KEYS: current, retired, lock, failed. ARGV: refused hash, owner, lock (ms).
# Returns {'adopt', token} | {'failed', ''} | {'locked', ''} | {'wait', lock's ms left}.
_ACQUIRE: Final = """
local cur = redis.call('HMGET', KEYS[1], 'token', 'sha')
if cur[1] and cur[2] ~= ARGV[1] and redis.call('SISMEMBER', KEYS[2], cur[2]) == 0 then
  return {'adopt', cur[1]}
end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'failed', ''} end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'locked', ''} end
return {'wait', tostring(redis.call('PTTL', KEYS[3]))}
"""

# KEYS: current, retired, lock. ARGV: refused hash, owner, new token, its hash, TTL (ms).
# A token installed meanwhile (not retired) wins over the hook's, as in MemoryCredentials.
# Returns {'ours' | 'theirs', the token now current}.
_FINISH: Final = """
local result
local cur = redis.call('HMGET', KEYS[1], 'token', 'sha')
if cur[1] and cur[2] ~= ARGV[1] and cur[2] ~= ARGV[4]
    and redis.call('SISMEMBER', KEYS[2], cur[2]) == 0 then
  result = {'theirs', cur[1]}
else
  redis.call('SADD', KEYS[2], ARGV[1])
  if cur[2] and cur[2] ~= ARGV[1] and cur[2] ~= ARGV[4] then
    redis.call('SADD', KEYS[2], cur[2])
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
  redis.call('HSET', KEYS[1], 'token', ARGV[3], 'sha', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  result = {'ours', ARGV[3]}
end
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return result
"""

# KEYS: lock, failed. ARGV: owner, the failed marker's life (ms).
_FAIL: Final = """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: lock. ARGV: owner. Compare-and-delete.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lock. ARGV: owner, lock (ms). Compare-and-extend.
_EXTEND: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RedisCredentials(CredentialCache):
    """A `CredentialSource` shared through Redis: one token and one renewal for the fleet.

    `install` stays synchronous and does no I/O: the token becomes this process's next
    generation at once, and a background task publishes it to Redis, unless Redis knows it as
    already replaced (a stale token never overwrites the fleet's newer one). `renew` adopts the
    fleet's current token when it differs from the refused one, without running the hook;
    otherwise it takes a lock named by the refused token's hash, so that exactly one process
    runs the hook (the lock is extended while the hook runs, and expires ``lock_timeout``
    seconds after its holder died, when a waiter takes over). The others poll (``wait_poll``,
    doubled up to a second) and adopt the result; a hook that found no token leaves a
    short-lived marker, so that waiters return None at once. Within a process, one renewal
    runs per connection and refused generation, and cancelling one caller cancels nobody else.

    **Redis holds the tokens** (the other processes need them): protect it as you protect the
    tokens, with AUTH and TLS (``rediss://``). Tokens are never logged and never appear in a
    repr or an exception; Redis keys name a token only by its SHA-256.

    **Redis unavailable during a renewal raises** `CoordinationError`: running the hook
    without the lock could spend a rotating refresh token twice. A publish that fails is
    logged (without the token) and dropped: the next renewal reconciles. `forget` drops a
    connection in this process only: the fleet's token stays in Redis.

    Args:
        url_or_client: A ``redis://`` / ``rediss://`` URL (the source owns that client), or a
            ``redis.asyncio.Redis`` the application owns.
        prefix: The prefix of every Redis key (``PREFIX:cred:CONNECTION:...``).
        lock_timeout: Seconds a renewal lock outlives a holder that stopped extending it.
        wait_poll: Seconds between a waiter's first looks at the lock (doubled up to 1 s).
        retired_ttl: Seconds the fleet remembers a replaced token (and keeps the current one
            after its last change).
        failed_ttl: Seconds the "hook found no token" marker lives.
        clock: The clock waiters sleep on (Redis times the locks).

    Raises:
        TypeError: ``url_or_client`` is neither a str nor a ``redis.asyncio.Redis``.
        ValueError: A bad URL, or a non-positive time.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_acquire",
        "_clock",
        "_extend",
        "_fail",
        "_failed_ms",
        "_finish",
        "_handle",
        "_lock_ms",
        "_prefix",
        "_publish",
        "_publishing",
        "_release",
        "_retired_ms",
        "_wait_poll",
    )

    def __init__(
        self,
        url_or_client: str | RedisClient,
        *,
        prefix: str = "makini",
        lock_timeout: float = 30.0,
        wait_poll: float = 0.05,
        retired_ttl: float = 7 * 24 * 3600.0,
        failed_ttl: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        lock_timeout = check_seconds("lock_timeout", lock_timeout)
        wait_poll = check_seconds("wait_poll", wait_poll)
        retired_ttl = check_seconds("retired_ttl", retired_ttl)
        failed_ttl = check_seconds("failed_ttl", failed_ttl)
        self._handle = RedisHandle(url_or_client, what="the credential source")
        self._prefix = prefix
        self._lock_ms = max(1, round(lock_timeout * 1000))
        self._wait_poll = wait_poll
        self._retired_ms = max(1, round(retired_ttl * 1000))
        self._failed_ms = max(1, round(failed_ttl * 1000))
        self._clock: Clock = clock if clock is not None else SystemClock()
        super().__init__()
        self._publishing: set[asyncio.Task[None]] = set()
        handle = self._handle
        self._publish = handle.script(_PUBLISH)
        self._acquire = handle.script(_ACQUIRE)
        self._finish = handle.script(_FINISH)
        self._fail = handle.script(_FAIL)
        self._release = handle.script(_RELEASE)
        self._extend = handle.script(_EXTEND)

    def __repr__(self) -> str:
        return f"<RedisCredentials prefix={self._prefix!r} connections={len(self._current)}>"

    def _keys(self, key: str) -> tuple[str, str]:
        base = f"{self._prefix}:cred:{key}"
        return f"{base}:current", f"{base}:retired"

    # -- install -----------------------------------------------------------------------------

    def install(self, key: str, token: str) -> Credential:
        """Store ``token`` as the key's next generation here, and publish it to the fleet.

        No I/O: the publish runs in the background, best-effort, and leaves Redis alone when
        the fleet already replaced ``token``. The same token keeps its generation.

        Returns:
            The credential.
        """
        previous = self._current.get(key)
        credential = super().install(key, token)
        if credential is previous:
            return credential
        try:
            task = asyncio.get_running_loop().create_task(self._publish_token(key, token))
        except RuntimeError:  # no running loop: the first renewal reconciles
            return credential
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        return credential

    async def _publish_token(self, key: str, token: str) -> None:
        try:
            outcome = await self._handle.run(
                self._publish,
                "publishing a token",
                self._keys(key),
                [token, token_hash(token), self._retired_ms],
            )
        except CoordinationError as error:
            logger.warning("Could not publish connection %s's new token: %s", key, error)
            return
        if as_text(outcome[0]) == "retired":
            logger.info(
                "Connection %s was given a token the fleet has already replaced; "
                "the fleet's token is adopted on the first 401",
                key,
            )

    # -- renew -------------------------------------------------------------------------------

    async def _renew(self, key: str, refused: Credential, refresh: Refresh) -> Credential | None:
        """The fleet's newer token, or the hook's run under the fleet's lock.

        Raises:
            CoordinationError: Redis could not be used; the hook was not run (unless Redis
                failed after it ran, when its token is kept here and the error is logged).
        """
        current_key, retired_key = self._keys(key)
        refused_hash = token_hash(refused.token)
        lock_key = f"{self._prefix}:cred:{key}:lock:{refused_hash}"
        failed_key = f"{self._prefix}:cred:{key}:failed:{refused_hash}"
        owner = secrets.token_hex(16)
        keys = (current_key, retired_key, lock_key, failed_key)
        poll = self._wait_poll
        while True:
            reply = await self._handle.run(
                self._acquire, "renewing a token", keys, [refused_hash, owner, self._lock_ms]
            )
            verdict = as_text(reply[0])
            if verdict == "adopt":
                return self._adopt(key, refused, as_text(reply[1]))
            if verdict == "failed":
                return None
            if verdict == "locked":
                return await self._run_hook(key, refused, refresh, keys, owner)
            # Someone else holds the lock: look again soon, and at the latest when it expires.
            left = int(as_text(reply[1])) / 1000
            await self._clock.sleep(min(poll, max(left, 0.001)))
            poll = min(poll * 2, _POLL_MAX)

    async def _run_hook(
        self,
        key: str,
        refused: Credential,
        refresh: Refresh,
        keys: tuple[str, str, str, str],
        owner: str,
    ) -> Credential | None:
        current_key, retired_key, lock_key, failed_key = keys
        watchdog = asyncio.ensure_future(self._keep_lock(lock_key, owner))
        finished = False
        try:
            token = await refresh()
            watchdog.cancel()
            if token is None:
                await self._handle.run(
                    self._fail, "renewing a token", (lock_key, failed_key), [owner, self._failed_ms]
                )
                finished = True
                return None
            try:
                reply = await self._handle.run(
                    self._finish,
                    "renewing a token",
                    (current_key, retired_key, lock_key),
                    [token_hash(refused.token), owner, token, token_hash(token), self._retired_ms],
                )
            except CoordinationError as error:
                # The hook may have spent a rotating refresh token: its token is the only good
                # one now, so this process keeps it; the fleet adopts it at its next publish.
                logger.warning(
                    "Could not share connection %s's renewed token (%s); using it here", key, error
                )
                return self._adopt(key, refused, token)
            finished = True
            return self._adopt(key, refused, as_text(reply[1]))
        finally:
            watchdog.cancel()
            if not finished:
                with contextlib.suppress(CoordinationError):
                    await self._handle.run(self._release, "releasing a lock", (lock_key,), [owner])

    async def _keep_lock(self, lock_key: str, owner: str) -> None:
        """Extend the lock while the hook runs: it expires only when this process stops."""
        while True:
            await asyncio.sleep(self._lock_ms / 3000)
            try:
                await self._handle.run(
                    self._extend, "holding a lock", (lock_key,), [owner, self._lock_ms]
                )
            except CoordinationError as error:
                logger.warning("Could not extend a token renewal lock: %s", error)

    async def aclose(self) -> None:
        """Cancel the renewals still running, finish the publishes, close an owned client."""
        renewals = self._cancel_renewals()
        pending: list[asyncio.Future[Credential | None] | asyncio.Task[None]] = [
            *renewals,
            *self._publishing,
        ]
        if pending:
            # Bounded: a publish or a lock release needs one round trip each.
            await asyncio.wait(pending, timeout=2.0)
        for publish in tuple(self._publishing):
            publish.cancel()
        await self._handle.aclose()
