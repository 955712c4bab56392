"""`ConnectionRegistry.map`: outcomes as jobs finish, fairness, skips, pauses, limits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from makini_async import (
    Connection,
    ConnectionNotFoundError,
    ConnectionRegistry,
    ConnectionState,
    Outcome,
    OutcomeStatus,
    RateLimitError,
    ReauthorizationRequiredError,
    ReconnectEvent,
    RequestTimeoutError,
)
from makini_async.sandbox import Sandbox
from makini_async.testing import VirtualClock
from tests.support import ZERO_WAIT


@pytest.fixture(name="sandbox_options")
def _sandbox_options() -> dict[str, Any]:
    """The `sandbox` here has ten small connections (seed 3)."""
    sizes = {"work-orders": 120, "assets": 40, "purchase-orders": 20}
    return {"connections": 10, "seed": 3, "sizes": sizes, "time_scale": 0.01}


@pytest.fixture(name="registry")
async def _registry(sandbox: Sandbox) -> AsyncIterator[ConnectionRegistry]:
    """A registry holding every sandbox connection; its reconnect hook reconnects at the sandbox."""

    async def reconnect(event: ReconnectEvent) -> str | None:
        return sandbox.reconnect(event.connection_id)

    async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT, on_reconnect=reconnect) as registry:
        for connection_id, token in sandbox.connections.items():
            registry.add(connection_id, token)
        yield registry


async def _count(conn: Connection) -> int:
    answer = await conn.request("GET", "/api/eam/work-orders", params={"per_page": 1})
    assert isinstance(answer.data, dict)
    meta = answer.data["meta"]
    assert isinstance(meta, dict)
    total = meta["total"]
    assert isinstance(total, int)
    return total


class TestOutcomes:
    async def test_every_connection_gets_an_ok_outcome(
        self, registry: ConnectionRegistry, sandbox: Sandbox
    ) -> None:
        """One ok outcome per connection carries what the function returned."""
        async with registry.map(_count) as outcomes:
            got = [outcome async for outcome in outcomes]
        assert sorted(o.connection_id for o in got) == sorted(sandbox.connections)
        assert all(o.ok and o.value == 120 and o.item is None for o in got)

    async def test_failure_is_an_outcome_with_its_code_and_request_id(
        self, sandbox: Sandbox
    ) -> None:
        """A connection whose customer changed credentials fails typed; the others are ok."""
        sandbox.change_credentials("c2")
        async with ConnectionRegistry(sandbox.url, retry=ZERO_WAIT) as registry:
            for connection_id, token in sandbox.connections.items():
                registry.add(connection_id, token)
            async with registry.map(_count) as outcomes:
                got = {o.connection_id: o async for o in outcomes}
            failed = got.pop("c2")
            assert failed.failed
            assert isinstance(failed.error, ReauthorizationRequiredError)
            assert failed.code == "REAUTHORIZATION_REQUIRED"
            assert failed.request_id is not None
            assert failed.request_id.startswith("req_")
            assert all(o.ok for o in got.values())

            # The connection is now parked: the next fan-out skips it without any I/O.
            before = len(sandbox.requests(connection="c2"))
            async with registry.map(_count) as outcomes:
                again = {o.connection_id: o async for o in outcomes}
            assert again["c2"].skipped
            assert again["c2"].reason == "the customer must reconnect"
            assert len(sandbox.requests(connection="c2")) == before
            assert registry["c2"].state is ConnectionState.REAUTHORIZATION_REQUIRED

    async def test_non_makini_exceptions_are_outcomes_too(
        self, registry: ConnectionRegistry
    ) -> None:
        """A bug in the function fails its own job and no other."""

        async def broken(conn: Connection) -> int:
            if conn.id == "c3":
                raise RuntimeError("boom")
            return 1

        async with registry.map(broken) as outcomes:
            got = {o.connection_id: o async for o in outcomes}
        assert got["c3"].failed
        assert got["c3"].reason == "RuntimeError"
        assert got["c3"].request_id is None
        assert sum(1 for o in got.values() if o.ok) == 9

    async def test_outcomes_arrive_in_finishing_order(
        self, registry: ConnectionRegistry, sandbox: Sandbox
    ) -> None:
        """A slow connection's outcome comes after the fast ones."""
        sandbox.configure("c1", latency=0.3)
        async with registry.map(_count, concurrency=10) as outcomes:
            order = [o.connection_id async for o in outcomes]
        assert order[-1] == "c1"

    async def test_a_subset_of_connections_by_id_or_object(
        self, registry: ConnectionRegistry
    ) -> None:
        """Only the connections named run, each once even when named twice."""
        async with registry.map(_count, ["c1", registry["c2"], "c1"]) as outcomes:
            got = sorted([o.connection_id async for o in outcomes])
        assert got == ["c1", "c2"]

    async def test_misuse_fails_at_once(self, registry: ConnectionRegistry) -> None:
        """Unknown connections and bad limits raise before anything runs."""
        with pytest.raises(ConnectionNotFoundError):
            registry.map(_count, ["nope"])
        with pytest.raises(ValueError, match="concurrency"):
            registry.map(_count, concurrency=0)
        with pytest.raises(ValueError, match="per_connection"):
            registry.map(_count, per_connection=0)


