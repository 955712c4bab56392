"""`parse_page` and `check_page`: the one reader of list envelopes, over real HTTP."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from makini_async import ConnectionRegistry, Page, PageMeta, PaginationError, ResponseDecodeError
from makini_async._pagination import check_page, parse_page
from tests.support import ZERO_WAIT, StartApp

if TYPE_CHECKING:
    from makini_async.typing import JSON

PATH = "/api/eam/work-orders"
CALL = f"GET {PATH}"


async def _parse(app_server: StartApp, body: bytes, requested: int = 1) -> Page[JSON]:
    """Serve ``body`` once as a 200 JSON answer and parse it as page ``requested``."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type="application/json", headers={"X-Request-Id": "req_parse"}
        )

    app = web.Application()
    app.router.add_get(PATH, handler)
    url = await app_server(app)
    async with ConnectionRegistry(url, retry=ZERO_WAIT) as registry:
        conn = registry.add("x", "token")
        answer = await conn.request("GET", PATH, params=[("page", str(requested))])
        return parse_page(answer, requested, CALL)


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


class TestParsePage:
    async def test_v3_envelope(self, app_server: StartApp) -> None:
        """A v3 answer gives its raw records, every paginator field, its links and request id."""
        records = [{"key": "a", "updatedAt": "2026-01-01T00:00:00Z"}, {"key": "b"}]
        body = {
            "data": records,
            "links": {"first": "u1", "last": "u3", "prev": "u1", "next": "u3"},
            "meta": {
                "current_page": 2,
                "from": 3,
                "last_page": 3,
                "path": "u",
                "per_page": 2,
                "to": 4,
                "total": 6,
            },
        }
        page = await _parse(app_server, _body(body), requested=2)
        assert page.records == tuple(records)
        assert page.meta == PageMeta(
            current_page=2, last_page=3, per_page=2, total=6, first_index=3, last_index=4
        )
        assert page.links == {"first": "u1", "last": "u3", "prev": "u1", "next": "u3"}
        assert page.request_id == "req_parse"
        assert not page.is_last

    async def test_v4_envelope_without_links(self, app_server: StartApp) -> None:
        """A v4 answer (meta, no links) reads the same, with no links."""
        body = {"data": [{"id": "u-1"}], "meta": {"current_page": 1, "last_page": 12}}
        page = await _parse(app_server, _body(body))
        assert page.meta == PageMeta(current_page=1, last_page=12)
        assert page.links == {}
        assert page.records == ({"id": "u-1"},)

    @pytest.mark.parametrize(
        ("meta", "expected"),
        [
            (None, PageMeta(current_page=3, last_page=3)),
            ({}, PageMeta(current_page=3, last_page=3)),
            ("meta", PageMeta(current_page=3, last_page=3)),
            (
                {"current_page": "3", "last_page": " 5 ", "total": "9"},
                PageMeta(current_page=3, last_page=5, total=9),
            ),
            ({"current_page": 0, "last_page": 0}, PageMeta(current_page=3, last_page=3)),
            ({"current_page": True, "last_page": 4.0}, PageMeta(current_page=3, last_page=3)),
            ({"last_page": 7, "per_page": "x", "from": "²"}, PageMeta(current_page=3, last_page=7)),
            ({"current_page": 3, "total": "9" * 40}, PageMeta(current_page=3, last_page=3)),
        ],
        ids=["absent", "empty", "not-an-object", "strings", "zeros", "bool-float", "junk", "huge"],
    )
    async def test_meta_defaults(
        self, app_server: StartApp, meta: object, expected: PageMeta
    ) -> None:
        """Missing or unreadable numbers fall back: current to the page asked for, last to it."""
        body: dict[str, object] = {"data": []}
        if meta is not None:
            body["meta"] = meta
        page = await _parse(app_server, _body(body), requested=3)
        assert page.meta == expected

    async def test_links_keep_only_strings(self, app_server: StartApp) -> None:
        """Link values that are not strings read as None; links that are not an object as none."""
        page = await _parse(app_server, _body({"data": [], "links": {"next": None, "x": 1}}))
        assert page.links == {"next": None, "x": None}
        page = await _parse(app_server, _body({"data": [], "links": ["next"]}))
        assert page.links == {}

    async def test_records_are_left_as_they_are(self, app_server: StartApp) -> None:
        """The parser reads the envelope only; records of any shape are the caller's to judge."""
        page = await _parse(app_server, _body({"data": [1, "two", None, {"key": "k"}]}))
        assert page.records == (1, "two", None, {"key": "k"})

    @pytest.mark.parametrize(
        "body",
        [b"[]", b'"data"', b"null", b"", b"{}", b'{"data": {"key": "a"}}', b'{"data": null}'],
        ids=["list", "string", "null", "empty", "no-data", "data-object", "data-null"],
    )
    async def test_malformed_envelopes(self, app_server: StartApp, body: bytes) -> None:
        """A body that is not an object with a data array is a decode error naming the call."""
        with pytest.raises(ResponseDecodeError, match=r"'data' array \(GET /api/eam/") as info:
            await _parse(app_server, body)
        assert (info.value.status, info.value.request_id) == (200, "req_parse")


class TestCheckPage:
    def test_the_page_asked_for_passes(self) -> None:
        """A page whose current_page is the one asked for passes."""
        check_page(PageMeta(current_page=4, last_page=9), 4)

    def test_another_page_raises(self) -> None:
        """A page answering for another number raises PaginationError with both numbers."""
        with pytest.raises(PaginationError, match="does not advance") as info:
            check_page(PageMeta(current_page=1, last_page=9), 2)
        assert (info.value.requested, info.value.received) == (2, 1)
