"""Simulated syncs: a requested sync stays ``inprogress`` for a while, then ends and emits."""

from __future__ import annotations

from makini_async.sandbox._clock import SandboxClock
from makini_async.sandbox._connections import Connections, SandboxConnection
from makini_async.sandbox._data import iso
from makini_async.sandbox._lifecycle import Lifecycle
from makini_async.sandbox._webhooks import WebhookHub

__all__ = ["Syncs"]


class Syncs:
    """Runs the connections' syncs in the background.

    Args:
        connections: The connections.
        webhooks: Where ``connection.sync_completed`` and ``connection.sync_failed`` go.
        clock: The sandbox's clock.
        lifecycle: Runs the background tasks (cancelled when the sandbox closes).
        duration: Simulated seconds a sync stays ``inprogress``.
    """

    def __init__(
        self,
        connections: Connections,
        webhooks: WebhookHub,
        clock: SandboxClock,
        lifecycle: Lifecycle,
        duration: float,
    ) -> None:
        self._connections = connections
        self._webhooks = webhooks
        self._clock = clock
        self._lifecycle = lifecycle
        self._duration = duration

    def fail_next(self, connection_id: str, *, status: str = "error", code: str = "") -> None:
        """Make the connection's next requested sync end in ``error`` (or ``fail``)."""
        conn = self._connections.get(connection_id)
        conn.next_sync_failure = {
            "status": status,
            "code": code or ("AUTHENTICATION_FAILED" if status == "fail" else "SYSTEM_UNAVAILABLE"),
        }

    def start(self, connection_id: str, sync_type: str, scopes: list[str]) -> None:
        """Mark a sync ``inprogress`` and finish it after the simulated duration."""
        conn = self._connections.get(connection_id)
        conn.sync_status = "inprogress"
        conn.sync_updated_at = self._clock.now()
        conn.sync_error = None
        self._lifecycle.spawn(self._finish(conn, sync_type, scopes))

    async def _finish(self, conn: SandboxConnection, sync_type: str, scopes: list[str]) -> None:
        await self._clock.sleep(self._duration)
        conn.sync_updated_at = self._clock.now()
        failure, conn.next_sync_failure = conn.next_sync_failure, None
        if failure is not None:
            conn.sync_status = failure["status"]
            conn.sync_error = {"code": failure["code"], "message": "The sync failed."}
            self._webhooks.emit(conn.id, "connection.sync_failed", dict(conn.sync_error))
            return
        conn.sync_status = "fulldone" if sync_type == "full" else "done"
        entities = scopes or sorted(
            name
            for domain, _, name in (r.partition("/") for r in conn.data.resources)
            if domain == "eam" and "/" not in name and "." not in name
        )
        counts = {name: conn.data.size(f"eam/{name}") for name in entities}
        self._webhooks.emit(
            conn.id,
            "connection.sync_completed",
            {"entities": entities, "counts": counts, "finished_at": iso(self._clock.now())},
        )