class TestFairness:
    async def test_jobs_start_round_robin_across_connections(
        self, registry: ConnectionRegistry
    ) -> None:
        """With items, every connection gets its first job before any gets its second."""
        started: list[tuple[str, int]] = []

        async def job(conn: Connection, item: int) -> int:
            started.append((conn.id, item))
            await asyncio.sleep(0.001)
            return item

        chosen = ["c1", "c2", "c3"]
        async with registry.map(
            job, chosen, items=range(4), concurrency=2, per_connection=1
        ) as outcomes:
            got = [o async for o in outcomes]
        assert len(got) == 12
        assert {o.item for o in got} == {0, 1, 2, 3}
        first_round = [connection for connection, _ in started[:3]]
        assert sorted(first_round) == chosen

    async def test_a_big_connection_does_not_starve_the_others(
        self, registry: ConnectionRegistry
    ) -> None:
        """A connection with many long jobs never delays the small ones to its end."""
        finished: list[str] = []

        async def job(conn: Connection, item: int) -> None:
            if conn.id == "c1" or item == 0:
                await asyncio.sleep(0.02)
                finished.append(conn.id)

        items = list(range(20))
        async with registry.map(job, items=items, concurrency=3, per_connection=3) as outcomes:
            async for _ in outcomes:
                pass
        # Every other connection's first job finished before c1's last one did.
        last_big = max(i for i, cid in enumerate(finished) if cid == "c1")
        for connection_id in [f"c{i}" for i in range(2, 11)]:
            assert finished.index(connection_id) < last_big

    async def test_per_connection_bounds_parallel_jobs(self, registry: ConnectionRegistry) -> None:
        """At most per_connection jobs of one connection run at once."""
        running: dict[str, int] = {}
        peak: dict[str, int] = {}

        async def job(conn: Connection, item: int) -> int:
            running[conn.id] = running.get(conn.id, 0) + 1
            peak[conn.id] = max(peak.get(conn.id, 0), running[conn.id])
            await asyncio.sleep(0.005)
            running[conn.id] -= 1
            return item

        async with registry.map(
            job, ["c1", "c2"], items=range(6), concurrency=8, per_connection=2
        ) as outcomes:
            got = [o async for o in outcomes]
        assert len(got) == 12
        assert peak == {"c1": 2, "c2": 2}


class TestGate:
    async def test_a_rate_limited_connection_yields_its_slot(
        self, registry: ConnectionRegistry, sandbox: Sandbox
    ) -> None:
        """While c1 waits out a 429's Retry-After, the single slot serves the others."""
        sandbox.inject(429, retry_after=2, times=1, connection="c1")
        chosen = ["c1", "c2", "c3", "c4"]
        started = time.monotonic()
        done_at: dict[str, float] = {}
        async with registry.map(_count, chosen, concurrency=1) as outcomes:
            async for outcome in outcomes:
                assert outcome.ok, outcome
                done_at[outcome.connection_id] = time.monotonic() - started
        # c1 started first, yet the others finished while it waited: its slot was lent out.
        assert list(done_at) == ["c2", "c3", "c4", "c1"]
        assert done_at["c1"] >= 1.9
        # Nothing was lost: c1 answered after its gate reopened.
        assert [r.status for r in sandbox.requests(connection="c1")] == [429, 200]

    async def test_a_connection_behind_a_closed_gate_is_parked(
        self, registry: ConnectionRegistry, sandbox: Sandbox
    ) -> None:
        """A connection whose gate is already closed starts after the open ones."""
        sandbox.inject(429, retry_after=1, times=1, connection="c1")
        # A POST without an idempotency key is never retried: the 429 closes c1's gate and
        # comes straight back, however slowly the machine runs.
        with pytest.raises(RateLimitError):
            await registry["c1"].request("POST", "/api/eam/work-orders", json={"name": "x"})
        async with registry.map(_count, ["c1", "c2", "c3"], concurrency=1) as outcomes:
            order = [o.connection_id async for o in outcomes]
        assert order == ["c2", "c3", "c1"]


