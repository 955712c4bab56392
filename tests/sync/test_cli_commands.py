"""The ``makini-async`` command's habits: --version, help, entities, sandbox files, errors."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import makini_async
from makini_async.cli import main
from makini_async.cli._parser import FILTER_OPS, build_parser
from makini_async.sandbox.__main__ import _parser as sandbox_parser
from makini_async.sync._entities import COLLECTIONS
from tests.sync.helpers import ThreadedSandbox

ROOT = Path(__file__).resolve().parents[2]
_SANDBOX = (sys.executable, "-m", "makini_async.cli", "sandbox", "--port", "0")


def _sandbox_command(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``makini-async sandbox`` (on a free port unless ``args`` name one) to its end."""
    return subprocess.run(  # noqa: S603 - our own module
        [*_SANDBOX, *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _one_line(code: int, err: str, expected: int = 2, prog: str = "makini-async") -> str:
    assert code == expected, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: ")
    return lines[0]


def _requests(server: ThreadedSandbox) -> int:
    return server.call(lambda sandbox: len(sandbox.requests()))


def _csv(path: Path, server: ThreadedSandbox) -> Path:
    tokens = server.call(lambda sandbox: sandbox.connections)
    path.write_text("id,token\n" + "".join(f"{cid},{token}\n" for cid, token in tokens.items()))
    return path


def _parsers() -> list[argparse.ArgumentParser]:
    parser = build_parser()
    found = [parser, sandbox_parser("makini-async sandbox")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.values())
    return found


class TestVersionAndHelp:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints the installed version and exits 0."""
        assert main(["--version"]) == 0
        assert capsys.readouterr().out.strip() == f"makini-async {makini_async.__version__}"

    def test_every_option_has_help(self) -> None:
        """Each option of each command (the sandbox's too) says what it does."""
        missing = [
            f"{parser.prog} {action.option_strings or action.dest}"
            for parser in _parsers()
            for action in parser._actions
            if not action.help and not isinstance(action, argparse._SubParsersAction)
        ]
        assert missing == []

    def test_filter_help_lists_the_operators(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`list --help` names every --filter operator."""
        assert main(["list", "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        for op in FILTER_OPS:
            assert op in text

    def test_argparse_mistakes_are_one_line(self) -> None:
        """A bad option value is one line on the given stream, exit 2, naming the help."""
        code, _, err = _run("sync", "--admin", "--entities", "assets", "--store", "x.db", "-x")
        assert "unrecognized arguments: -x" in _one_line(code, err)
        code, _, err = _run(
            "sync", "--admin", "--entities", "a", "--store", "s", "--per-page", "501"
        )
        line = _one_line(code, err)
        assert "--per-page" in line
        assert "makini-async sync --help" in line

    def test_sandbox_usage_names_the_cli(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Run through makini-async, the sandbox's usage says `makini-async sandbox`."""
        with pytest.raises(SystemExit) as exc:
            main(["sandbox", "--port", "70000"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: makini-async sandbox")
        assert "python -m" not in err


class TestEntities:
    def test_lists_every_entity_with_path_and_verbs(self) -> None:
        """`entities` prints one line per collection: its name, path and verbs."""
        code, out, _ = _run("entities")
        assert code == 0
        lines = {line.split()[0]: line.split(None, 2) for line in out.splitlines()}
        assert set(lines) == set(COLLECTIONS)
        work_orders = lines["eam/work-orders"]
        assert work_orders[1] == "/api/eam/work-orders"
        assert {"list", "get", "create", "update", "set_status"} <= set(
            work_orders[2].replace(",", " ").split()
        )
        assert lines["eam/accounts"][2].strip() == "get, list"
        # Collections without updatedAt are marked: sync reads them whole.
        whole = {entity for entity, line in lines.items() if "reads it whole" in line[2]}
        assert whole == {entity for entity, found in COLLECTIONS.items() if not found.incremental}
        assert {"eam/uom", "erp/exchange-rates", "eam/meter-readings"} <= whole

    def test_json_and_domain(self) -> None:
        """--json gives the attribute too; --domain keeps one API."""
        code, out, _ = _run("entities", "--json", "--domain", "erp")
        assert code == 0
        table = json.loads(out)
        assert {row["entity"].split("/")[0] for row in table} == {"erp"}
        orders = next(row for row in table if row["entity"] == "erp/sales-orders")
        assert orders["attribute"] == "conn.erp.sales_orders"
        assert "list" in orders["verbs"]
        assert orders["incremental"] is True
        rates = next(row for row in table if row["entity"] == "erp/exchange-rates")
        assert rates["incremental"] is False


class TestReadErrors:
    def test_filter_operators(
        self, threaded_sandbox: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A known operator filters; an unknown one is a one-line error before any request."""
        monkeypatch.setenv("MAKINI_TOKEN", threaded_sandbox.call(lambda s: s.connections["c1"]))
        url = threaded_sandbox.url
        code, out, err = _run("list", "assets", "--all", "--base-url", url)
        assert code == 0, err
        records = json.loads(out)
        middle = sorted(r["updatedAt"] for r in records)[10]
        code, out, err = _run(
            "list", "assets", "--all", "--filter", f"updatedAt:gt={middle}", "--base-url", url
        )
        assert code == 0, err
        assert all(r["updatedAt"] > middle for r in json.loads(out))
        assert 0 < len(json.loads(out)) < len(records)
        before = _requests(threaded_sandbox)
        for bad, words in (("updatedAt:after=x", "unknown operator 'after'"), ("=x", "FIELD")):
            code, _, err = _run("list", "assets", "--filter", bad, "--base-url", url)
            assert words in _one_line(code, err)
        code, _, err = _run("list", "widgets", "--base-url", url)
        assert "'widgets'" in _one_line(code, err)
        assert _requests(threaded_sandbox) == before

    def test_bad_base_url_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A bad $MAKINI_BASE_URL is named in one line, before the store is created."""
        monkeypatch.setenv("MAKINI_BASE_URL", "ftp://example.com")
        connections = tmp_path / "c.csv"
        connections.write_text("c1,tok\n")
        store = tmp_path / "s.db"
        code, _, err = _run(
            "sync", "--connections", str(connections), "--entities", "assets", "--store", str(store)
        )
        assert "$MAKINI_BASE_URL" in _one_line(code, err)
        assert not store.exists()


class TestStoreErrors:
    @pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
    def test_an_unusable_place_is_reported_alike_before_any_request(
        self, threaded_sandbox: ThreadedSandbox, tmp_path: Path, kind: str
    ) -> None:
        """A store below a regular file gives the same one line for both formats, no request."""
        connections = _csv(tmp_path / "c.csv", threaded_sandbox)
        (tmp_path / "file").write_text("not a directory")
        store = tmp_path / "file" / "store"
        before = _requests(threaded_sandbox)
        code, _, err = _run(
            "sync",
            "--connections",
            str(connections),
            "--entities",
            "assets",
            "--format",
            kind,
            "--store",
            str(store),
            "--base-url",
            threaded_sandbox.url,
        )
        line = _one_line(code, err)
        assert (
            line
            == f"makini-async: error: The store {str(store)!r} cannot be written: Not a directory"
        )
        assert _requests(threaded_sandbox) == before

    def test_a_broken_json_lines_table_fails_at_start(
        self, threaded_sandbox: ThreadedSandbox, tmp_path: Path
    ) -> None:
        """A JSON-lines store whose entity directory is a file fails before any request."""
        connections = _csv(tmp_path / "c.csv", threaded_sandbox)
        store = tmp_path / "lines"
        store.mkdir()
        (store / "eam_assets").write_text("in the way")
        before = _requests(threaded_sandbox)
        argv = ["sync", "--connections", str(connections), "--entities", "assets", "--plain"]
        code, _, err = _run(*argv, "--store", f"{store}/", "--base-url", threaded_sandbox.url)
        assert "eam_assets is not a directory" in _one_line(code, err)
        assert _requests(threaded_sandbox) == before

    @pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
    def test_wrong_kind_of_path(self, tmp_path: Path, kind: str) -> None:
        """A directory for SQLite, or a file for JSON lines, is a one-line error."""
        connections = tmp_path / "c.csv"
        connections.write_text("c1,tok\n")
        path = tmp_path / "here"
        if kind == "sqlite":
            path.mkdir()
        else:
            path.write_text("")
        code, _, err = _run(
            "sync", "--connections", str(connections), "--entities", "assets", "--format", kind,
            "--store", str(path), "--base-url", "http://127.0.0.1:9",
        )  # fmt: skip
        assert ("is a directory" if kind == "sqlite" else "is a file") in _one_line(code, err)

    @pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
    @pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
    def test_read_only_directory(self, tmp_path: Path, kind: str) -> None:
        """A read-only directory gives the same one line for both formats."""
        connections = tmp_path / "c.csv"
        connections.write_text("c1,tok\n")
        locked = tmp_path / "locked"
        locked.mkdir()
        store = locked / ("s.db" if kind == "sqlite" else "lines")
        if kind == "jsonl":
            store.mkdir()
        locked.chmod(0o555)
        (store if kind == "jsonl" else locked).chmod(0o555)
        try:
            code, _, err = _run(
                "sync", "--connections", str(connections), "--entities", "assets", "--format",
                kind, "--store", str(store), "--base-url", "http://127.0.0.1:9",
            )  # fmt: skip
        finally:
            locked.chmod(0o755)
            if kind == "jsonl":
                store.chmod(0o755)
        assert "cannot be written: Permission denied" in _one_line(code, err)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestSandboxCommand:
    def test_write_connections_feeds_sync(self, tmp_path: Path) -> None:
        """`sandbox --write-connections FILE` writes a file `sync --connections FILE` takes."""
        target = tmp_path / "sandbox.json"
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [
                *_SANDBOX,
                "--connections",
                "2",
                "--work-orders",
                "30",
                "--write-connections",
                str(target),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert target.exists(), proc.poll()
            assert json.loads(target.read_text())["base_url"].startswith("http://127.0.0.1:")
            db = tmp_path / "s.db"
            # As it is: the file's base_url is where its tokens are good, no --base-url needed.
            code, out, err = _run(
                "sync", "--connections", str(target), "--entities", "work-orders",
                "--store", str(db), "--plain",
            )  # fmt: skip
            assert code == 0, out + err
            assert "c1 eam/work-orders: 30 records" in err
            assert "c2 eam/work-orders: 30 records" in err
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert f"connections written to {target}" in out
        assert out.strip().endswith("Makini sandbox stopped")

    def test_a_busy_port_is_one_line(self) -> None:
        """A port already taken gives one line and exit 2, not a traceback."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", _free_port()))
            holder.listen()
            port = holder.getsockname()[1]
            proc = _sandbox_command("--port", str(port))
        line = _one_line(proc.returncode, proc.stderr, prog="makini-async sandbox")
        assert line.endswith(f"cannot listen on 127.0.0.1:{port}: Address already in use")
        assert "Makini sandbox listening" not in proc.stdout

    def test_an_unwritable_connections_file_is_one_line(self, tmp_path: Path) -> None:
        """--write-connections into a missing directory fails before the sandbox starts."""
        target = tmp_path / "missing" / "c.json"
        proc = _sandbox_command("--write-connections", str(target))
        line = _one_line(proc.returncode, proc.stderr, prog="makini-async sandbox")
        assert "its directory does not exist" in line
        assert proc.stdout == ""
