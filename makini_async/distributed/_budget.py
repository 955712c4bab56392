"""`RedisRateBudget`: one rate budget per connection, shared by every process on one Redis.

Per connection, one Redis hash holds what the fleet learned: the limit (``X-RateLimit-Limit``),
a pause (after a 429 or a 5xx with ``Retry-After``, or ``Remaining: 0`` with a reset), and the
sends counted in the current window. The server's window is fixed: it starts at the first
request after the previous one ended and lasts ``window`` seconds. The budget mirrors it: a
window starts at the first send after the previous one ended, and lasts ``window`` plus a small
margin (the first request reaches the server a little after it was counted here), so that N
processes together never send more than the limit in one of the server's windows.

Each change is one Lua script, timed with Redis's own ``TIME``, so process clocks do not matter.
A process leases a few sends per round trip (``lease``; up to ``max_lease`` while the window
has plenty left: a sixteenth of what remains), and leftover leases die with the window or a
pause. An answer that teaches nothing new (the same limit, a count we already had) costs no
round trip, so a busy connection costs about ``1 / lease`` Redis operations per request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final, Literal

import attrs

from makini_async._budget import LocalRateBudget, Pause, RateSignal
from makini_async._errors import APIError, CoordinationError, RateLimitError, ServerError
from makini_async._transport import check_seconds
from makini_async._types import SystemClock

from ._redis import RedisHandle

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.commands.core import AsyncScript

    from makini_async._types import Clock

    from ._redis import RedisClient

__all__ = ["RedisRateBudget"]

logger: Final = logging.getLogger("makini_async")

# Statuses whose Retry-After pauses the whole connection (as LocalRateBudget).
_PAUSING_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_TOO_MANY: Final = 429
# A paced call re-asks at least this often (seconds): the engine spreads each wait by up to
# 10 % of it, and a short step keeps that spread from eating into the next window.
_PACING_STEP: Final = 1.0
# After a failed round trip, Redis is tried again after this back-off, doubled up to the max.
_BACKOFF_FIRST: Final = 0.5
_BACKOFF_MAX: Final = 8.0

# KEYS[1] the connection's hash. ARGV: window span (ms), sends wanted, TTL (ms), most sends
# granted (while a sixteenth of what the window has left is more than wanted).
# Returns {granted, wait ms, pausing status (0: pacing), limit, sent, ms left in window, ws}.
_ADMIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'lim', 'ws', 'sent', 'pu', 'pc')
local lim = tonumber(s[1]) or 0
local ws = tonumber(s[2])
local sent = tonumber(s[3]) or 0
local pu = tonumber(s[4]) or 0
local span = tonumber(ARGV[1])
if pu > now then
  return {0, pu - now, tonumber(s[5]) or 0, lim, sent, 0, ws or 0}
end
if ws == nil or now >= ws + span then
  ws = now
  sent = 0
end
local grant = tonumber(ARGV[2])
if lim > 0 then
  if sent >= lim then
    return {0, ws + span - now, 0, lim, sent, ws + span - now, ws}
  end
  local spare = math.floor((lim - sent) / 16)
  if spare > grant then grant = math.min(spare, tonumber(ARGV[4])) end
  grant = math.min(grant, lim - sent)
end
sent = sent + grant
redis.call('HSET', KEYS[1], 'ws', ws, 'sent', sent)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {grant, 0, 0, lim, sent, ws + span - now, ws}
"""

# KEYS[1] the connection's hash. ARGV: pause (ms), status (0: an exhausted budget), limit
# (0: unknown), window span (ms), TTL (ms). The window is full until the pause ends: the
# server's window resets then. Returns {limit, sent, ws}.
_PAUSE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'lim', 'pu')
local lim = tonumber(s[1]) or 0
if tonumber(ARGV[3]) > 0 then lim = tonumber(ARGV[3]) end
local until_ = now + tonumber(ARGV[1])
if until_ > (tonumber(s[2]) or 0) then
  local ws = until_ - tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'pu', until_, 'pc', ARGV[2], 'lim', lim, 'ws', ws, 'sent', lim)
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[5]))
local r = redis.call('HMGET', KEYS[1], 'sent', 'ws')
return {lim, tonumber(r[1]) or 0, tonumber(r[2]) or 0}
"""

# KEYS[1] the connection's hash. ARGV: limit, the server's count, the window the count was
# seen in, TTL (ms), window span (ms). A count higher than ours (in the same window) is
# adopted. A count of 1 early in the window is the first request of the server's window: it
# started when that request arrived, a moment before now, so the window here is moved to
# start now (it must not end before the server's). Returns {limit, sent, ws}.
_LEARN: Final = """
local s = redis.call('HMGET', KEYS[1], 'lim', 'ws', 'sent')
local lim = tonumber(ARGV[1])
local ws = tonumber(s[2]) or 0
local sent = tonumber(s[3]) or 0
local count = tonumber(ARGV[2])
if tonumber(s[1]) ~= lim then redis.call('HSET', KEYS[1], 'lim', lim) end
if ws ~= 0 and ws == tonumber(ARGV[3]) then
  if count > sent then
    sent = count
    redis.call('HSET', KEYS[1], 'sent', sent)
  end
  if count == 1 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if now > ws and now - ws < tonumber(ARGV[5]) / 2 then
      ws = now
      redis.call('HSET', KEYS[1], 'ws', ws)
    end
  end
