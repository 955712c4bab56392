"""How a sync shows itself: a live rich table on a terminal, or one plain line per finished job.

``rich`` comes with the ``cli`` extra; without it, or off a terminal, or with ``--plain`` or
``MAKINI_ASYNC_PLAIN=1``, the output is plain lines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Final, TextIO

from makini_async.sync import Progress, SyncSummary

try:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table
except ImportError:  # the `cli` extra is not installed: plain lines
    HAVE_RICH = False
else:
    HAVE_RICH = True

__all__ = ["HAVE_RICH", "PLAIN_ENV", "Reporter"]

#: Set (to anything but ``0``) to force plain lines.
PLAIN_ENV: Final = "MAKINI_ASYNC_PLAIN"


def _use_rich(plain: bool, stream: TextIO) -> bool:
    if not HAVE_RICH or plain or os.environ.get(PLAIN_ENV, "") not in {"", "0"}:
        return False
    isatty = getattr(stream, "isatty", None)
    return isatty is not None and bool(isatty())


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


class Reporter:
    """Shows the progress and the summary of syncs.

    Args:
        out: Where the summary goes (stdout).
        err: Where progress and notes go (stderr); rich draws only when it is a terminal.
        plain: Plain lines even on a terminal.
    """

    def __init__(self, out: TextIO, err: TextIO, *, plain: bool) -> None:
        self.out = out
        self.err = err
        self.rich = _use_rich(plain, err)
        self._live: Live | None = None
        self._tally: _Tally | None = None

    def say(self, text: str) -> None:
        """Print a note on stderr (above the live table, when one is shown).

        Args:
            text: The note, printed as it is (no rich markup).
        """
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            self.err.write(text + "\n")
            self.err.flush()

    def start(self, entities: Sequence[str], connections: int) -> Callable[[Progress], None]:
        """Start showing a sync; `stop` ends it.

        Args:
            entities: The entities being synced.
            connections: How many connections.

        Returns:
            The ``on_progress`` callback to give `sync`.
        """
        self._tally = tally = _Tally(entities, connections)
        if self.rich:
            console = Console(file=self.err)
            self._live = Live(self._table(), console=console, refresh_per_second=8, transient=False)
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

    def _table(self) -> Table:
        table = Table(title="makini-async sync")
        for column in ("entity", "connections done", "records", "rate", "errors"):
            table.add_column(column, justify="left" if column == "entity" else "right")
        for row in self._tally.rows() if self._tally is not None else []:
            table.add_row(*row)
        return table

    def stop(self) -> None:
        """Stop the live display, if any, with its final state."""
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None

    def interrupted(self, where: str) -> None:
        """Print what an interrupted sync got done, from its progress so far, on stdout.

        Everything counted here is in the store: each connection and entity's watermark moves
        only with its rows, so the next run resumes where this one stopped.

        Args:
            where: The store, as the user named it.
        """
        tally = self._tally
        if tally is None:
            return
        elapsed = time.monotonic() - tally.started
        self.out.write(f"Interrupted after {elapsed:.1f} s; synced so far:\n")
        headers = ("entity", "connections done", "records", "errors")
        rows = [
            (entity, done, records, errors) for entity, done, records, _, errors in tally.rows()
        ]
        widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(4)]
        for row in (headers, *rows):
            cells = [
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ]
            self.out.write("  ".join(cells).rstrip() + "\n")
        self.out.write(f"Store: {where}\n")
        self.out.flush()

    def summary(self, summary: SyncSummary, where: str) -> None:
        """Print the summary table on stdout, then the failures and the store.

        Args:
            summary: What the sync did.
            where: The store, as the user named it.
        """
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
        if self.rich:
            table = Table(title=f"Summary ({summary.seconds:.1f} s)")
            for header in headers:
                table.add_column(header, justify="left" if header == "entity" else "right")
            for row in rows:
                table.add_row(*row)
            Console(file=self.out).print(table)
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
