"""Fixtures: a running sandbox and a registry whose connections speak to it over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from makini_async import Connection, ConnectionRegistry
from makini_async.sandbox import Sandbox
from tests.support import ZERO_WAIT


@pytest.fixture(name="sandbox")
async def _sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(connections=2, seed=1, time_scale=0.001, rate_limit=100_000) as sandbox:
        sandbox.configure("c2", v4=True)
        yield sandbox


@pytest.fixture(name="registry")
async def _registry(sandbox: Sandbox) -> AsyncIterator[ConnectionRegistry]:
    async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT) as registry:
        for cid, token in sandbox.connections.items():
            registry.add(cid, token)
        yield registry


@pytest.fixture(name="conn")
def _conn(registry: ConnectionRegistry) -> Connection:
    """The v3 connection ``c1``."""
    return registry.get("c1")


@pytest.fixture(name="conn_v4")
def _conn_v4(registry: ConnectionRegistry) -> Connection:
    """The v4 connection ``c2``."""
    return registry.get("c2")
