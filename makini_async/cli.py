"""The ``makini-async`` command: incremental sync, the sandbox, the demo, and quick looks.

::

    makini-async sync --connections customers.csv --entities work-orders,assets --store sync.db
    makini-async sync --admin --entities work-orders --store sync.db   # MAKINI_CLIENT_ID/_SECRET
    makini-async demo [--db makini-demo.db]
    makini-async sandbox --port 8600 --connections 20
    MAKINI_TOKEN=... makini-async list work-orders --filter updatedAt:gt=2026-01-01
    MAKINI_TOKEN=... makini-async get work-orders KEY

Exit status: 0 when everything synced, 1 when a connection failed (the reasons are listed) or a
request failed, 2 for bad input (a one-line error, never a traceback), 130 when interrupted.
The live display uses ``rich`` when it is installed (the ``cli`` extra) and the output is a
terminal; ``--plain`` or ``MAKINI_ASYNC_PLAIN=1`` forces plain lines.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import importlib
import io
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO
from urllib.parse import quote

from makini_async._admin import AdminClient
from makini_async._errors import AuthenticationError, MakiniError
from makini_async._registry import DEFAULT_BASE_URL, ConnectionRegistry
from makini_async._retry import RetryPolicy
from makini_async.sync import (
    JsonLinesStore,
    Progress,
    SQLiteStore,
    Store,
    StoreError,
    SyncSummary,
    entities_from,
    resolve_entity,
    sync,
)

if TYPE_CHECKING:
    from makini_async._request import ReconnectEvent

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
PLAIN_ENV: Final = "MAKINI_ASYNC_PLAIN"
_PROG: Final = "makini-async"


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


# -- output ------------------------------------------------------------------------------------


def _load_rich() -> Any | None:  # noqa: ANN401 - rich is optional and untyped here
    """The ``rich`` modules, or None when rich is not installed."""
    try:
        return {
            "console": importlib.import_module("rich.console"),
            "live": importlib.import_module("rich.live"),
            "table": importlib.import_module("rich.table"),
        }
    except ImportError:
        return None


def _use_rich(plain: bool, stream: TextIO) -> Any | None:  # noqa: ANN401 - see _load_rich
    if plain or os.environ.get(PLAIN_ENV, "") not in {"", "0"}:
        return None
    isatty = getattr(stream, "isatty", None)
    if isatty is None or not isatty():
        return None
    return _load_rich()


class _Tally:
    """Per-entity counts for the live display."""

    def __init__(self, entities: Sequence[str], connections: int) -> None:
        self.started = time.monotonic()
        self.total = connections
        self.done: dict[str, int] = dict.fromkeys(entities, 0)
        self.records: dict[str, int] = dict.fromkeys(entities, 0)
        self.errors: dict[str, int] = dict.fromkeys(entities, 0)
        self._running: dict[tuple[str, str], int] = {}

    def update(self, progress: Progress) -> None:
        key = (progress.connection_id, progress.entity)
        before = self._running.pop(key, 0) if progress.done else self._running.get(key, 0)
        if not progress.done:
            self._running[key] = progress.records
        self.records[progress.entity] = (
            self.records.get(progress.entity, 0) + progress.records - before
        )
        if progress.done:
            self.done[progress.entity] = self.done.get(progress.entity, 0) + 1
            if progress.error:
                self.errors[progress.entity] = self.errors.get(progress.entity, 0) + 1

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return [
            (
                entity,
                f"{self.done[entity]}/{self.total}",
                f"{self.records[entity]:,}",
                f"{self.records[entity] / elapsed:,.0f}/s",
                str(self.errors[entity]),
            )
            for entity in self.done
        ]


class _Reporter:
    """Shows progress: a live rich table on a terminal, or one plain line per finished job."""

    def __init__(self, out: TextIO, err: TextIO, *, plain: bool) -> None:
        self.out = out
        self.err = err
        self.rich = _use_rich(plain, err)
        self._live: Any = None
        self._tally: _Tally | None = None

    def say(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            self.err.write(text + "\n")
            self.err.flush()

    def start(self, entities: Sequence[str], connections: int) -> Callable[[Progress], None]:
        self._tally = tally = _Tally(entities, connections)
        if self.rich is not None:
            console = self.rich["console"].Console(file=self.err)
            self._live = self.rich["live"].Live(
                self._table(), console=console, refresh_per_second=8, transient=False
            )
            self._live.start()

        def on_progress(progress: Progress) -> None:
            tally.update(progress)
            if self._live is not None:
                self._live.update(self._table())
            elif progress.done:
                state = f"FAILED {progress.error}" if progress.error else "ok"
                self.err.write(
                    f"{progress.connection_id} {progress.entity}: {progress.records} records, "
                    f"{progress.pages} pages, {state}\n"
                )
                self.err.flush()

        return on_progress

    def _table(self) -> Any:  # noqa: ANN401 - a rich renderable
        assert self.rich is not None  # noqa: S101 - only called in rich mode
        assert self._tally is not None  # noqa: S101
        table = self.rich["table"].Table(title="makini-async sync")
        for column in ("entity", "connections done", "records", "rate", "errors"):
            table.add_column(column, justify="left" if column == "entity" else "right")
        for row in self._tally.rows():
            table.add_row(*row)
        return table

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None

    def summary(self, summary: SyncSummary, where: str) -> None:
        """The summary table on stdout, then the failures."""
        rows = []
        for entity, results in sorted(summary.by_entity().items()):
            rows.append(
                (
                    entity,
                    str(sum(1 for r in results if r.status == "ok")),
                    str(sum(1 for r in results if r.status != "ok")),
                    f"{sum(r.records for r in results):,}",
                    f"{sum(r.changed for r in results):,}",
                    f"{sum(r.deleted for r in results):,}",
                    f"{sum(r.pages for r in results):,}",
                )
            )
        headers = ("entity", "ok", "failed", "records", "changed", "deleted", "pages")
        if self.rich is not None:
            console = self.rich["console"].Console(file=self.out)
            table = self.rich["table"].Table(title=f"Summary ({summary.seconds:.1f} s)")
            for header in headers:
                table.add_column(header, justify="left" if header == "entity" else "right")
            for row in rows:
                table.add_row(*row)
            console.print(table)
        else:
            self.out.write(f"Summary ({summary.seconds:.1f} s)\n")
            widths = [
                max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i])
                for i in range(len(headers))
            ]
            for row in (headers, *rows):
                cells = [
                    cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                    for i, cell in enumerate(row)
                ]
                self.out.write("  ".join(cells).rstrip() + "\n")
        failed = summary.failed
        if failed:
            self.out.write(
                f"{len(summary.failed_connections)} connection(s) failed "
                f"({len(failed)} connection/entity pair(s)):\n"
            )
            for result in sorted(failed, key=lambda r: (r.connection_id, r.entity)):
                request = f" [{result.request_id}]" if result.request_id else ""
                self.out.write(
                    f"  {result.connection_id} {result.entity}: {result.status}{request}: "
                    f"{result.reason}\n"
                )
        self.out.write(f"Store: {where}\n")
        self.out.flush()


# -- input -------------------------------------------------------------------------------------


def _read_connections(path: str) -> list[tuple[str, str]]:
    """Read ``id,token`` pairs from a JSON or CSV file; tokens never appear in the messages."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise UsageError(f"cannot read the connections file {path!r}: {reason}") from None
    stripped = text.lstrip()
    pairs = _json_pairs(path, stripped) if stripped[:1] in {"[", "{"} else _csv_pairs(path, text)
    if not pairs:
        raise UsageError(f"the connections file {path!r} lists no connections")
    seen: set[str] = set()
    for connection_id, _ in pairs:
        if connection_id in seen:
            raise UsageError(
                f"the connections file {path!r} lists connection {connection_id!r} twice"
            )
        seen.add(connection_id)
    return pairs


