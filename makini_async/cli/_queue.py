"""``sync --queue``, ``worker`` and ``status``: a sync shared by worker processes through Redis.

``sync --queue`` enqueues one job per connection and entity (no token goes to Redis), then
follows the outcomes until every job has one; ``worker`` runs jobs with its own connections and
store; ``status`` shows the queue and its workers. These need the ``queue`` extra (arq, redis);
a PostgreSQL ``--store`` needs the ``postgres`` extra.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import TextIO

from makini_async import ConnectionRegistry
from makini_async.sync import Progress, SyncSummary

from ._connections import add_connection, admin_client, base_url_for, read_connections
from ._entities import parse_entities
from ._parser import EXIT_FAILED, EXIT_OK, CommandLineError
from ._report import Reporter
from ._stores import open_store, store_name

try:
    from makini_async.distributed import RedisRateBudget
    from makini_async.distributed.queue import (
        DEFAULT_QUEUE,
        JobOutcome,
        QueueStatus,
        SyncQueue,
        SyncWorker,
    )
except ImportError:  # the `queue` extra is not installed
    HAVE_QUEUE = False
else:
    HAVE_QUEUE = True

__all__ = ["run_queue_sync", "run_status", "run_worker"]


def _need_queue() -> None:
    if not HAVE_QUEUE:
        raise CommandLineError("the queue needs arq and redis: pip install 'makini-async[queue]'")


async def _connection_ids(args: argparse.Namespace, base_url: str) -> list[str]:
    if not args.admin:
        return [cid for cid, _ in read_connections(args.connections)]
    async with admin_client(base_url) as admin:
        return [
            info.key for info in await admin.connections() if info.key and info.status == "active"
        ]


async def run_queue_sync(args: argparse.Namespace, reporter: Reporter) -> int:
    """Run ``makini-async sync --queue``: enqueue, then follow the jobs until each has an outcome.

    Args:
        args: The parsed command line.
        reporter: Shows the progress and the summary.

    Returns:
        The exit status: 0 when every job synced, 1 when one failed.

    Raises:
        CommandLineError: Bad entities or connections file, no queue extra, or a ``--store``.
        CoordinationError: Redis failed, or lost the jobs.
    """
    _need_queue()
    if args.store is not None:
        raise CommandLineError(
            "with --queue, the store is the workers': give it to 'makini-async worker --store'"
        )
    entities = parse_entities(args.entities)
    base_url = base_url_for(args.base_url, args.connections)
    queue = SyncQueue(args.queue, queue=args.queue_name or DEFAULT_QUEUE)
    ids = await _connection_ids(args, base_url)
    started = time.monotonic()
    async with queue:
        ticket = await queue.enqueue(
            ids, entities, per_page=args.per_page, overlap=timedelta(seconds=args.overlap)
        )
        already = len(ticket.job_ids) - ticket.added
        reporter.say(
            f"Enqueued {ticket.added} job(s) on {queue.where}"
            + (f"; {already} were already queued or running" if already else "")
        )
        if args.no_wait:
            return EXIT_OK
        on_progress = reporter.start(entities, len(ids))
        summary = SyncSummary()
        try:
            async for outcome in queue.outcomes(ticket):
                summary.results.append(outcome.result)
                on_progress(_progress(outcome))
        finally:
            reporter.stop()
    summary.seconds = time.monotonic() - started
    reporter.summary(summary, f"the workers' stores (queue {queue.where})")
    failed = len(summary.failed)
    reporter.out.write(
        f"Jobs: {len(summary.results) - failed} done, {failed} failed, "
        f"{summary.records:,} records\n"
    )
    reporter.out.flush()
    return EXIT_OK if summary.ok else EXIT_FAILED


def _progress(outcome: JobOutcome) -> Progress:
    result = outcome.result
    error = None if outcome.ok else (result.error_code or result.reason or "failed")
    return Progress(
        result.connection_id, result.entity, result.records, result.pages, done=True, error=error
    )


async def run_worker(args: argparse.Namespace, err: TextIO) -> int:
    """Run ``makini-async worker``: sync the queue's jobs into the store until stopped.

    The registry and the store are opened once, at start-up, and closed at shutdown.

    Args:
        args: The parsed command line.
        err: Where the worker's lines go.

    Returns:
        The exit status: 0 when stopped by a signal (or ``--burst`` emptied the queue).

    Raises:
        CommandLineError: A bad connections file or store, or no queue extra.
        StoreError: The store cannot be opened.
        CoordinationError: Redis failed.
    """
    _need_queue()
    base_url = base_url_for(args.base_url, args.connections)
    pairs = [] if args.admin else read_connections(args.connections)
    admin = admin_client(base_url) if args.admin else None
    store = open_store(args.store, args.format)
    # Shared with every worker on this Redis: a 429 seen by one pauses the connection in all.
    budget = RedisRateBudget(args.redis) if args.budget_redis else None

    def line(outcome: JobOutcome) -> None:
        result = outcome.result
        state = "ok" if outcome.ok else f"FAILED {result.error_code}: {result.reason}"
        again = f" (try {outcome.tries})" if outcome.tries > 1 else ""
        err.write(
            f"{result.connection_id} {result.entity}: {result.records} records, "
            f"{result.pages} pages, {state}{again}\n"
        )
        err.flush()

    try:
        await store.open()
        hook = admin.reconnect_hook if admin is not None else None
        async with ConnectionRegistry(base_url, on_reconnect=hook, budget=budget) as registry:
            if admin is not None:
                await admin.register(registry)
            for connection_id, token in pairs:
                add_connection(registry, connection_id, token, args.connections)
            worker = SyncWorker(
                args.redis,
                registry,
                store,
                queue=args.queue_name or DEFAULT_QUEUE,
                concurrency=args.concurrency,
                lease=args.lease,
                job_timeout=args.job_timeout,
                poll_delay=args.poll,
                burst=args.burst,
                on_outcome=line,
            )
            err.write(
                f"worker {worker.name}: {len(registry)} connection(s), store "
                f"{store_name(args.store)}, queue {worker.queue} on {worker.where}\n"
            )
            err.flush()
            await worker.run()
            stopped = f" ({worker.stopped_by}; its running jobs went back on the queue)"
            err.write(f"worker {worker.name} stopped{stopped if worker.stopped_by else ''}\n")
    finally:
        if admin is not None:
            await admin.aclose()
        if budget is not None:
            await budget.aclose()
        await store.aclose()
    return EXIT_OK


async def run_status(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``makini-async status``: the queue's jobs and its workers, as plain lines.

    Args:
        args: The parsed command line.
        out: Where the lines go.

    Returns:
        The exit status, 0.

    Raises:
        CommandLineError: No queue extra.
        CoordinationError: Redis failed.
    """
    _need_queue()
    async with SyncQueue(args.queue, queue=args.queue_name or DEFAULT_QUEUE) as queue:
        status = await queue.status()
    out.write(_status_text(status, queue.where))
    out.flush()
    return EXIT_OK


def _status_text(status: QueueStatus, where: str) -> str:
    lines = [
        f"Queue on {where}",
        (
            f"jobs: {status.queued} queued, {status.running} running, {status.done} done, "
            f"{status.failed} failed ({status.records:,} records)"
        ),
    ]
    headers = ("worker", "state", "running", "done", "failed", "records")
    rows = [
        (
            w.name,
            "alive" if w.alive else "gone",
            str(w.running),
            str(w.done),
            str(w.failed),
            f"{w.records:,}",
        )
        for w in status.workers
    ]
    if not rows:
        lines.append("workers: none seen")
    else:
        widths = [max(len(headers[i]), *(len(r[i]) for r in rows)) for i in range(len(headers))]
        for row in (headers, *rows):
            cells = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row)]  # noqa: PLR2004 - two text columns
            lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
