"""``makini-async entities``: every entity ``sync``, ``list`` and ``get`` know, with its verbs.

The table comes from the resources' registry of collections (`makini_async.sync._entities`) and
the generated service classes, so a resource added to the generator shows up with no change here.
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

import attrs

from makini_async import resources
from makini_async.resources._base import Listable, Namespace, Service, collection_of
from makini_async.sync._entities import COLLECTIONS, entities_from

from ._parser import EXIT_OK, CommandLineError

__all__ = ["EntityInfo", "entity_table", "parse_entities", "run_entities"]


@attrs.frozen
class EntityInfo:
    """One entity as the command lists it.

    Attributes:
        entity: The ``domain/name`` form ``sync --entities`` takes.
        path: The collection's path.
        attribute: Where the typed service lives, e.g. ``conn.eam.work_orders``.
        verbs: The service's methods, e.g. ``create``, ``get``, ``list``.
        incremental: Whether ``sync`` reads only what changed since its last run; False for a
            collection without ``updatedAt``, read whole every time.
    """

    entity: str
    path: str
    attribute: str
    verbs: tuple[str, ...]
    incremental: bool = True


def _attributes() -> dict[str, str]:
    """The service class name to its ``conn.<domain>.<name>`` attribute."""
    found: dict[str, str] = {}
    for name in resources.__all__:
        namespace = getattr(resources, name)
        if not isinstance(namespace, type) or not issubclass(namespace, Namespace):
            continue
        for attribute, member in vars(namespace).items():
            if isinstance(member, property) and member.fget is not None:
                returned = member.fget.__annotations__.get("return")
                if isinstance(returned, str):
                    found[returned] = f"conn.{namespace.__name__.lower()}.{attribute}"
    return found


def entity_table() -> list[EntityInfo]:
    """Every entity `sync` knows, in the order ``sync`` resolves bare names (EAM, ERP, WMS).

    Returns:
        One `EntityInfo` per collection.
    """
    attributes = _attributes()
    common = set(dir(Service))
    by_path: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name in resources.__all__:
        cls = getattr(resources, name)
        if not isinstance(cls, type) or not issubclass(cls, Listable):
            continue
        verbs = tuple(
            sorted(
                verb
                for verb in dir(cls)
                if not verb.startswith("_") and verb not in common and callable(getattr(cls, verb))
            )
        )
        by_path[collection_of(cls)[0]] = (attributes.get(cls.__name__, ""), verbs)
    table = []
    for entity, found in COLLECTIONS.items():
        attribute, verbs = by_path.get(found.path, ("", ("list",)))
        table.append(EntityInfo(entity, found.path, attribute, verbs, found.incremental))
    return table


def run_entities(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``makini-async entities``: one line per entity, or JSON with ``--json``.

    Args:
        args: The parsed command line (``domain``, ``json``).
        out: Where the table goes.

    Returns:
        The exit status, 0.
    """
    table = [
        info
        for info in entity_table()
        if args.domain is None or info.entity.startswith(f"{args.domain}/")
    ]
    if args.json:
        out.write(json.dumps([attrs.asdict(info) for info in table], indent=2) + "\n")
    else:
        width = max(len(info.entity) for info in table)
        path_width = max(len(info.path) for info in table)
        out.writelines(
            f"{info.entity.ljust(width)}  {info.path.ljust(path_width)}  {', '.join(info.verbs)}"
            f"{'' if info.incremental else '  (sync reads it whole)'}\n"
            for info in table
        )
    out.flush()
    return EXIT_OK


def parse_entities(text: str) -> list[str]:
    """The entities of ``--entities`` (names separated by commas); a bad name is a usage error."""
    try:
        return entities_from(text)
    except ValueError as exc:
        raise CommandLineError(str(exc)) from None
