"""Big pages decode with the cyclic garbage collector paused, and leave it as they found it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest

from makini_async import _json, models
from makini_async.models._wire import RecordDecodeError, decode_list


def _records(count: int) -> list[object]:
    return [
        {"key": f"WO-{i}", "title": f"Check pump {i}", "createdAt": "2025-01-02T03:04:05Z"}
        for i in range(count)
    ]


@pytest.fixture
def collections_seen() -> Iterator[list[int]]:
    """Count the collections that start while a test runs, with a hair-trigger threshold."""
    seen: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    thresholds = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1)
    try:
        yield seen
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(callback)
        gc.enable()


class _Node:
    """A plain object: always tracked by the collector, never taken from a free list."""


def _allocate() -> list[_Node]:
    """Allocate 50 tracked objects: with a threshold of 1, a running collector starts many times.

    Dicts of strings start untracked and lists and tuples come from free lists, so a probe made
    of those starts a collection only through incidental allocations, which differ between Python
    versions (3.12 and 3.13 have none where 3.11 had some).
    """
    return [_Node() for _ in range(50)]


def _during(seen: list[int], call: Callable[[], object]) -> int:
    seen.clear()
    call()
    count = len(seen)
    seen.clear()
    return count


def test_a_big_page_is_structured_without_collections(collections_seen: list[int]) -> None:
    small = _records(60)  # under the bulk size: the collector runs as usual
    big = _records(2_000)
    during_small = _during(collections_seen, lambda: decode_list(small, models.WorkOrder))
    during_big = _during(collections_seen, lambda: decode_list(big, models.WorkOrder))
    # Only the few allocations around the paused window can start a collection.
    assert during_small >= 30
    assert during_big <= 10
    assert gc.isenabled()


def test_gc_paused_pauses_only_during_the_call() -> None:
    seen: list[bool] = []

    def probe(value: int) -> int:
        seen.append(gc.isenabled())
        return value * 2

    def failing(_: int) -> int:
        seen.append(gc.isenabled())
        raise ValueError("bad page")

    assert gc.isenabled()
    assert _json.gc_paused(probe, 21) == 42
    with pytest.raises(ValueError, match="bad page"):
        _json.gc_paused(failing, 1)
    assert seen == [False, False]
    assert gc.isenabled()


def test_a_big_body_decodes_the_same(collections_seen: list[int]) -> None:
    big = _json.stdlib_dumps({"data": _records(2_000)})
    assert len(big) >= _json.BULK_BYTES
    assert _json.loads(big) == _json.stdlib_loads(big)
    assert gc.isenabled()
    assert _during(collections_seen, _allocate) > 0


def test_the_collector_comes_back_after_a_decode_error(collections_seen: list[int]) -> None:
    records = _records(200)
    records[150] = {"key": "WO-bad", "createdAt": 12}
    with pytest.raises(RecordDecodeError) as caught:
        decode_list(records, models.WorkOrder, ".data")
    assert caught.value.path == ".data[150].createdAt"
    assert gc.isenabled()
    with pytest.raises(ValueError, match=r"JSON|Expecting|unexpected"):
        _json.loads(b"[" + b"1," * _json.BULK_BYTES + b"}")
    assert gc.isenabled()
    assert _during(collections_seen, _allocate) > 0


def test_a_disabled_collector_stays_disabled(collections_seen: list[int]) -> None:
    gc.disable()
    assert _json.gc_paused(lambda _: gc.isenabled(), None) is False
    decoded = decode_list(_records(200), models.WorkOrder)
    assert [record.key for record in decoded[:2]] == ["WO-0", "WO-1"]
    assert not gc.isenabled()
    _json.loads(_json.stdlib_dumps(_records(2_000)))
    assert not gc.isenabled()
    assert _during(collections_seen, _allocate) == 0
