"""The Admin API and filling a registry from it, against the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from makini_async import AuthenticationError, ConnectionRegistry, NotFoundError, ValidationError
from makini_async._admin import AdminClient
from makini_async.models import ConnectionStatus
from makini_async.sandbox import Sandbox
from tests.support import ZERO_WAIT


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
