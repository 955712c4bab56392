"""Where ``sync`` and ``worker`` write: a SQLite file, a JSON-lines directory or PostgreSQL.

Every store is checked before any request: a file or directory that cannot be written is one
line at the start, the same for every format, not an error after the API calls were made.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from makini_async import StoreError
from makini_async.sync import JsonLinesStore, SQLiteStore, Store, table_name

from ._parser import CommandLineError

try:
    from makini_async.sync.postgres import PostgresStore
except ImportError:  # the `postgres` extra is not installed
    HAVE_POSTGRES = False
else:
    HAVE_POSTGRES = True

__all__ = ["open_store", "store_name"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def _is_jsonl(path: str, kind: str) -> bool:
    return kind == "jsonl" or (
        kind == "auto" and (path.endswith(("/", os.sep)) or Path(path).is_dir())
    )


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _probe(directory: Path, where: str) -> None:
    """Create the directory if needed, then a file in it: the one sure test of writability."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".makini-probe-", dir=directory)
        os.close(handle)
        Path(name).unlink()
    except FileExistsError:  # a file where the directory should be
        raise StoreError(f"The store {where!r} cannot be written: Not a directory") from None
    except OSError as exc:
        raise StoreError(f"The store {where!r} cannot be written: {_reason(exc)}") from None


def _check_writable(path: str, entities: Sequence[str], *, jsonl: bool) -> None:
    """Refuse a store that cannot be written, the same way for both formats, before any request.

    The stores themselves would find out only at their first write (JSON lines) or with a
    message of their own (SQLite); here every format says the same thing at the start.
    """
    target = Path(path)
    if jsonl:
        _check_directory(target, path, entities)
    else:
        if target.is_dir():
            raise StoreError(
                f"The store {path!r} is a directory; give a file for SQLite, or --format jsonl."
            )
        _probe(target.parent, path)
        for suffix in ("", "-wal", "-shm"):
            found = Path(f"{target}{suffix}")
            if found.exists():
                _check_file(found, path)


def _check_directory(target: Path, path: str, entities: Sequence[str]) -> None:
    if target.exists() and not target.is_dir():
        raise StoreError(f"The store {path!r} is a file; JSON lines need a directory.")
    _probe(target, path)
    for found in target.glob("*.json"):
        _check_file(found, path)
    for entity in entities:
        table = target / table_name(entity)
        if table.exists() and not table.is_dir():
            raise StoreError(
                f"The store {path!r} cannot be written: {table.name} is not a directory"
            )
        if table.exists():
            _probe(table, path)
            for found in table.glob("*.jsonl"):
                _check_file(found, path)


def _check_file(found: Path, where: str) -> None:
    try:
        with found.open("r+b"):
            pass
    except OSError as exc:
        raise StoreError(
            f"The store {where!r} cannot be written: {_reason(exc)} ({found.name})"
        ) from None


def open_store(path: str, kind: str, entities: Sequence[str] = ()) -> Store:
    """The store ``--store`` names, checked before any request (not opened yet).

    A ``postgresql://`` DSN is a `PostgresStore` (the ``postgres`` extra); a directory (or
    ``--format jsonl``) JSON lines; anything else a SQLite file.

    Raises:
        StoreError: A file or directory that cannot be written.
        CommandLineError: A PostgreSQL DSN without the ``postgres`` extra installed.
    """
    if path.startswith(_POSTGRES_SCHEMES):
        if not HAVE_POSTGRES:
            raise CommandLineError(
                "a PostgreSQL store needs asyncpg: pip install 'makini-async[postgres]'"
            )
        return PostgresStore(path)
    jsonl = _is_jsonl(path, kind)
    _check_writable(path, entities, jsonl=jsonl)
    return JsonLinesStore(path) if jsonl else SQLiteStore(path)


def store_name(path: str) -> str:
    """The store as messages name it: a DSN without its password."""
    if not path.startswith(_POSTGRES_SCHEMES):
        return path
    scheme, _, rest = path.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"
