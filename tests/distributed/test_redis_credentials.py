"""`RedisCredentials` against a real redis-server: one token and one renewal for the fleet."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

import makini_async as m
from makini_async.distributed import RedisCredentials
from makini_async.distributed._redis import token_hash
from tests.services import RedisServer
from tests.support import MakeRegistry, ScriptedApp, error_reply

SECRET_OLD = "old-secret-token-0123456789"
SECRET_NEW = "new-secret-token-0123456789"


async def _new_token(event: m.ReconnectEvent) -> str:
    """A reconnect hook that always has the new token."""
    del event
    return SECRET_NEW


async def _settled(source: RedisCredentials) -> None:
    """Let the background publishes of `install` reach Redis."""
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not source._publishing:
            return


class TestFleet:
    async def test_three_registries_run_the_hook_once(
        self,
        scripted: tuple[ScriptedApp, str],
        make_registry: MakeRegistry,
        redis: RedisServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Three registries, each with its own source on one Redis: one hook run, one new token."""
        caplog.set_level(logging.DEBUG)
        app, url = scripted
        app.by_token[SECRET_OLD] = error_reply(401, "TOKEN_EXPIRED")
        runs: list[int] = []

        async def renew(event: m.ReconnectEvent) -> str:
            runs.append(event.generation)
            await asyncio.sleep(0.2)
            return SECRET_NEW

        sources = [RedisCredentials(redis.url, wait_poll=0.01) for _ in range(3)]
        conns = [
            make_registry(url, credentials=source, on_reconnect=renew).add("acme", SECRET_OLD)
            for source in sources
        ]
        responses = await asyncio.gather(*(conn.request("GET", "/x") for conn in conns))
        assert [r.status for r in responses] == [200, 200, 200]
        assert runs == [1]
        assert {conn.generation for conn in conns} == {2}
        assert [seen.token for seen in app.seen].count(SECRET_NEW) == 3
        for source in sources:
            assert SECRET_OLD not in repr(source)
        assert SECRET_OLD not in caplog.text
        assert SECRET_NEW not in caplog.text

    async def test_a_token_renewed_elsewhere_is_adopted_without_the_hook(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, redis: RedisServer
    ) -> None:
        """A token another process published is used after the 401, without the hook."""
        app, url = scripted
        app.by_token[SECRET_OLD] = error_reply(401, "TOKEN_EXPIRED")
        runs: list[int] = []

        async def renew(event: m.ReconnectEvent) -> str:
            runs.append(event.generation)
            return "unused"

        here, elsewhere = RedisCredentials(redis.url), RedisCredentials(redis.url)
        conn = make_registry(url, credentials=here, on_reconnect=renew).add("acme", SECRET_OLD)
        await _settled(here)
        elsewhere.install("acme", SECRET_NEW)
        await _settled(elsewhere)
        await conn.request("GET", "/x")
        assert runs == []
        assert [seen.token for seen in app.seen] == [SECRET_OLD, SECRET_NEW]
        assert conn.generation == 2
        await elsewhere.aclose()

    async def test_a_stale_token_does_not_replace_the_fleets(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, redis: RedisServer
    ) -> None:
        """A token the fleet replaced, installed again at start-up, is not published."""
        app, url = scripted
        app.by_token[SECRET_OLD] = error_reply(401, "TOKEN_EXPIRED")

        first = RedisCredentials(redis.url)
        conn = make_registry(url, credentials=first, on_reconnect=_new_token).add(
            "acme", SECRET_OLD
        )
        await conn.request("GET", "/x")  # renewed: the fleet's token is the new one
        restarted = RedisCredentials(redis.url)
        runs: list[int] = []

        async def unused(event: m.ReconnectEvent) -> str:
            runs.append(event.generation)
            return "unused"

        later = make_registry(url, credentials=restarted, on_reconnect=unused)
        stale = later.add("acme", SECRET_OLD)  # from the application's database
        await _settled(restarted)
        client = aioredis.Redis.from_url(redis.url)
        try:
            assert await client.hget("makini:cred:acme:current", "sha") == (
                token_hash(SECRET_NEW).encode()
            )
        finally:
            await client.aclose()
        await stale.request("GET", "/y")
        assert runs == []
        assert app.seen[-1].token == SECRET_NEW

    async def test_an_expired_lock_is_taken_over(self, redis: RedisServer) -> None:
        """A holder that died (its lock left behind) is taken over once the lock expires."""
        source = RedisCredentials(redis.url, lock_timeout=0.5, wait_poll=0.01)
        refused = source.install("acme", SECRET_OLD)
        await _settled(source)
        client = aioredis.Redis.from_url(redis.url)
        try:
            lock = f"makini:cred:acme:lock:{token_hash(SECRET_OLD)}"
            await client.set(lock, "a dead process", px=500)
            calls = 0

            async def refresh() -> str | None:
                nonlocal calls
                calls += 1
                return SECRET_NEW

            renewed = await asyncio.wait_for(source.renew("acme", refused, refresh), 30)
            assert renewed is not None
            assert (renewed.token, renewed.generation, calls) == (SECRET_NEW, 2, 1)
            assert await client.exists(lock) == 0
        finally:
            await client.aclose()
            await source.aclose()

    async def test_a_hook_without_token_answers_the_waiters_at_once(
        self, redis: RedisServer
    ) -> None:
        """A hook that returns None leaves a marker: the other processes get None, no hook."""
        holder = RedisCredentials(redis.url, lock_timeout=30.0)
        waiter = RedisCredentials(redis.url, lock_timeout=30.0, wait_poll=0.01)
        refused = holder.install("acme", SECRET_OLD)
        waiter_refused = waiter.install("acme", SECRET_OLD)
        started, go = asyncio.Event(), asyncio.Event()
        calls = 0

        async def slow_none() -> str | None:
            started.set()
            await go.wait()
            return None

        async def counted() -> str | None:
            nonlocal calls
            calls += 1
            return SECRET_NEW

        try:
            held = asyncio.ensure_future(holder.renew("acme", refused, slow_none))
            await started.wait()
            waiting = asyncio.ensure_future(waiter.renew("acme", waiter_refused, counted))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            go.set()
            assert await asyncio.wait_for(held, 10) is None
            assert await asyncio.wait_for(waiting, 10) is None
            assert calls == 0
        finally:
            await holder.aclose()
            await waiter.aclose()


