"""The reconnect hook: once per connection and token generation, replay once, fail fast after."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

import makini_async as m
from makini_async import ConnectionState, ReconnectEvent
from tests.support import MakeRegistry, Reply, ScriptedApp, StartApp, error_reply


def state(conn: m.Connection) -> ConnectionState:
    """Read the state through a call, so the type checker does not pin it between awaits."""
    return conn.state


class Hook:
    """A reconnect hook that records its calls and hands out the next token."""

    def __init__(self, *tokens: str | None, block: asyncio.Event | None = None) -> None:
        self.tokens = list(tokens)
        self.events: list[ReconnectEvent] = []
        self.block = block
        self.raises: Exception | None = None
        self.called = asyncio.Event()

    async def __call__(self, event: ReconnectEvent) -> str | None:
        self.events.append(event)
        self.called.set()
        if self.block is not None:
            await self.block.wait()
        if self.raises is not None:
            raise self.raises
        return self.tokens.pop(0) if self.tokens else None


class TestStorm:
    async def test_100_way_401_storm_runs_the_hook_once(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """100 concurrent calls that all get 401 share one hook call and all succeed."""
        app, url = scripted
        app.by_token["old"] = error_reply(401, "TOKEN_EXPIRED")
        hook = Hook("new")
        conn = make_registry(url, on_reconnect=hook, limit_per_connection=None).add(
            "acme", "old", metadata={"tenant": 7}
        )
        app.gate = asyncio.Event()
        tasks = [asyncio.create_task(conn.request("GET", f"/r{i}")) for i in range(100)]
        await app.arrivals(100)  # every call has sent the old token before any 401 returns
        app.gate.set()
        results = await asyncio.gather(*tasks)
        assert all(r.status == 200 for r in results)
        assert len(hook.events) == 1
        event = hook.events[0]
        assert event.connection_id == "acme"
        assert event.generation == 1
        assert isinstance(event.error, m.TokenExpiredError)
        assert event.metadata == {"tenant": 7}
        assert [s.token for s in app.seen].count("old") == 100
        assert [s.token for s in app.seen].count("new") == 100
        assert conn.generation == 2
        assert state(conn) is ConnectionState.ACTIVE

    async def test_late_401_for_an_old_token_does_not_fire_again(
        self, app_server: StartApp, make_registry: MakeRegistry
    ) -> None:
        """A 401 that arrives after the token was replaced replays with the new token."""
        release_slow = asyncio.Event()
        slow_arrived = asyncio.Event()
        tokens_seen: list[str] = []

        async def handler(request: web.Request) -> web.Response:
            token = request.headers["Authorization"].removeprefix("Bearer ")
            tokens_seen.append(token)
            if token == "old":
                if request.path == "/slow":
                    slow_arrived.set()
                    await release_slow.wait()
                return web.json_response(
                    {"error": {"code": "TOKEN_EXPIRED", "message": "expired"}}, status=401
                )
            return web.json_response({"data": token})

        app = web.Application()
        app.router.add_get("/{name}", handler)
        url = await app_server(app)
        hook = Hook("new", "newer")
        conn = make_registry(url, on_reconnect=hook).add("c", "old")
        slow = asyncio.create_task(conn.request("GET", "/slow"))
        await slow_arrived.wait()
        fast = await conn.request("GET", "/fast")
        assert fast.data == {"data": "new"}
        release_slow.set()
        late = await slow
        assert late.data == {"data": "new"}
        assert len(hook.events) == 1


class TestFailure:
    async def test_hook_returning_none_requires_reauthorization(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A hook that returns None moves the connection to REAUTHORIZATION_REQUIRED."""
        app, url = scripted
        app.by_token["t1"] = error_reply(401, "REAUTHORIZATION_REQUIRED")
        hook = Hook(None)
        registry = make_registry(url, on_reconnect=hook)
        conn = registry.add("c", "t1")
        with pytest.raises(m.ReauthorizationRequiredError) as info:
            await conn.request("GET", "/x")
        assert info.value.code == "REAUTHORIZATION_REQUIRED"
        assert info.value.request_id == "req_e"
        assert state(conn) is ConnectionState.REAUTHORIZATION_REQUIRED
        sent = len(app.seen)
        # Calls now fail at once, without I/O, and without calling the hook again.
        for _ in range(3):
            with pytest.raises(m.ReauthorizationRequiredError):
                await conn.request("GET", "/x")
        assert len(app.seen) == sent
        assert len(hook.events) == 1
        # The customer reconnects: a new token makes the connection usable again.
        registry.update_token("c", "t2")
        assert state(conn) is ConnectionState.ACTIVE
        assert (await conn.request("GET", "/x")).status == 200
        assert app.seen[-1].token == "t2"

    async def test_no_hook_means_reauthorization_required(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Without a hook, a 401 raises a ReauthorizationRequiredError and parks the connection."""
        app, url = scripted
        app.default = error_reply(401, "AUTHENTICATION_FAILED")
        conn = make_registry(url).add("c", "t")
        with pytest.raises(m.ReauthorizationRequiredError) as info:
            await conn.request("GET", "/x")
        assert isinstance(info.value.__cause__, m.AuthenticationError)
        assert info.value.__cause__.code == "AUTHENTICATION_FAILED"
        assert state(conn) is ConnectionState.REAUTHORIZATION_REQUIRED

    async def test_hook_that_raises_fails_every_waiter_typed(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """When the hook raises, all waiting calls get ReauthorizationRequiredError, none hang."""
        app, url = scripted
        app.default = error_reply(401, "TOKEN_EXPIRED")
        hook = Hook()
        hook.raises = RuntimeError("refresh service down")
        conn = make_registry(url, on_reconnect=hook, limit_per_connection=None).add("c", "t")
        results = await asyncio.gather(
            *(conn.request("GET", f"/{i}") for i in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, m.ReauthorizationRequiredError) for r in results)
        assert len(hook.events) == 1
        assert state(conn) is ConnectionState.REAUTHORIZATION_REQUIRED

    async def test_new_token_failing_too_stops_without_ping_pong(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """If the hook's token is refused as well, the hook is not called again."""
        app, url = scripted
        app.default = error_reply(401, "AUTHENTICATION_FAILED")
        hook = Hook("t2", "t3", "t4")
        conn = make_registry(url, on_reconnect=hook).add("c", "t1")
        with pytest.raises(m.ReauthorizationRequiredError):
            await conn.request("GET", "/x")
        assert len(hook.events) == 1
        assert [s.token for s in app.seen] == ["t1", "t2"]
        assert state(conn) is ConnectionState.REAUTHORIZATION_REQUIRED

    async def test_hook_returning_a_bad_token(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A hook that returns a malformed token counts as a failed reconnect."""
        app, url = scripted
        app.default = error_reply(401, "TOKEN_EXPIRED")
        hook = Hook("bad token\r\n")
        conn = make_registry(url, on_reconnect=hook).add("c", "t1")
        with pytest.raises(m.ReauthorizationRequiredError):
            await conn.request("GET", "/x")
        assert len(app.seen) == 1

    async def test_later_credential_change_fires_again(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Once a new token has worked, a later 401 on it is a new generation: the hook runs."""
        app, url = scripted
        app.by_token["t1"] = error_reply(401, "TOKEN_EXPIRED")
        hook = Hook("t2", "t3")
        conn = make_registry(url, on_reconnect=hook).add("c", "t1")
        assert (await conn.request("GET", "/x")).status == 200
        app.by_token["t2"] = error_reply(401, "REAUTHORIZATION_REQUIRED")
        assert (await conn.request("GET", "/x")).status == 200
        assert [e.generation for e in hook.events] == [1, 2]
        assert isinstance(hook.events[1].error, m.ReauthorizationRequiredError)
        assert app.seen[-1].token == "t3"

    async def test_replay_keeps_the_idempotency_key(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A POST replayed after a reconnect carries the same key and body."""
        app, url = scripted
        app.by_token["t1"] = error_reply(401, "TOKEN_EXPIRED")
        conn = make_registry(url, on_reconnect=Hook("t2")).add("c", "t1")
        await conn.request("POST", "/x", json={"a": 1}, idempotency_key="key-9")
        assert [(s.token, s.headers["Idempotency-Key"], s.body) for s in app.seen] == [
            ("t1", "key-9", b'{"a":1}'),
            ("t2", "key-9", b'{"a":1}'),
        ]


class TestCancellation:
    async def test_cancelling_the_leader_does_not_strand_waiters(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """The hook runs in its own shielded task: cancelling one caller leaves the rest working."""
        app, url = scripted
        app.by_token["t1"] = error_reply(401, "TOKEN_EXPIRED")
        block = asyncio.Event()
        hook = Hook("t2", block=block)
        conn = make_registry(url, on_reconnect=hook, limit_per_connection=None).add("c", "t1")
        tasks = [asyncio.create_task(conn.request("GET", f"/{i}")) for i in range(5)]
        await hook.called.wait()
        tasks[0].cancel()
        block.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert all(isinstance(r, m.APIResponse) for r in results[1:])
        assert len(hook.events) == 1

    async def test_close_while_hook_blocks(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Closing the registry while a hook hangs ends the waiting calls, typed or cancelled."""
        app, url = scripted
        app.default = error_reply(401, "TOKEN_EXPIRED")
        hook = Hook("t2", block=asyncio.Event())
        registry = make_registry(url, on_reconnect=hook)
        conn = registry.add("c", "t1")
        task = asyncio.create_task(conn.request("GET", "/x"))
        await hook.called.wait()
        await registry.aclose(timeout=0.05)
        result = (await asyncio.gather(task, return_exceptions=True))[0]
        assert isinstance(result, m.ConnectionClosedError | asyncio.CancelledError)
        assert state(conn) is ConnectionState.CLOSED


async def test_update_token_swaps_the_session(
    scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
) -> None:
    """update_token makes the next request use a fresh session with the new token."""
    app, url = scripted
    registry = make_registry(url)
    conn = registry.add("c", "t1")
    await conn.request("GET", "/x")
    registry.update_token("c", "t2")
    await conn.request("GET", "/x")
    assert [s.token for s in app.seen] == ["t1", "t2"]
    assert conn.generation == 2
    assert registry._transport.sessions_created == 2
    assert registry.open_sessions == 1
    app.default = Reply()


class TestStateEvents:
    async def test_listeners_see_every_transition(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """subscribe() reports token refusal, new tokens and removal, until unsubscribed."""
        app, url = scripted
        app.by_token["t1"] = error_reply(401, "REAUTHORIZATION_REQUIRED")
        registry = make_registry(url)
        changes: list[m.StateChange] = []
        unsubscribe = registry.subscribe(changes.append)
        registry.subscribe(lambda _change: 1 / 0)  # a broken listener is logged, not fatal
        conn = registry.add("c", "t1")
        with pytest.raises(m.ReauthorizationRequiredError):
            await conn.request("GET", "/x")
        registry.update_token("c", "t2")
        unsubscribe()
        await registry.remove("c")
        assert [(c.connection_id, c.previous, c.current, c.reason) for c in changes] == [
            (
                "c",
                ConnectionState.ACTIVE,
                ConnectionState.REAUTHORIZATION_REQUIRED,
                "token refused",
            ),
            ("c", ConnectionState.REAUTHORIZATION_REQUIRED, ConnectionState.ACTIVE, "new token"),
        ]

    async def test_credentials_changed_runs_the_hook_without_io(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """credentials_changed() acts like a 401: one hook call, a new token, no request sent."""
        app, url = scripted
        hook = Hook("t2", "t3")
        conn = make_registry(url, on_reconnect=hook).add("c", "t1")
        assert await conn.credentials_changed() is ConnectionState.ACTIVE
        assert await conn.credentials_changed() is ConnectionState.ACTIVE
        assert [e.generation for e in hook.events] == [1, 2]
        assert isinstance(hook.events[0].error, m.ReauthorizationRequiredError)
        assert app.seen == []
        assert conn.generation == 3

    async def test_credentials_changed_without_hook_parks_and_reactivate_restores(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Without a hook the connection parks; reactivate() lets it send again."""
        app, url = scripted
        conn = make_registry(url).add("c", "t1")
        assert await conn.credentials_changed() is ConnectionState.REAUTHORIZATION_REQUIRED
        with pytest.raises(m.ReauthorizationRequiredError):
            await conn.request("GET", "/x")
        assert app.seen == []
        conn.reactivate()
        assert state(conn) is ConnectionState.ACTIVE
        assert (await conn.request("GET", "/x")).status == 200
        assert app.seen[0].token == "t1"
