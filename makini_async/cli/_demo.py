"""``makini-async demo``: the main job against an embedded sandbox, faults included.

A fleet of sandbox connections is synced into SQLite while one connection's source system is
down, one is rate-limited and one changes its credentials mid-run; then the source changes and
an incremental sync picks up exactly what changed.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Final
from urllib.parse import quote

from makini_async import ConnectionRegistry, ReconnectEvent, RetryPolicy
from makini_async.sandbox import Sandbox
from makini_async.sync import Progress, SQLiteStore, SyncSummary, sync

from ._parser import EXIT_FAILED, EXIT_OK, CommandLineError
from ._report import Reporter

__all__ = ["run_demo"]


_DEMO_SIZES: Final = {"work-orders": 400, "assets": 120, "purchase-orders": 60}
_DEMO_ENTITIES: Final = ("eam/work-orders", "eam/assets", "eam/purchase-orders")
_DEMO_PROVIDERS: Final = ("sandbox", "upkeep", "maintain-x", "emaint", "service-channel")
_DEMO_COMPANIES: Final = (
    "Acme Paper",
    "Nordic Foods",
    "Harbor Cement",
    "Delta Pumps",
    "Orion Breweries",
    "Vale Plastics",
    "Summit Steel",
    "Kestrel Dairy",
    "Atlas Textiles",
    "Pine Ridge Energy",
    "Bluewater Utilities",
    "Granite Logistics",
    "Meridian Pharma",
    "Redwood Packaging",
    "Solent Chemicals",
    "Tundra Glass",
    "Cobalt Mining",
    "Willow Bakeries",
    "Falcon Aerospace",
    "Ember Foundry",
)


def _company(index: int) -> str:
    name = _DEMO_COMPANIES[index % len(_DEMO_COMPANIES)]
    return name if index < len(_DEMO_COMPANIES) else f"{name} {index // len(_DEMO_COMPANIES) + 1}"


def _fresh_db(path: Path) -> None:
    """Remove an earlier demo database; refuse to touch any other file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    try:
        # Closed before the files are removed (a connection's own `with` only commits).
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            ours = db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ?", ("_makini_watermarks",)
            ).fetchone()
    except sqlite3.Error:
        ours = None
    if not ours:
        raise CommandLineError(f"--db {str(path)!r} exists and is not a makini-async store")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _demo_counts(store: SQLiteStore, connection_id: str) -> dict[str, int]:
    return {entity: await store.count(entity, connection_id) for entity in _DEMO_ENTITIES}


