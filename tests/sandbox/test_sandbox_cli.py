"""`python -m makini_async.sandbox` starts, prints its URL and tokens, and stops on signals."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "makini_async.sandbox",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(20):
        while not lines or not lines[-1].startswith("connection c2"):
            line = await proc.stdout.readline()
            assert line, (await proc.stderr.read()).decode() if proc.stderr else "no output"
            lines.append(line.decode().strip())
    return proc, lines


class TestCli:
    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    async def test_serves_and_stops_cleanly(self, signum: signal.Signals) -> None:
        """The CLI prints URL and tokens, serves data, and exits 0 on SIGINT or SIGTERM."""
        proc, lines = await _start("--port", "0", "--connections", "2", "--seed", "1")
        try:
            url = lines[0].rsplit(" ", 1)[-1]
            assert url.startswith("http://127.0.0.1:")
            token = lines[-1].rsplit(" ", 1)[-1]
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{url}/api/integrations/current",
                    headers={"Authorization": f"Bearer {token}"},
                ) as response,
            ):
                body = await response.json()
            assert body["data"]["id"] == "c2"
        finally:
            proc.send_signal(signum)
            async with asyncio.timeout(20):
                out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert "stopped" in out.decode()
        assert "Traceback" not in err.decode()