class TestCancellation:
    async def test_aclose_cancels_every_running_job(self, registry: ConnectionRegistry) -> None:
        """Closing the iterator early cancels and awaits the running jobs."""
        cancelled: list[str] = []
        started = asyncio.Event()

        async def job(conn: Connection) -> None:
            try:
                if conn.id != "c1":
                    started.set()
                    await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(conn.id)
                raise

        fan = registry.map(job, concurrency=4)
        first = await anext(fan)
        assert first.connection_id == "c1"
        await started.wait()
        await fan.aclose()
        assert sorted(cancelled) == ["c2", "c3", "c4"]
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        with pytest.raises(StopAsyncIteration):
            await anext(fan)

    async def test_breaking_out_of_async_with_stops_everything(
        self, registry: ConnectionRegistry
    ) -> None:
        """Leaving the block after the first outcome leaves no job running."""

        async def job(conn: Connection) -> str:
            if conn.id != "c1":
                await asyncio.sleep(30)
            return conn.id

        async with registry.map(job, concurrency=5) as outcomes:
            async for outcome in outcomes:
                assert outcome.value == "c1"
                break
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    async def test_cancelling_the_consumer_cancels_the_jobs(
        self, registry: ConnectionRegistry
    ) -> None:
        """Cancelling the task that iterates (Ctrl-C) cancels every job it started."""
        running = asyncio.Event()

        async def job(conn: Connection) -> None:
            running.set()
            await asyncio.sleep(30)

        async def consume() -> list[Outcome[None]]:
            async with registry.map(job, concurrency=3) as outcomes:
                return [o async for o in outcomes]

        task = asyncio.create_task(consume())
        await running.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    async def test_aclose_from_another_task_ends_a_waiting_consumer(
        self, registry: ConnectionRegistry
    ) -> None:
        """A consumer waiting for an outcome when another task closes the fan-out stops cleanly."""
        running = asyncio.Event()

        async def job(conn: Connection) -> None:
            running.set()
            await asyncio.sleep(30)

        fan = registry.map(job, ["c1", "c2", "c3"], concurrency=3)
        consumer = asyncio.create_task(anext(fan))
        await running.wait()
        await asyncio.sleep(0)  # the consumer is now waiting on the running jobs
        await fan.aclose()
        with pytest.raises(StopAsyncIteration):
            await consumer
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    async def test_outcome_status_values(self) -> None:
        """The outcome statuses read as ok, skipped and failed."""
        assert [s.value for s in OutcomeStatus] == ["ok", "skipped", "failed"]


class TestLimits:
    async def test_a_job_past_its_timeout_fails_typed(self, registry: ConnectionRegistry) -> None:
        """A job still running at ``timeout`` is cancelled and fails with RequestTimeoutError."""

        async def job(conn: Connection) -> str:
            if conn.id == "c1":
                await asyncio.sleep(3600)
            return conn.id

        async with registry.map(job, ["c1", "c2"], timeout=0.05) as outcomes:
            got = {o.connection_id: o async for o in outcomes}
        assert got["c2"].ok
        assert got["c2"].value == "c2"
        assert got["c1"].failed
        assert isinstance(got["c1"].error, RequestTimeoutError)

    async def test_jobs_not_started_by_the_deadline_are_skipped(self, sandbox: Sandbox) -> None:
        """On the registry's clock: a job that would start after the deadline never starts."""
        clock = VirtualClock()
        started: list[str] = []

        async def job(conn: Connection) -> str:
            started.append(conn.id)
            clock.advance(10)
            return conn.id

        async with ConnectionRegistry(sandbox.url, clock=clock) as registry:
            for connection_id in ("c1", "c2", "c3"):
                registry.add(connection_id, sandbox.connections[connection_id])
            async with registry.map(job, concurrency=1, deadline=15) as outcomes:
                got = [o async for o in outcomes]
        assert started == ["c1", "c2"]
        assert [o.status for o in got] == [
            OutcomeStatus.OK,
            OutcomeStatus.OK,
            OutcomeStatus.SKIPPED,
        ]
        assert got[2].reason == "the deadline passed"

    async def test_bad_limits_are_refused_before_any_job(
        self, registry: ConnectionRegistry
    ) -> None:
        """A limit that is not a positive number is a TypeError or ValueError, at once."""
        with pytest.raises(ValueError, match="timeout"):
            registry.map(_count, timeout=0)
        with pytest.raises(TypeError, match="deadline"):
            registry.map(_count, deadline="soon")  # type: ignore[call-overload]
