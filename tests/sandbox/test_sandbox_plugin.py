"""The pytest fixtures shipped for users start working sandboxes and close them."""

from __future__ import annotations

import aiohttp

from makini_async.sandbox import Sandbox
from makini_async.testing.pytest_plugin import SandboxFactory


class TestPlugin:
    async def test_makini_sandbox_serves(self, makini_sandbox: Sandbox) -> None:
        """The makini_sandbox fixture is running with three connections."""
        assert list(makini_sandbox.connections) == ["c1", "c2", "c3"]
        token = makini_sandbox.connections["c3"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{makini_sandbox.url}/api/integrations/current",
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert (await response.json())["data"]["id"] == "c3"

    async def test_factory_takes_sandbox_arguments(
        self, makini_sandbox_factory: SandboxFactory
    ) -> None:
        """The factory starts sandboxes with the given arguments."""
        sandbox = await makini_sandbox_factory(connections=1, v4=True, provider="upkeep")
        assert sandbox.connection("c1").v4
        assert sandbox.connection("c1").provider == "upkeep"
        assert sandbox.url.startswith("http://127.0.0.1:")