async def run_demo(args: argparse.Namespace, reporter: Reporter) -> int:  # noqa: C901, PLR0915
    """Run ``makini-async demo``: two syncs of a faulty sandbox fleet, told step by step.

    Args:
        args: The parsed command line.
        reporter: Shows the progress, the notes and the summaries.

    Returns:
        The exit status: 0 when everything went as planned, 1 otherwise.

    Raises:
        CommandLineError: Fewer than 3 connections, or ``--db`` names a file that is not a demo
            store.
    """
    count = args.connections
    if count < 3:  # noqa: PLR2004 - one healthy, one rate-limited, one down at least
        raise CommandLineError("the demo needs --connections 3 or more")
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="makini-demo-")) / "demo.db"
    _fresh_db(db)
    say = reporter.say
    async with Sandbox(connections=0, seed=7, time_scale=0.01) as sandbox:
        ids = [f"c{i + 1}" for i in range(count)]
        for index, connection_id in enumerate(ids):
            await sandbox.add_connection(
                connection_id,
                provider=_DEMO_PROVIDERS[index % len(_DEMO_PROVIDERS)],
                sizes=_DEMO_SIZES,
                v4=index % 3 == 2,  # noqa: PLR2004 - every third answers in the v4 shape
                name=_company(index),
            )
            sandbox.configure(connection_id, latency=0.005)
        changer, limited, down = ids[3 % count], ids[8 % count], ids[16 % count]
        if len({changer, limited, down}) < 3:  # noqa: PLR2004
            changer, limited, down = ids[0], ids[1], ids[2]
        say(f"Sandbox with {count} customer connections at {sandbox.url}")
        say(f"  {down} ({sandbox.connection(down).name}): its source system is down (503s)")
        say(f"  {limited} ({sandbox.connection(limited).name}): rate-limited (429, Retry-After)")
        say(f"  {changer} ({sandbox.connection(changer).name}): changes credentials mid-run")
        outage = sandbox.inject(503, times=None, connection=down, path="/api/eam/*")
        sandbox.inject(429, retry_after=1, times=2, connection=limited, path="/api/eam/work-orders")
        fired: list[str] = []

        async def reconnect(event: ReconnectEvent) -> str | None:
            fired.append(event.connection_id)
            say(f"  reconnect hook: {event.connection_id} got {event.error.code}; reconnecting")
            return sandbox.reconnect(event.connection_id)

        retry = RetryPolicy(attempts=3, base=0.2, cap=1.0)
        changed_credentials = False
        async with (
            ConnectionRegistry(sandbox.url, on_reconnect=reconnect, retry=retry) as registry,
            SQLiteStore(db) as store,
        ):
            for connection_id, token in sandbox.connections.items():
                registry.add(connection_id, token)

            def run(title: str) -> Awaitable[SyncSummary]:
                say(title)
                on_progress = reporter.start(_DEMO_ENTITIES, count)

                def progress(event: Progress) -> None:
                    nonlocal changed_credentials
                    if event.connection_id == changer and not changed_credentials:
                        changed_credentials = True
                        sandbox.change_credentials(changer)
                    on_progress(event)

                return sync(registry, _DEMO_ENTITIES, store, per_page=100, on_progress=progress)

            try:
                first = await run("First sync: work orders, assets and purchase orders")
            finally:
                reporter.stop()
            reporter.summary(first, str(db))
            hits = sum(1 for r in sandbox.requests(connection=limited) if r.status == 429)  # noqa: PLR2004
            healthy = [cid for cid in ids if cid != down]
            complete = True
            for connection_id in healthy:
                stored = await _demo_counts(store, connection_id)
                expected = {e: len(sandbox.records(connection_id, e)) for e in _DEMO_ENTITIES}
                complete = complete and stored == expected
            say(
                f"Reconnect hook fired {len(fired)} time(s) ({', '.join(fired) or 'none'}); "
                "the batch went on."
            )
            say(f"{limited} got {hits} x 429 with Retry-After; the gate held, nothing was lost.")
            say(
                f"{down} is reported as failed; the other {len(healthy)} connections are "
                f"{'complete' if complete else 'INCOMPLETE'} in the store."
            )

            # Changes at the source, then an incremental run.
            writer = registry[ids[0]]
            new_keys = []
            for number in range(3):
                answer = await writer.request(
                    "POST",
                    "/api/eam/work-orders",
                    json={"title": f"Demo: replace pump seal #{number + 1}", "severity": "high"},
                    idempotency_key=f"makini-demo-{number}",
                )
                created = answer.data.get("data") if isinstance(answer.data, dict) else None
                if isinstance(created, dict):
                    new_keys.append(str(created.get("key")))
            existing = sandbox.records(ids[0], "eam/work-orders")[0]
            await writer.request(
                "PUT",
                f"/api/eam/work-orders/{quote(str(existing['key']), safe='')}",
                json={"title": "Demo: inspected and closed"},
            )
            gone = sandbox.records(ids[0], "eam/work-orders")[1]
            sandbox.soft_delete(ids[0], "eam/work-orders", str(gone["key"]))
            sandbox.clear_faults()
            del outage
            say(
                f"Wrote 3 work orders and updated 1 on {ids[0]}, soft-deleted 1 at the source; "
                f"{down}'s source system is back."
            )
            try:
                second = await run("Incremental sync")
            finally:
                reporter.stop()
            reporter.summary(second, str(db))
            complete = True
            for connection_id in ids:
                stored = await _demo_counts(store, connection_id)
                expected = {e: len(sandbox.records(connection_id, e)) for e in _DEMO_ENTITIES}
                complete = complete and stored == expected
            deleted = [
                row
                for row in await store.rows("eam/work-orders", ids[0])
                if row.key == str(gone["key"])
            ]
            soft_deleted = bool(deleted) and deleted[0].deleted
    as_planned = (
        len(fired) == 1
        and first.failed_connections == [down]
        and second.ok
        and complete
        and soft_deleted
        and len(new_keys) == 3  # noqa: PLR2004
    )
    say(
        f"Every record of all {count} connections is in the store exactly once; the soft-deleted "
        "work order is marked deleted."
        if as_planned
        else "The demo did not go as planned: see the summaries above."
    )
    reporter.out.write(f"Database: {db}\n")
    query = "SELECT connection, count(*) FROM eam_work_orders GROUP BY connection"
    reporter.out.write(f'Try: sqlite3 {db} "{query}"\n')
    reporter.out.flush()
    return EXIT_OK if as_planned else EXIT_FAILED
