"""Pagination, filters, filterMatch, sorting and the modified_after alias, against references."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from makini_async.sandbox import Sandbox
from tests.sandbox.support import Api

WO = "/api/eam/work-orders"


async def _all(api: Api, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Walk every page of a list the way a client does."""
    records: list[dict[str, Any]] = []
    page = 1
    while True:
        reply = await api.get(path, params={**params, "page": str(page)})
        assert reply.status == 200, reply.text
        records.extend(reply.body["data"])
        if reply.body["meta"]["current_page"] >= reply.body["meta"]["last_page"]:
            return records
        page += 1


def _keys(records: list[dict[str, Any]]) -> list[str]:
    return [str(r["key"]) for r in records]


class TestPagination:
    async def test_default_page_is_fifty(self, api: Api, sandbox: Sandbox) -> None:
        """Without per_page a page holds 50 records and meta says so."""
        total = len(sandbox.records("c1", "eam/work-orders"))
        reply = await api.get(WO)
        meta = reply.body["meta"]
        assert len(reply.body["data"]) == 50
        assert meta == {
            "current_page": 1,
            "from": 1,
            "last_page": math.ceil(total / 50),
            "path": f"{sandbox.url}{WO}",
            "per_page": 50,
            "to": 50,
            "total": total,
        }

    async def test_links(self, api: Api, sandbox: Sandbox) -> None:
        """links carry first, last, prev and next with the other query parameters kept."""
        reply = await api.get(WO, params={"per_page": "7", "page": "2"})
        links = reply.body["links"]
        last = reply.body["meta"]["last_page"]
        assert links["first"] == f"{sandbox.url}{WO}?per_page=7&page=1"
        assert links["prev"] == f"{sandbox.url}{WO}?per_page=7&page=1"
        assert links["next"] == f"{sandbox.url}{WO}?per_page=7&page=3"
        assert links["last"] == f"{sandbox.url}{WO}?per_page=7&page={last}"
        first = await api.get(WO, params={"per_page": "7"})
        assert first.body["links"]["prev"] is None
        end = await api.get(WO, params={"per_page": "7", "page": str(last)})
        assert end.body["links"]["next"] is None

    async def test_walking_pages_yields_every_record_once(self, api: Api, sandbox: Sandbox) -> None:
        """Iterating pages until current_page >= last_page returns the collection in order."""
        walked = await _all(api, WO, {"per_page": "17"})
        assert _keys(walked) == _keys(sandbox.records("c1", "eam/work-orders"))

    async def test_last_page_is_partial(self, api: Api, sandbox: Sandbox) -> None:
        """The last page holds the remainder and from/to count records."""
        total = len(sandbox.records("c1", "eam/work-orders"))
        last = math.ceil(total / 50)
        reply = await api.get(WO, params={"page": str(last)})
        assert len(reply.body["data"]) == total - 50 * (last - 1)
        assert reply.body["meta"]["from"] == 50 * (last - 1) + 1
        assert reply.body["meta"]["to"] == total

    async def test_page_past_the_end_is_empty(self, api: Api) -> None:
        """A page beyond last_page is an empty page with from/to null, not an error."""
        reply = await api.get(WO, params={"page": "99"})
        assert reply.status == 200
        assert reply.body["data"] == []
        assert reply.body["meta"]["from"] is None
        assert reply.body["meta"]["to"] is None
        assert reply.body["links"]["next"] is None

    async def test_per_page_is_capped_at_500(self, api: Api, sandbox: Sandbox) -> None:
        """per_page above 500 is served as 500."""
        await sandbox.add_connection("big", sizes={"work-orders": 700})
        reply = await api.as_connection("big").get(WO, params={"per_page": "1000"})
        assert reply.body["meta"]["per_page"] == 500
        assert len(reply.body["data"]) == 500
        assert reply.body["meta"]["last_page"] == 2

    async def test_empty_result_has_one_page(self, api: Api) -> None:
        """A filter matching nothing gives total 0 and last_page 1."""
        reply = await api.get(WO, params={"filter[title]": "no such title"})
        assert reply.body["data"] == []
        assert reply.body["meta"]["total"] == 0
        assert reply.body["meta"]["last_page"] == 1

    @pytest.mark.parametrize(
        "params",
        [{"page": "0"}, {"page": "-1"}, {"page": "x"}, {"per_page": "0"}, {"per_page": "1.5"}],
    )
    async def test_bad_paging_is_400(self, api: Api, params: dict[str, str]) -> None:
        """Non-positive or non-integer page and per_page answer 400 INVALID_REQUEST."""
        reply = await api.get(WO, params=params)
        assert reply.status == 400
        assert reply.error_code == "INVALID_REQUEST"
        assert reply.body["error"]["details"]["parameter"] in params


