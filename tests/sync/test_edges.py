"""`sync` against scripted servers: ties within one second, ignored sorts, odd envelopes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web

from makini_async import ConnectionRegistry
from makini_async.sync import Row, SQLiteStore, SyncSummary, sync
from tests.support import ZERO_WAIT, StartApp


def _listing(
    records: list[dict[str, object]], *, honour_query: bool, strings: bool = False
) -> web.Application:
    """A list endpoint over ``records``: Makini's filter, sort and pages, or pages alone.

    With ``strings``, the paginator numbers go as strings.
    """

    async def handle(request: web.Request) -> web.Response:
        query = request.query
        chosen = list(records)
        if honour_query:
            since = query.get("filter[updatedAt:gt]")
            if since is not None:
                chosen = [r for r in chosen if str(r["updatedAt"]) > since]
            chosen.sort(key=lambda r: str(r["updatedAt"]))
        per_page, page = int(query.get("per_page", "50")), int(query.get("page", "1"))
        last = max(1, math.ceil(len(chosen) / per_page))
        data = chosen[(page - 1) * per_page : page * per_page]
        meta: dict[str, object] = {"current_page": page, "last_page": last, "per_page": per_page}
        if strings:
            meta = {name: str(value) for name, value in meta.items()}
        return web.json_response({"data": data, "meta": meta, "links": {}})

    app = web.Application()
    app.router.add_get("/api/eam/work-orders", handle)
    return app


class _Recording(SQLiteStore):
    """A SQLite store that remembers the watermark of every write."""

    marks: list[str | None]

    async def write(
        self, connection_id: str, entity: str, rows: Sequence[Row], watermark: str | None
    ) -> int:
        self.marks.append(watermark)
        return await super().write(connection_id, entity, rows, watermark)


async def _run(url: str, path: Path) -> tuple[list[str], list[str | None], int]:
    store = _Recording(path)
    store.marks = []
    async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry, store:
        registry.add("c1", "token-1")
        summary = await sync(registry, ["work-orders"], store, per_page=10)
        assert summary.ok, summary.failed
        keys = [row.key for row in await store.rows("eam/work-orders", "c1")]
        return keys, store.marks, summary.results[0].pages


class TestEdges:
    async def test_more_ties_than_a_page_are_paged_under_one_cursor(
        self, app_server: StartApp, tmp_path: Path
    ) -> None:
        """Thirty records updated in the same second all arrive, page by page."""
        records: list[dict[str, object]] = [
            {"key": f"k{i:02d}", "updatedAt": "2026-01-01T00:00:00Z"} for i in range(30)
        ]
        records += [
            {"key": f"m{i:02d}", "updatedAt": f"2026-01-02T00:00:{i:02d}Z"} for i in range(5)
        ]
        url = await app_server(_listing(records, honour_query=True))
        keys, marks, pages = await _run(url, tmp_path / "t.db")
        assert keys == sorted(str(r["key"]) for r in records)
        assert pages == 4
        assert marks[-1] == "2026-01-02T00:00:04.000000Z"

    async def test_a_server_ignoring_the_sort_gets_no_watermark_until_the_end(
        self, app_server: StartApp, tmp_path: Path
    ) -> None:
        """Unsorted pages are read by page number, and the watermark moves only at the end."""
        records: list[dict[str, object]] = [
            {"key": f"k{i:02d}", "updatedAt": f"2026-01-01T00:00:{(i * 7) % 25:02d}Z"}
            for i in range(25)
        ]
        url = await app_server(_listing(records, honour_query=False))
        keys, marks, pages = await _run(url, tmp_path / "u.db")
        assert keys == sorted(str(r["key"]) for r in records)
        assert pages == 3
        assert marks == [None, None, "2026-01-01T00:00:24.000000Z"]


def _app(handle: Callable[[web.Request], Awaitable[web.Response]]) -> web.Application:
    app = web.Application()
    app.router.add_get("/api/eam/work-orders", handle)
    return app


class TestEnvelopes:
    async def test_paginator_numbers_sent_as_strings_are_followed(
        self, app_server: StartApp, tmp_path: Path
    ) -> None:
        """String page numbers in meta are read as numbers, so every page is synced."""
        records: list[dict[str, object]] = [
            {"key": f"k{i:02d}", "updatedAt": f"2026-01-01T00:00:{i:02d}Z"} for i in range(25)
        ]
        url = await app_server(_listing(records, honour_query=True, strings=True))
        keys, _, pages = await _run(url, tmp_path / "s.db")
        assert keys == sorted(str(r["key"]) for r in records)
        assert pages == 3

    async def test_v4_stamps_stand_in_for_missing_v3_ones(
        self, app_server: StartApp, tmp_path: Path
    ) -> None:
        """Rows take the v4 ``_updatedAt``/``_deletedAt`` where the v3 stamps are absent or null."""
        records: list[dict[str, object]] = [
            {"key": "a", "updatedAt": "2026-01-01T00:00:01Z", "_updatedAt": "2026-01-01T00:00:09Z"},
            {"key": "b", "updatedAt": None, "_updatedAt": "2026-01-01T00:00:02Z"},
            {
                "key": "c",
                "_updatedAt": "2026-01-01T00:00:03Z",
                "_deletedAt": "2026-01-02T00:00:00Z",
            },
        ]

        async def v4(request: web.Request) -> web.Response:
            return web.json_response({"data": records, "meta": {"current_page": 1, "last_page": 1}})

        url = await app_server(_app(v4))
        async with (
            ConnectionRegistry(url, retry=ZERO_WAIT) as registry,
            SQLiteStore(tmp_path / "v4.db") as store,
        ):
            registry.add("c1", "token-1")
            assert (await sync(registry, ["work-orders"], store)).ok
            rows = await store.rows("eam/work-orders", "c1")
        assert [(r.key, r.updated_at, r.deleted_at) for r in rows] == [
            ("a", "2026-01-01T00:00:01.000000Z", None),
            ("b", "2026-01-01T00:00:02.000000Z", None),
            ("c", "2026-01-01T00:00:03.000000Z", "2026-01-02T00:00:00.000000Z"),
        ]

    async def test_a_server_that_does_not_advance_fails_instead_of_looping(
        self, app_server: StartApp, tmp_path: Path
    ) -> None:
        """A server answering page 1 whatever is asked fails the entity with PaginationError."""
        tied = [{"key": f"k{i:02d}", "updatedAt": "2026-01-01T00:00:00Z"} for i in range(10)]

        async def stuck(request: web.Request) -> web.Response:
            meta = {"current_page": 1, "last_page": 3, "per_page": 10, "total": 30}
            return web.json_response({"data": tied, "meta": meta})

        url = await app_server(_app(stuck))
        summary = await _summary(url, tmp_path / "p.db")
        assert [(r.status, r.error_code, r.pages) for r in summary.results] == [
            ("failed", "PaginationError", 1)
        ]

    async def test_a_malformed_page_fails_with_its_request_id(
        self, app_server: StartApp, tmp_path: Path
    ) -> None:
        """A list answer without a data array fails the entity, naming the call and request id."""

        async def malformed(request: web.Request) -> web.Response:
            return web.json_response({"data": {"key": "a"}}, headers={"X-Request-Id": "req_bad"})

        url = await app_server(_app(malformed))
        summary = await _summary(url, tmp_path / "m.db")
        (result,) = summary.results
        assert (result.status, result.error_code, result.request_id) == (
            "failed",
            "ResponseDecodeError",
            "req_bad",
        )
        assert "'data' array (GET /api/eam/work-orders)" in (result.reason or "")


async def _summary(url: str, path: Path) -> SyncSummary:
    async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry, SQLiteStore(path) as store:
        registry.add("c1", "token-1")
        return await asyncio.wait_for(sync(registry, ["work-orders"], store, per_page=10), 20)
