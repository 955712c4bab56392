"""The entities `sync` knows: every collection a generated service lists, with its path and model.

The table is built at import from the service classes `makini_async.resources` exports, so a
resource added to the generator is synced with no change here. Entities are named
``domain/name`` after their path (``/api/eam/work-orders`` is ``eam/work-orders``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

import attrs

from makini_async import resources
from makini_async.models import Entity
from makini_async.resources._base import Listable, Namespace, collection_of, is_incremental

__all__ = [
    "COLLECTIONS",
    "ENTITIES",
    "Collection",
    "collection",
    "entities_from",
    "resolve_entity",
]


@attrs.frozen(slots=True)
class Collection:
    """One collection a service lists.

    Attributes:
        domain: The API, ``eam``, ``erp`` or ``wms``.
        name: The collection's path segment, e.g. ``work-orders``.
        path: The collection's path, e.g. ``/api/eam/work-orders``.
        model: The model of its records, e.g. `WorkOrder`.
        incremental: Whether its records carry ``updatedAt``, so that a sync reads only what
            changed since the last; the others (units of measure, meter readings, exchange
            rates) are read whole every time.
    """

    domain: str
    name: str
    path: str
    model: type[Entity]
    incremental: bool = True

    @property
    def entity(self) -> str:
        """The entity name, ``domain/name``."""
        return f"{self.domain}/{self.name}"


def _build() -> tuple[tuple[str, ...], dict[str, Collection]]:
    """The domains (in the order a bare name is looked up) and the collections, by entity."""
    exported = [getattr(resources, name) for name in resources.__all__]
    classes = [member for member in exported if isinstance(member, type)]
    domains = tuple(
        cls.__name__.lower()
        for cls in classes
        if issubclass(cls, Namespace) and cls is not Namespace
    )
    found: list[Collection] = []
    for cls in classes:
        if not issubclass(cls, Listable):
            continue
        path, model = collection_of(cls)
        domain, _, name = path.removeprefix("/api/").partition("/")
        if domain in domains and name:
            found.append(Collection(domain, name, path, model, is_incremental(cls)))
    found.sort(key=lambda c: (domains.index(c.domain), c.name))
    return domains, {c.entity: c for c in found}


_DOMAINS, _TABLE = _build()

#: Every collection `sync` knows, by entity name (``eam/work-orders``).
COLLECTIONS: Final[Mapping[str, Collection]] = MappingProxyType(_TABLE)

#: Every entity `sync` knows, as ``domain/name`` (e.g. ``eam/work-orders``).
ENTITIES: Final[frozenset[str]] = frozenset(COLLECTIONS)


def resolve_entity(name: str) -> str:
    """Turn ``work-orders`` or ``erp/sales-orders`` into the ``domain/name`` form `sync` uses.

    A bare name is looked up in EAM first, then ERP, then WMS.

    Args:
        name: The entity name.

    Returns:
        The entity as ``domain/name``.

    Raises:
        ValueError: No such entity.

    .. versionadded:: 0.1.0
    """
    cleaned = name.strip().strip("/").lower().removeprefix("api/")
    if "/" in cleaned:
        if cleaned in COLLECTIONS:
            return cleaned
    else:
        for domain in _DOMAINS:
            if f"{domain}/{cleaned}" in COLLECTIONS:
                return f"{domain}/{cleaned}"
    raise ValueError(
        f"Unknown entity {name!r}; use a name such as work-orders, assets, purchase-orders "
        "or erp/sales-orders."
    )


def collection(name: str) -> Collection:
    """The collection of an entity name, in any form `resolve_entity` takes.

    Args:
        name: The entity name, e.g. ``work-orders`` or ``eam/work-orders``.

    Returns:
        Its `Collection`: path and model.

    Raises:
        ValueError: No such entity.
    """
    return COLLECTIONS[resolve_entity(name)]


def entities_from(text: str | Sequence[str]) -> list[str]:
    """Split ``"work-orders,assets"`` (or a list of such strings) into resolved entity names.

    Args:
        text: Comma-separated names, or a list of them.

    Returns:
        The resolved entities, without duplicates, in the order given.

    Raises:
        ValueError: An unknown or empty entity name.

    .. versionadded:: 0.1.0
    """
    parts = [text] if isinstance(text, str) else list(text)
    names = [piece.strip() for part in parts for piece in part.split(",") if piece.strip()]
    if not names:
        raise ValueError("Give at least one entity, e.g. --entities work-orders,assets.")
    return list(dict.fromkeys(resolve_entity(name) for name in names))
