"""Extract the code examples of README.md and docs/ and turn each into a program to run.

A fenced block is marked by an HTML comment on the line right before its fence (blank lines
between are allowed)::

    <!-- example: skip REASON -->   not run, not type-checked; the reason is required
    <!-- example: continue -->      appended to the previous Python example of the same file
    <!-- example: fragment -->      statements run inside ``async def main()`` where ``registry``
                                    (every connection of customers.csv added) and
                                    ``conn = registry["acme"]`` exist; top-level ``await`` works
    <!-- example: pytest -->        a test module, run by pytest (the makini_async plugin on)
    <!-- example: run -->           a shell block whose lines are run (shell blocks are not run
                                    without it)

A Python block without a mark is a complete program. Programs run in a fresh directory that
holds ``customers.csv`` (``id,token`` of every sandbox connection), with ``MAKINI_BASE_URL``
(the sandbox) and ``MAKINI_TOKEN`` (the ``acme`` connection's token) in the environment.
"""

from __future__ import annotations

import enum
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import attrs

__all__ = [
    "FRAGMENT_CONNECTION",
    "ROOT",
    "Example",
    "Mode",
    "collect",
    "documents",
]

ROOT = Path(__file__).resolve().parent.parent
#: The connection id that ``conn`` names in a fragment (the sandbox adds it for every example).
FRAGMENT_CONNECTION = "acme"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<lang>[\w-]*)[^`]*$")
_MARK = re.compile(r"^\s*<!--\s*example:\s*(?P<kind>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
_PYTHON = frozenset({"python", "py"})
_SHELL = frozenset({"sh", "bash", "shell", "console"})

_FRAGMENT_HEAD = """\
import asyncio as _asyncio
import csv as _csv
import os as _os

from makini_async import ConnectionRegistry as _Registry


async def main() -> None:
    async with _Registry(_os.environ["MAKINI_BASE_URL"]) as registry:
        with open("customers.csv", newline="") as _file:
            for _row in _csv.DictReader(_file):
                registry.add(_row["id"], _row["token"])
        conn = registry[{connection!r}]
"""
_FRAGMENT_TAIL = """

_asyncio.run(main())
"""


class Mode(enum.Enum):
    """How an example runs."""

    PROGRAM = "program"
    FRAGMENT = "fragment"
    PYTEST = "pytest"
    SHELL = "shell"
    SKIP = "skip"


@attrs.frozen
class Example:
    """One example: a Python block (with the blocks that continue it), or a shell block."""

    path: str
    line: int
    mode: Mode
    blocks: tuple[str, ...]
    reason: str = ""

    @property
    def id(self) -> str:
        """``README.md:42``: where its first block starts."""
        return f"{self.path}:{self.line}"

    @property
    def module(self) -> str:
        """A module name unique among the examples (for mypy)."""
        stem = re.sub(r"\W", "_", self.path.removesuffix(".md")).lower()
        prefix = "test" if self.mode is Mode.PYTEST else "ex"
        return f"{prefix}_{stem}_l{self.line}"

    @property
    def source(self) -> str:
        """The program that runs: the blocks joined, a fragment wrapped into ``main()``."""
        joined = "\n\n".join(self.blocks)
        if self.mode is not Mode.FRAGMENT:
            return joined + "\n"
        imports, body = _hoist_imports(joined)
        head = _FRAGMENT_HEAD.format(connection=FRAGMENT_CONNECTION)
        return (
            "\n".join(imports)
            + "\n"
            + head
            + textwrap.indent(body.strip("\n"), " " * 8)
            + _FRAGMENT_TAIL
        )


def _hoist_imports(source: str) -> tuple[list[str], str]:
    """Split a fragment into its top-level import statements and the rest."""
    imports: list[str] = []
    body: list[str] = []
    depth = 0
    for line in source.splitlines():
        if depth or line.startswith(("import ", "from ")):
            imports.append(line)
            depth += line.count("(") - line.count(")")
        else:
            body.append(line)
    return imports, "\n".join(body)


def documents() -> list[Path]:
    """README.md and every Markdown page of docs/, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks(text: str) -> Iterator[tuple[int, str, str, str | None]]:
    """Yield (line, language, code, mark) for each fenced block; line is 1-based."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != fence:
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else "")
            index += 1
        index += 1
        mark = None
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        if before >= 0 and _MARK.match(lines[before]):
            mark = lines[before]
        yield start + 1, opening["lang"].lower(), "\n".join(body), mark


_MODES = {"": Mode.PROGRAM, "fragment": Mode.FRAGMENT, "pytest": Mode.PYTEST}


def _shell(name: str, line: int, code: str, kind: str) -> Example:
    if kind not in {"", "run"}:
        raise ValueError(f"{name}:{line}: a shell block takes only 'run' or 'skip'")
    if kind == "run":
        return Example(name, line, Mode.SHELL, (code,))
    return Example(name, line, Mode.SKIP, (code,), reason="a shell block not marked run")


def _collect_one(path: Path) -> list[Example]:
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    examples: list[Example] = []
    last_python: int | None = None
    for line, lang, code, mark_line in _blocks(path.read_text(encoding="utf-8")):
        if lang not in _PYTHON | _SHELL:
            continue
        mark = _MARK.match(mark_line) if mark_line is not None else None
        kind, arg = (mark["kind"], mark["arg"]) if mark is not None else ("", "")
        where = f"{name}:{line}"
        if kind == "skip":
            if not arg:
                raise ValueError(f"{where}: say why the example is skipped")
            examples.append(Example(name, line, Mode.SKIP, (code,), reason=arg))
        elif lang in _SHELL:
            examples.append(_shell(name, line, code, kind))
        elif kind == "continue":
            if last_python is None:
                raise ValueError(f"{where}: 'continue' needs a Python example before it")
            previous = examples[last_python]
            examples[last_python] = attrs.evolve(previous, blocks=(*previous.blocks, code))
        elif kind in _MODES:
            examples.append(Example(name, line, _MODES[kind], (code,)))
            last_python = len(examples) - 1
        else:
            raise ValueError(f"{where}: unknown example mark {kind!r}")
    return examples


def collect(paths: list[Path] | None = None) -> list[Example]:
    """Every example of the documents, continued blocks joined to the one they continue.

    Raises:
        ValueError: A mark that is unknown, a skip without a reason, or a continue with nothing
            before it.
    """
    return [
        example
        for path in (documents() if paths is None else paths)
        for example in _collect_one(path)
    ]