def _json_pairs(path: str, text: str) -> list[tuple[str, str]]:
    try:
        loaded = json.loads(text)
    except ValueError:
        raise UsageError(f"the connections file {path!r} is not valid JSON") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("connections"), list):
        loaded = loaded["connections"]
    if isinstance(loaded, dict):
        items: list[object] = [{"id": k, "token": v} for k, v in loaded.items()]
    elif isinstance(loaded, list):
        items = loaded
    else:
        raise UsageError(f"the connections file {path!r} must hold a list or an object")
    pairs = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise UsageError(f"the connections file {path!r}: entry {number} is not an object")
        connection_id = item.get("id", item.get("connection_id"))
        token = item.get("token")
        if not isinstance(connection_id, str) or not connection_id:
            raise UsageError(f"the connections file {path!r}: entry {number} has no id")
        if not isinstance(token, str) or not token:
            raise UsageError(f"the connections file {path!r}: entry {number} has no token")
        pairs.append((connection_id, token))
    return pairs


def _csv_pairs(path: str, text: str) -> list[tuple[str, str]]:
    pairs = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [c.lower() for c in cells[:2]] in (
            ["id", "token"],
            ["connection_id", "token"],
        ):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:  # noqa: PLR2004 - id and token
            raise UsageError(f"the connections file {path!r}: line {number} is not 'id,token'")
        pairs.append((cells[0], cells[1]))
    return pairs


