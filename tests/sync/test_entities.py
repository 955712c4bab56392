"""Sync's entities come from the generated services, and the fields it reads from the models."""

from __future__ import annotations

import pytest

from makini_async import models, resources
from makini_async.models._wire import wire_names
from makini_async.resources._base import Listable, collection_of
from makini_async.sync import ENTITIES, resolve_entity
from makini_async.sync._entities import COLLECTIONS, collection


def _listable_services() -> list[type[Listable[models.Entity]]]:
    exported = [getattr(resources, name) for name in resources.__all__]
    return [
        cls
        for cls in exported
        if isinstance(cls, type) and issubclass(cls, Listable) and collection_of(cls)[0]
    ]


class TestEntityTable:
    def test_every_listable_service_is_an_entity(self) -> None:
        """Each generated service with list() is an entity, with the service's path and model."""
        services = _listable_services()
        assert len(services) == len(COLLECTIONS) == len(ENTITIES)
        for cls in services:
            path, model = collection_of(cls)
            found = COLLECTIONS[path.removeprefix("/api/")]
            assert (found.path, found.model) == (path, model)

    def test_names_and_paths(self) -> None:
        """Entities are named after their paths; bare names look in EAM, then ERP, then WMS."""
        assert collection("work-orders").path == "/api/eam/work-orders"
        assert collection("work-orders").model is models.WorkOrder
        assert collection("erp/purchase-orders.line-items").model is models.LineItem
        assert resolve_entity("bom") == "erp/bom"
        assert resolve_entity("groups") == "wms/groups"
        with pytest.raises(ValueError, match="Unknown entity 'statuses'"):
            collection("statuses")


class TestWireNames:
    def test_the_names_sync_reads(self) -> None:
        """The key and the v3/v4 timestamps are named by the models, v3 first."""
        assert wire_names(models.WorkOrder, "key") == ("key",)
        assert wire_names(models.WorkOrder, "updated_at") == ("updatedAt", "_updatedAt")
        assert wire_names(models.Asset, "deleted_at") == ("deletedAt", "_deletedAt")
