"""A child process of the fleet tests: ``python -m tests.distributed.fleet rate|refresh ...``.

It prepares its registry, prints ``ready``, waits for a line on stdin (the test's "go"), does
its part and prints one JSON line with what it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

import makini_async as m
from makini_async.distributed import RedisCredentials, RedisRateBudget

PATH = "/api/integrations/current"
REFRESH_KEY = "fleet:refresh-token"


def _ready() -> None:
    print("ready", flush=True)  # noqa: T201 - the protocol with the test
    sys.stdin.readline()


async def _rate(args: argparse.Namespace) -> dict[str, int]:
    budget = None if args.redis is None else RedisRateBudget(args.redis, window=args.window)
    seen = {"ok": 0, "limited": 0, "other": 0}
    async with m.ConnectionRegistry(
        args.url, budget=budget, retry=m.RetryPolicy.no_retries()
    ) as registry:
        conn = registry.add("c1", args.token)
        _ready()
        end = time.monotonic() + args.duration

        async def worker() -> None:
            while time.monotonic() < end:
                try:
                    await conn.request("GET", PATH)
                    seen["ok"] += 1
                except m.RateLimitError:
                    seen["limited"] += 1
                except m.MakiniError:
                    seen["other"] += 1

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return seen


async def _refresh(args: argparse.Namespace) -> dict[str, object]:
    runs = 0
    store = aioredis.Redis.from_url(args.redis)
    markers = None if args.markers is None else Path(args.markers)

    async def hook(event: m.ReconnectEvent) -> str | None:
        nonlocal runs
        del event
        runs += 1
        if markers is not None:
            (markers / f"holder-{os.getpid()}").touch()
            while not (markers / "proceed").exists():  # noqa: ASYNC110 - another process writes it
                await asyncio.sleep(0.02)
        refresh_token = (await store.get(REFRESH_KEY)).decode()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": args.client_id,
            "client_secret": args.client_secret,
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{args.url}/link/token", data=form) as response,
        ):
            if response.status != 200:
                return None
            pair = await response.json()
        await store.set(REFRESH_KEY, pair["refresh_token"])
        return str(pair["access_token"])

    credentials = RedisCredentials(args.redis, lock_timeout=args.lock_timeout, wait_poll=0.02)
    try:
        async with m.ConnectionRegistry(
            args.url, credentials=credentials, on_reconnect=hook
        ) as registry:
            conn = registry.add("c1", args.token)
            await conn.request("GET", PATH)
            _ready()
            response = await conn.request("GET", PATH)
            return {"status": response.status, "runs": runs, "generation": conn.generation}
    finally:
        await store.aclose()


def main() -> None:
    """Parse the arguments, run the part, print the JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["rate", "refresh"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--redis")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--client-id", default="sandbox-client")
    parser.add_argument("--client-secret", default="sandbox-secret")
    parser.add_argument("--lock-timeout", type=float, default=2.0)
    parser.add_argument("--markers")
    args = parser.parse_args()
    outcome = asyncio.run(_rate(args) if args.part == "rate" else _refresh(args))
    print(json.dumps(outcome), flush=True)  # noqa: T201 - the protocol with the test


if __name__ == "__main__":
    main()
