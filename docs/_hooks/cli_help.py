"""MkDocs hook: put the ``makini-async`` command's current ``--help`` texts into the CLI page.

A line ``<!-- cli-help -->`` in a page becomes the top-level help followed by one section per
command, each taken from the installed command at build time, so the page never drifts from it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Final

__all__ = ["on_page_markdown"]

_MARKER: Final = "<!-- cli-help -->"
# A command line of argparse's "positional arguments" section: four spaces, then its name.
_COMMAND: Final = re.compile(r"^    (?P<name>[a-z][\w-]*)\s")


def _help(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "100"}
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "makini_async.cli", *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    return result.stdout.rstrip()


def _commands(top: str) -> list[str]:
    names: list[str] = []
    section = False
    for line in top.splitlines():
        if line.startswith("positional arguments"):
            section = True
        elif section and not line.strip():
            break
        elif section and (found := _COMMAND.match(line)):
            names.append(found["name"])
    return names


def _reference() -> str:
    top = _help()
    parts = ["```text", f"$ makini-async --help\n{top}", "```"]
    for name in _commands(top):
        parts += [f"\n## `makini-async {name}`\n", "```text"]
        parts += [f"$ makini-async {name} --help\n{_help(name)}", "```"]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **_: object) -> str:
    """Replace the marker line with the command's help texts.

    Args:
        markdown: The page's Markdown.
        **_: The page, config and files MkDocs passes along (unused).

    Returns:
        The Markdown, with the help texts in place of the marker.
    """
    if _MARKER not in markdown:
        return markdown
    return markdown.replace(_MARKER, _reference())
