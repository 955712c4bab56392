"""Customer connections: each one's record, data and settings, rate window and idempotency store.

A connection's token pair comes from the `TokenTable`; its events go out through the
`WebhookHub`. The auth flows that move a connection between states are in ``_auth_flows``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from makini_async.sandbox._clock import SandboxClock
from makini_async.sandbox._data import DataSet, Record, iso
from makini_async.sandbox._errors import SandboxError
from makini_async.sandbox._rules import PROVIDERS
from makini_async.sandbox._settings import Settings
from makini_async.sandbox._spec import Spec
from makini_async.sandbox._tokens import Token, TokenTable
from makini_async.sandbox._webhooks import WebhookHub

__all__ = ["CONNECTION_STATUSES", "Connections", "SandboxConnection"]

CONNECTION_STATUSES: Final = frozenset(
    {"pending", "synchronizing", "in_progress", "active", "inactive"}
)
_IDEMPOTENCY_TTL: Final = 86400.0


@attrs.define
class SandboxConnection:
    """One customer connection as the sandbox serves it: its data, settings and auth state.

    Attributes are the knobs tests turn: ``v4`` (standard fields on records), ``read_only``
    (writes succeed without change), ``rate_limit`` per ``rate_window`` seconds, ``latency``
    (seconds added to every answer), ``status`` and the auth flags. The client's view of a
    connection is `makini_async.Connection`, and its state `makini_async.ConnectionState`.

    .. versionadded:: 0.1.0
    """

    id: str
    index: int
    provider: str
    data: DataSet
    name: str = ""
    email: str = ""
    status: str = "active"
    v4: bool = False
    read_only: bool = False
    rate_limit: int = 600
    rate_window: float = 60.0
    latency: float = 0.0
    credentials_changed: bool = False
    disconnected: bool = False
    access_token: str = attrs.field(default="", repr=False)
    refresh_token: str = attrs.field(default="", repr=False)
    created_at: float = 0.0
    sync_status: str = "done"
    sync_updated_at: float = 0.0
    sync_error: dict[str, str] | None = None
    next_sync_failure: dict[str, str] | None = None
    metadata: list[dict[str, object]] = attrs.Factory(list)
    window_start: float = 0.0
    window_count: int = 0
    idempotency: dict[str, tuple[str, float, int, bytes]] = attrs.Factory(dict)
    unsupported: set[str] = attrs.Factory(set)
    custom_fields: dict[str, dict[str, object]] = attrs.Factory(dict)


def _check_status(status: str) -> None:
    if status not in CONNECTION_STATUSES:
        raise ValueError(f"Unknown status {status!r}; use one of {sorted(CONNECTION_STATUSES)}.")


class Connections:
    """The connections of one sandbox, in creation order.

    Args:
        settings: The defaults of new connections.
        spec: The schemas their data is generated from.
        clock: The sandbox's clock.
        tokens: Where their token pairs are issued.
        webhooks: Where their events go.
    """

    def __init__(
        self,
        settings: Settings,
        spec: Spec,
        clock: SandboxClock,
        tokens: TokenTable,
        webhooks: WebhookHub,
    ) -> None:
        self._settings = settings
        self._spec = spec
        self._clock = clock
        self._tokens = tokens
        self._webhooks = webhooks
        self._by_id: dict[str, SandboxConnection] = {}
        self._counter = 0

    def get(self, connection_id: str) -> SandboxConnection:
        """Return a connection.

        Raises:
            KeyError: No such connection.
        """
        try:
            return self._by_id[connection_id]
        except KeyError:
            raise KeyError(f"No sandbox connection {connection_id!r}.") from None

    def find(self, connection_id: str) -> SandboxConnection | None:
        """Return a connection, or ``None`` when there is no such connection."""
        return self._by_id.get(connection_id)

    def all(self) -> list[SandboxConnection]:
        """Every connection, in creation order."""
        return list(self._by_id.values())

    def access_tokens(self) -> dict[str, str]:
        """Connection id → its current access token."""
        return {cid: conn.access_token for cid, conn in self._by_id.items()}

    def add(
        self,
        connection_id: str | None = None,
        *,
        provider: str | None = None,
        sizes: Mapping[str, int] | None = None,
        v4: bool | None = None,
        read_only: bool | None = None,
        rate_limit: int | None = None,
        status: str = "active",
        name: str | None = None,
        email: str | None = None,
    ) -> SandboxConnection:
        """Create a connection (``Sandbox.add_connection_sync`` documents the arguments).

        Raises:
            ValueError: The id is taken, or the provider or status is unknown.
        """
        self._counter += 1
        cid = connection_id or f"c{self._counter}"
        while connection_id is None and cid in self._by_id:
            self._counter += 1
            cid = f"c{self._counter}"
        if cid in self._by_id:
            raise ValueError(f"A connection {cid!r} exists already; pick another id.")
        defaults = self._settings
        slug = provider or defaults.provider
        if slug not in PROVIDERS:
            raise ValueError(f"Unknown provider {slug!r}; use one of {sorted(PROVIDERS)}.")
        _check_status(status)
        data = DataSet(self._spec, cid, self._counter, defaults.seed, dict(sizes or defaults.sizes))
        conn = SandboxConnection(
            id=cid,
            index=self._counter,
            provider=slug,
            data=data,
            name=name or f"Customer {cid}",
            email=email or f"maintenance@{cid}.example.com",
            status=status,
            v4=defaults.v4 if v4 is None else v4,
            read_only=defaults.read_only if read_only is None else read_only,
            rate_limit=defaults.rate_limit if rate_limit is None else rate_limit,
            created_at=self._clock.now(),
            sync_updated_at=self._clock.now(),
        )
        self._by_id[cid] = conn
        self.issue_pair(conn)
        return conn

    def remove(self, connection_id: str) -> None:
        """Delete a connection; its tokens stop working at once."""
        conn = self.get(connection_id)
        self._tokens.revoke(conn.id)
        del self._by_id[conn.id]

    def issue_pair(self, conn: SandboxConnection) -> tuple[Token, Token]:
        """Give a connection a new token pair; its earlier tokens die."""
        access, refresh = self._tokens.issue_pair(conn.id)
        conn.access_token, conn.refresh_token = access.value, refresh.value
        return access, refresh

    def configure(
        self,
        connection_id: str,
        *,
        v4: bool | None = None,
        read_only: bool | None = None,
        rate_limit: int | None = None,
        rate_window: float | None = None,
        latency: float | None = None,
        provider: str | None = None,
        unsupported: Iterable[str] | None = None,
        custom_fields: Mapping[str, Mapping[str, object]] | None = None,
    ) -> SandboxConnection:
        """Change a connection's settings (``Sandbox.configure`` documents the arguments).

        Raises:
            ValueError: The provider is unknown.
        """
        conn = self.get(connection_id)
        if provider is not None:
            if provider not in PROVIDERS:
                raise ValueError(f"Unknown provider {provider!r}; use one of {sorted(PROVIDERS)}.")
            conn.provider = provider
        if v4 is not None:
            conn.v4 = v4
        if read_only is not None:
            conn.read_only = read_only
        if rate_limit is not None:
            conn.rate_limit = rate_limit
            conn.window_count = 0
        if rate_window is not None:
            conn.rate_window = rate_window
        if latency is not None:
            conn.latency = latency
        if unsupported is not None:
            conn.unsupported = set(unsupported)
        if custom_fields is not None:
            conn.custom_fields = {name: dict(extra) for name, extra in custom_fields.items()}
        conn.data.touch_all()  # cached pages may show the old shape
        return conn

    def set_status(self, connection_id: str, status: str) -> None:
        """Set the connection status and emit ``connection.status_changed``.

        Raises:
            ValueError: The status is not one of the contract's.
        """
        _check_status(status)
        conn = self.get(connection_id)
        previous, conn.status = conn.status, status
        self._webhooks.emit(
            conn.id, "connection.status_changed", {"previous": previous, "current": status}
        )

    def count_request(self, conn: SandboxConnection) -> tuple[int, int, float]:
        """Count a request against the connection's rate window.

        Returns:
            ``(limit, remaining, window end)``; ``remaining`` is negative once over the limit.
        """
        now = self._clock.now()
        if now >= conn.window_start + conn.rate_window:
            conn.window_start = now
            conn.window_count = 0
        conn.window_count += 1
        return (
            conn.rate_limit,
            conn.rate_limit - conn.window_count,
            conn.window_start + conn.rate_window,
        )

    def replay(
        self, conn: SandboxConnection, key: str, fingerprint: str
    ) -> tuple[int, bytes] | None:
        """Look up the stored answer to an idempotent write.

        Returns:
            ``(status, body)`` to replay, or ``None`` when the key is new or expired.

        Raises:
            SandboxError: The key was used with another request (``IDEMPOTENCY_CONFLICT``).
        """
        stored = conn.idempotency.get(key)
        if stored is None:
            return None
        seen_fingerprint, stored_at, status, body = stored
        if self._clock.now() - stored_at > _IDEMPOTENCY_TTL:
            del conn.idempotency[key]
            return None
        if seen_fingerprint != fingerprint:
            raise SandboxError(
                "IDEMPOTENCY_CONFLICT",
                "This Idempotency-Key was used with another request body or path.",
                details={"idempotency_key": key},
            )
        return status, body

    def store(
        self, conn: SandboxConnection, key: str, fingerprint: str, status: int, body: bytes
    ) -> None:
        """Keep the answer to an idempotent write for `replay`."""
        conn.idempotency[key] = (fingerprint, self._clock.now(), status, body)

    def records(self, connection_id: str, resource: str) -> list[Record]:
        """Return a collection's live records (v3 shape, source order)."""
        return self.get(connection_id).data.collection(resource).records

    def soft_delete(self, connection_id: str, resource: str, key: str) -> Record:
        """Mark a record deleted (``deletedAt``) and emit ``.deleted``.

        Raises:
            KeyError: No such connection or record.
        """
        conn = self.get(connection_id)
        collection = conn.data.collection(resource)
        record = collection.by_key[key]
        stamp = iso(self._clock.now())
        record["deletedAt"] = stamp
        if "updatedAt" in record:
            record["updatedAt"] = stamp
        collection.touch()
        self._webhooks.emit(conn.id, f"{resource.partition('/')[2]}.deleted", body=[key])
        return record
