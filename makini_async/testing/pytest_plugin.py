"""pytest fixtures for suites that use makini_async: a running sandbox and a registry wired to it.

Installed as a ``pytest11`` plugin, so the fixtures are available as soon as makini_async is:

- ``makini_sandbox``: a running `makini_async.sandbox.Sandbox` with connections ``c1``..``c3``;
- ``makini_sandbox_factory``: start more sandboxes with your own arguments;
- ``makini_registry``: a `ConnectionRegistry` pointed at ``makini_sandbox``, every sandbox
  connection added under its id, retries without waits, closed after the test.

The sandbox logs every request it serves, body included, so a test can assert what the code under
test sent::

    async def test_creates_the_order(makini_registry, makini_sandbox):
        await create_order(makini_registry["c1"])  # the code under test
        (sent,) = makini_sandbox.requests("c1", method="POST")
        assert sent.json()["title"] == "Replace pump seal"

See `makini_async.sandbox.RequestRecord` for ``json()``, ``form()``, ``parts`` and the cap.

The fixtures are async; they need pytest-asyncio (its strict and auto modes both work).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from makini_async import ConnectionRegistry, RetryPolicy
from makini_async.sandbox import Sandbox
from makini_async.sandbox.pytest_plugin import (
    SandboxFactory,
    makini_sandbox,
    makini_sandbox_factory,
)

try:  # pytest-asyncio's decorator makes async fixtures work in its strict mode too.
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - another plugin runs async fixtures
    _async_fixture = pytest.fixture  # type: ignore[assignment] # same call shape, other stub

__all__ = ["SandboxFactory", "makini_registry", "makini_sandbox", "makini_sandbox_factory"]


@_async_fixture
async def makini_registry(makini_sandbox: Sandbox) -> AsyncIterator[ConnectionRegistry]:
    """A registry holding every connection of ``makini_sandbox``, with zero-wait retries.

    Yields:
        The open registry; ``makini_registry["c1"]`` is the sandbox's first connection.
    """
    async with ConnectionRegistry(
        makini_sandbox.url, retry=RetryPolicy(base=0.0, cap=0.0)
    ) as registry:
        for connection_id, token in makini_sandbox.connections.items():
            registry.add(connection_id, token)
        yield registry
