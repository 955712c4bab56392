"""Real redis-server and PostgreSQL servers for the tests, started from the binaries on PATH.

Each server runs on a free loopback port in a temporary directory of its own and is stopped when
its fixture ends. Without the binaries the tests that need them are skipped with one line saying
what to install, unless ``MAKINI_REQUIRE_SERVICES=1`` (as in CI), when they fail instead.
PostgreSQL refuses to run as root: as root, it runs as the unprivileged user ``nobody``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "RedisServer", "free_port", "need_binary"]

_START_WITHIN = 30.0  # seconds a server may take to accept connections (a loose sanity bound)


def need_binary(name: str, install: str) -> str:
    """The path of ``name`` on PATH, or skip (fail under ``MAKINI_REQUIRE_SERVICES=1``)."""
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"{name} is not on PATH: install {install} to run these tests"
    if os.environ.get("MAKINI_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (MAKINI_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    give_up = time.monotonic() + _START_WITHIN
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {_START_WITHIN:.0f} s")


def _stop(
    process: subprocess.Popen[bytes] | None, *, kill: bool = False, how: int = signal.SIGTERM
) -> None:
    if process is None or process.poll() is not None:
        return
    if kill:
        process.kill()
    else:
        process.send_signal(how)
    try:
        process.wait(timeout=_START_WITHIN)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisServer:
    """A ``redis-server`` on a free loopback port, without persistence.

    ``stop()`` and ``start()`` restart it on the same port (its data is lost, as after a crash
    of a Redis without persistence); ``kill()`` stops it with SIGKILL.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--protected-mode",
            "yes",
        ]
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, self.process, "redis-server")

    def stop(self) -> None:
        """Stop the server (SIGTERM), waiting for it to exit."""
        _stop(self.process)

    def kill(self) -> None:
        """Stop the server with SIGKILL."""
        _stop(self.process, kill=True)


def _as_nobody() -> str | None:
    """The user PostgreSQL runs as: ``nobody`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam("nobody")
    return "nobody"


class PostgresServer:
    """A PostgreSQL cluster made by ``initdb`` in a temporary directory, on a free loopback port.

    Trust authentication for the ``postgres`` user on 127.0.0.1 only; no Unix socket. ``stop()``
    (a fast shutdown: clients are disconnected) and ``start()`` restart it with its data kept;
    ``kill()`` stops it with SIGKILL (it then recovers from its write-ahead log on the next
    start). `start` returns once the server accepts queries, not merely connections.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.user = _as_nobody()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DATABASE``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self, initdb: str) -> None:
        """Make the cluster (``initdb``)."""
        if self.user is not None:
            shutil.chown(self.directory, self.user)
        subprocess.run(  # noqa: S603 - our own command line
            [initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self.user,
        )

    def start(self, postgres: str | None = None) -> None:
        """Start the server and wait until it accepts connections."""
        binary = postgres or need_binary("postgres", "PostgreSQL (apt-get install postgresql)")
        command = [
            binary,
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]
        ready_before = self._ready_count()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                command, stdout=log, stderr=subprocess.STDOUT, user=self.user
            )
        _wait_for_port(self.port, self.process, "postgres")
        # The port opens before recovery ends ("the database system is starting up").
        give_up = time.monotonic() + _START_WITHIN
        while self._ready_count() <= ready_before:
            if self.process.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"postgres did not get ready; see {self.log}")
            time.sleep(0.05)

    def _ready_count(self) -> int:
        if not self.log.exists():
            return 0
        return self.log.read_bytes().count(b"ready to accept connections")

    def stop(self) -> None:
        """Stop the server (SIGINT: a fast shutdown), waiting for it to exit."""
        _stop(self.process, how=signal.SIGINT)

    def kill(self) -> None:
        """Stop the server with SIGKILL."""
        _stop(self.process, kill=True)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started `RedisServer`, stopped on exit (skips when ``redis-server`` is missing)."""
    binary = need_binary("redis-server", "Redis (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="makini-redis-") as directory:
        server = RedisServer(binary, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.kill()


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A started `PostgresServer`, stopped on exit (skips when the binaries are missing)."""
    install = "PostgreSQL (apt-get install postgresql; its bin directory on PATH)"
    initdb = need_binary("initdb", install)
    postgres = need_binary("postgres", install)
    # In /tmp itself: a user without a home there must be able to reach the data directory.
    directory = Path(tempfile.mkdtemp(prefix="makini-pg-", dir="/tmp"))
    try:
        server = PostgresServer(directory)
        server.init(initdb)
        server.start(postgres)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
