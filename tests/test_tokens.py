"""Token lifecycle against the sandbox: code exchange, rotation under concurrency, the hook."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from makini_async import (
    AuthenticationError,
    ConnectionRegistry,
    ConnectionState,
    InvalidRequestError,
    ReauthorizationRequiredError,
    ReconnectEvent,
    ResponseDecodeError,
    StateChange,
    TokenNotFoundError,
)
from makini_async._tokens import (
    LinkClient,
    MemoryTokenStore,
    TokenPair,
    TokenRefresher,
    parse_token_pair,
)
from makini_async.sandbox import Sandbox
from tests.support import ZERO_WAIT, StartApp
from tests.test_secrets import assert_no_leak


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
        """Wrong client credentials are refused as sent, and the client keeps working afterwards."""
        async with LinkClient(sandbox.client_id, "wrong", base_url=sandbox.url) as bad:
            for _ in range(2):
                with pytest.raises(AuthenticationError) as info:
                    await bad.client_credentials()
                # The plain 401 class: no reconnect machinery turned it into another one.
                assert type(info.value) is AuthenticationError
                assert info.value.code == "AUTHENTICATION_FAILED"
        assert len(sandbox.requests(path="/link/token")) == 2
        with pytest.raises(ValueError, match="non-empty"):
            LinkClient("", "x")

    async def test_grants_are_tokenless_form_posts(
        self, sandbox: Sandbox, link: LinkClient
    ) -> None:
        """/link/token gets a form body and no Authorization header (RFC 6749 section 4.4.2)."""
        await link.client_credentials()
        (record,) = sandbox.requests(path="/link/token")
        assert record.method == "POST"
        assert record.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert "Authorization" not in record.headers
        assert record.connection is None

    async def test_shared_registry_gets_no_pseudo_connection(self, sandbox: Sandbox) -> None:
        """On your registry grants add no connection; a refusal runs no hook and no listener."""
        events: list[ReconnectEvent] = []
        changes: list[StateChange] = []

        async def hook(event: ReconnectEvent) -> str | None:
            events.append(event)
            return None

        async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT, on_reconnect=hook) as registry:
            registry.subscribe(changes.append)
            conn = registry.add("c1", sandbox.connections["c1"])
            good = LinkClient(sandbox.client_id, sandbox.client_secret, registry=registry)
            bad = LinkClient(sandbox.client_id, "wrong", registry=registry)
            assert (await good.client_credentials()).access_token
            with pytest.raises(AuthenticationError):
                await bad.client_credentials()
            assert (await good.client_credentials()).access_token
            await good.aclose()  # a registry you pass stays open
            assert list(registry) == [conn]
            assert len(registry) == 1
            assert "makini-link" not in registry
            assert (await conn.integration()).id == "c1"
            assert registry.open_sessions == 1
        assert events == []
        assert changes == [
            StateChange("c1", ConnectionState.ACTIVE, ConnectionState.CLOSED, "closed")
        ]

    async def test_credentials_echoed_in_an_error_are_cut_out(
        self, app_server: StartApp, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A token endpoint that echoes the form back leaks neither secret nor refresh token."""
        caplog.set_level(logging.DEBUG)
        secret = "cs_CANARY_" + uuid.uuid4().hex
        refresh = "rt_CANARY_" + uuid.uuid4().hex

        async def handler(request: web.Request) -> web.Response:
            form = dict(await request.post())
            body = {"error": {"code": "INVALID_GRANT", "message": f"bad {form}", "details": form}}
            return web.json_response(body, status=400)

        app = web.Application()
        app.router.add_post("/link/token", handler)
        async with LinkClient("client", secret, base_url=await app_server(app)) as link:
            with pytest.raises(InvalidRequestError) as info:
                await link.refresh(refresh)
        assert "grant_type" in str(info.value)  # the echo did arrive...
        for canary in (secret, refresh):  # ...without the credentials
            assert_no_leak(canary, records=caplog.records, error=info.value, objects=[link])

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
        with pytest.raises(TokenNotFoundError, match="nobody") as caught:
            await refresher.refresh("nobody")
        assert isinstance(caught.value, LookupError)  # what it raised before it was typed


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
