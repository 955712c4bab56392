"""Fixtures: a running sandbox and a small HTTP helper that speaks to it as a client would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from makini_async.sandbox import Sandbox
from tests.sandbox.support import Api


@pytest.fixture(name="sandbox")
async def _sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(connections=2, seed=1, time_scale=0.001, sync_duration=5.0) as sandbox:
        yield sandbox


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(name="api")
def _api(sandbox: Sandbox, session: aiohttp.ClientSession) -> Api:
    return Api(session, sandbox)
