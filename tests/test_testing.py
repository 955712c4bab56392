"""The testing helpers users import: the pytest plugin's fixtures and the virtual clock."""

from __future__ import annotations

import asyncio

import pytest

import makini_async as m
from makini_async.sandbox import Sandbox
from makini_async.testing import VirtualClock


class TestPlugin:
    async def test_registry_fixture_talks_to_the_sandbox(
        self, makini_registry: m.ConnectionRegistry, makini_sandbox: Sandbox
    ) -> None:
        """makini_registry holds every sandbox connection and its requests work."""
        assert sorted(c.id for c in makini_registry) == sorted(makini_sandbox.connections)
        response = await makini_registry["c1"].request("GET", "/api/integrations/current")
        assert isinstance(response.data, dict)
        assert response.data["data"]["id"] == "c1"  # type: ignore[call-overload,index]

    async def test_registry_fixture_sees_sandbox_faults(
        self, makini_registry: m.ConnectionRegistry, makini_sandbox: Sandbox
    ) -> None:
        """A fault injected in the sandbox reaches the registry as a typed, retried error."""
        makini_sandbox.inject(status=503, times=2, connection="c2")
        response = await makini_registry["c2"].request("GET", "/api/eam/assets")
        assert response.status == 200
        with pytest.raises(m.NotFoundError):
            await makini_registry["c2"].request("GET", "/api/eam/assets/no-such-key")


class TestVirtualClock:
    async def test_sleepers_started_together_wake_together(self) -> None:
        """Tasks sleeping 2 s from the same moment all wake at virtual +2 s."""
        clock = VirtualClock(start=0.0, epoch=100.0)
        woke: list[float] = []

        async def nap() -> None:
            await clock.sleep(2)
            woke.append(clock.monotonic())

        await asyncio.gather(*(nap() for _ in range(5)))
        assert woke == [2.0] * 5
        assert clock.time() == 102.0
        clock.advance(1.5)
        assert clock.monotonic() == 3.5
        assert clock.sleeps == [2.0] * 5
