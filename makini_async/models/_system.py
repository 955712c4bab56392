"""Models of the system API: the connection's integration and sync state, and the Admin API."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from ._base import Model

if TYPE_CHECKING:
    from makini_async.typing import JSON

__all__ = [
    "ClientInfo",
    "ConnectionInfo",
    "ConnectionStatus",
    "Integration",
    "MetadataItem",
    "Platform",
    "SyncState",
    "SyncStatus",
]


class SyncStatus(enum.StrEnum):
    """Where a connection's data sync stands.

    Fields typed ``SyncStatus | str`` keep any other value as a plain string.

    .. versionadded:: 0.1.0
    """

    IN_PROGRESS = "inprogress"
    DONE = "done"
    FULL_DONE = "fulldone"
    ERROR = "error"
    #: The source system's credentials are no longer valid: the customer must reconnect.
    FAIL = "fail"


class ConnectionStatus(enum.StrEnum):
    """The status of a connection in the Admin API.

    .. versionadded:: 0.1.0
    """

    PENDING = "pending"
    SYNCHRONIZING = "synchronizing"
    IN_PROGRESS = "in_progress"
    ACTIVE = "active"
    #: Disabled for lack of credits.
    INACTIVE = "inactive"


@attrs.frozen(slots=True, kw_only=True)
class Integration(Model):
    """The connection that owns the calling token, with its sync state.

    .. versionadded:: 0.1.0
    """

    id: str | None = None
    company_name: str | None = None
    email: str | None = None
    provider: str | None = None
    updated_at: datetime | None = None
    sync_status: SyncStatus | str | None = None
    sync_updated_at: datetime | None = None


@attrs.frozen(slots=True, kw_only=True)
class SyncState(Model):
    """The sync status of the calling connection.

    .. versionadded:: 0.1.0
    """

    status: SyncStatus | str | None = None
    last_synced_at: datetime | None = None
    next_sync_at: datetime | None = None
    error: JSON = None


@attrs.frozen(slots=True, kw_only=True)
class ClientInfo(Model):
    """The application (OAuth client) behind an admin token.

    .. versionadded:: 0.1.0
    """

    id: str | None = None
    name: str | None = None
    logo_url: str | None = None
    email: str | None = None
    default_redirect: str | None = None
    redirects: tuple[str, ...] = ()


@attrs.frozen(slots=True, kw_only=True)
class ConnectionInfo(Model):
    """One customer connection of the account, as the Admin API lists it.

    .. versionadded:: 0.1.0
    """

    key: str | None = None
    name: str | None = None
    email: str | None = None
    status: ConnectionStatus | str | None = None
    integration_name: str | None = None
    redirect: str | None = None
    scopes: JSON = None
    tags: tuple[str, ...] = ()
    user_metadata: JSON = None
    client_id: str | None = None
    updated_at: datetime | None = None
    created_at: datetime | None = None
    connected_at: datetime | None = None


@attrs.frozen(slots=True, kw_only=True)
class MetadataItem(Model):
    """One custom key/value pair stored on a connection.

    .. versionadded:: 0.1.0
    """

    key: str | None = None
    value: JSON = None


@attrs.frozen(slots=True, kw_only=True)
class Platform(Model):
    """One platform Makini can connect (the catalogue is untyped: see ``raw`` and ``extra``).

    .. versionadded:: 0.1.0
    """

    slug: str | None = None
    name: str | None = None
