"""Fixtures: a running sandbox and a registry whose connections speak to it over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from makini_async import Connection, ConnectionRegistry
from makini_async.sandbox import Sandbox
from tests.support import ZERO_WAIT


@pytest.fixture(name="sandbox_options")
def _sandbox_options(sandbox_options: dict[str, Any]) -> dict[str, Any]:
    """The `sandbox` here does not rate-limit."""
    return {**sandbox_options, "rate_limit": 100_000}


@pytest.fixture(name="registry")
async def _registry(sandbox: Sandbox) -> AsyncIterator[ConnectionRegistry]:
    async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT) as registry:
        for cid, token in sandbox.connections.items():
            registry.add(cid, token)
        yield registry


@pytest.fixture(name="conn")
def _conn(registry: ConnectionRegistry) -> Connection:
    """The v3 connection ``c1``."""
    return registry["c1"]


@pytest.fixture(name="conn_v4")
def _conn_v4(registry: ConnectionRegistry, sandbox: Sandbox) -> Connection:
    """The connection ``c2``, switched to v4."""
    sandbox.configure("c2", v4=True)
    return registry["c2"]
