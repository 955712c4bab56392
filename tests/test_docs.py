"""The documentation: the site builds strictly, and every example of README.md and docs/ runs.

How examples are marked and run is described in `tests.examples`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from makini_async.sandbox import Sandbox
from tests.examples import FRAGMENT_CONNECTION, ROOT, Example, Mode, collect
from tests.services import postgres_server, redis_server

EXAMPLES = collect()
RUNNABLE = [example for example in EXAMPLES if example.mode is not Mode.SKIP]
PYTHON = [example for example in RUNNABLE if example.mode is not Mode.SHELL]
# Generous: each example starts a Python process; the machine may be busy.
EXAMPLE_TIMEOUT = 120.0
# Output of a healthy run never holds these (an unclosed session or registry warns).
TROUBLE = ("Traceback", "Warning", "Unclosed", "Error")


def _bin(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found is not None, f"{name} is not installed next to {sys.executable}"
    return found


async def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), EXAMPLE_TIMEOUT)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _environment(sandbox: Sandbox) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAKINI_")}
    env["MAKINI_BASE_URL"] = sandbox.url
    env["MAKINI_TOKEN"] = sandbox.connections[FRAGMENT_CONNECTION]
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "100"
    return env


def _write_customers(sandbox: Sandbox, directory: Path) -> None:
    with (directory / "customers.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "token"])
        writer.writerows(sandbox.connections.items())


def _argv(example: Example, directory: Path) -> list[str]:
    if example.mode is Mode.SHELL:
        script = directory / "example.sh"
        script.write_text("set -eu\n" + example.blocks[0] + "\n")
        return ["bash", str(script)]
    script = directory / f"{example.module}.py"
    script.write_text(example.source)
    if example.mode is Mode.PYTEST:
        return [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "--rootdir",
            str(directory),
            script.name,
        ]
    return [sys.executable, script.name]


class TestCollect:
    def test_marks(self, tmp_path: Path) -> None:
        """Marks pick the mode, continue joins blocks, a fragment runs inside main()."""
        page = tmp_path / "page.md"
        page.write_text(
            "```python\nx = 1\n```\n<!-- example: continue -->\n```python\nprint(x)\n```\n"
            "<!-- example: fragment -->\n\n"
            "```python\nimport os\nawait conn.request('GET', '/')\n```\n"
            "<!-- example: skip needs a server -->\n```python\nboom\n```\n"
            "```sh\nrm -rf /\n```\n<!-- example: run -->\n```sh\nmakini-async --help\n```\n"
        )
        first, fragment, skipped, shell, run = collect([page])
        assert (first.mode, first.blocks) == (Mode.PROGRAM, ("x = 1", "print(x)"))
        assert fragment.mode is Mode.FRAGMENT
        assert fragment.source.startswith("import os\n")
        assert "        await conn.request('GET', '/')" in fragment.source
        assert (skipped.mode, skipped.reason) == (Mode.SKIP, "needs a server")
        assert (shell.mode, run.mode) == (Mode.SKIP, Mode.SHELL)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("<!-- example: skip -->\n```python\nx\n```\n", "say why"),
            ("<!-- example: continue -->\n```python\nx\n```\n", "needs a Python example"),
            ("<!-- example: maybe -->\n```python\nx\n```\n", "unknown example mark"),
        ],
    )
    def test_bad_marks(self, tmp_path: Path, text: str, message: str) -> None:
        """A mark the runner does not understand fails the collection, naming the block."""
        page = tmp_path / "page.md"
        page.write_text(text)
        with pytest.raises(ValueError, match=message):
            collect([page])


class TestExamples:
    @pytest.mark.parametrize("example", RUNNABLE, ids=[example.id for example in RUNNABLE])
    async def test_runs(self, example: Example, tmp_path: Path) -> None:
        """The example exits 0 against a fresh sandbox, with no traceback or warning."""
        async with contextlib.AsyncExitStack() as stack:
            sandbox = await stack.enter_async_context(
                Sandbox(connections=3, seed=1, time_scale=0.001)
            )
            await sandbox.add_connection(FRAGMENT_CONNECTION)
            _write_customers(sandbox, tmp_path)
            env = _environment(sandbox)
            # Examples of the distributed engines get real servers, as the tests do.
            if "MAKINI_REDIS_URL" in example.source:
                env["MAKINI_REDIS_URL"] = stack.enter_context(redis_server()).url
            if "MAKINI_POSTGRES_DSN" in example.source:
                env["MAKINI_POSTGRES_DSN"] = stack.enter_context(postgres_server()).dsn()
            code, out, err = await _run(_argv(example, tmp_path), tmp_path, env)
        report = (
            f"{example.id} ({example.mode.value}) exited {code}\n"
            f"--- stdout\n{out}\n--- stderr\n{err}"
        )
        assert code == 0, report
        assert not any(word in err for word in TROUBLE), report

    def test_every_example_is_counted(self) -> None:
        """README.md and docs/ hold at least 30 runnable examples (the suite's summary counts)."""
        skipped = [example for example in EXAMPLES if example.mode is Mode.SKIP]
        assert len(RUNNABLE) >= 30
        assert all(example.reason for example in skipped)

    def test_type_check(self, tmp_path: Path) -> None:
        """Every Python example passes mypy --strict with the project's configuration."""
        for example in PYTHON:
            (tmp_path / f"{example.module}.py").write_text(example.source)
        result = _run_sync(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--no-error-summary",
                str(tmp_path),
            ]
        )
        assert result.returncode == 0, result.stdout + result.stderr


def _run_sync(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # MkDocs' banner about its successor
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False, env=env
    )


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (the dev extra installs it)",
)
def test_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds, with no warning, and writes every page."""
    result = _run_sync(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING -" not in result.stderr, result.stderr
    pages = sorted(ROOT.joinpath("docs").rglob("*.md"))
    for page in pages:
        relative = page.relative_to(ROOT / "docs").with_suffix("")
        built = tmp_path / "site" / relative / "index.html"
        if relative.name == "index":
            built = tmp_path / "site" / relative.parent / "index.html"
        assert built.is_file(), f"{page} was not built"
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    assert "makini-async sync --help" in cli, "the CLI page lacks the commands' help"


def test_the_error_tree_page_matches_the_code() -> None:
    """docs/concepts/errors.md draws the same tree as `makini_async._errors`' docstring."""
    import makini_async._errors as errors

    def tree(lines: list[str]) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.strip() == "MakiniError")
        end = next(
            i
            for i in range(start, len(lines))
            if not lines[i].strip().startswith(("M", "├", "│", "└"))
        )
        return [line.strip().replace("``", "`") for line in lines[start:end]]

    page = (ROOT / "docs" / "concepts" / "errors.md").read_text().splitlines()
    assert errors.__doc__ is not None
    assert tree(page) == tree(errors.__doc__.splitlines())