end
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return {lim, sent, ws}
"""


@attrs.define
class _Local:
    """What this process knows of one connection, on the budget's clock."""

    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    leases: int = 0  # sends already counted in Redis, not yet used
    lease_end: float = 0.0  # when they die (the window's end)
    window: int = 0  # the Redis window (its start, Redis ms) the leases belong to
    limit: int = 0
    sent: int = 0  # the fleet's count in that window, as last seen
    pause_end: float = 0.0
    cause: APIError | None = None
    paced_end: float = 0.0


class RedisRateBudget:
    """A `RateBudget` shared through Redis by every process (and registry) that uses it.

    A 429 or a 5xx with ``Retry-After`` seen by one process pauses the connection in all of
    them; ``X-RateLimit-Remaining: 0`` with a reset pauses it until the reset; and sends are
    counted per window so that together the processes stay within the limit the server
    announced (``X-RateLimit-Limit``; ``X-RateLimit-Remaining`` lower than the shared count is
    adopted). With one process it pauses exactly as `LocalRateBudget` does, and paces only when
    the learned limit would be exceeded. Keys expire a few windows after a connection's last
    send, so removed connections do not stay in Redis.

    When Redis cannot be used, ``on_unavailable="local"`` carries on with an in-process
    `LocalRateBudget` (one warning per outage) and tries Redis again after a short back-off;
    ``"raise"`` makes `admit` raise `CoordinationError`. `observe` never raises: what it
    learns is kept in this process.

    Args:
        url_or_client: A ``redis://`` / ``rediss://`` URL (the budget owns that client), or a
            ``redis.asyncio.Redis`` the application owns.
        prefix: The prefix of every Redis key (``PREFIX:rate:CONNECTION``).
        window: The server's rate-limit window in seconds (Makini: 60).
        lease: Sends counted per Redis round trip: more is cheaper, but leases a process does
            not use before its window ends are lost to every process.
        max_lease: The most sends one round trip counts while the window has plenty left
            (a sixteenth of what remains): a busy connection with a high limit then costs
            about ``1 / max_lease`` Redis operations per request.
        on_unavailable: ``"local"`` or ``"raise"``, as above.
        clock: The clock waits are measured on (the registry's; Redis times the windows).
        max_pause: The longest pause ``Remaining: 0`` imposes (as in `LocalRateBudget`).

    Raises:
        TypeError: ``url_or_client`` is neither a str nor a ``redis.asyncio.Redis``.
        ValueError: A bad URL, a non-positive ``window``, ``lease`` below 1 or above
            ``max_lease``, or an unknown
            ``on_unavailable``.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_backoff",
        "_clock",
        "_fallback",
        "_handle",
        "_learn",
        "_lease",
        "_max_lease",
        "_max_pause",
        "_on_unavailable",
        "_pause",
        "_prefix",
        "_retry_at",
        "_span_ms",
        "_state",
        "_take",
        "_ttl_ms",
        "_window",
    )

    def __init__(
        self,
        url_or_client: str | RedisClient,
        *,
        prefix: str = "makini",
        window: float = 60.0,
        lease: int = 4,
        max_lease: int = 64,
        on_unavailable: Literal["local", "raise"] = "local",
        clock: Clock | None = None,
        max_pause: float = 60.0,
    ) -> None:
        window = check_seconds("window", window)
        given: object = lease  # checked at run time: callers may not be type-checked
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ValueError(f"lease must be an int of 1 or more, not {lease!r}")
        most: object = max_lease
        if isinstance(most, bool) or not isinstance(most, int) or most < lease:
            raise ValueError(f"max_lease must be an int of at least lease, not {max_lease!r}")
        if on_unavailable not in {"local", "raise"}:
            raise ValueError(f'on_unavailable must be "local" or "raise", not {on_unavailable!r}')
        self._handle = RedisHandle(url_or_client, what="the rate budget")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._prefix = prefix
        self._window = window
        # The first request reaches the server a little after Redis counted it: each window
        # here lasts that much longer than the server's, so it never ends before the server's.
        self._span_ms = round((window + max(0.1, window * 0.02)) * 1000)
        self._ttl_ms = 3 * self._span_ms
        self._lease = lease
        self._max_lease = max_lease
        self._on_unavailable = on_unavailable
        self._max_pause = max_pause
        self._fallback = LocalRateBudget(clock=self._clock, max_pause=max_pause)
        self._state: dict[str, _Local] = {}
        self._retry_at: float | None = None  # set during an outage: when to try Redis again
        self._backoff = _BACKOFF_FIRST
        self._take = self._handle.script(_ADMIT)
        self._pause = self._handle.script(_PAUSE)
        self._learn = self._handle.script(_LEARN)

    def __repr__(self) -> str:
        state = "local fallback" if self._retry_at is not None else "redis"
        return f"<RedisRateBudget prefix={self._prefix!r} {state} connections={len(self._state)}>"

    def _key(self, key: str) -> str:
        return f"{self._prefix}:rate:{key}"

    def _local(self, key: str) -> _Local:
        local = self._state.get(key)
        if local is None:
            local = self._state[key] = _Local()
        return local

    # -- outages -----------------------------------------------------------------------------

    def _redis_usable(self) -> bool:
        """False while an outage's back-off runs (the fallback answers instead)."""
        retry_at = self._retry_at
        return retry_at is None or self._clock.monotonic() >= retry_at

    def _failed(self, error: CoordinationError) -> None:
        """Note a failed round trip: warn once per outage, back off before trying again."""
        if self._retry_at is None:
            self._backoff = _BACKOFF_FIRST
            logger.warning(
                "The Redis rate budget is unavailable (%s); each process keeps its own "
                "budget until Redis answers again",
                error,
            )
        else:
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
        self._retry_at = self._clock.monotonic() + self._backoff

    def _answered(self) -> None:
        if self._retry_at is not None:
            self._retry_at = None
            logger.info("The Redis rate budget is available again")

    # -- the protocol ------------------------------------------------------------------------

    async def admit(self, key: str) -> Pause | None:
        """None when ``key`` may send now, or how long it must wait first.

        Raises:
            CoordinationError: Redis failed and ``on_unavailable`` is ``"raise"``.
        """
        local = self._local(key)
        decided, pause = self._without_io(local)
        if decided:
            return pause
        if not self._redis_usable():
            return await self._fallback.admit(key)
        async with local.lock:
            # Another caller of this process may have refilled the leases while we queued.
            decided, pause = self._without_io(local)
            if decided:
                return pause
            return await self._refill(key, local)

    def _without_io(self, local: _Local) -> tuple[bool, Pause | None]:
        """(True, the answer) when a known pause or a lease decides, else (False, None)."""
        hint = self._known_pause(local)
        if hint is not None:
            return True, hint
        if local.leases > 0 and self._clock.monotonic() < local.lease_end:
            local.leases -= 1
            return True, None
        return False, None

    async def _refill(self, key: str, local: _Local) -> Pause | None:
        if not self._redis_usable():
            return await self._fallback.admit(key)
        try:
            reply = await self._handle.run(
                self._take,
                "admitting a send",
                [self._key(key)],
                [self._span_ms, self._lease, self._ttl_ms, self._max_lease],
            )
        except CoordinationError as error:
            if self._on_unavailable == "raise":
                raise
            self._failed(error)
            return await self._fallback.admit(key)
        self._answered()
        return self._admitted(local, [_int(v) for v in reply])

    def _known_pause(self, local: _Local) -> Pause | None:
        """The pause this process already knows of, without I/O."""
        now = self._clock.monotonic()
        if local.pause_end > now:
            return Pause(local.pause_end - now, local.cause)
        if local.paced_end > now:
            return Pause(min(local.paced_end - now, _PACING_STEP), None)
        return None

    def _admitted(self, local: _Local, reply: list[int]) -> Pause | None:
        granted, wait_ms, status, limit, sent, left_ms, window = reply
        now = self._clock.monotonic()
        local.limit, local.sent, local.window = limit, sent, window
        if granted > 0:
            local.leases = granted - 1
            local.lease_end = now + left_ms / 1000
            return None
        local.leases = 0
        wait = wait_ms / 1000
        if status == 0:
            local.paced_end = now + wait
            return Pause(min(wait, _PACING_STEP), None)
        cause = local.cause
        if cause is None or cause.status != status or local.pause_end < now:
            cause = _cause(status)
        local.pause_end, local.cause = now + wait, cause
        return Pause(wait, cause)

    async def observe(self, key: str, signal: RateSignal) -> None:
        """Learn from an answer to ``key``'s request; shared through Redis when it is new."""
        await self._fallback.observe(key, signal)
        local = self._local(key)
        limit = signal.rate_limit
        known = 0 if limit is None or limit.limit is None else limit.limit
        if signal.retry_after is not None and signal.status in _PAUSING_STATUSES:
            self._hold(local, signal.retry_after, signal.error)
            realign = known if signal.status == _TOO_MANY else 0
            await self._share_pause(key, local, signal.retry_after, signal.status, realign)
            return
        if limit is None or limit.limit is None or limit.remaining is None:
            return
        if signal.error is None and limit.remaining == 0 and limit.reset is not None:
            wait = limit.reset.timestamp() - self._clock.time()
            if 0 < wait <= self._max_pause:
                self._hold(local, wait, None)
                await self._share_pause(key, local, wait, 0, known)
                return
        count = limit.limit - limit.remaining
        # Only a new limit, or a count above ours near the window's end (where an overshoot
        # would be a 429), is worth a round trip.
        near_end = limit.remaining <= max(2 * self._lease, limit.limit // 10)
        first = count == 1  # the server's window started with this request: realign to it
        if limit.limit == local.limit and not first and not (count > local.sent and near_end):
            local.sent = max(local.sent, count)
            return
        if count > local.sent and near_end:
            local.leases = 0  # the server counted more than we did: ours would overshoot
        reply = await self._share(
            self._learn,
            "learning a limit",
            key,
            [limit.limit, count, local.window, self._ttl_ms, self._span_ms],
        )
        if reply is not None:
            local.limit, local.sent, local.window = reply

    def _hold(self, local: _Local, seconds: float, cause: APIError | None) -> None:
        until = self._clock.monotonic() + seconds
        local.leases = 0
        if until > local.pause_end:
            local.pause_end, local.cause = until, cause

    async def _share_pause(
        self, key: str, local: _Local, seconds: float, status: int, limit: int
    ) -> None:
        args = [round(seconds * 1000), status, limit, self._span_ms, self._ttl_ms]
        reply = await self._share(self._pause, "sharing a pause", key, args)
        if reply is not None:
            local.limit, local.sent, local.window = reply

    async def _share(
        self, script: AsyncScript, operation: str, key: str, args: Sequence[object]
    ) -> tuple[int, int, int] | None:
        """Run an observing script; None when Redis cannot be used (never raises)."""
        if not self._redis_usable():
            return None
        try:
            reply = await self._handle.run(script, operation, [self._key(key)], args)
        except CoordinationError as error:
            self._failed(error)
            return None
        self._answered()
        limit, sent, window = (_int(v) for v in reply)
        return limit, sent, window

    def paused_for(self, key: str) -> float:
        """Seconds ``key`` is known (by this process, without I/O) to be paused or paced."""
        local = self._state.get(key)
        held = self._fallback.paused_for(key)
        if local is None:
            return held
        now = self._clock.monotonic()
        return max(held, local.pause_end - now, local.paced_end - now, 0.0)

    def forget(self, key: str) -> None:
        """Drop what this process knows of ``key``; its Redis key expires on its own.

        The shared state stays: other processes may still send on the connection, and a
        server's pause holds for them too.
        """
        self._state.pop(key, None)
        self._fallback.forget(key)

    async def aclose(self) -> None:
        """Close the Redis client if the budget made it from a URL."""
        self._state.clear()
        await self._handle.aclose()


def _int(value: object) -> int:
    """An integer of a script's reply."""
    if isinstance(value, int):
        return value
    return int(str(value if not isinstance(value, bytes) else value.decode()))


def _cause(status: int) -> APIError:
    """The error a pause another process saw is reported as (its text never crosses Redis)."""
    message = f"The connection is paused after a {status} another client of it received"
    if status == _TOO_MANY:
        return RateLimitError(message, status=status, code="RATE_LIMIT_EXCEEDED")
    return ServerError(message, status=status)