def _open_store(path: str, kind: str) -> Store:
    if kind == "jsonl" or (
        kind == "auto" and (path.endswith(("/", os.sep)) or Path(path).is_dir())
    ):
        return JsonLinesStore(path)
    return SQLiteStore(path)


def _entities(text: str) -> list[str]:
    try:
        return entities_from(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _env_token(name: str) -> str:
    token = os.environ.get(name, "").strip()
    if not token:
        raise UsageError(f"set {name} to a token first")
    return token


def _add(registry: ConnectionRegistry, connection_id: str, token: str, where: str) -> None:
    try:
        registry.add(connection_id, token)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: connection {connection_id!r} has a malformed token") from None


def _last_page(body: Mapping[str, object]) -> bool:
    """Whether a list answer is its last page (``current_page >= last_page``, or no meta)."""
    meta = body.get("meta")
    if not isinstance(meta, dict):
        return True
    current, last = meta.get("current_page"), meta.get("last_page")
    if not isinstance(current, int) or not isinstance(last, int):
        return True
    return current >= last


# -- sync --------------------------------------------------------------------------------------


def _admin_client(base_url: str) -> AdminClient:
    """The Admin API client from the environment: client credentials, or a bare admin token."""
    client_id = os.environ.get("MAKINI_CLIENT_ID", "").strip()
    client_secret = os.environ.get("MAKINI_CLIENT_SECRET", "").strip()
    admin_token = os.environ.get("MAKINI_ADMIN_TOKEN", "").strip() or None
    if bool(client_id) != bool(client_secret):
        raise UsageError("set both MAKINI_CLIENT_ID and MAKINI_CLIENT_SECRET")
    if not client_id and admin_token is None:
        raise UsageError(
            "--admin needs MAKINI_CLIENT_ID and MAKINI_CLIENT_SECRET (or MAKINI_ADMIN_TOKEN)"
        )
    try:
        return AdminClient(
            client_id or None, client_secret or None, base_url=base_url, admin_token=admin_token
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


async def _run_sync(args: argparse.Namespace, reporter: _Reporter) -> int:
    # Every local check comes first: nothing is asked of Makini (nor a token issued) before
    # the entities, the connections file and the store are known to be good.
    entities = _entities(args.entities)
    pairs = [] if args.admin else _read_connections(args.connections)
    admin = _admin_client(args.base_url) if args.admin else None
    store = _open_store(args.store, args.format)
    try:
        await store.open()
        if admin is not None:
            async with ConnectionRegistry(
                args.base_url, on_reconnect=admin.reconnect_hook
            ) as registry:
                await registry.add_from_admin(admin)
                return await _sync_and_report(args, reporter, registry, entities, store)
        async with ConnectionRegistry(args.base_url) as registry:
            for connection_id, token in pairs:
                _add(registry, connection_id, token, args.connections)
            return await _sync_and_report(args, reporter, registry, entities, store)
    finally:
        if admin is not None:
            await admin.aclose()
        await store.aclose()


async def _sync_and_report(
    args: argparse.Namespace,
    reporter: _Reporter,
    registry: ConnectionRegistry,
    entities: list[str],
    store: Store,
) -> int:
    await store.open()
    try:
        on_progress = reporter.start(entities, len(registry))
        try:
            summary = await sync(
                registry,
                entities,
                store,
                concurrency=args.concurrency,
                per_page=args.per_page,
                overlap=timedelta(seconds=args.overlap),
                on_progress=on_progress,
            )
        finally:
            reporter.stop()
    finally:
        await store.aclose()
    reporter.summary(summary, args.store)
    return EXIT_OK if summary.ok else EXIT_FAILED


# -- get and list ------------------------------------------------------------------------------


async def _run_read(args: argparse.Namespace, out: TextIO) -> int:
    try:
        entity = resolve_entity(args.resource)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    token = _env_token("MAKINI_TOKEN")
    async with ConnectionRegistry(args.base_url) as registry:
        _add(registry, "cli", token, "MAKINI_TOKEN")
        conn = registry.get("cli")
        if args.command == "get":
            answer = await conn.request("GET", f"/api/{entity}/{quote(args.key, safe='')}")
            result: object = answer.data.get("data") if isinstance(answer.data, dict) else None
        else:
            params: list[tuple[str, object]] = [("per_page", args.per_page)]
            for item in args.filter:
                field, sep, value = item.partition("=")
                if not sep or not field:
                    raise UsageError(f"--filter {item!r}: use FIELD=VALUE or FIELD:OP=VALUE")
                params.append((f"filter[{field}]", value))
            page, records = args.page, []
            while True:
                answer = await conn.request(
                    "GET", f"/api/{entity}", params=[*params, ("page", page)]
                )
                body = answer.data if isinstance(answer.data, dict) else {}
                data = body.get("data")
                records.extend(data if isinstance(data, list) else [])
                if not args.all or _last_page(body) or not data:
                    break
                page += 1
            result = records
    out.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    out.flush()
    return EXIT_OK


# -- demo --------------------------------------------------------------------------------------

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
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            ours = db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ?", ("_makini_watermarks",)
            ).fetchone()
    except sqlite3.Error:
        ours = None
    if not ours:
        raise UsageError(f"--db {str(path)!r} exists and is not a makini-async store")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _demo_counts(store: SQLiteStore, connection_id: str) -> dict[str, int]:
    return {entity: await store.count(entity, connection_id) for entity in _DEMO_ENTITIES}


async def _run_demo(args: argparse.Namespace, reporter: _Reporter) -> int:  # noqa: C901, PLR0915
    from makini_async.sandbox import Sandbox  # noqa: PLC0415 - only the demo needs it

    count = args.connections
    if count < 3:  # noqa: PLR2004 - one healthy, one rate-limited, one down at least
        raise UsageError("the demo needs --connections 3 or more")
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

            def run(title: str) -> Any:  # noqa: ANN401 - a coroutine of the summary
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
            writer = registry.get(ids[0])
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


# -- the parser ---------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="The Makini batch client: sync, demo, sandbox and quick looks."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests and retries")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def base_url(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--base-url",
            default=os.environ.get("MAKINI_BASE_URL", DEFAULT_BASE_URL),
            help="Makini's API origin (default: $MAKINI_BASE_URL or %(default)s)",
        )

    run = commands.add_parser("sync", help="pull what changed for every connection into a store")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--connections", metavar="FILE", help="JSON or CSV of id,token")
    source.add_argument(
        "--admin",
        action="store_true",
        help="every active connection, via the Admin API: $MAKINI_CLIENT_ID and "
        "$MAKINI_CLIENT_SECRET (or a bare $MAKINI_ADMIN_TOKEN)",
    )
    run.add_argument("--entities", required=True, help="e.g. work-orders,assets")
    run.add_argument("--store", required=True, help="a SQLite file, or a directory for JSON lines")
    run.add_argument("--format", choices=("auto", "sqlite", "jsonl"), default="auto")
    run.add_argument("--concurrency", type=_positive, default=8)
    run.add_argument("--per-page", type=_positive, default=500)
    run.add_argument("--overlap", type=_positive, default=300, help="seconds (default 300)")
    run.add_argument("--plain", action="store_true", help="plain lines, no live display")
    base_url(run)

    demo = commands.add_parser("demo", help="the main job against an embedded sandbox")
    demo.add_argument("--db", help="the SQLite file to write (default: a temporary file)")
    demo.add_argument("--connections", type=_positive, default=25)
    demo.add_argument("--plain", action="store_true", help="plain lines, no live display")

    commands.add_parser("sandbox", help="serve the sandbox (see: makini-async sandbox --help)")

    for name in ("get", "list"):
        sub = commands.add_parser(name, help=f"{name} records with $MAKINI_TOKEN (JSON out)")
        sub.add_argument("resource", help="e.g. work-orders or erp/sales-orders")
        if name == "get":
            sub.add_argument("key")
        else:
            sub.add_argument("--filter", action="append", default=[], metavar="FIELD[:OP]=V")
            sub.add_argument("--per-page", type=_positive, default=50)
            sub.add_argument("--page", type=_positive, default=1)
            sub.add_argument("--all", action="store_true", help="every page")
        base_url(sub)
    return parser


