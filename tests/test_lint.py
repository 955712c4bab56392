"""The linters and the type checker run as part of the test suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _typed_paths() -> list[str]:
    """The trees mypy checks (a tree with no Python file yet is skipped, not an error)."""
    return [p for p in ("makini_async", "tests", "benchmarks") if any((ROOT / p).rglob("*.py"))]


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy", *_typed_paths()],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_passes(argv: list[str]) -> None:
    """Each static check exits 0 on the whole tree."""
    proc = subprocess.run(  # noqa: S603 - fixed argv, our own tools
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