class TestUnavailable:
    async def test_redis_down_during_renew_raises_without_the_hook(
        self, redis: RedisServer
    ) -> None:
        """No Redis, no lock: renew raises CoordinationError and never runs the hook."""
        source = RedisCredentials(redis.url)
        refused = source.install("acme", SECRET_OLD)
        await _settled(source)
        redis.stop()
        calls = 0

        async def refresh() -> str | None:
            nonlocal calls
            calls += 1
            return SECRET_NEW

        try:
            with pytest.raises(m.CoordinationError) as info:
                await source.renew("acme", refused, refresh)
            assert calls == 0
            text = str(info.value) + repr(info.value)
            assert "127.0.0.1" not in text
            assert SECRET_OLD not in text
            assert info.value.__cause__ is None
            redis.start()
            renewed = await source.renew("acme", refused, refresh)  # tried again, not cached
            assert renewed is not None
            assert calls == 1
        finally:
            await source.aclose()

    async def test_a_call_fails_typed_when_redis_is_down(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry, redis: RedisServer
    ) -> None:
        """Through the registry, the 401's renewal ends the call with CoordinationError."""
        app, url = scripted
        app.by_token[SECRET_OLD] = error_reply(401, "TOKEN_EXPIRED")

        source = RedisCredentials(redis.url)
        conn = make_registry(url, credentials=source, on_reconnect=_new_token).add(
            "acme", SECRET_OLD
        )
        await _settled(source)
        redis.stop()
        with pytest.raises(m.CoordinationError):
            await conn.request("GET", "/x")


def test_arguments_are_checked_before_any_io() -> None:
    """Bad arguments fail at once."""
    with pytest.raises(ValueError, match="lock_timeout"):
        RedisCredentials("redis://127.0.0.1:1", lock_timeout=0)
    with pytest.raises(TypeError):
        RedisCredentials(object())  # type: ignore[arg-type]
