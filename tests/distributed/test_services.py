"""The service fixtures themselves: each server answers, and survives a restart."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from tests.services import PostgresServer, RedisServer


async def test_redis_answers_and_restarts(redis: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis.url)
    try:
        await client.set("k", "v")
        assert await client.get("k") == b"v"
        redis.stop()
        redis.start()
    finally:
        await client.aclose()
    client = aioredis.Redis.from_url(redis.url)
    try:
        assert await client.get("k") is None  # no persistence: a restart loses the data
    finally:
        await client.aclose()


async def test_postgres_answers_and_keeps_data_across_a_restart(
    postgres: PostgresServer, postgres_dsn: str
) -> None:
    db = await asyncpg.connect(postgres_dsn)
    try:
        await db.execute("CREATE TABLE t (v int)")
        await db.execute("INSERT INTO t VALUES (7)")
    finally:
        await db.close()
    postgres.stop()
    postgres.start()
    db = await asyncpg.connect(postgres_dsn)
    try:
        assert await db.fetchval("SELECT v FROM t") == 7
    finally:
        await db.close()
