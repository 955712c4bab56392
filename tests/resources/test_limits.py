"""``timeout=`` and ``deadline=`` on typed calls: passed through, and one deadline per listing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

import pytest

import makini_async as m
from makini_async.resources import EAM
from makini_async.sandbox import Sandbox
from makini_async.testing import VirtualClock


class Slow:
    """A `Requester` whose every request takes ``seconds`` on a virtual clock, and is recorded."""

    def __init__(self, connection: m.Connection, clock: VirtualClock, seconds: float) -> None:
        self._connection = connection
        self.clock = clock
        self.seconds = seconds
        self.calls: list[tuple[str, str, object, float | None]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
        json: object = None,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, m.Upload] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: m.Timeouts | float | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
        redact: Sequence[str] = (),
    ) -> m.APIResponse:
        del redact  # nothing secret is sent here
        self.calls.append((method, path, timeout, deadline))
        self.clock.advance(self.seconds)
        return await self._connection.request(
            method,
            path,
            params=params,
            json=json,
            form=form,
            files=files,
            headers=headers,
            idempotency_key=idempotency_key,
        )


@pytest.fixture(name="slow")
async def _slow(sandbox: Sandbox) -> AsyncIterator[Slow]:
    async with m.ConnectionRegistry(sandbox.url) as registry:
        yield Slow(registry.add("c1", sandbox.connections["c1"]), VirtualClock(), 4.0)


class TestListingDeadline:
    async def test_one_deadline_across_every_page(self, slow: Slow) -> None:
        """Each page gets what is left of the listing's deadline; past it, no page is asked."""
        listing = EAM(slow).work_orders.list(per_page=5, deadline=10)
        pages: list[int] = []

        async def read() -> None:
            async for page in listing.pages():
                pages.append(page.meta.current_page)  # noqa: PERF401 - kept as each page comes

        with pytest.raises(m.RequestTimeoutError) as info:
            await read()
        assert pages == [1, 2, 3]
        assert [call[3] for call in slow.calls] == [10.0, 6.0, 2.0]
        assert info.value.may_have_reached_server is False

    async def test_a_listing_without_a_deadline_passes_none(self, slow: Slow) -> None:
        """No deadline: every page request is sent without one, with the listing's timeout."""
        await EAM(slow).work_orders.list(per_page=50, max_pages=2, timeout=7).to_list()
        assert [(call[2], call[3]) for call in slow.calls] == [(7, None), (7, None)]

    def test_a_bad_deadline_is_refused_at_once(self, slow: Slow) -> None:
        """A deadline that is no positive number fails before any I/O."""
        with pytest.raises(ValueError, match="deadline"):
            EAM(slow).work_orders.list(deadline=0)
        with pytest.raises(TypeError, match="deadline"):
            EAM(slow).work_orders.list(deadline="1")  # type: ignore[arg-type]
        assert slow.calls == []


class TestPassedThrough:
    async def test_single_calls_carry_timeout_and_deadline(self, slow: Slow) -> None:
        """get, create, update and set_status hand their limits to the request."""
        orders = EAM(slow).work_orders
        first = (await orders.list(per_page=1, max_pages=1).to_list())[0]
        assert first.key is not None
        slow.calls.clear()
        record = await orders.get(first.key, timeout=3, deadline=9)
        assert record.key == first.key
        await orders.update(first.key, {"title": "x"}, timeout=4, deadline=8)
        assert [(c[0], c[2], c[3]) for c in slow.calls] == [("GET", 3, 9), ("PUT", 4, 8)]


class TestEndToEnd:
    async def test_a_deadline_cuts_a_slow_call(self, sandbox: Sandbox) -> None:
        """A typed call whose server is slower than its deadline fails typed, in time."""
        sandbox.configure("c1", latency=2.0)
        async with m.ConnectionRegistry(sandbox.url) as registry:
            conn = registry.add("c1", sandbox.connections["c1"])
            with pytest.raises(m.RequestTimeoutError):
                await conn.eam.work_orders.list(per_page=1, deadline=0.2).to_list()
            # The call ended while the sandbox was still working on its answer.
            assert [r.status for r in sandbox.requests("c1")] == [None]

    async def test_backoff_waits_on_the_registry_clock(self, sandbox: Sandbox) -> None:
        """Retries with 30-second backoff under a virtual clock take no real time."""
        clock = VirtualClock()
        policy = m.RetryPolicy(attempts=3, base=30, cap=30)
        async with m.ConnectionRegistry(sandbox.url, clock=clock, retry=policy) as registry:
            conn = registry.add("c1", sandbox.connections["c1"])
            sandbox.inject(503, times=2, connection="c1")
            started = time.monotonic()
            await conn.integration()
            assert time.monotonic() - started < 10  # the waits alone would be up to 60 s
        assert len(clock.sleeps) == 2
        assert all(0 <= wait <= 30 for wait in clock.sleeps)
