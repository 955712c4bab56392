"""Incremental sync: every record changed since the last run, for every connection, in a store.

::

    async with ConnectionRegistry() as registry, SQLiteStore("sync.db") as store:
        for row in customers:
            registry.add(row.id, row.token)
        summary = await sync(registry, ["work-orders", "assets"], store)
        for failed in summary.failed:
            print(failed.connection_id, failed.entity, failed.error_code, failed.request_id)

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from makini_async._errors import StoreError

from ._entities import ENTITIES, entities_from, resolve_entity
from ._jsonl import JsonLinesStore
from ._sqlite import SQLiteStore, table_name
from ._store import Row, Store
from ._sync import EntityResult, Progress, SyncSummary, sync

__all__ = [
    "ENTITIES",
    "EntityResult",
    "JsonLinesStore",
    "Progress",
    "Row",
    "SQLiteStore",
    "Store",
    "StoreError",
    "SyncSummary",
    "entities_from",
    "resolve_entity",
    "sync",
    "table_name",
]
