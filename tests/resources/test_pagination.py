"""Page-number iteration against the sandbox and a scripted server: edges, guards, prefetch."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from makini_async import ConnectionRegistry, ResponseDecodeError, ServerError
from makini_async.models import WorkOrder
from makini_async.resources import Page, PaginationError
from makini_async.sandbox import Sandbox
from tests.support import ZERO_WAIT, StartApp
from tests.webhooks.support import until

SIZES = {"work-orders": 0, "assets": 1, "sites": 10, "vendors": 23, "meters": 10_000}


@pytest.fixture(name="sized")
async def _sized() -> AsyncIterator[Sandbox]:
    async with Sandbox(connections=1, seed=3, sizes=SIZES, rate_limit=100_000) as sandbox:
        yield sandbox


@pytest.fixture(name="sized_registry")
async def _sized_registry(sized: Sandbox) -> AsyncIterator[ConnectionRegistry]:
    async with ConnectionRegistry(sized.url, retry=ZERO_WAIT, limit_per_connection=8) as reg:
        reg.add("c1", sized.connections["c1"])
        yield reg


def _fetches() -> int:
    """How many page fetches of ours are running (the sandbox's own tasks do not count)."""
    name = "listing.<locals>.fetch"
    return sum(getattr(t.get_coro(), "__qualname__", "") == name for t in asyncio.all_tasks())


def _keys(sandbox: Sandbox, resource: str) -> list[str]:
    return [str(r["key"]) for r in sandbox.records("c1", resource)]


class TestEdges:
    @pytest.mark.parametrize("prefetch", [0, 4])
    @pytest.mark.parametrize(
        ("resource", "attribute", "per_page", "pages"),
        [
            ("eam/work-orders", "work_orders", 5, 1),  # 0 records: one empty page
            ("eam/assets", "assets", 5, 1),  # 1 record
            ("eam/sites", "sites", 10, 1),  # exactly one page
            ("eam/vendors", "vendors", 5, 5),  # short last page
        ],
    )
    async def test_sizes(  # noqa: PLR0917 - parametrized
        self,
        sized: Sandbox,
        sized_registry: ConnectionRegistry,
        resource: str,
        attribute: str,
        per_page: int,
        pages: int,
        prefetch: int,
    ) -> None:
        """Every record comes once, in server order, whatever the page boundaries."""
        service = getattr(sized_registry["c1"].eam, attribute)
        listing = service.list(per_page=per_page, prefetch=prefetch)
        seen = [r.key async for r in listing]
        assert seen == _keys(sized, resource)
        metas = [p.meta async for p in listing.pages()]
        assert len(metas) == pages
        assert metas[-1].current_page == metas[-1].last_page

    @pytest.mark.parametrize("prefetch", [0, 6])
    async def test_ten_thousand(
        self, sized: Sandbox, sized_registry: ConnectionRegistry, prefetch: int
    ) -> None:
        """Ten thousand records over a hundred pages arrive complete and in order."""
        meters = sized_registry["c1"].eam.meters
        keys = [m.key async for m in meters.list(per_page=100, prefetch=prefetch)]
        assert keys == _keys(sized, "eam/meters")
        assert len(keys) == 10_000

    async def test_resume_and_max_pages(
        self, sized: Sandbox, sized_registry: ConnectionRegistry
    ) -> None:
        """A listing resumes from a page number, and max_pages stops it early."""
        vendors = sized_registry["c1"].eam.vendors
        keys = _keys(sized, "eam/vendors")
        assert [v.key async for v in vendors.list(per_page=5, page=3)] == keys[10:]
        for prefetch in (0, 3):
            limited = vendors.list(per_page=5, max_pages=2, prefetch=prefetch)
            assert [v.key async for v in limited] == keys[:10]
        assert (await vendors.list(per_page=5).first()) is not None

    async def test_prefetch_runs_concurrently(
        self, sized: Sandbox, sized_registry: ConnectionRegistry
    ) -> None:
        """With prefetch, the next pages are asked for while the caller still reads the first."""
        meters = sized_registry["c1"].eam.meters
        path = "/api/eam/meters"
        pages = meters.list(per_page=20, max_pages=9, prefetch=8).pages()
        first = await anext(pages)
        # Holding page 1, the caller has asked for nothing more; pages 2-9 are on their way.
        await until(lambda: len(sized.requests("c1", path=path)) == 9, timeout=30)
        rest = [p async for p in pages]
        assert [p.meta.current_page for p in [first, *rest]] == list(range(1, 10))
        asked = [dict(r.query)["page"] for r in sized.requests("c1", path=path)]
        assert sorted(asked, key=int) == [str(n) for n in range(1, 10)]

    async def test_early_exit_cancels_prefetch(
        self, sized: Sandbox, sized_registry: ConnectionRegistry
    ) -> None:
        """Leaving the loop early cancels the pages still being fetched."""
        sized.configure("c1", latency=0.2)
        meters = sized_registry["c1"].eam.meters
        listing = meters.list(per_page=100, prefetch=4).pages()
        first = await anext(listing)
        assert first.meta.current_page == 1
        await asyncio.sleep(0.01)  # let the prefetch tasks start
        assert _fetches() == 4
        await listing.aclose()  # type: ignore[attr-defined]
        assert _fetches() == 0

    async def test_cancel_while_waiting(
        self, sized: Sandbox, sized_registry: ConnectionRegistry
    ) -> None:
        """Cancelling the consumer cancels every prefetch fetch; no task is left behind."""
        sized.configure("c1", latency=0.2)
        meters = sized_registry["c1"].eam.meters

        async def consume() -> None:
            async for _ in meters.list(per_page=100, prefetch=4):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        assert _fetches() == 4
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _fetches() == 0

    async def test_break_cancels_prefetch(
        self, sized: Sandbox, sized_registry: ConnectionRegistry
    ) -> None:
        """Breaking out of a record loop lets the event loop cancel the prefetches at once."""
        sized.configure("c1", latency=0.2)
        meters = sized_registry["c1"].eam.meters
        async for meter in meters.list(per_page=100, prefetch=4):
            assert meter.key is not None
            break
        for _ in range(5):  # the loop's async-generator finalizer runs within a few steps
            await asyncio.sleep(0)
        assert _fetches() == 0

    async def test_error_mid_listing(
        self, sized: Sandbox, sized_registry: ConnectionRegistry
    ) -> None:
        """A failing page stops the listing with its error, prefetch or not."""
        meters = sized_registry["c1"].eam.meters
        for prefetch in (0, 4):
            sized.inject(500, times=None, path="/api/eam/meters", connection="c1")
            listing = meters.list(per_page=100, prefetch=prefetch)
            with pytest.raises(ServerError):
                await listing.to_list()
            sized.clear_faults()


def _scripted_app(pages: dict[int, tuple[int, int, int | None, int]]) -> web.Application:
    """A list endpoint answering page n with (records, last_page, total, current_page)."""

    async def handler(request: web.Request) -> web.Response:
        number = int(request.query.get("page", "1"))
        count, last, total, current = pages[number]
        data = [{"key": f"p{number}-{i}", "title": "t"} for i in range(count)]
        meta = {"current_page": current, "last_page": last, "total": total, "per_page": 2}
        return web.json_response({"data": data, "meta": meta, "links": {}})

    app = web.Application()
    app.router.add_get("/api/eam/work-orders", handler)
    return app


class TestGuards:
    @pytest.mark.parametrize("prefetch", [0, 3])
    async def test_empty_middle_page(self, app_server: StartApp, prefetch: int) -> None:
        """An empty page before the last is followed to the pages after it."""
        url = await app_server(_scripted_app({1: (2, 3, 4, 1), 2: (0, 3, 4, 2), 3: (2, 3, 4, 3)}))
        async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry:
            conn = registry.add("x", "token")
            keys = [w.key async for w in conn.eam.work_orders.list(prefetch=prefetch)]
        assert keys == ["p1-0", "p1-1", "p3-0", "p3-1"]

    @pytest.mark.parametrize("prefetch", [0, 3])
    async def test_page_that_does_not_advance(self, app_server: StartApp, prefetch: int) -> None:
        """A server answering page 1 again for page 2 raises instead of looping."""
        url = await app_server(_scripted_app({1: (2, 3, 6, 1), 2: (2, 3, 6, 1), 3: (2, 3, 6, 3)}))
        async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry:
            conn = registry.add("x", "token")
            with pytest.raises(PaginationError) as info:
                await conn.eam.work_orders.list(prefetch=prefetch).to_list()
        assert (info.value.requested, info.value.received) == (2, 1)

    @pytest.mark.parametrize("prefetch", [0, 3])
    async def test_total_shrinks(
        self, app_server: StartApp, prefetch: int, caplog: pytest.LogCaptureFixture
    ) -> None:
        """When the total changes underneath, the new last page is followed and logged."""
        url = await app_server(
            _scripted_app({1: (2, 4, 8, 1), 2: (2, 2, 4, 2), 3: (2, 4, 8, 3), 4: (2, 4, 8, 4)})
        )
        caplog.set_level(logging.WARNING, "makini_async")
        async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry:
            conn = registry.add("x", "token")
            pages = [p async for p in conn.eam.work_orders.list(prefetch=prefetch).pages()]
        assert [p.meta.current_page for p in pages] == [1, 2]
        assert "changed while paging" in caplog.text

    async def test_total_grows(self, app_server: StartApp) -> None:
        """A listing that grows while paging follows the pages added at its end."""
        url = await app_server(_scripted_app({1: (2, 2, 4, 1), 2: (2, 3, 6, 2), 3: (2, 3, 6, 3)}))
        async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry:
            conn = registry.add("x", "token")
            for prefetch in (0, 3):
                pages = [p async for p in conn.eam.work_orders.list(prefetch=prefetch).pages()]
                assert [p.meta.current_page for p in pages] == [1, 2, 3]

    async def test_missing_meta_is_one_page(self, app_server: StartApp) -> None:
        """A list answer without meta is taken as the only page."""

        async def handler(request: web.Request) -> web.Response:
            return web.Response(
                body=json.dumps({"data": [{"key": "a"}]}), content_type="application/json"
            )

        app = web.Application()
        app.router.add_get("/api/eam/work-orders", handler)
        url = await app_server(app)
        async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry:
            conn = registry.add("x", "token")
            pages: list[Page[WorkOrder]] = [p async for p in conn.eam.work_orders.list().pages()]
        assert len(pages) == 1
        assert pages[0].is_last
        assert len(pages[0]) == 1

    async def test_string_meta(self, app_server: StartApp) -> None:
        """Paginator numbers sent as strings are read as numbers."""

        async def handler(request: web.Request) -> web.Response:
            number = request.query.get("page", "1")
            meta = {"current_page": number, "last_page": "2", "total": "2", "per_page": "1"}
            body = {"data": [{"key": number}], "meta": meta, "links": {"next": None, "x": 1}}
            return web.Response(body=json.dumps(body), content_type="application/json")

        app = web.Application()
        app.router.add_get("/api/eam/work-orders", handler)
        url = await app_server(app)
        async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry:
            conn = registry.add("x", "token")
            pages = [p async for p in conn.eam.work_orders.list().pages()]
        assert [p.meta.current_page for p in pages] == [1, 2]
        assert pages[0].meta.total == 2
        assert pages[0].links == {"next": None, "x": None}

    async def test_not_a_list(self, app_server: StartApp) -> None:
        """A list answer whose data is not an array is a decode error."""

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=b'{"data": {"key": "a"}}', content_type="application/json")

        app = web.Application()
        app.router.add_get("/api/eam/work-orders", handler)
        url = await app_server(app)
        async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry:
            conn = registry.add("x", "token")
            with pytest.raises(ResponseDecodeError, match="'data' array"):
                await conn.eam.work_orders.list().to_list()

    @pytest.mark.parametrize(
        "kwargs", [{"page": 0}, {"max_pages": 0}, {"prefetch": -1}, {"per_page": 0}]
    )
    async def test_bad_arguments(
        self, registry: ConnectionRegistry, kwargs: dict[str, int]
    ) -> None:
        """Out-of-range paging arguments fail at once, before any I/O."""
        with pytest.raises(ValueError, match=r">= 1|>= 0"):
            registry["c1"].eam.work_orders.list(**kwargs)  # type: ignore[arg-type]
