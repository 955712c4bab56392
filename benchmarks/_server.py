"""A local HTTP server for the benchmarks, run in its own process.

The server is an ``aiohttp.web`` app that answers from bytes encoded once at start-up:

- ``GET /api/eam/work-orders``: a 50-record work-order page in Makini's list shape
  (``{"data": [...], "links": {...}, "meta": {...}}``, about 28 KB);
- ``GET /tiny``: ``{"data": {"ok": true}}``.

Both answer ``Content-Type: application/json`` over keep-alive connections. It runs in a
subprocess so that it never competes with the client for the interpreter lock; with two or more
CPUs the server is pinned to CPU 1 and the client (see `pin_client`) to CPU 0.

Use `running_server` from a benchmark::

    with running_server() as server:
        ...  # server.url is "http://127.0.0.1:<port>"

Run ``python benchmarks/_server.py`` to serve by hand: it prints its port and stops on Ctrl-C or
when its standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

__all__ = [
    "PAGE_PATH",
    "PAGE_RECORDS",
    "RATED_PATH",
    "TINY_PATH",
    "ServerInfo",
    "cpu_busy_seconds",
    "pin_client",
    "running_server",
    "server_cpu_seconds",
    "tiny_body",
    "work_order_page",
]

PAGE_PATH: Final = "/api/eam/work-orders"
TINY_PATH: Final = "/tiny"
#: The tiny body with ``X-RateLimit-Limit``/``Remaining`` headers, as Makini sends on every answer.
RATED_PATH: Final = "/rated"
RATED_LIMIT: Final = 1_000_000_000
PAGE_RECORDS: Final = 50

CLIENT_CPU: Final = 0
SERVER_CPU: Final = 1

_START_TIMEOUT: Final = 20.0
_STOP_TIMEOUT: Final = 5.0

_STATUSES: Final = ("open", "in_progress", "on_hold", "completed", "cancelled")
_PRIORITIES: Final = ("low", "medium", "high", "urgent")
_TYPES: Final = ("corrective", "preventive", "inspection", "emergency", "project")
_WORDS: Final = (
    "pump",
    "bearing",
    "replace",
    "inspect",
    "seal",
    "leak",
    "motor",
    "vibration",
    "conveyor",
    "belt",
    "filter",
    "lubricate",
    "valve",
    "pressure",
    "calibrate",
    "sensor",
    "boiler",
    "hvac",
    "compressor",
    "gearbox",
)


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _work_order(rng: random.Random, number: int, epoch: datetime) -> dict[str, object]:
    created = epoch + timedelta(minutes=rng.randrange(0, 500_000))
    updated = created + timedelta(minutes=rng.randrange(0, 20_000))
    status = rng.choice(_STATUSES)
    return {
        "key": f"wo_{number:08x}{rng.getrandbits(32):08x}",
        "number": f"WO-{10_000 + number}",
        "title": _sentence(rng, 3),
        "description": _sentence(rng, 6),
        "statusKey": status,
        "priority": rng.choice(_PRIORITIES),
        "type": rng.choice(_TYPES),
        "assetKey": f"as_{rng.getrandbits(48):012x}",
        "locationKey": f"lo_{rng.getrandbits(32):08x}",
        "siteKey": f"si_{rng.randrange(1, 9):04d}",
        "assignedToUserKey": f"us_{rng.getrandbits(32):08x}",
        "teamKey": f"te_{rng.randrange(1, 30):04d}",
        "materialKeys": [f"ma_{rng.getrandbits(32):08x}" for _ in range(rng.randrange(0, 4))],
        "estimatedHours": round(rng.uniform(0.5, 40.0), 2),
        "actualHours": round(rng.uniform(0.0, 45.0), 2) if status == "completed" else None,
        "laborCost": round(rng.uniform(50.0, 5_000.0), 2),
        "scheduledStartAt": _stamp(created + timedelta(days=1)),
        "completedAt": _stamp(updated) if status == "completed" else None,
        "createdAt": _stamp(created),
        "updatedAt": _stamp(updated),
        "deletedAt": None,
    }


def work_order_page(records: int = PAGE_RECORDS, *, seed: int = 2026) -> bytes:
    """A deterministic page of work orders in Makini's list shape, encoded as compact JSON."""
    rng = random.Random(seed)
    epoch = datetime(2024, 1, 1, tzinfo=UTC)
    base = "https://api.makini.io/api/eam/work-orders"
    total = 1_234
    last_page = (total + records - 1) // records
    page = {
        "data": [_work_order(rng, n, epoch) for n in range(1, records + 1)],
        "links": {
            "first": f"{base}?page=1",
            "last": f"{base}?page={last_page}",
            "prev": None,
            "next": f"{base}?page=2",
        },
        "meta": {
            "current_page": 1,
            "from": 1,
            "last_page": last_page,
            "path": base,
            "per_page": records,
            "to": records,
            "total": total,
        },
    }
    return json.dumps(page, separators=(",", ":")).encode()


