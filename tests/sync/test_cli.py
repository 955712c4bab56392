"""The ``makini-async`` command: exit codes, output, bad input, the demo, and a real subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from makini_async.cli import main
from tests.sync.helpers import ThreadedSandbox, threaded_app


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _run(*argv: str, tty: bool = False) -> tuple[int, str, str]:
    out = _Terminal() if tty else io.StringIO()
    err = _Terminal() if tty else io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _csv(path: Path, server: ThreadedSandbox) -> Path:
    tokens = server.call(lambda sandbox: sandbox.connections)
    path.write_text("id,token\n" + "".join(f"{cid},{token}\n" for cid, token in tokens.items()))
    return path


def _slow_with_one_stuck(server: ThreadedSandbox) -> None:
    """Answer c1-c3 slowly and c4 not for a minute: a sync cannot end before `_unstick`."""
    server.call(
        lambda sandbox: [
            sandbox.configure(c, latency=60.0 if c == "c4" else 0.03) for c in sandbox.connections
        ]
    )


def _unstick(server: ThreadedSandbox) -> None:
    server.call(lambda sandbox: [sandbox.configure(c, latency=0.0) for c in sandbox.connections])


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Start children that Ctrl-C reaches, as from a terminal, even when this run ignores SIGINT.

    A shell starts a background job with SIGINT ignored, and a child inherits that; with a
    handler of our own here, the child starts with the default one instead.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _single_line_error(code: int, err: str, expected: int = 2) -> str:
    assert code == expected, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("makini-async: error: ")
    return lines[0]


class TestSync:
    def test_sync_succeeds_with_a_summary(
        self, threaded_sandbox: ThreadedSandbox, tmp_path: Path
    ) -> None:
        """A clean sync exits 0, prints the summary and writes every record once."""
        connections = _csv(tmp_path / "c.csv", threaded_sandbox)
        db = tmp_path / "s.db"
        code, out, err = _run(
            "sync",
            "--connections",
            str(connections),
            "--entities",
            "work-orders,assets",
            "--store",
            str(db),
            "--base-url",
            threaded_sandbox.url,
            "--plain",
        )
        assert code == 0, err
        assert "eam/work-orders" in out
        assert "failed" in out.splitlines()[1]
        assert f"Store: {db}" in out
        assert "c1 eam/work-orders: 60 records, 1 pages, ok" in err
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT count(*) FROM eam_work_orders").fetchone() == (240,)
            assert conn.execute("SELECT count(*) FROM eam_assets").fetchone() == (80,)

    def test_a_failed_connection_exits_1_with_reasons_and_no_tokens(
        self, threaded_sandbox: ThreadedSandbox, tmp_path: Path
    ) -> None:
        """A connection whose source is down makes the exit code 1 and is listed with its code."""
        tokens = threaded_sandbox.call(lambda sandbox: sandbox.connections)
        connections = tmp_path / "c.json"
        connections.write_text(json.dumps([{"id": c, "token": t} for c, t in tokens.items()]))
        threaded_sandbox.call(
            lambda sandbox: sandbox.inject(503, times=None, connection="c2", retry_after=0)
        )
        code, out, err = _run(
            "sync",
            "--connections",
            str(connections),
            "--entities",
            "assets",
            "--store",
            str(tmp_path / "s.db"),
            "--base-url",
            threaded_sandbox.url,
            "--plain",
        )
        assert code == 1
        assert "1 connection(s) failed" in out
        failure = next(line for line in out.splitlines() if line.startswith("  c2 "))
        assert "SYSTEM_UNAVAILABLE" in failure
        assert "[req_" in failure
        for token in tokens.values():
            assert token not in out
            assert token not in err

    def test_json_lines_store_and_mapping_file(
        self, threaded_sandbox: ThreadedSandbox, tmp_path: Path
    ) -> None:
        """A directory store and a JSON mapping of id to token work too."""
        tokens = threaded_sandbox.call(lambda sandbox: sandbox.connections)
        connections = tmp_path / "c.json"
        connections.write_text(json.dumps({"connections": [{"id": "c1", "token": tokens["c1"]}]}))
        code, _, err = _run(
            "sync",
            "--connections",
            str(connections),
            "--entities",
            "assets",
            "--store",
            str(tmp_path / "lines") + "/",
            "--base-url",
            threaded_sandbox.url,
            "--plain",
        )
        assert code == 0, err
        assert len((tmp_path / "lines" / "eam_assets" / "c1.jsonl").read_text().splitlines()) == 20

    def test_rich_display_and_its_plain_override(
        self, threaded_sandbox: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a terminal rich draws tables; MAKINI_ASYNC_PLAIN=1 forces plain lines."""
        pytest.importorskip("rich")
        connections = _csv(tmp_path / "c.csv", threaded_sandbox)
        argv = ["sync", "--connections", str(connections), "--entities", "assets"]
        argv += ["--base-url", threaded_sandbox.url, "--store"]
        code, out, err = _run(*argv, str(tmp_path / "a.db"), tty=True)
        assert code == 0, err
        assert "┃" in out
        assert "connections done" in err
        monkeypatch.setenv("MAKINI_ASYNC_PLAIN", "1")
        code, out, err = _run(*argv, str(tmp_path / "b.db"), tty=True)
        assert code == 0, err
        assert "┃" not in out
        assert "c1 eam/assets: 20 records" in err

    def test_admin_lists_connections_and_issues_tokens(
        self,
        threaded_sandbox: ThreadedSandbox,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """--admin syncs every active connection with tokens issued by the Admin API."""
        client = threaded_sandbox.call(lambda sandbox: (sandbox.client_id, sandbox.client_secret))
        admin_token = threaded_sandbox.call(lambda sandbox: sandbox.admin_token)
        threaded_sandbox.call(lambda sandbox: sandbox.set_status("c4", "inactive"))
        for name in ("MAKINI_CLIENT_ID", "MAKINI_CLIENT_SECRET", "MAKINI_ADMIN_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        argv = ["sync", "--admin", "--entities", "assets", "--base-url", threaded_sandbox.url]

        def stored(db: Path) -> list[str]:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                rows = conn.execute("SELECT DISTINCT connection FROM eam_assets ORDER BY 1")
                return [r[0] for r in rows]

        # No credentials at all: a one-line usage error before any I/O.
        code, _, err = _run(*argv, "--store", str(tmp_path / "none.db"))
        assert "MAKINI_CLIENT_ID" in _single_line_error(code, err)

        # Half of the credentials: named, before any I/O.
        monkeypatch.setenv("MAKINI_CLIENT_ID", client[0])
        code, _, err = _run(*argv, "--store", str(tmp_path / "half.db"))
        assert "set both MAKINI_CLIENT_ID and MAKINI_CLIENT_SECRET" in _single_line_error(code, err)

        # Client credentials: the admin token is fetched through /link/token.
        monkeypatch.setenv("MAKINI_CLIENT_SECRET", client[1])
        code, out, err = _run(*argv, "--store", str(tmp_path / "s.db"), "--plain")
        assert code == 0, out + err
        assert stored(tmp_path / "s.db") == ["c1", "c2", "c3"]
        assert client[1] not in out + err

        # A bare admin token works too, and is never printed.
        monkeypatch.delenv("MAKINI_CLIENT_ID")
        monkeypatch.delenv("MAKINI_CLIENT_SECRET")
        monkeypatch.setenv("MAKINI_ADMIN_TOKEN", admin_token)
        code, out, err = _run(*argv, "--store", str(tmp_path / "t.db"), "--plain")
        assert code == 0, out + err
        assert stored(tmp_path / "t.db") == ["c1", "c2", "c3"]
        assert admin_token not in out + err

        monkeypatch.setenv("MAKINI_ADMIN_TOKEN", "wrong")
        code, _, err = _run(*argv, "--store", str(tmp_path / "u.db"))
        assert "token was refused" in _single_line_error(code, err, expected=1)
        monkeypatch.delenv("MAKINI_ADMIN_TOKEN")
        monkeypatch.setenv("MAKINI_CLIENT_ID", client[0])
        monkeypatch.setenv("MAKINI_CLIENT_SECRET", "wrong-secret")
        code, _, err = _run(*argv, "--store", str(tmp_path / "v.db"))
        line = _single_line_error(code, err, expected=1)
        assert "client credentials were refused (AUTHENTICATION_FAILED" in line
        assert "wrong-secret" not in line


class TestKilled:
    def test_a_killed_sync_rerun_equals_an_uninterrupted_one(
        self, threaded_sandbox: ThreadedSandbox, tmp_path: Path
    ) -> None:
        """SIGKILL in the middle of a sync loses nothing: the rerun ends with the same store."""
        _slow_with_one_stuck(threaded_sandbox)
        connections = _csv(tmp_path / "c.csv", threaded_sandbox)
        argv = ["sync", "--connections", str(connections), "--entities", "work-orders,assets"]
        argv += ["--per-page", "4", "--concurrency", "2", "--plain"]
        argv += ["--base-url", threaded_sandbox.url, "--store"]
        killed = tmp_path / "killed.db"
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "makini_async.cli", *argv, str(killed)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            written = 0
            while written < 20 and time.monotonic() < deadline:
                time.sleep(0.02)
                with (
                    contextlib.suppress(sqlite3.Error),
                    contextlib.closing(sqlite3.connect(killed)) as db,
                ):
                    written = db.execute("SELECT count(*) FROM eam_work_orders").fetchone()[0]
        finally:
            proc.kill()
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        with contextlib.closing(sqlite3.connect(killed)) as db:
            partial = db.execute("SELECT count(*) FROM eam_work_orders").fetchone()[0]
        assert 0 < partial < 240
        _unstick(threaded_sandbox)
        assert _run(*argv, str(killed))[0] == 0
        whole = tmp_path / "whole.db"
        assert _run(*argv, str(whole))[0] == 0
        query = "SELECT connection, key, updated_at, deleted_at, data FROM {} ORDER BY 1, 2"
        marks = "SELECT connection, entity, updated_at FROM _makini_watermarks ORDER BY 1, 2"
        with (
            contextlib.closing(sqlite3.connect(killed)) as a,
            contextlib.closing(sqlite3.connect(whole)) as b,
        ):
            for table in ("eam_work_orders", "eam_assets"):
                rows = a.execute(query.format(table)).fetchall()
                assert rows == b.execute(query.format(table)).fetchall()
                assert len(rows) == len({(r[0], r[1]) for r in rows})
            assert a.execute(marks).fetchall() == b.execute(marks).fetchall()

    def test_ctrl_c_exits_130_without_a_traceback(
        self, threaded_sandbox: ThreadedSandbox, tmp_path: Path
    ) -> None:
        """SIGINT mid-sync prints what was synced so far, then one line, exits 130; a rerun
        completes the store."""
        _slow_with_one_stuck(threaded_sandbox)
        connections = _csv(tmp_path / "c.csv", threaded_sandbox)
        argv = ["sync", "--connections", str(connections), "--entities", "work-orders"]
        argv += ["--per-page", "4", "--plain", "--base-url", threaded_sandbox.url, "--store"]
        db = tmp_path / "i.db"
        with _interruptible():
            proc = subprocess.Popen(  # noqa: S603 - our own module
                [sys.executable, "-m", "makini_async.cli", *argv, str(db)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        try:
            deadline = time.monotonic() + 30
            written = 0
            while written < 8 and time.monotonic() < deadline:
                time.sleep(0.02)
                with (
                    contextlib.suppress(sqlite3.Error),
                    contextlib.closing(sqlite3.connect(db)) as conn,
                ):
                    written = conn.execute("SELECT count(*) FROM eam_work_orders").fetchone()[0]
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.communicate(timeout=10)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("makini-async: interrupted")
        # The partial summary: c4 never answers, so at most 3 of 4 connections are done.
        lines = out.splitlines()
        assert lines[0].startswith("Interrupted after ")
        assert lines[1].split() == ["entity", "connections", "done", "records", "errors"]
        entity, done, records, errors = lines[2].split()
        assert entity == "eam/work-orders"
        assert done.endswith("/4")
        assert int(done.split("/")[0]) < 4
        assert int(records.replace(",", "")) >= written
        assert errors == "0"
        assert lines[-1] == f"Store: {db}"
        _unstick(threaded_sandbox)
        assert _run(*argv, str(db))[0] == 0
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT count(*) FROM eam_work_orders").fetchone() == (240,)


class TestBadInput:
    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (None, "cannot read the connections file"),
            ("", "lists no connections"),
            ("c1\n", "line 1 is not 'id,token'"),
            ("[1]", "entry 1 is not an object"),
            ('[{"id": "c1"}]', "entry 1 has no token"),
            ("{oops", "is not valid JSON"),
            ("c1,t1\nc1,t2\n", "lists connection 'c1' twice"),
            ("c1,bad token\n", "has a malformed token"),
        ],
    )
    def test_connection_files(self, tmp_path: Path, content: str | None, message: str) -> None:
        """Unreadable or malformed connection files give one line and exit 2."""
        path = tmp_path / "c.csv"
        if content is not None:
            path.write_text(content)
        code, _, err = _run(
            "sync",
            "--connections",
            str(path),
            "--entities",
            "assets",
            "--store",
            str(tmp_path / "s.db"),
            "--base-url",
            "http://127.0.0.1:9",
        )
        assert message in _single_line_error(code, err)
        assert "bad token" not in err

    def test_unknown_entity(self, tmp_path: Path) -> None:
        """An unknown entity is named in a one-line error."""
        code, _, err = _run(
            "sync",
            "--admin",
            "--entities",
            "work-orders,widgets",
            "--store",
            str(tmp_path / "s.db"),
        )
        assert "'widgets'" in _single_line_error(code, err)

    def test_corrupt_and_locked_stores(
        self, threaded_sandbox: ThreadedSandbox, tmp_path: Path
    ) -> None:
        """A corrupt or locked SQLite store gives one line and exit 2."""
        connections = _csv(tmp_path / "c.csv", threaded_sandbox)
        corrupt = tmp_path / "bad.db"
        corrupt.write_bytes(b"garbage" * 1000)
        argv = ["sync", "--connections", str(connections), "--entities", "assets", "--plain"]
        argv += ["--base-url", threaded_sandbox.url, "--store"]
        code, _, err = _run(*argv, str(corrupt))
        assert "not a SQLite database" in _single_line_error(code, err)
        locked = tmp_path / "locked.db"
        holder = sqlite3.connect(locked, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            code, _, err = _run(*argv, str(locked))
        finally:
            holder.close()
        assert "locked" in _single_line_error(code, err)

    def test_missing_and_bad_tokens(
        self, threaded_sandbox: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No MAKINI_TOKEN, or one the server refuses, is a one-line error."""
        monkeypatch.delenv("MAKINI_TOKEN", raising=False)
        code, _, err = _run("list", "work-orders", "--base-url", threaded_sandbox.url)
        assert "set MAKINI_TOKEN" in _single_line_error(code, err)
        monkeypatch.setenv("MAKINI_TOKEN", "not-a-real-token")
        code, _, err = _run("list", "work-orders", "--base-url", threaded_sandbox.url)
        line = _single_line_error(code, err, expected=1)
        assert "token was refused" in line
        assert "REAUTHORIZATION_REQUIRED" in line
        assert "not-a-real-token" not in err

    def test_usage_errors_exit_2(self) -> None:
        """argparse's own errors keep exit status 2."""
        assert _run("sync", "--entities", "assets")[0] == 2
        assert _run("nope")[0] == 2
        assert _run("demo", "--connections", "2")[0] == 2


class TestReads:
    def test_get_and_list_print_json(
        self, threaded_sandbox: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """list prints a JSON array (every page with --all) and get prints one record."""
        token = threaded_sandbox.call(lambda sandbox: sandbox.connections["c1"])
        monkeypatch.setenv("MAKINI_TOKEN", token)
        url = threaded_sandbox.url
        code, out, err = _run("list", "assets", "--per-page", "7", "--all", "--base-url", url)
        assert code == 0, err
        records = json.loads(out)
        assert len(records) == 20
        code, out, _ = _run("list", "assets", "--per-page", "7", "--base-url", url)
        assert len(json.loads(out)) == 7
        key = records[3]["key"]
        code, out, _ = _run("list", "assets", "--filter", f"key={key}", "--base-url", url)
        assert [r["key"] for r in json.loads(out)] == [key]
        code, out, _ = _run("get", "assets", key, "--base-url", url)
        assert code == 0
        assert json.loads(out)["key"] == key
        code, _, err = _run("get", "assets", "missing", "--base-url", url)
        assert "NOT_FOUND" in _single_line_error(code, err, expected=1)
        code, _, err = _run("list", "assets", "--filter", "nonsense", "--base-url", url)
        assert "FIELD=VALUE" in _single_line_error(code, err)

    def test_list_reads_pages_with_the_shared_parser(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """--all follows an empty middle page; odd envelopes and stuck pages are one-line errors."""
        pages: dict[str, object] = {
            "1": {"data": [{"key": "a"}], "meta": {"current_page": "1", "last_page": "3"}},
            "2": {"data": [], "meta": {"current_page": 2, "last_page": 3}},
            "3": {"data": [{"key": "b"}], "meta": {"current_page": 3, "last_page": 3}},
            "4": {"data": {"key": "c"}},
            "5": {"data": [{"key": "d"}], "meta": {"current_page": 1, "last_page": 9}},
        }

        async def handle(request: web.Request) -> web.Response:
            return web.json_response(pages[request.query["page"]])

        app = web.Application()
        app.router.add_get("/api/eam/work-orders", handle)
        monkeypatch.setenv("MAKINI_TOKEN", "token-1")
        with threaded_app(app) as url:
            code, out, err = _run("list", "work-orders", "--all", "--base-url", url)
            assert code == 0, err
            assert [r["key"] for r in json.loads(out)] == ["a", "b"]
            code, _, err = _run("list", "work-orders", "--page", "4", "--base-url", url)
            assert "'data' array (GET /api/eam/work-orders)" in _single_line_error(code, err, 1)
            code, _, err = _run("list", "work-orders", "--page", "5", "--base-url", url)
            assert "does not advance" in _single_line_error(code, err, 1)

    def test_verbose_logs_and_leaves_logging_as_it_was(
        self, threaded_sandbox: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """-v shows the library's log lines; afterwards the logger is as it was."""
        logger = logging.getLogger("makini_async")
        before = (logger.level, list(logger.handlers))
        token = threaded_sandbox.call(lambda sandbox: sandbox.connections["c1"])
        monkeypatch.setenv("MAKINI_TOKEN", token)
        code, _, err = _run("-v", "get", "assets", "missing", "--base-url", threaded_sandbox.url)
        assert code == 1
        assert "INFO GET /api/eam/assets/missing -> 404 NOT_FOUND" in err
        assert (logger.level, list(logger.handlers)) == before

    def test_sandbox_subcommand_delegates(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`makini-async sandbox --help` is the sandbox's own help."""
        with pytest.raises(SystemExit) as exc:
            main(["sandbox", "--help"])
        assert exc.value.code == 0
        assert "--connections" in capsys.readouterr().out


class TestDemo:
    def test_demo_in_process(self, tmp_path: Path) -> None:
        """The demo runs to the end with a small fleet and reports the database."""
        db = tmp_path / "demo.db"
        code, out, err = _run("demo", "--connections", "4", "--db", str(db), "--plain")
        assert code == 0, out + err
        assert "Reconnect hook fired 1 time(s)" in err
        assert "exactly once" in err
        assert f"Database: {db}" in out
        # Running it again over its own database starts afresh.
        assert _run("demo", "--connections", "3", "--db", str(db), "--plain")[0] == 0
        other = tmp_path / "notes.db"
        other.write_text("not ours")
        code, _, err = _run("demo", "--db", str(other))
        assert "not a makini-async store" in _single_line_error(code, err)

    def test_demo_as_a_real_process(self, tmp_path: Path) -> None:
        """`python -m makini_async.cli demo` runs to the end in its own process."""
        db = tmp_path / "demo.db"
        proc = subprocess.run(  # noqa: S603 - our own module
            [sys.executable, "-m", "makini_async.cli", "demo", "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=55,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert "is in the store exactly once" in proc.stderr
        assert f"Database: {db}" in proc.stdout
        with contextlib.closing(sqlite3.connect(db)) as conn:
            count = conn.execute("SELECT count(DISTINCT connection) FROM eam_work_orders")
            assert count.fetchone() == (25,)
