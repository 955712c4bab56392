"""``makini-async sync``: pull what changed for every connection into a store, then summarise."""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from makini_async import ConnectionRegistry
from makini_async.sync import Store, sync

from ._connections import add_connection, admin_client, base_url_for, read_connections
from ._entities import parse_entities
from ._parser import EXIT_FAILED, EXIT_OK
from ._report import Reporter
from ._stores import open_store

__all__ = ["run_sync"]


async def run_sync(args: argparse.Namespace, reporter: Reporter) -> int:
    """Run ``makini-async sync``.

    Every local check comes first: nothing is asked of Makini (nor a token issued) before the
    entities, the base URL, the connections file and the store are known to be good. When the
    run is interrupted, what was synced so far is printed before the interruption goes on.

    Args:
        args: The parsed command line.
        reporter: Shows the progress and the summary.

    Returns:
        The exit status: 0 when everything synced, 1 when a connection failed.

    Raises:
        CommandLineError: Bad entities, connections file or credentials.
        StoreError: The store cannot be written or opened.
        ValueError: A bad ``--base-url`` or ``$MAKINI_BASE_URL``.
    """
    entities = parse_entities(args.entities)
    base_url = base_url_for(args.base_url, args.connections)
    pairs = [] if args.admin else read_connections(args.connections)
    admin = admin_client(base_url) if args.admin else None
    store = open_store(args.store, args.format, entities)
    try:
        await store.open()
        if admin is not None:
            async with ConnectionRegistry(base_url, on_reconnect=admin.reconnect_hook) as registry:
                await admin.register(registry)
                return await _sync_and_report(args, reporter, registry, entities, store)
        async with ConnectionRegistry(base_url) as registry:
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
        except asyncio.CancelledError:
            reporter.stop()
            reporter.interrupted(args.store)
            raise
        finally:
            reporter.stop()
    finally:
        await store.aclose()
    reporter.summary(summary, args.store)
    return EXIT_OK if summary.ok else EXIT_FAILED
