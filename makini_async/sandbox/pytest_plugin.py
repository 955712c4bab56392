"""Pytest fixtures that start a sandbox, for users' test suites and ``makini_async.testing``.

Load it with ``pytest -p makini_async.sandbox.pytest_plugin`` or ``pytest_plugins = [...]`` in a
``conftest.py`` (``makini_async.testing``'s plugin may re-export these fixtures). The fixtures are
async: with pytest-asyncio installed they work in its strict and auto modes alike.

- ``makini_sandbox``: a running :class:`~makini_async.sandbox.Sandbox` with three connections,
  seed 0 and a fast time scale, closed after the test; ``makini_sandbox.requests()`` returns what
  the code under test sent, bodies included (:class:`~makini_async.sandbox.RequestRecord`);
- ``makini_sandbox_factory``: call it with :class:`~makini_async.sandbox.Sandbox` arguments to start
  more sandboxes (all closed after the test).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from makini_async.sandbox._server import Sandbox

try:  # pytest-asyncio's decorator makes async fixtures work in its strict mode too.
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - another plugin runs async fixtures
    _async_fixture = pytest.fixture  # type: ignore[assignment]  # same call shape, other stub

__all__ = ["makini_sandbox", "makini_sandbox_factory"]

SandboxFactory = Callable[..., Awaitable[Sandbox]]


@_async_fixture
async def makini_sandbox_factory() -> AsyncIterator[SandboxFactory]:
    """Start sandboxes on demand and close them all after the test.

    Yields:
        An async callable taking :class:`Sandbox` keyword arguments.
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
