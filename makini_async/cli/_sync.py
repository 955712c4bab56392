"""``makini-async sync``: pull what changed for every connection into a store, then summarise."""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path

from makini_async import AdminClient, ConnectionRegistry
from makini_async.sync import JsonLinesStore, SQLiteStore, Store, entities_from, sync

from ._connections import add_connection, read_connections
from ._parser import EXIT_FAILED, EXIT_OK, UsageError
from ._report import Reporter

__all__ = ["run_sync"]


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


async def run_sync(args: argparse.Namespace, reporter: Reporter) -> int:
    """Run ``makini-async sync``.

    Every local check comes first: nothing is asked of Makini (nor a token issued) before the
    entities, the connections file and the store are known to be good.

    Args:
        args: The parsed command line.
        reporter: Shows the progress and the summary.

    Returns:
        The exit status: 0 when everything synced, 1 when a connection failed.

    Raises:
        UsageError: Bad entities, connections file or credentials.
        StoreError: The store cannot be opened.
    """
    entities = _entities(args.entities)
    pairs = [] if args.admin else read_connections(args.connections)
    admin = _admin_client(args.base_url) if args.admin else None
    store = _open_store(args.store, args.format)
    try:
        await store.open()
        if admin is not None:
            async with ConnectionRegistry(
                args.base_url, on_reconnect=admin.reconnect_hook
            ) as registry:
                await admin.register(registry)
                return await _sync_and_report(args, reporter, registry, entities, store)
        async with ConnectionRegistry(args.base_url) as registry:
            for connection_id, token in pairs:
                add_connection(registry, connection_id, token, args.connections)
            return await _sync_and_report(args, reporter, registry, entities, store)
    finally:
        if admin is not None:
            await admin.aclose()
        await store.aclose()


async def _sync_and_report(
    args: argparse.Namespace,
    reporter: Reporter,
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
