"""ConnectionRegistry: bookkeeping, lifecycle, sessions, event loops and shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

import makini_async as m
from makini_async import ConnectionRegistry, ConnectionState
from tests.support import MakeRegistry, ScriptedApp, by_deadline, error_reply


def state(conn: m.Connection) -> ConnectionState:
    """Read the state through a call, so the type checker does not pin it between awaits."""
    return conn.state


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


class TestBookkeeping:
    def test_add_get_len_iter(self) -> None:
        """Connections are added without I/O and found by id, by index, by iteration."""
        registry = ConnectionRegistry()
        a = registry.add("a", "tok_a", metadata={"tier": "gold"})
        b = registry.add("b", "tok_b")
        assert registry.get("a") is a
        assert registry["b"] is b
        assert "a" in registry
        assert "zzz" not in registry
        assert len(registry) == 2
        assert list(registry) == [a, b]
        assert a.metadata == {"tier": "gold"}
        assert a.state is ConnectionState.ACTIVE
        assert a.generation == 1
        assert registry.open_sessions == 0

    def test_unknown_connection(self) -> None:
        """registry[id] of an unknown id raises ConnectionNotFoundError, also a KeyError."""
        registry = ConnectionRegistry()
        with pytest.raises(m.ConnectionNotFoundError, match="nope"):
            registry["nope"]
        with pytest.raises(KeyError):
            registry["nope"]
        with pytest.raises(m.ConnectionNotFoundError):
            registry.update_token("nope", "tok")

    def test_duplicate_and_bad_arguments(self) -> None:
        """Duplicates and malformed ids or tokens fail before anything is stored."""
        registry = ConnectionRegistry()
        registry.add("a", "tok")
        with pytest.raises(ValueError, match="already registered"):
            registry.add("a", "tok2")
        with pytest.raises(TypeError):
            registry.add(1, "tok")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="connection_id"):
            registry.add("", "tok")
        with pytest.raises(TypeError):
            registry.add("b", None)  # type: ignore[arg-type]
        secret = "tok_SECRET\n"
        with pytest.raises(ValueError, match="printable") as info:
            registry.add("b", secret)
        assert "SECRET" not in str(info.value)
        assert len(registry) == 1

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"base_url": "ftp://x"},
            {"base_url": "https://user:pw@api.makini.io"},
            {"limit": 0},
            {"limit_per_connection": 0},
            {"max_open_sessions": -1},
            {"max_response_size": 0},
        ],
    )
    def test_bad_configuration(self, kwargs: dict[str, object]) -> None:
        """Nonsense configuration fails when the registry is built."""
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            ConnectionRegistry(**kwargs)  # type: ignore[arg-type]

    def test_reprs_show_no_token(self) -> None:
        """Reprs name the connection, never the token."""
        registry = ConnectionRegistry()
        conn = registry.add("acme", "tok_VISIBLE_NEVER")
        assert "tok_VISIBLE_NEVER" not in repr(registry) + repr(conn)
        assert repr(conn) == "<Connection 'acme' active generation=1>"
        assert "connections=1" in repr(registry)

    def test_ten_thousand_connections_open_nothing(self) -> None:
        """Registering 10,000 connections opens no session and no socket."""
        registry = ConnectionRegistry()
        for i in range(10_000):
            registry.add(f"c{i}", f"tok_{i}")
        assert len(registry) == 10_000
        assert registry.open_sessions == 0
        assert registry._transport._connector is None


class TestLifecycle:
    async def test_closed_registry_refuses_work(self, scripted: tuple[ScriptedApp, str]) -> None:
        """After aclose, requests and adds fail typed, aclose is idempotent, reopening fails."""
        app, url = scripted
        async with ConnectionRegistry(url) as registry:
            conn = registry.add("c", "t")
            await conn.request("GET", "/x")
        assert registry.closed
        with pytest.raises(m.RegistryClosedError):
            await conn.request("GET", "/x")
        with pytest.raises(m.RegistryClosedError):
            registry.add("d", "t")
        await registry.aclose()
        with pytest.raises(m.RegistryClosedError):
            async with registry:
                pass  # pragma: no cover - never entered
        assert len(app.seen) == 1
        assert state(conn) is ConnectionState.CLOSED

    async def test_entering_an_open_registry_again_is_a_usage_error(
        self, scripted: tuple[ScriptedApp, str]
    ) -> None:
        """A second `async with` on an open registry raises UsageError and leaves it open."""
        _, url = scripted
        async with ConnectionRegistry(url) as registry:
            conn = registry.add("c", "t")
            with pytest.raises(m.UsageError, match="already open") as caught:
                async with registry:
                    pass  # pragma: no cover - never entered
            assert isinstance(caught.value, RuntimeError)
            assert not registry.closed
            assert (await conn.request("GET", "/x")).status == 200

    async def test_remove(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A removed connection is gone, and its object refuses further calls."""
        _, url = scripted
        registry = make_registry(url)
        conn = registry.add("c", "t")
        await conn.request("GET", "/x")
        assert registry.open_sessions == 1
        await registry.remove("c")
        assert "c" not in registry
        assert registry.open_sessions == 0
        assert state(conn) is ConnectionState.CLOSED
        with pytest.raises(m.ConnectionClosedError):
            await conn.request("GET", "/x")
        with pytest.raises(m.ConnectionNotFoundError):
            await registry.remove("c")

    async def test_removed_during_retry_fails_typed(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A call whose connection is removed between attempts ends with ConnectionClosedError."""
        app, url = scripted
        registry = make_registry(url)
        conn = registry.add("c", "t")
        app.gate = asyncio.Event()
        app.script.append(error_reply(503, "SYSTEM_UNAVAILABLE"))
        task = asyncio.create_task(conn.request("GET", "/x"))
        await app.arrivals(1)
        await registry.remove("c")
        app.gate.set()
        with pytest.raises(m.ConnectionClosedError):
            await task
        assert len(app.seen) == 1

    async def test_unclosed_registry_warns(self, scripted: tuple[ScriptedApp, str]) -> None:
        """A registry dropped while its pool is open warns with a ResourceWarning."""
        _, url = scripted
        registry = ConnectionRegistry(url)
        await registry.add("c", "t").request("GET", "/x")
        with pytest.warns(ResourceWarning, match="Unclosed <ConnectionRegistry"):
            registry.__del__()
        await registry.aclose()

    async def test_fds_return_to_baseline(self, scripted: tuple[ScriptedApp, str]) -> None:
        """After aclose, the process holds no more file descriptors than before."""
        _, url = scripted
        baseline = open_fds()
        async with ConnectionRegistry(url, limit=20) as registry:
            conns = [registry.add(f"c{i}", f"t{i}") for i in range(50)]
            await asyncio.gather(*(c.request("GET", "/x") for c in conns for _ in range(4)))
            during = open_fds()
        # The server side notices the closed sockets on its next loop iterations.
        for _ in range(50):
            if open_fds() <= baseline:
                break
            await asyncio.sleep(0.01)
        assert during > baseline
        assert open_fds() <= baseline + 2


class TestSessions:
    async def test_concurrent_first_use_creates_one_session(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """100 concurrent first calls on one connection share one session."""
        _, url = scripted
        registry = make_registry(url, limit_per_connection=None)
        conn = registry.add("c", "t")
        await asyncio.gather(*(conn.request("GET", "/x") for _ in range(100)))
        assert registry._transport.sessions_created == 1
        assert registry.open_sessions == 1

    async def test_idle_sessions_are_evicted(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """With max_open_sessions=5, 20 connections keep at most 5 sessions, and all still work."""
        app, url = scripted
        registry = make_registry(url, max_open_sessions=5)
        conns = [registry.add(f"c{i}", f"t{i}") for i in range(20)]
        for conn in conns:
            await conn.request("GET", "/x")
        assert registry.open_sessions == 5
        assert registry._transport.sessions_created == 20
        await conns[0].request("GET", "/again")
        assert app.seen[-1].token == "t0"
        assert registry.open_sessions == 5
        assert registry._transport.sessions_created == 21

    async def test_busy_sessions_are_not_evicted(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """A session with a call in flight stays open even past max_open_sessions."""
        app, url = scripted
        registry = make_registry(url, max_open_sessions=1)
        busy = registry.add("busy", "tb")
        idle = registry.add("idle", "ti")
        app.gate = asyncio.Event()
        task = asyncio.create_task(busy.request("GET", "/slow"))
        await app.arrivals(1)
        second = asyncio.create_task(idle.request("GET", "/x"))
        await app.arrivals(2)
        app.gate.set()
        assert (await task).status == 200
        assert (await second).status == 200
        assert registry.open_sessions <= 2


class TestEventLoops:
    def test_second_event_loop_fails_fast(self) -> None:
        """Using a registry from a second event loop raises EventLoopMismatchError at once."""
        with asyncio.Runner() as first:
            scripted = ScriptedApp(m.testing.VirtualClock())
            url, runner = first.run(_serve(scripted))
            registry = ConnectionRegistry(url)
            conn = registry.add("c", "t")
            assert first.run(conn.request("GET", "/x")).status == 200

            started = time.monotonic()
            with pytest.raises(m.EventLoopMismatchError, match="event loop"):
                asyncio.run(conn.request("GET", "/x"))
            assert len(scripted.seen) == 1  # refused before any I/O
            assert time.monotonic() - started < 5.0  # a loose sanity limit: nothing was awaited

            errors: list[BaseException] = []

            def in_thread() -> None:
                try:
                    asyncio.run(conn.request("GET", "/x"))
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=in_thread)
            thread.start()
            thread.join(5)
            assert len(errors) == 1
            assert isinstance(errors[0], m.EventLoopMismatchError)
            # The first loop still owns the registry and closes it cleanly.
            assert first.run(conn.request("GET", "/x")).status == 200
            first.run(registry.aclose())
            first.run(runner.cleanup())
        assert len(scripted.seen) == 2

    def test_closed_in_first_loop_refuses_in_second(self) -> None:
        """A registry closed by one asyncio.run refuses work in the next, typed and at once."""
        registry = ConnectionRegistry("http://127.0.0.1:9")
        conn = registry.add("c", "t")

        async def use_and_close() -> None:
            async with registry:
                pass

        asyncio.run(use_and_close())
        with pytest.raises(m.RegistryClosedError):
            asyncio.run(conn.request("GET", "/x"))


async def _serve(scripted: ScriptedApp) -> tuple[str, web.AppRunner]:
    runner = web.AppRunner(scripted.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", runner


class TestShutdown:
    async def test_close_lets_quick_calls_finish(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Calls in flight at aclose finish when they can within the timeout; new ones fail."""
        app, url = scripted
        registry = make_registry(url, limit_per_connection=None)
        conn = registry.add("c", "t")
        app.gate = asyncio.Event()
        tasks = [asyncio.create_task(conn.request("GET", f"/{i}")) for i in range(20)]
        await app.arrivals(20)
        closing = asyncio.create_task(registry.aclose(timeout=5))
        await asyncio.sleep(0)
        with pytest.raises(m.RegistryClosedError):
            await conn.request("GET", "/late")
        app.gate.set()
        await closing
        results = await asyncio.gather(*tasks)
        assert all(r.status == 200 for r in results)
        assert len(app.seen) == 20

    async def test_close_cancels_stragglers(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Calls still in flight when the close timeout passes are cancelled, none hang."""
        app, url = scripted
        registry = make_registry(url, limit_per_connection=None)
        conn = registry.add("c", "t")
        app.gate = asyncio.Event()
        tasks = [asyncio.create_task(conn.request("GET", f"/{i}")) for i in range(100)]
        await app.arrivals(100)
        started = time.monotonic()
        await registry.aclose(timeout=0.1)
        assert time.monotonic() - started < by_deadline(0.1)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert registry._engine.inflight == 0
        app.gate.set()


async def test_trace_configs_pass_through(scripted: tuple[ScriptedApp, str]) -> None:
    """aiohttp TraceConfigs given to the registry see every request and connection."""
    import aiohttp

    starts: list[str] = []
    created: list[int] = []

    async def on_start(
        _session: aiohttp.ClientSession,
        _ctx: object,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        starts.append(params.url.path)

    async def on_created(
        _session: aiohttp.ClientSession,
        _ctx: object,
        _params: aiohttp.TraceConnectionCreateEndParams,
    ) -> None:
        created.append(1)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_connection_create_end.append(on_created)
    _, url = scripted
    async with ConnectionRegistry(url, trace_configs=[trace]) as registry:
        a = registry.add("a", "ta")
        b = registry.add("b", "tb")
        await a.request("GET", "/one")
        await b.request("GET", "/two")
    assert starts == ["/one", "/two"]
    # Both connections share the registry's pool: the second request reuses the first socket.
    assert len(created) == 1


async def test_map_yields_one_outcome_per_connection(
    scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
) -> None:
    """registry.map runs a job per connection: ok, failed with its typed error, parked skipped."""
    app, url = scripted
    registry = make_registry(url)
    for name in ("ok", "missing", "parked"):
        registry.add(name, f"tok_{name}")
    app.by_token["tok_missing"] = error_reply(404, "NOT_FOUND")
    app.by_token["tok_parked"] = error_reply(401, "REAUTHORIZATION_REQUIRED")
    with pytest.raises(m.ReauthorizationRequiredError):
        await registry["parked"].request("GET", "/x")
    sent = len(app.seen)

    async def job(conn: m.Connection) -> int:
        return (await conn.request("GET", "/api/eam/assets")).status

    async with registry.map(job) as outcomes:
        results = {o.connection_id: o async for o in outcomes}
    assert results["ok"].ok
    assert results["ok"].value == 200
    assert results["missing"].failed
    assert isinstance(results["missing"].error, m.NotFoundError)
    assert results["missing"].request_id == "req_e"
    assert results["parked"].skipped
    assert len(app.seen) == sent + 2
