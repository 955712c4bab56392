"""`JsonLinesStore`: records as JSON lines in a directory, one file per entity and connection."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, Self, TypeVar
from urllib.parse import quote

from makini_async._errors import StoreError

from ._sqlite import table_name
from ._store import Row, run_on_thread

__all__ = ["JsonLinesStore"]

T = TypeVar("T")

_WATERMARKS: Final = "_watermarks.json"


def _file_name(connection_id: str) -> str:
    name = quote(connection_id, safe="-_")
    return name.replace(".", "%2E") + ".jsonl"


def _text(value: str | None) -> str:
    return json.dumps(value, ensure_ascii=False)


def _line(row: Row) -> str:
    """One line of a connection's file, with the row's record JSON text as it is."""
    return (
        f'{{"key":{_text(row.key)},"updated_at":{_text(row.updated_at)},'
        f'"deleted_at":{_text(row.deleted_at)},"data":{row.json}}}\n'
    )


class JsonLinesStore:
    """A directory of JSON-lines files: ``<entity table>/<connection>.jsonl`` plus watermarks.

    Each line is ``{"key", "updated_at", "deleted_at", "data"}``. A `write` appends the changed
    rows and fsyncs the file before the watermark file is replaced (atomically, with
    ``os.replace``), so the watermark never passes rows that are not on disk. A key written
    again gets a new line; `aclose` compacts every touched file to one line per key, and reading
    always takes the last line of a key, so the store never shows a duplicate. A line cut short
    by a crash is dropped when the file is next read.

    Args:
        directory: The directory (created when missing).

    .. versionadded:: 0.1.0
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._executor: ThreadPoolExecutor | None = None
        self._watermarks: dict[str, dict[str, str]] = {}
        self._index: dict[Path, dict[str, Row]] = {}
        self._grown: set[Path] = set()

    def __repr__(self) -> str:
        return f"<JsonLinesStore {str(self.directory)!r}>"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self, fn: Callable[[], T]) -> T:
        return await run_on_thread(self._executor, fn, str(self.directory))

    async def open(self) -> None:
        """Create the directory and read the watermarks.

        Raises:
            StoreError: The directory cannot be created, or the watermark file is corrupt.

        .. versionadded:: 0.1.0
        """
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="makini-jsonl")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / _WATERMARKS
            if path.exists():
                loaded = json.loads(path.read_text("utf-8"))
                self._watermarks = {str(c): dict(e) for c, e in dict(loaded).items()}
        except OSError as exc:
            raise StoreError(f"The store {str(self.directory)!r} cannot be used: {exc}") from None
        except (ValueError, TypeError):
            raise StoreError(
                f"The store {str(self.directory)!r} has a corrupt {_WATERMARKS}."
            ) from None

    def _path(self, connection_id: str, entity: str) -> Path:
        return self.directory / table_name(entity) / _file_name(connection_id)

    def _load(self, path: Path) -> dict[str, Row]:
        index = self._index.get(path)
        if index is not None:
            return index
        index = {}
        if path.exists():
            with path.open("rb") as handle:
                content = handle.read()
            good = content.rfind(b"\n") + 1
            for line in content[:good].splitlines():
                item = json.loads(line)
                row = Row.from_record(
                    item["key"], item["updated_at"], item["deleted_at"], item["data"]
                )
                index[row.key] = row
            if good < len(content):  # a line cut short by a crash: drop it
                with path.open("r+b") as handle:
                    handle.truncate(good)
        self._index[path] = index
        return index

    async def watermark(self, connection_id: str, entity: str) -> str | None:
        """The stored watermark of a connection and entity, or None.

        .. versionadded:: 0.1.0
        """
        return self._watermarks.get(connection_id, {}).get(entity)

    async def write(
        self, connection_id: str, entity: str, rows: Sequence[Row], watermark: str | None
    ) -> int:
        """Append the changed rows, fsync, then replace the watermark file.

        Returns:
            How many rows were new or changed.

        Raises:
            StoreError: Writing failed.

        .. versionadded:: 0.1.0
        """
        return await self._run(lambda: self._write(connection_id, entity, rows, watermark))

    def _write(
        self, connection_id: str, entity: str, rows: Sequence[Row], watermark: str | None
    ) -> int:
        path = self._path(connection_id, entity)
        try:
            index = self._load(path)
            fresh = [row for row in rows if index.get(row.key) != row]
            if fresh:
                path.parent.mkdir(parents=True, exist_ok=True)
                lines = "".join(_line(row) for row in fresh).encode()
                with path.open("ab") as handle:
                    handle.write(lines)
                    handle.flush()
                    os.fsync(handle.fileno())
                for row in fresh:
                    index[row.key] = row
                self._grown.add(path)
            if watermark is not None:
                entities = self._watermarks.setdefault(connection_id, {})
                if watermark > entities.get(entity, ""):
                    entities[entity] = watermark
                    self._save_watermarks()
        except OSError as exc:
            raise StoreError(f"The store {str(self.directory)!r} failed to write: {exc}") from None
        return len(fresh)

    def _save_watermarks(self) -> None:
        path = self.directory / _WATERMARKS
        temporary = path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(self._watermarks, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)

    async def rows(self, entity: str, connection_id: str) -> list[Row]:
        """Every stored record of a connection's entity (the last version of each key), by key.

        Raises:
            StoreError: Reading failed.

        .. versionadded:: 0.1.0
        """
        path = self._path(connection_id, entity)
        index = await self._run(lambda: self._load(path))
        return [index[key] for key in sorted(index)]

    async def aclose(self) -> None:
        """Compact the files written to (one line per key) and stop the store's thread.

        .. versionadded:: 0.1.0
        """
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._compact)
        finally:
            executor.shutdown(wait=True)

    def _compact(self) -> None:
        for path in sorted(self._grown):
            index = self._index[path]
            temporary = path.with_suffix(".compact")
            with temporary.open("wb") as handle:
                handle.write("".join(_line(index[key]) for key in sorted(index)).encode())
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(path)
        self._grown.clear()
