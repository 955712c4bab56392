"""Token lifecycle against the sandbox: code exchange, rotation under concurrency, the hook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from makini_async import (
    AuthenticationError,
    ConnectionRegistry,
    ConnectionState,
    InvalidRequestError,
    ReauthorizationRequiredError,
    ReconnectEvent,
    ResponseDecodeError,
)
from makini_async._tokens import (
    LinkClient,
    MemoryTokenStore,
    TokenPair,
    TokenRefresher,
    parse_token_pair,
)
from makini_async.sandbox import Sandbox
from tests.support import ZERO_WAIT


@pytest.fixture(name="link")
async def _link(sandbox: Sandbox) -> AsyncIterator[LinkClient]:
    async with LinkClient(sandbox.client_id, sandbox.client_secret, base_url=sandbox.url) as link:
        yield link


def _pair(sandbox: Sandbox, cid: str) -> TokenPair:
    state = sandbox.connection(cid)
    return TokenPair(access_token=state.access_token, refresh_token=state.refresh_token)


class TestLink:
    async def test_exchange_code(self, sandbox: Sandbox, link: LinkClient) -> None:
        """A Makini Link code becomes a working connection token pair, once."""
        code = sandbox.authorization_code()
        pair = await link.exchange_code(code, redirect_uri="http://127.0.0.1/cb")
        assert pair.token_type == "bearer"
        assert pair.expires_at is not None
        assert not pair.expires_within(3600)
        assert "access_token" not in repr(pair)
        async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT) as registry:
            conn = registry.add("new", pair.access_token)
            assert (await conn.integration()).id is not None
        with pytest.raises(InvalidRequestError):
            await link.exchange_code(code)

    async def test_wrong_secret(self, sandbox: Sandbox) -> None:
        """Wrong client credentials are refused, and the client keeps working afterwards."""
        async with LinkClient(sandbox.client_id, "wrong", base_url=sandbox.url) as bad:
            with pytest.raises(AuthenticationError):
                await bad.client_credentials()
            with pytest.raises(AuthenticationError):
                await bad.client_credentials()
        with pytest.raises(ValueError, match="non-empty"):
            LinkClient("", "x")

    async def test_refresh_rotates(self, sandbox: Sandbox, link: LinkClient) -> None:
        """A refresh returns a new pair and kills the old one."""
        old = _pair(sandbox, "c1")
        assert old.refresh_token is not None
        new = await link.refresh(old.refresh_token)
        assert new.access_token != old.access_token
        with pytest.raises(AuthenticationError):
            await link.refresh(old.refresh_token)

    @pytest.mark.parametrize(
        ("expires_in", "expected"),
        [(1_800_000_000, 1_800_000_000.0), ("1800000000", 1_800_000_000.0), (300, 1300.0)],
    )
    def test_expires_in_forms(self, expires_in: int | str, expected: float) -> None:
        """expires_in is a Unix time, as int or string; small values are seconds from now."""
        pair = parse_token_pair(
            {"access_token": "a", "refresh_token": "r", "expires_in": expires_in}, now=1000.0
        )
        assert pair.expires_at is not None
        assert pair.expires_at.timestamp() == expected

    @pytest.mark.parametrize(
        "body",
        [[], {"refresh_token": "r"}, {"access_token": "a", "expires_in": "soon"}, {"token": 3}],
    )
    def test_bad_answers(self, body: object) -> None:
        """A token answer without a usable token or expiry is a decode error."""
        with pytest.raises(ResponseDecodeError):
            parse_token_pair(body)  # type: ignore[arg-type]


class TestRotation:
    async def test_one_refresh_under_concurrency(self, sandbox: Sandbox, link: LinkClient) -> None:
        """Fifty concurrent refreshes of one stale pair send one refresh; all get the new pair."""
        stale = _pair(sandbox, "c1")
        store = MemoryTokenStore({"c1": stale})
        refresher = TokenRefresher(link, store)
        pairs = await asyncio.gather(*(refresher.refresh("c1", stale=stale) for _ in range(50)))
        assert refresher.refreshes == 1
        assert len({p.access_token for p in pairs}) == 1
        assert store.pairs["c1"] == pairs[0]
        assert pairs[0].access_token == sandbox.connection("c1").access_token

    async def test_store_failure_keeps_the_new_pair(
        self, sandbox: Sandbox, link: LinkClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        """If the store fails, the new pair is kept and saved on the next call."""

        class Flaky(MemoryTokenStore):
            fail = True

            async def save(self, connection_id: str, pair: TokenPair) -> None:
                if self.fail:
                    raise OSError("database down")
                await super().save(connection_id, pair)

        store = Flaky({"c1": _pair(sandbox, "c1")})
        refresher = TokenRefresher(link, store)
        first = await refresher.refresh("c1")
        assert "database down" in caplog.text
        assert store.pairs["c1"] != first
        store.fail = False
        second = await refresher.refresh("c1", stale=first)
        assert store.pairs["c1"] == second
        assert refresher.refreshes == 2
        with pytest.raises(LookupError):
            await refresher.refresh("nobody")


class TestHook:
    async def test_expired_token_refreshed_once(self, sandbox: Sandbox, link: LinkClient) -> None:
        """Expired tokens under concurrent calls cost one refresh; calls then succeed."""
        store = MemoryTokenStore({"c1": _pair(sandbox, "c1")})
        refresher = TokenRefresher(link, store)
        async with ConnectionRegistry(
            sandbox.url, retry=ZERO_WAIT, on_reconnect=refresher
        ) as registry:
            conn = registry.add("c1", sandbox.connections["c1"])
            sandbox.expire_token("c1")
            results = await asyncio.gather(*(conn.integration() for _ in range(20)))
            assert {r.id for r in results} == {"c1"}
            assert refresher.refreshes == 1
            assert store.pairs["c1"].access_token == sandbox.connection("c1").access_token

    async def test_reauthorization_reported(self, sandbox: Sandbox, link: LinkClient) -> None:
        """When the customer changed credentials, the callback hears of it and nothing refreshes."""
        events: list[ReconnectEvent] = []

        async def tell(event: ReconnectEvent) -> None:
            events.append(event)

        refresher = TokenRefresher(
            link, MemoryTokenStore({"c1": _pair(sandbox, "c1")}), on_reauthorization_required=tell
        )
        async with ConnectionRegistry(
            sandbox.url, retry=ZERO_WAIT, on_reconnect=refresher
        ) as registry:
            conn = registry.add("c1", sandbox.connections["c1"])
            sandbox.change_credentials("c1")
            with pytest.raises(ReauthorizationRequiredError):
                await conn.integration()
            assert conn.state is ConnectionState.REAUTHORIZATION_REQUIRED
        assert [e.connection_id for e in events] == ["c1"]
        assert refresher.refreshes == 0

    async def test_refused_refresh_reported(self, sandbox: Sandbox, link: LinkClient) -> None:
        """A refresh token that no longer works turns into a reauthorization report."""
        events: list[ReconnectEvent] = []

        async def tell(event: ReconnectEvent) -> None:
            events.append(event)

        dead = TokenPair(access_token="x", refresh_token="not-a-refresh-token")
        refresher = TokenRefresher(
            link, MemoryTokenStore({"c1": dead}), on_reauthorization_required=tell
        )
        async with ConnectionRegistry(
            sandbox.url, retry=ZERO_WAIT, on_reconnect=refresher
        ) as registry:
            conn = registry.add("c1", sandbox.connections["c1"])
            sandbox.expire_token("c1")
            with pytest.raises(AuthenticationError):
                await conn.integration()
        assert len(events) == 1
