"""The hostile tier prints its tallies after the run when MAKINI_HOSTILE_REPORT=1."""

from __future__ import annotations

import os

import pytest

from tests.hostile._wire import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print examples per test, outcomes by type, requests compared and altered, leaks."""
    if not os.environ.get("MAKINI_HOSTILE_REPORT") or not TALLY.examples:
        return
    write = terminalreporter.write_line
    terminalreporter.section("hostile tier")
    for test, count in sorted(TALLY.examples.items()):
        kinds = ", ".join(f"{kind} {n}" for kind, n in TALLY.by_type(test).items())
        write(f"{count:5d} examples  {test}: {kinds}")
    write("all outcomes: " + ", ".join(f"{kind} {n}" for kind, n in TALLY.by_type().items()))
    write(f"requests compared with what was asked: {TALLY.compared}, altered: {TALLY.altered}")
    write(f"leak checks: {TALLY.leak_checks}, leaks found: {TALLY.leaks}")
