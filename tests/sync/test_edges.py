"""`sync` against scripted servers: ties within one second, a server that ignores the sort."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from makini_async import ConnectionRegistry
from makini_async.sync import Row, SQLiteStore, sync
from tests.support import ZERO_WAIT, StartApp


def _listing(records: list[dict[str, object]], *, honour_query: bool) -> web.Application:
    """A list endpoint over ``records``: Makini's filter, sort and pages, or pages alone."""

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
        meta = {"current_page": page, "last_page": last, "per_page": per_page}
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
