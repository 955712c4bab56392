"""Every service of every namespace lists and gets its records in both record shapes."""

from __future__ import annotations

import pytest

from makini_async import Connection, ValidationError
from makini_async.models import Entity
from makini_async.resources import EAM, ERP, WMS, Listing, Namespace, Service
from makini_async.sandbox import Sandbox


def _services(namespace: Namespace) -> list[tuple[str, Service]]:
    names = [n for n, v in vars(type(namespace)).items() if isinstance(v, property)]
    return [(n, getattr(namespace, n)) for n in names if n != "statuses"]


@pytest.mark.parametrize("domain", ["eam", "erp", "wms"])
class TestEveryService:
    async def test_list_and_get_both_shapes(
        self, conn: Connection, conn_v4: Connection, domain: str
    ) -> None:
        """Each listable service decodes a page with no unknown fields, v3 and v4 alike."""
        checked = 0
        for connection, v4 in ((conn, False), (conn_v4, True)):
            for name, service in _services(getattr(connection, domain)):
                listing = getattr(service, "list", None)
                if listing is None:
                    continue
                page = await anext(aiter(listing(per_page=3).pages()))
                for record in page.records:
                    assert isinstance(record, Entity), name
                    assert record.extra == {}, (name, dict(record.extra))
                    assert (record.id is not None) is v4, name
                    if v4:
                        assert record.updated_at is not None or record.id_value is not None
                getter = getattr(service, "get", None)
                if getter is not None and page.records:
                    first = page.records[0]
                    assert first.key is not None
                    assert await getter(first.key) == first, name
                checked += 1
        assert checked >= 30

    async def test_namespaces_are_cached(self, conn: Connection, domain: str) -> None:
        """A connection hands out the same namespace and service objects every time."""
        namespace = getattr(conn, domain)
        assert namespace is getattr(conn, domain)
        assert isinstance(namespace, EAM | ERP | WMS)
        name, service = _services(namespace)[0]
        assert getattr(namespace, name) is service
        assert repr(conn.id) in repr(service)


class TestStatuses:
    async def test_status_lists(self, conn: Connection) -> None:
        """Each API's status lists decode, and an unknown entity is refused."""
        for namespace in (conn.eam, conn.erp, conn.wms):
            for entity in namespace.statuses.entities:
                listing: Listing[Entity] = namespace.statuses.list(entity)  # type: ignore[assignment]
                statuses = await listing.to_list()
                assert statuses
                assert all(s.extra == {} for s in statuses)
        with pytest.raises(ValueError, match="No status list"):
            conn.eam.statuses.list("invoices")


@pytest.mark.parametrize("domain", ["eam", "erp", "wms"])
class TestEveryVerb:
    async def test_writes_reach_their_paths(
        self, conn: Connection, sandbox: Sandbox, domain: str
    ) -> None:
        """Every create, update and set_status sends to its own path and decodes the answer."""
        sent = 0
        for name, service in _services(getattr(conn, domain)):
            for verb in ("create", "update", "set_status"):
                method = getattr(service, verb, None)
                if method is None:
                    continue
                sandbox.clear_requests()
                outcome: object
                try:
                    if verb == "create":
                        outcome = await method({})
                    else:
                        listing = getattr(service, "list")(per_page=1)  # noqa: B009 - dynamic verb
                        first = (await anext(aiter(listing.pages()))).records[0]
                        args = (first.key, {}) if verb == "update" else (first.key, "x")
                        outcome = await method(*args)
                except ValidationError as exc:
                    outcome = exc
                if isinstance(outcome, ValidationError):
                    assert outcome.fields, (name, verb)
                else:
                    assert isinstance(outcome, Entity), (name, verb)
                    assert outcome.extra == {}, (name, verb, dict(outcome.extra))
                request = sandbox.requests("c1")[-1]
                assert request.method in {"POST", "PUT"}
                assert request.path.startswith(f"/api/{domain}/"), request.path
                sent += 1
        assert sent >= 5
