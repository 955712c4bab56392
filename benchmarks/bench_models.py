"""Typed decoding speed of work-order pages against plain ``json.loads`` on the same bytes.

Usage::

    .venv/bin/python benchmarks/bench_models.py [--seconds 1.5] [--rounds 3]
    PYTHONPATH=/tmp/peers .venv/bin/python benchmarks/bench_models.py   # with pydantic beside

The pages come from the sandbox (``GET /api/eam/work-orders``, v3 and v4 shapes, 50 and 500
records of about 2.7 KB, plus a 500-record page without the nested tasks/documents/resources).
Each page also has a *dirty* twin: the same records with one value per record that does not fit
its field (``dueAt: "next tuesday"``), which tolerant decoding keeps in ``invalid``. For each page
it times, on the same bytes and in the same process:

- ``json.loads``: the baseline of the targets;
- ``orjson.loads``: untyped;
- ``makini``: what ``conn.eam.work_orders.list()`` does per page with the ``speedups`` extra:
  the body decoder (msgspec, straight from the bytes into records; it declines a dirty page,
  which then takes the reference path) and ``decode_page`` into ``Page[WorkOrder]``;
- ``makini-ref``: the reference path, as without msgspec: ``_json`` (orjson) and the
  structure functions (the cattrs-registered ones), tolerant;
- ``makini-strict``: ``makini`` with ``strict=True``, on the clean pages: tolerance costs
  nothing there, so it should time as ``makini`` does;
- the peers of ``_peers.py``, when they can be imported (information only): ``pydantic``
  (``model_validate_json``) and ``msgspec`` (``msgspec.json.decode`` into plain Structs, no
  ``extra``/``raw``/tolerance) with equivalent models built from ours, and ``msgspec-attrs``
  (msgspec building our own attrs classes itself, through its attrs support).

It prints records/s and the ratio to ``json.loads``, the target (``makini`` >= 1.0x
``json.loads`` on the 500-record pages), and the cost of tolerance: each path's time on the
dirty page over its time on the clean one. Variants run in ``--rounds`` interleaved rounds and
each one's best counts; numbers on a shared machine are indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections.abc import Callable

import aiohttp
import orjson

from makini_async import APIResponse, _json, models
from makini_async.models._fast import page_decoder
from makini_async.resources._base import decode_page
from makini_async.sandbox import Sandbox

_CALL = "GET /api/eam/work-orders"


async def _pages() -> dict[str, bytes]:
    pages: dict[str, bytes] = {}
    async with Sandbox(connections=2, seed=1, sizes={"work-orders": 600}) as sandbox:
        sandbox.configure("c2", v4=True)
        async with aiohttp.ClientSession() as session:
            for cid, shape in (("c1", "v3"), ("c2", "v4")):
                headers = {"Authorization": f"Bearer {sandbox.connections[cid]}"}
                for size in (50, 500):
                    url = f"{sandbox.url}/api/eam/work-orders?per_page={size}"
                    async with session.get(url, headers=headers) as response:
                        pages[f"{shape} {size}"] = await response.read()
    flat = json.loads(pages["v3 500"])
    for record in flat["data"]:
        for nested in ("tasks", "documents", "resources"):
            record[nested] = []
    pages["v3 500 flat"] = json.dumps(flat).encode()
    for label in list(pages):
        dirty = json.loads(pages[label])
        for record in dirty["data"]:
            record["dueAt"] = "next tuesday"  # one value per record that does not fit
        pages[f"{label} dirty"] = json.dumps(dirty).encode()
    return pages


def _timed(function: Callable[[], object], seconds: float) -> float:
    """Best time of one call, over repeated batches for about ``seconds``."""
    function()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            function()
        best = min(best, (time.perf_counter() - start) / 5)
    return best


def _makini(raw: bytes, *, strict: bool = False) -> object:
    """What ``list()`` does with a page: the body decoder first, then ``decode_page``."""
    token = _json.use_body_decoder(page_decoder(models.WorkOrder))
    try:
        data = _json.loads(raw)
    finally:
        _json.reset_body_decoder(token)
    response = APIResponse(200, None, None, data)  # type: ignore[arg-type]
    return decode_page(response, models.WorkOrder, 1, _CALL, strict=strict)


def _reference(raw: bytes) -> object:
    """The reference path: JSON first, then the structure functions (tolerant)."""
    response = APIResponse(200, None, None, _json.decode_plain(raw))  # type: ignore[arg-type]
    return decode_page(response, models.WorkOrder, 1, _CALL)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table.

    Returns:
        0 (a benchmark reports, it does not assert).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per variant and page")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per page")
    args = parser.parse_args(argv)
    pages = asyncio.run(_pages())
    from _peers import peer_models

    peers = peer_models()
    fast = page_decoder(models.WorkOrder)
    print(f"python {sys.version.split()[0]}, peers: {', '.join(peers) or 'none installed'}")
    print(f"msgspec fast path: {'on' if fast is not None else 'off (not installed)'}")
    best: dict[str, dict[str, float]] = {}
    for label, raw in pages.items():
        count = len(json.loads(raw)["data"])
        taken = fast is not None and fast(raw) is not None
        variants: dict[str, Callable[[], object]] = {
            "json.loads": functools.partial(json.loads, raw),
            "orjson.loads": functools.partial(orjson.loads, raw),
            "makini": functools.partial(_makini, raw),
            "makini-ref": functools.partial(_reference, raw),
        }
        if not label.endswith("dirty"):
            # Strict on a clean page: what tolerance costs when every value fits (nothing).
            variants["makini-strict"] = functools.partial(_makini, raw, strict=True)
            for name, decode in peers.items():
                variants[name] = functools.partial(decode, raw)
        # Rounds interleave the variants, so that a slow spell of the machine is shared by all of
        # them rather than landing on one; each variant's best round counts.
        times = dict.fromkeys(variants, float("inf"))
        for _ in range(args.rounds):
            for name, function in variants.items():
                times[name] = min(times[name], _timed(function, args.seconds / args.rounds))
        best[label] = times
        base = times["json.loads"]
        path = "msgspec" if taken else "reference"
        print(
            f"\n{label} ({len(raw) / 1024:.0f} KiB, {count} records; makini took the {path} path)"
        )
        for name, seconds in times.items():
            rate = count / seconds
            print(f"  {name:<13} {rate:>12,.0f} records/s  {base / seconds:5.2f}x json.loads")
        if count >= 500 and not label.endswith("dirty") and "flat" not in label:
            ratio = base / times["makini"]
            verdict = "PASS" if ratio >= 1.0 else "FAIL"
            print(f"  makini / json.loads = {ratio:.2f} (>= 1.0: {verdict})")
    print("\ncost of tolerance (time on the dirty page / time on the clean one):")
    for label, times in best.items():
        if label.endswith("dirty"):
            name = label.removesuffix(" dirty")
            fast_cost = times["makini"] / best[name]["makini"]
            ref_cost = times["makini-ref"] / best[name]["makini-ref"]
            print(f"  {name:<12} makini {fast_cost:5.2f}x   makini-ref {ref_cost:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
