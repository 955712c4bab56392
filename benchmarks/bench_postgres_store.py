"""How fast does `PostgresStore` take records, against `SQLiteStore` on the same rows?

``--records`` (100,000) work-order rows of about 600 bytes of JSON, in pages of ``--page`` (500)
rows, are written by ``--writers`` (4) concurrent tasks, each its own connection id, each page
with its watermark, as `sync` writes them. Each store starts empty; then the same pages are
written again (nothing changes: the replay after a crash). The rate is records per second of
wall-clock time; the ratio PostgreSQL / SQLite is what to compare between machines.

Without ``--dsn`` a throwaway PostgreSQL cluster is made with ``initdb`` and started on a free
loopback port (the tests' own, with ``fsync=off`` and ``synchronous_commit=off``; SQLite runs
with WAL and ``synchronous=NORMAL``, which does not sync each commit either). With ``--dsn``
it writes to schema ``makini_bench`` of that database, dropping it first. Run it from the
repository root::

    .venv/bin/python benchmarks/bench_postgres_store.py [--records 100000] [--writers 4]
        [--page 500] [--dsn postgresql://...]

Importing the module does nothing. It always exits 0 and prints the figures (no target).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from makini_async.sync import Row, SQLiteStore, Store
from makini_async.sync.postgres import PostgresStore
from tests.services import postgres_server

ENTITY = "eam/work-orders"
SCHEMA = "makini_bench"


def _pages(records: int, writers: int, page: int) -> list[list[tuple[list[Row], str]]]:
    """Each writer's pages: ``(rows, watermark)``, rows in ascending ``updatedAt``."""
    per_writer = records // writers
    result = []
    for _ in range(writers):
        rows = []
        for i in range(per_writer):
            stamp = f"2025-{1 + i // 100_000 % 12:02d}-01T00:00:00.{i % 1_000_000:06d}Z"
            record = {
                "key": f"WO-{i:07d}",
                "title": f"Inspect pump {i} at line {i % 17}",
                "description": "Quarterly inspection of the seal, the bearings and the impeller. "
                * 4,
                "status": ("open", "in_progress", "done")[i % 3],
                "priority": i % 5,
                "assetKey": f"AS-{i % 997:05d}",
                "tags": ["pump", "quarterly", f"line-{i % 17}"],
                "updatedAt": stamp[:19] + "Z",
            }
            rows.append(Row.from_record(str(record["key"]), stamp, None, record))
        result.append(
            [
                (rows[at : at + page], rows[min(at + page, per_writer) - 1].updated_at or "")
                for at in range(0, per_writer, page)
            ]
        )
    return result


async def _run(store: Store, pages: list[list[tuple[list[Row], str]]]) -> tuple[float, int]:
    async def writer(number: int) -> int:
        changed = 0
        for rows, watermark in pages[number]:
            changed += await store.write(f"c{number}", ENTITY, rows, watermark)
        return changed

    started = time.perf_counter()
    counts = await asyncio.gather(*(writer(n) for n in range(len(pages))))
    return time.perf_counter() - started, sum(counts)


@contextlib.contextmanager
def _database(dsn: str | None) -> Iterator[str]:
    if dsn is not None:
        yield dsn
        return
    with postgres_server() as server:
        yield server.dsn()


async def _measure(args: argparse.Namespace, dsn: str) -> None:
    pages = _pages(args.records, args.writers, args.page)
    total = sum(len(rows) for writer in pages for rows, _ in writer)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    finally:
        await admin.close()
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="makini-bench-") as directory:
        stores: list[tuple[str, Store]] = [
            ("SQLiteStore", SQLiteStore(Path(directory) / "bench.db")),
            ("PostgresStore", PostgresStore(dsn, schema=SCHEMA, pool_size=args.writers)),
        ]
        for name, store in stores:
            await store.open()
            try:
                first, changed = await _run(store, pages)
                again, unchanged = await _run(store, pages)
            finally:
                await store.aclose()
            assert changed == total, (name, changed, total)
            assert unchanged == 0, (name, unchanged)
            rates[name] = [total / first, total / again]
            print(
                f"{name:14} first write {total / first:9,.0f} records/s ({first:5.2f} s)   "
                f"replay {total / again:9,.0f} records/s ({again:5.2f} s)"
            )
    pg, lite = rates["PostgresStore"], rates["SQLiteStore"]
    print(
        f"PostgresStore / SQLiteStore: first write {pg[0] / lite[0]:.2f}x, "
        f"replay {pg[1] / lite[1]:.2f}x  ({total:,} records, {args.writers} writers, "
        f"pages of {args.page})"
    )


def main() -> None:
    """Parse the arguments, start a server if none is given, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--dsn", default=None, help="an existing database (default: a new one)")
    args = parser.parse_args()
    with _database(args.dsn) as dsn:
        asyncio.run(_measure(args, dsn))


if __name__ == "__main__":
    main()
