"""Several processes on one Redis: a shared rate budget, and one token refresh for the fleet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from makini_async.sandbox import Sandbox
from tests.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PATH = "/api/integrations/current"
REFRESH_KEY = "fleet:refresh-token"
# Bounds on real time, loose on purpose (a busy 2-core machine): they catch a hang, not slowness.
START_WITHIN = 60.0
FINISH_WITHIN = 90.0


class Child:
    """One ``python -m tests.distributed.fleet`` process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), START_WITHIN)
        return raw.decode().strip()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")


@contextlib.asynccontextmanager
async def fleet(count: int, arguments: Sequence[str]) -> AsyncIterator[list[Child]]:
    """Start ``count`` children and wait until each says ready; kill what is left at the end."""
    children: list[Child] = []
    try:
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.distributed.fleet",
                *arguments,
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            children.append(Child(process))
        for child in children:
            assert await child.line() == "ready"
        yield children
    finally:
        for child in children:
            if child.process.returncode is None:
                child.process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.process.wait(), 10)


async def _results(children: Sequence[Child]) -> list[dict[str, int]]:
    lines = await asyncio.wait_for(
        asyncio.gather(*(child.line() for child in children)), FINISH_WITHIN
    )
    return [json.loads(line) for line in lines]


async def _hammer(sandbox: Sandbox, redis: RedisServer | None) -> tuple[int, float]:
    """4 processes hammer c1 (30 per 3 s, i.e. 600/min) for 12 s: (429s, requests/s served)."""
    sandbox.configure("c1", rate_limit=30, rate_window=3.0)
    duration = 12.0
    arguments = ["rate", "--url", sandbox.url, "--token", sandbox.connections["c1"]]
    arguments += ["--window", "3", "--duration", str(duration), "--concurrency", "4"]
    if redis is not None:
        arguments += ["--redis", redis.url]
    async with fleet(4, arguments) as children:
        for child in children:
            child.go()
        await _results(children)
    records = sandbox.requests("c1", path=PATH)
    limited = [round(r.time - records[0].time, 2) for r in records if r.status == 429]
    print(f"429s at {limited} s")  # noqa: T201 - the figure to report
    # Served within the run: calls started before its end may be paced into the next window.
    end = records[0].time + duration
    served = [r for r in records if r.status == 200 and r.time < end]
    return len(limited), len(served) / duration


@pytest.mark.slow
async def test_without_a_shared_budget_many_429s(sandbox: Sandbox) -> None:
    """Four processes with local budgets run into the server's limit again and again."""
    limited, rate = await _hammer(sandbox, None)
    print(f"local budgets: {limited} 429s, {rate:.2f} requests/s (budget 10/s)")  # noqa: T201
    assert limited > 20


@pytest.mark.slow
async def test_a_shared_budget_keeps_four_processes_within_the_limit(
    sandbox: Sandbox, redis: RedisServer
) -> None:
    """Four processes on one RedisRateBudget: a handful of 429s at most, the budget used."""
    limited, rate = await _hammer(sandbox, redis)
    print(f"shared budget: {limited} 429s, {rate:.2f} requests/s (budget 10/s)")  # noqa: T201
    assert limited <= 3
    assert 9.0 <= rate <= 10.5
    client = aioredis.Redis.from_url(redis.url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    scripts = int(stats["cmdstat_evalsha"]["calls"])
    sent = len(sandbox.requests("c1", path=PATH))
    print(f"shared budget: {scripts} EVALSHA for {sent} requests")  # noqa: T201


def _grants(sandbox: Sandbox) -> list[str]:
    """The refresh tokens spent at POST /link/token, in order."""
    forms = [dict(r.form()) for r in sandbox.requests(path="/link/token", method="POST")]
    return [f["refresh_token"] for f in forms if f.get("grant_type") == "refresh_token"]


def _arguments(sandbox: Sandbox, redis: RedisServer) -> list[str]:
    conn = sandbox.connection("c1")
    arguments = ["refresh", "--url", sandbox.url, "--token", conn.access_token]
    arguments += ["--redis", redis.url, "--lock-timeout", "2"]
    arguments += ["--client-id", sandbox.client_id, "--client-secret", sandbox.client_secret]
    return arguments


async def _keep_refresh_token(sandbox: Sandbox, redis: RedisServer) -> None:
    store = aioredis.Redis.from_url(redis.url)
    try:
        await store.set(REFRESH_KEY, sandbox.connection("c1").refresh_token)
    finally:
        await store.aclose()


@pytest.mark.slow
async def test_eight_processes_refresh_an_expired_token_once(
    sandbox: Sandbox, redis: RedisServer
) -> None:
    """Eight processes see the token expire: one refresh grant, every call succeeds."""
    await _keep_refresh_token(sandbox, redis)
    async with fleet(8, _arguments(sandbox, redis)) as children:
        sandbox.expire_token("c1")
        for child in children:
            child.go()
        results = await _results(children)
    assert [r["status"] for r in results] == [200] * 8
    assert sum(r["runs"] for r in results) == 1
    grants = _grants(sandbox)
    print(f"8 processes: {len(grants)} refresh grant(s)")  # noqa: T201
    assert len(grants) == 1
    assert len(set(grants)) == len(grants)


@pytest.mark.slow
async def test_a_killed_holder_is_taken_over_with_one_grant(
    sandbox: Sandbox, redis: RedisServer, tmp_path: Path
) -> None:
    """The hook's holder is SIGKILLed before it spends the grant: another takes over, once."""
    await _keep_refresh_token(sandbox, redis)
    arguments = [*_arguments(sandbox, redis), "--markers", str(tmp_path)]
    async with fleet(8, arguments) as children:
        sandbox.expire_token("c1")
        for child in children:
            child.go()
        holders: list[Path] = []
        for _ in range(int(START_WITHIN / 0.05)):
            holders = list(tmp_path.glob("holder-*"))  # noqa: ASYNC240 - a tiny directory
            if holders:
                break
            await asyncio.sleep(0.05)
        assert len(holders) == 1
        pid = int(holders[0].name.removeprefix("holder-"))
        (victim,) = [c for c in children if c.process.pid == pid]
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(victim.process.wait(), 10)
        (tmp_path / "proceed").touch()
        survivors = [c for c in children if c is not victim]
        results = await _results(survivors)
    assert [r["status"] for r in results] == [200] * 7
    assert sum(r["runs"] for r in results) == 1  # the taker-over's run
    assert len(list(tmp_path.glob("holder-*"))) == 2  # noqa: ASYNC240 - a tiny directory
    grants = _grants(sandbox)
    print(f"8 processes, holder killed: {len(grants)} refresh grant(s)")  # noqa: T201
    assert len(grants) == 1
