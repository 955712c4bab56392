"""Memory per connection of the request core, measured with tracemalloc.

Usage::

    .venv/bin/python benchmarks/bench_memory.py

In one process:

(a) 10,000 connections registered with ``registry.add`` and no request: bytes per connection
    (the target: under 1 KiB).
(b) 1,000 connections that each made one request, so that each holds an open session on the
    registry's shared connector (``max_open_sessions=None``): bytes per connection above the
    registry's own baseline, registration included (target: under 4 KiB); and, for comparison,
    1,000 bare ``aiohttp.ClientSession(connector=shared, connector_owner=False)`` that each made
    one request, measured the same way.

Ids and tokens are built before each baseline (they are the caller's strings); the connector,
its keep-alive socket and the SSL context are warmed up by one request before the baseline. The
requests go to the local server of ``_server.py`` (its own process), one after another, so one
pooled TCP connection serves them all. The exit code is 0 whatever the numbers.
"""

from __future__ import annotations

import asyncio
import gc
import platform
import sys
import tracemalloc
from pathlib import Path
from typing import Final

__all__ = ["main"]

REGISTERED: Final = 10_000
WITH_SESSIONS: Final = 1_000
TARGET_REGISTERED: Final = 1024
TARGET_WITH_SESSIONS: Final = 4096
_TOP: Final = 8
_SHOW_AT_LEAST: Final = 1.0  # bytes per connection for an allocation site to be listed

_NOT_OURS: Final = (
    tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__),
    tracemalloc.Filter(inclusive=False, filename_pattern="<unknown>"),
)


def _snapshot() -> tracemalloc.Snapshot:
    """Collect garbage, then snapshot every traced block except tracemalloc's own."""
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(_NOT_OURS)


def _total(snapshot: tracemalloc.Snapshot) -> int:
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _short(filename: str) -> str:
    for marker in ("site-packages/", "makini_async/", "lib/python"):
        index = filename.rfind(marker)
        if index >= 0:
            return filename[index:]
    return Path(filename).name


def _print_top(
    title: str, after: tracemalloc.Snapshot, before: tracemalloc.Snapshot, n: int
) -> None:
    print(f"    {title}: largest allocation sites, bytes per connection")
    stats = after.compare_to(before, "lineno")
    for stat in stats[:_TOP]:
        if stat.size_diff / n < _SHOW_AT_LEAST:
            break
        frame = stat.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        print(f"      {stat.size_diff / n:8.1f}  {where}")


def _verdict(value: float, target: int) -> str:
    return f"target < {target:,}  {'PASS' if value < target else 'FAIL'}"


def _tokens(prefix: str, count: int) -> tuple[list[str], list[str]]:
    ids = [f"{prefix}_{i:06d}" for i in range(count)]
    tokens = [f"tok_{prefix}_{i:06d}_{i * 7919:032x}" for i in range(count)]
    return ids, tokens


def _measure_registered() -> None:
    from makini_async import ConnectionRegistry

    ids, tokens = _tokens("reg", REGISTERED)
    registry = ConnectionRegistry("http://127.0.0.1:9")
    before = _snapshot()
    for connection_id, token in zip(ids, tokens, strict=True):
        registry.add(connection_id, token)
    after = _snapshot()
    per = (_total(after) - _total(before)) / REGISTERED
    strings = sum(sys.getsizeof(s) for s in (*ids, *tokens)) / REGISTERED
    print(f"(a) {REGISTERED:,} connections registered, no request:")
    print(f"    {per:8.0f} bytes per connection    {_verdict(per, TARGET_REGISTERED)}")
    print(
        f"    (the caller's id and token strings, not counted: {strings:.0f} bytes per connection)"
    )
    _print_top("(a)", after, before, REGISTERED)
    asyncio.run(registry.aclose())  # no connector was made: nothing to close but the state


async def _measure_sessions(url: str, path: str) -> float:
    from makini_async import ConnectionRegistry

    ids, tokens = _tokens("ses", WITH_SESSIONS)
    async with ConnectionRegistry(url, max_open_sessions=None) as registry:
        warm = registry.add("warm-up", "tok_warm_up")
        await warm.request("GET", path)  # connector, SSL context, keep-alive socket
        before = _snapshot()
        for connection_id, token in zip(ids, tokens, strict=True):
            registry.add(connection_id, token)
        registered = _snapshot()
        for connection_id in ids:
            await registry[connection_id].request("GET", path)
        after = _snapshot()
        assert registry.open_sessions == WITH_SESSIONS + 1, registry.open_sessions
        base = _total(before)
        per = (_total(after) - base) / WITH_SESSIONS
        per_registration = (_total(registered) - base) / WITH_SESSIONS
        print(
            f"(b) {WITH_SESSIONS:,} connections with one request each (open session, shared pool):"
        )
        print(f"    {per:8.0f} bytes per connection    {_verdict(per, TARGET_WITH_SESSIONS)}")
        print(f"    {per_registration:8.0f}   of which the registration (registry.add)")
        print(f"    {per - per_registration:8.0f}   of which the session and the first request")
        _print_top("(b) makini_async", after, before, WITH_SESSIONS)
    return per


async def _measure_bare(url: str) -> float:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=100)
    warm = aiohttp.ClientSession(connector=connector, connector_owner=False)
    async with warm.get(url) as resp:
        await resp.read()
    before = _snapshot()
    sessions = [
        aiohttp.ClientSession(connector=connector, connector_owner=False)
        for _ in range(WITH_SESSIONS)
    ]
    for session in sessions:
        async with session.get(url) as resp:
            await resp.read()
    del resp
    after = _snapshot()
    per = (_total(after) - _total(before)) / WITH_SESSIONS
    print(
        f"    {per:8.0f} bytes per session: bare aiohttp.ClientSession(connector=shared, "
        "connector_owner=False) + one request (comparison)"
    )
    _print_top("bare aiohttp", after, before, WITH_SESSIONS)
    for session in (*sessions, warm):
        await session.close()
    await connector.close()
    return per


def main() -> int:
    """Measure and print; always returns 0."""
    import aiohttp
    from _server import TINY_PATH, running_server

    print(
        f"tracemalloc; Python {platform.python_version()} ({platform.python_implementation()}), "
        f"aiohttp {aiohttp.__version__}"
    )
    tracemalloc.start()
    try:
        _measure_registered()
        with running_server() as server:
            makini = asyncio.run(_measure_sessions(server.url, TINY_PATH))
            bare = asyncio.run(_measure_bare(server.tiny_url))
    finally:
        tracemalloc.stop()
    print(f"    makini_async / bare aiohttp session: {makini / bare:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