def _text(value: Any) -> str:
    return str(value).lower()


REFERENCE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "contains": lambda got, want: got is not None and _text(want) in _text(got),
    "startsWith": lambda got, want: got is not None and _text(got).startswith(_text(want)),
    "endsWith": lambda got, want: got is not None and _text(got).endswith(_text(want)),
    "gt": lambda got, want: got is not None and got > want,
    "gteq": lambda got, want: got is not None and got >= want,
    "lt": lambda got, want: got is not None and got < want,
    "lteq": lambda got, want: got is not None and got <= want,
}


class TestFilters:
    async def test_equality(self, api: Api, sandbox: Sandbox) -> None:
        """filter[field]=v keeps exactly the records whose field equals v."""
        records = sandbox.records("c1", "eam/work-orders")
        site = records[3]["siteKey"]
        got = await _all(api, WO, {"filter[siteKey]": str(site), "per_page": "500"})
        assert _keys(got) == _keys([r for r in records if r["siteKey"] == site])

    @pytest.mark.parametrize("op", sorted(REFERENCE_OPS))
    @pytest.mark.parametrize("field", ["title", "createdAt", "updatedAt", "code"])
    async def test_operators(self, api: Api, sandbox: Sandbox, op: str, field: str) -> None:
        """Every operator on text and timestamp fields matches a reference computed here."""
        records = sandbox.records("c1", "eam/work-orders")
        sample = str(records[10][field])
        want = {
            "contains": sample[2:6],
            "startsWith": sample[:3],
            "endsWith": sample[-3:],
        }.get(op, sample)
        got = await _all(api, WO, {f"filter[{field}:{op}]": want, "per_page": "500"})
        expected = [r for r in records if REFERENCE_OPS[op](r[field], want)]
        assert expected
        assert _keys(got) == _keys(expected)

    async def test_numeric_comparison(self, api: Api, sandbox: Sandbox) -> None:
        """Numeric text compares as numbers (9 < 10), not as strings."""
        records = sandbox.records("c1", "eam/work-orders")
        got = await _all(api, WO, {"filter[estimatedTime:lt]": "10", "per_page": "500"})
        assert _keys(got) == _keys([r for r in records if float(str(r["estimatedTime"])) < 10])

    async def test_lted_typo_is_lteq(self, api: Api) -> None:
        """The documented typo `lted` works as `lteq`."""
        typo = await api.get(WO, params={"filter[createdAt:lted]": "2024-06-01"})
        right = await api.get(WO, params={"filter[createdAt:lteq]": "2024-06-01"})
        assert typo.body["meta"]["total"] == right.body["meta"]["total"] > 0

    async def test_dates_compare_as_instants(self, api: Api, sandbox: Sandbox) -> None:
        """A date, a Z time and an offset time naming one instant filter the same."""
        records = sandbox.records("c1", "eam/work-orders")
        totals = set()
        for value in ("2024-06-01", "2024-06-01T00:00:00Z", "2024-06-01T02:00:00+02:00"):
            reply = await api.get(WO, params={"filter[createdAt:gt]": value})
            totals.add(reply.body["meta"]["total"])
        assert totals == {sum(1 for r in records if str(r["createdAt"]) > "2024-06-01T00:00:00Z")}

    async def test_all_and_any(self, api: Api, sandbox: Sandbox) -> None:
        """filterMatch=all intersects filters and filterMatch=any unites them."""
        records = sandbox.records("c1", "eam/work-orders")
        params = {"filter[severity]": "high", "filter[title:contains]": "pump", "per_page": "500"}
        both = await _all(api, WO, {**params, "filterMatch": "all"})
        either = await _all(api, WO, {**params, "filterMatch": "any"})
        legacy = await _all(api, WO, {**params, "filter[filterMatch]": "any"})
        high = {r["key"] for r in records if r["severity"] == "high"}
        pump = {r["key"] for r in records if "pump" in str(r["title"]).lower()}
        assert set(_keys(both)) == high & pump
        assert set(_keys(either)) == high | pump
        assert _keys(legacy) == _keys(either)

    async def test_null_equality(self, api: Api, sandbox: Sandbox) -> None:
        """filter[field]=null matches records without a value."""
        records = sandbox.records("c1", "eam/work-orders")
        got = await _all(api, WO, {"filter[completedAt]": "null", "per_page": "500"})
        assert _keys(got) == _keys([r for r in records if r["completedAt"] is None])

    async def test_boolean_equality(self, api: Api, sandbox: Sandbox) -> None:
        """Boolean fields match true and false."""
        records = sandbox.records("c1", "eam/assets")
        got = await _all(api, "/api/eam/assets", {"filter[isActive]": "true", "per_page": "500"})
        assert _keys(got) == _keys([r for r in records if r["isActive"] is True])

    async def test_modified_after_alias(self, api: Api, sandbox: Sandbox) -> None:
        """modified_after=T is the same as filter[updatedAt:gt]=T."""
        records = sandbox.records("c1", "eam/work-orders")
        cut = sorted(str(r["updatedAt"]) for r in records)[len(records) // 2]
        alias = await _all(api, WO, {"modified_after": cut, "per_page": "500"})
        assert _keys(alias) == _keys([r for r in records if str(r["updatedAt"]) > cut])

    @pytest.mark.parametrize(
        "params",
        [
            {"filter[nope]": "1"},
            {"filter[title:like]": "x"},
            {"filter[title": "x"},
            {"filter": "x"},
            {"filterx[title]": "x"},
            {"filterMatch": "some"},
            {"filter[createdAt:gt]": "yesterday"},
            {"modified_after": "soon"},
            {"filter[tasks]": "x"},
            {"sort[title]": "2"},
            {"sort[nope]": "0"},
            {"sort[title:asc]": "0"},
        ],
    )
    async def test_bad_filters_are_400(self, api: Api, params: dict[str, str]) -> None:
        """Unknown fields or operators and malformed parameters answer 400 with the parameter."""
        reply = await api.get(WO, params=params)
        assert reply.status == 400, reply.text
        assert reply.error_code == "INVALID_REQUEST"
        assert reply.body["error"]["details"]["parameter"]


class TestSorting:
    @pytest.mark.parametrize("field", ["createdAt", "title", "code", "estimatedTime", "dueAt"])
    @pytest.mark.parametrize("descending", [False, True])
    async def test_single_sort(
        self, api: Api, sandbox: Sandbox, field: str, descending: bool
    ) -> None:
        """sort[f]=0 sorts ascending and sort[f]=1 descending, missing values first, ties stable."""
        records = sandbox.records("c1", "eam/work-orders")
        got = await _all(api, WO, {f"sort[{field}]": "1" if descending else "0", "per_page": "500"})

        def key(r: dict[str, Any]) -> tuple[int, Any]:
            value = r[field]
            if value is None:
                return (0, 0)
            return (1, float(value)) if field == "estimatedTime" else (2, value)

        assert _keys(got) == _keys(sorted(records, key=key, reverse=descending))

    async def test_two_sorts_apply_in_order(self, api: Api, sandbox: Sandbox) -> None:
        """Several sort parameters sort by the first, then the next."""
        records = sandbox.records("c1", "eam/work-orders")
        got = await _all(
            api, WO, {"sort[severity]": "0", "sort[createdAt]": "1", "per_page": "500"}
        )
        by_created = sorted(records, key=lambda r: str(r["createdAt"]), reverse=True)
        expected = sorted(by_created, key=lambda r: str(r["severity"]))
        assert _keys(got) == _keys(expected)

    async def test_filter_sort_and_pages_combine(self, api: Api, sandbox: Sandbox) -> None:
        """An incremental pull (updatedAt gt, sorted ascending, small pages) sees every change."""
        records = sandbox.records("c1", "eam/work-orders")
        cut = "2025-10-05T00:00:00Z"
        got = await _all(
            api, WO, {"filter[updatedAt:gt]": cut, "sort[updatedAt]": "0", "per_page": "9"}
        )
        expected = sorted(
            (r for r in records if str(r["updatedAt"]) > cut), key=lambda r: str(r["updatedAt"])
        )
        assert _keys(got) == _keys(expected)
