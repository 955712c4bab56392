"""pytest fixtures for suites that use makini_async: running sandboxes and a registry wired to one.

Installed as a ``pytest11`` plugin, so the fixtures are available as soon as makini_async is:

- ``makini_sandbox``: a running `makini_async.sandbox.Sandbox` with connections ``c1``..``c3``,
  seed 0 and a 1000x faster clock, closed after the test;
- ``makini_sandbox_factory``: call it with `Sandbox` arguments to start more sandboxes (all
  closed after the test);
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

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from makini_async import ConnectionRegistry, RetryPolicy
from makini_async.sandbox import Sandbox

try:  # pytest-asyncio's decorator makes async fixtures work in its strict mode too.
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - another plugin runs async fixtures
    _async_fixture = pytest.fixture  # type: ignore[assignment] # same call shape, other stub

__all__ = ["SandboxFactory", "makini_registry", "makini_sandbox", "makini_sandbox_factory"]

#: What ``makini_sandbox_factory`` yields: an async callable taking `Sandbox` keyword arguments.
SandboxFactory = Callable[..., Awaitable[Sandbox]]


@_async_fixture
async def makini_sandbox_factory() -> AsyncIterator[SandboxFactory]:
    """Start sandboxes on demand and close them all after the test.

    Yields:
        An async callable taking :class:`Sandbox` keyword arguments and returning it running.
    """
    started: list[Sandbox] = []

    async def start(**kwargs: Any) -> Sandbox:  # noqa: ANN401 - passed through to Sandbox
        sandbox = Sandbox(**kwargs)
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in reversed(started):
        await sandbox.aclose()


@_async_fixture
async def makini_sandbox(makini_sandbox_factory: SandboxFactory) -> Sandbox:
    """A running sandbox with connections ``c1``..``c3`` and a 1000x faster clock.

    Returns:
        The sandbox; ``makini_sandbox.url`` and ``makini_sandbox.connections`` are ready.
    """
    return await makini_sandbox_factory(connections=3, seed=0, time_scale=0.001)


@_async_fixture
async def makini_registry(makini_sandbox: Sandbox) -> AsyncIterator[ConnectionRegistry]:
    """A registry holding every connection of ``makini_sandbox``, with zero-wait retries.

    Its typed calls decode strictly (``ConnectionRegistry(strict=True)``).

    Yields:
        The open registry; ``makini_registry["c1"]`` is the sandbox's first connection.
    """
    # Strict, so that a test fails on a value that does not fit its field (drift) rather than
    # reading None.
    async with ConnectionRegistry(
        makini_sandbox.url, retry=RetryPolicy(base=0.0, cap=0.0), strict=True
    ) as registry:
        for connection_id, token in makini_sandbox.connections.items():
            registry.add(connection_id, token)
        yield registry
