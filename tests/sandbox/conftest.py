"""Fixtures: an HTTP helper that speaks to `sandbox` (see tests/conftest.py) as a client would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from makini_async.sandbox import Sandbox
from tests.sandbox.support import Api


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(name="api")
def _api(sandbox: Sandbox, session: aiohttp.ClientSession) -> Api:
    return Api(session, sandbox)
