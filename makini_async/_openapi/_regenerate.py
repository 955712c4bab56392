"""Regenerate every file derived from the shipped OpenAPI files, or check that none would change.

``python -m makini_async._openapi`` runs `main`; ``tests/test_generated.py`` compares `outputs`
with the committed files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from makini_async.models import _generate
from makini_async.sandbox import _build_spec

__all__ = ["main", "outputs", "stale"]


def outputs() -> dict[Path, str]:
    """Return every generated file by path, with the text regenerating writes there.

    Returns:
        The models, the services, both packages' ``__init__.py`` and the sandbox's table.
    """
    return {**_generate.render(), **_build_spec.render()}


def stale(generated: dict[Path, str]) -> list[Path]:
    """Return the files whose committed text differs from ``generated`` (or that are missing).

    Args:
        generated: Text by path, as `outputs` returns it.

    Returns:
        The paths that regenerating would change, in the order given.
    """
    return [
        path
        for path, text in generated.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated files that changed, or with ``--check`` only name them.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit status: 1 when ``--check`` finds a file that would change.
    """
    parser = argparse.ArgumentParser(
        prog="python -m makini_async._openapi",
        description="Regenerate every file derived from Makini's OpenAPI files.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file would change"
    )
    args = parser.parse_args(argv)
    generated = outputs()
    changed = stale(generated)
    for path in changed:
        if args.check:
            sys.stdout.write(f"would change {path}\n")
        else:
            path.write_text(generated[path], encoding="utf-8")
            sys.stdout.write(f"wrote {path}\n")
    if not changed:
        sys.stdout.write(f"all {len(generated)} generated files are up to date\n")
    return 1 if args.check and changed else 0