@contextlib.contextmanager
def _library_logging(*, verbose: bool, stream: TextIO) -> Iterator[None]:
    """Show the library's log lines with -v, hide its warnings otherwise; restore on the way out.

    Failures are in the summary already; the warnings would only repeat them.
    """
    logger = logging.getLogger("makini_async")
    level = logger.level
    handler: logging.Handler | None = None
    if verbose:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main(  # noqa: PLR0911 - one exit status per kind of failure
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the ``makini-async`` command.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
        stdout: Where results go (default: ``sys.stdout``).
        stderr: Where progress and errors go (default: ``sys.stderr``).

    Returns:
        The exit status: 0 ok, 1 a connection or request failed, 2 bad input, 130 interrupted.

    .. versionadded:: 0.1.0
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    if arguments[:1] == ["sandbox"]:
        from makini_async.sandbox.__main__ import main as sandbox_main  # noqa: PLC0415

        return sandbox_main(arguments[1:])
    try:
        args = _parser().parse_args(arguments)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        with _library_logging(verbose=args.verbose, stream=err):
            return asyncio.run(_dispatch(args, out, err))
    except KeyboardInterrupt:
        err.write(f"{_PROG}: interrupted; the next run resumes where this one stopped\n")
        return EXIT_INTERRUPTED
    except (UsageError, StoreError, ValueError) as exc:
        err.write(f"{_PROG}: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except AuthenticationError as exc:
        what = "client credentials were" if exc.path == "/link/token" else "token was"
        err.write(f"{_PROG}: error: the {what} refused ({exc.code}, {exc.request_id})\n")
        return EXIT_FAILED
    except MakiniError as exc:
        err.write(f"{_PROG}: error: {_one_line(exc)}\n")
        return EXIT_FAILED
    except OSError as exc:
        err.write(f"{_PROG}: error: {_one_line(exc)}\n")
        return EXIT_USAGE


async def _dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "sync":
        return await _run_sync(args, _Reporter(out, err, plain=args.plain))
    if args.command == "demo":
        return await _run_demo(args, _Reporter(out, err, plain=args.plain))
    return await _run_read(args, out)


if __name__ == "__main__":
    raise SystemExit(main())
