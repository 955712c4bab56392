"""The credential-source seam: tokens and generations, and one renewal per refused generation."""

from __future__ import annotations

import asyncio

import pytest

import makini_async as m
from tests.support import MakeRegistry, Reply, ScriptedApp, error_reply


class TestSharedSource:
    async def test_one_hook_run_for_every_registry_sharing_the_source(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """Three registries (three replicas) refused at once run the reconnect hook once."""
        app, url = scripted
        app.by_token["old"] = error_reply(401, "TOKEN_EXPIRED")
        source = m.MemoryCredentials()
        runs: list[int] = []

        async def renew(event: m.ReconnectEvent) -> str:
            runs.append(event.generation)
            await asyncio.sleep(0.01)
            return "new"

        connections = [
            make_registry(url, credentials=source, on_reconnect=renew).add("acme", "old")
            for _ in range(3)
        ]
        assert {conn.generation for conn in connections} == {1}
        responses = await asyncio.gather(*(conn.request("GET", "/x") for conn in connections))
        assert [r.status for r in responses] == [200, 200, 200]
        assert runs == [1]
        assert {conn.generation for conn in connections} == {2}

    async def test_a_token_renewed_elsewhere_is_used_without_the_hook(
        self, scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
    ) -> None:
        """When the source already holds a newer token, the call replays with it at once."""
        app, url = scripted
        app.by_token["old"] = error_reply(401, "TOKEN_EXPIRED")
        source = m.MemoryCredentials()
        runs: list[int] = []

        async def renew(event: m.ReconnectEvent) -> str:
            runs.append(event.generation)
            return "unused"

        conn = make_registry(url, credentials=source, on_reconnect=renew).add("acme", "old")
        source.install("acme", "renewed-by-another-process")
        await conn.request("GET", "/x")
        assert runs == []
        assert [seen.token for seen in app.seen] == ["old", "renewed-by-another-process"]
        assert conn.generation == 2


class TestMemoryCredentials:
    def test_generations_move_with_new_tokens_only(self) -> None:
        """A new token is the next generation; the same token again keeps its generation."""
        source = m.MemoryCredentials()
        assert source.install("a", "t1").generation == 1
        assert source.install("a", "t1").generation == 1
        assert source.install("a", "t2").generation == 2
        assert source.install("b", "t1").generation == 1

    def test_the_token_is_never_shown(self) -> None:
        """A credential's repr carries the generation, never the token."""
        assert "secret-token" not in repr(m.Credential("secret-token", 3))
        assert "3" in repr(m.Credential("secret-token", 3))

    async def test_a_renewal_runs_once_per_refused_generation(self) -> None:
        """Callers refused on the same generation share one refresh; its result is the next."""
        source = m.MemoryCredentials()
        refused = source.install("a", "t1")
        calls = 0

        async def refresh() -> str | None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            return "t2"

        results = await asyncio.gather(*(source.renew("a", refused, refresh) for _ in range(5)))
        assert calls == 1
        assert {r.generation if r else None for r in results} == {2}
        again = await source.renew("a", refused, refresh)
        assert again is not None
        assert again.generation == 2
        assert calls == 1

    async def test_no_token_means_none(self) -> None:
        """A refresh without a token leaves no newer credential."""
        source = m.MemoryCredentials()
        refused = source.install("a", "t1")

        async def refresh() -> str | None:
            return None

        assert await source.renew("a", refused, refresh) is None

    async def test_forgetting_cancels_a_running_renewal(self) -> None:
        """A connection removed mid-renewal cancels it; the waiters see the cancellation."""
        source = m.MemoryCredentials()
        refused = source.install("a", "t1")
        started = asyncio.Event()

        async def refresh() -> str | None:
            started.set()
            await asyncio.sleep(3600)
            return "never"

        waiter = asyncio.ensure_future(source.renew("a", refused, refresh))
        await started.wait()
        source.forget("a")
        with pytest.raises(asyncio.CancelledError):
            await waiter


async def test_a_removed_connection_stops_waiting_for_its_hook(
    scripted: tuple[ScriptedApp, str], make_registry: MakeRegistry
) -> None:
    """Removing a connection while its hook runs ends the waiting call, typed."""
    app, url = scripted
    app.default = error_reply(401, "TOKEN_EXPIRED")
    started = asyncio.Event()

    async def renew(event: m.ReconnectEvent) -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    registry = make_registry(url, on_reconnect=renew)
    call = asyncio.ensure_future(registry.add("acme", "t").request("GET", "/x"))
    await started.wait()
    await registry.remove("acme")
    with pytest.raises(m.ConnectionClosedError):
        await call
    app.default = Reply()
