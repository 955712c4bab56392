"""The Admin API and filling a registry from it, against the sandbox."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from makini_async import (
    AuthenticationError,
    ConnectionRegistry,
    LinkClient,
    MakiniError,
    NotFoundError,
    RequestTimeoutError,
    RetryPolicy,
    ValidationError,
)
from makini_async._admin import AdminClient
from makini_async.models import ConnectionStatus
from makini_async.sandbox import Sandbox
from tests.support import ZERO_WAIT, by_deadline


@pytest.fixture(name="admin")
async def _admin(sandbox: Sandbox) -> AsyncIterator[AdminClient]:
    async with AdminClient(sandbox.client_id, sandbox.client_secret, base_url=sandbox.url) as admin:
        yield admin


class TestAdminClient:
    async def test_client_and_platforms(self, admin: AdminClient, sandbox: Sandbox) -> None:
        """The client info and the platform catalogue decode; the admin token is fetched once."""
        info = await admin.client()
        assert info.id == sandbox.client_id
        assert info.redirects == ("http://127.0.0.1/callback",)
        platforms = await admin.platforms()
        assert platforms
        assert all(p.slug for p in platforms)
        assert admin.tokens_fetched == 1

    async def test_connections_lifecycle(self, admin: AdminClient, sandbox: Sandbox) -> None:
        """Connections list, are created with credentials, carry metadata and are deleted."""
        listed = await admin.connections()
        assert {c.key for c in listed} == {"c1", "c2"}
        assert listed[0].status is ConnectionStatus.ACTIVE
        pair = await admin.create_connection(
            name="Acme", email="ops@acme.example", provider="upkeep", credentials={"key": "k"}
        )
        created = next(c for c in await admin.connections() if c.key not in {"c1", "c2"})
        assert created.key is not None
        assert created.name == "Acme"
        items = await admin.set_metadata(created.key, {"customer": "acme-42"})
        assert [(i.key, i.value) for i in items] == [("customer", "acme-42")]
        assert [(i.key, i.value) for i in await admin.metadata(created.key)] == [
            ("customer", "acme-42")
        ]
        async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT) as registry:
            conn = registry.add(created.key, pair.access_token)
            assert (await conn.integration()).id == created.key
        await admin.delete_connection(created.key)
        with pytest.raises(NotFoundError):
            await admin.metadata(created.key)
        with pytest.raises(ValidationError):
            await admin.create_connection(name="x", email="nope", provider="upkeep")
        with pytest.raises(ValueError, match="empty"):
            await admin.issue_token("")

    async def test_refused_admin_token_renewed(self, sandbox: Sandbox) -> None:
        """A refused admin token is replaced once through client credentials."""
        async with AdminClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, admin_token="stale"
        ) as admin:
            assert (await admin.client()).id == sandbox.client_id
            assert admin.tokens_fetched == 1

    async def test_a_bare_admin_token(self, sandbox: Sandbox) -> None:
        """An admin token alone works until it is refused; then there is nothing to renew."""
        async with AdminClient(base_url=sandbox.url, admin_token=sandbox.admin_token) as admin:
            assert (await admin.client()).id == sandbox.client_id
            assert admin.tokens_fetched == 0
        async with AdminClient(base_url=sandbox.url, admin_token="stale") as admin:
            with pytest.raises(AuthenticationError):
                await admin.client()
            assert admin.tokens_fetched == 0

    def test_credentials_or_a_token_are_required(self) -> None:
        with pytest.raises(ValueError, match="client_id and client_secret, or an admin_token"):
            AdminClient()
        with pytest.raises(ValueError, match="together"):
            AdminClient("id-only", admin_token="t")


class TestRegister:
    async def test_fill_registry(self, admin: AdminClient, sandbox: Sandbox) -> None:
        """Every active connection is added with a fresh token and its metadata."""
        sandbox.add_connection_sync("off", status="inactive")
        async with ConnectionRegistry(
            sandbox.url, retry=ZERO_WAIT, on_reconnect=admin.reconnect_hook
        ) as registry:
            added = await admin.register(registry)
            assert sorted(c.id for c in added) == ["c1", "c2"]
            assert added[0].metadata["provider"] == "sandbox"
            assert await admin.register(registry) == []
            conn = registry["c1"]
            assert (await conn.integration()).id == "c1"
            sandbox.expire_token("c1")
            assert (await conn.integration()).id == "c1"  # renewed through the Admin API
            assert conn.generation == 2


class TestTimeouts:
    async def test_a_deadline_covers_fetching_the_admin_token(self, sandbox: Sandbox) -> None:
        """A slow token endpoint uses up the deadline: the Admin API call is never sent."""
        sandbox.inject(latency=30, path="/link/token")
        async with AdminClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url
        ) as admin:
            started = time.monotonic()
            with pytest.raises(RequestTimeoutError) as caught:
                await admin.connections(deadline=0.5)
            assert 0.5 <= time.monotonic() - started < by_deadline(0.5)
        # Named after the call's deadline, and the step it cut: fetching the admin token.
        assert str(caught.value) == "The call's deadline of 0.5s passed (POST /link/token)"
        paths = [r.path for r in sandbox.requests()]
        assert "/link/token" in paths
        assert not any(p.startswith("/api/system") for p in paths)

    async def test_a_deadline_cuts_a_slow_admin_call(
        self, admin: AdminClient, sandbox: Sandbox
    ) -> None:
        """Once the token is held, the deadline bounds the call itself, lists included."""
        assert (await admin.client()).id == sandbox.client_id
        sandbox.inject(latency=30, path="/api/system/connections*", times=None)
        for call in (admin.connections(deadline=0.4), admin.issue_token("c1", deadline=0.4)):
            with pytest.raises(RequestTimeoutError) as caught:
                await call
            assert isinstance(caught.value, MakiniError)
        sandbox.clear_faults()
        assert {c.key for c in await admin.connections(deadline=30)} == {"c1", "c2"}

    async def test_the_client_timeout_bounds_every_attempt(self, sandbox: Sandbox) -> None:
        """AdminClient(timeout=...) ends an unanswered attempt; retry= decides what follows."""
        sandbox.inject(latency=30, path="/api/system/platforms", times=None)
        async with AdminClient(
            sandbox.client_id,
            sandbox.client_secret,
            base_url=sandbox.url,
            timeout=0.3,
            retry=RetryPolicy(attempts=2, base=0, cap=0),
        ) as admin:
            with pytest.raises(RequestTimeoutError):
                await admin.platforms()
        platform_calls = [r for r in sandbox.requests() if r.path == "/api/system/platforms"]
        assert len(platform_calls) == 2  # both attempts sent, each cut by the timeout

    async def test_bad_deadlines_fail_before_any_request(self, sandbox: Sandbox) -> None:
        async with AdminClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url
        ) as admin:
            with pytest.raises(ValueError, match="deadline"):
                await admin.client(deadline=0)
            with pytest.raises(TypeError, match="deadline"):
                await admin.platforms(deadline="soon")  # type: ignore[arg-type]
        assert sandbox.requests() == []


class TestLinkClientTimeouts:
    async def test_a_refresh_is_cut_at_its_deadline(self, sandbox: Sandbox) -> None:
        """A token call takes timeout and deadline; a slow endpoint raises typed, in time."""
        sandbox.inject(latency=30, path="/link/token")
        async with LinkClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url
        ) as link:
            with pytest.raises(RequestTimeoutError):
                await link.refresh("r-1", deadline=0.4)
            with pytest.raises(AuthenticationError):  # answered at once: an unknown token
                await link.refresh("r-1", timeout=30, deadline=30)

    async def test_timeout_belongs_to_the_registry_passed(self, sandbox: Sandbox) -> None:
        async with ConnectionRegistry(sandbox.url) as registry:
            with pytest.raises(ValueError, match="registry"):
                LinkClient("id", "secret", registry=registry, timeout=5)