def tiny_body() -> bytes:
    """The tiny endpoint's body."""
    return b'{"data":{"ok":true}}'


# -- CPU placement --------------------------------------------------------------------------


def _can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


def _pin(cpu: int) -> bool:
    if not _can_pin():
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True


def pin_client() -> bool:
    """Pin the calling process to the client CPU when 2+ CPUs exist; True if pinned."""
    return _pin(CLIENT_CPU)


def server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` (None off Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # The command name may hold spaces: the fields start after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_busy_seconds() -> dict[int, float] | None:
    """Busy (not idle, not iowait) seconds so far of each CPU, from /proc/stat (None off Linux).

    Minus the client's and the server's own CPU time, this tells how much of each CPU other
    processes took during a measurement.
    """
    try:
        lines = Path("/proc/stat").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy: dict[int, float] = {}
    for line in lines:
        name, *values = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
        busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / tick
    return busy


# -- the server process ---------------------------------------------------------------------


async def _serve() -> None:
    from aiohttp import web

    page = work_order_page()
    tiny = tiny_body()

    async def work_orders(_request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="application/json")

    async def tiny_handler(_request: web.Request) -> web.Response:
        return web.Response(body=tiny, content_type="application/json")

    served = [0]

    async def rated_handler(_request: web.Request) -> web.Response:
        served[0] += 1
        headers = {
            "X-RateLimit-Limit": str(RATED_LIMIT),
            "X-RateLimit-Remaining": str(RATED_LIMIT - served[0]),
        }
        return web.Response(body=tiny, content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_get(PAGE_PATH, work_orders)
    app.router.add_get(TINY_PATH, tiny_handler)
    app.router.add_get(RATED_PATH, rated_handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=300)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        # The parent closed our stdin (it finished, or died): stop serving.
        if not os.read(stdin, 4096):
            loop.remove_reader(stdin)
            stop.set()

    loop.add_reader(stdin, on_stdin)
    port = sock.getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _server_main() -> None:
    parser = argparse.ArgumentParser(description="Serve the benchmark endpoints on 127.0.0.1.")
    parser.add_argument("--cpu", type=int, default=SERVER_CPU, help="CPU to pin to (-1: none)")
    args = parser.parse_args()
    if args.cpu >= 0:
        _pin(args.cpu)
    asyncio.run(_serve())


# -- the helper -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerInfo:
    """A running benchmark server."""

    url: str
    pid: int
    pinned: bool

    @property
    def page_url(self) -> str:
        """The URL of the 50-record page."""
        return self.url + PAGE_PATH

    @property
    def tiny_url(self) -> str:
        """The URL of the tiny body."""
        return self.url + TINY_PATH


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # end of input: the server stops by itself
    try:
        proc.wait(_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def running_server(*, pin: bool = True) -> Iterator[ServerInfo]:
    """Start the server subprocess, yield where it listens, and always stop it.

    Args:
        pin: Pin the server to CPU 1 when 2+ CPUs exist.

    Yields:
        The server's URL and process id.

    Raises:
        RuntimeError: The server did not report its port in time.
    """
    pinned = pin and _can_pin()
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(Path(__file__).resolve()), "--cpu", str(SERVER_CPU if pinned else -1)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], _START_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            raise RuntimeError(f"the benchmark server did not start (said {line!r})")
        yield ServerInfo(url=f"http://127.0.0.1:{int(line)}", pid=proc.pid, pinned=pinned)
    finally:
        _stop(proc)


if __name__ == "__main__":
    _server_main()
