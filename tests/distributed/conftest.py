"""Fixtures for the distributed engines: real redis-server and PostgreSQL, started here.

``redis`` is a fresh server per test (it starts in milliseconds); ``postgres`` is one cluster for
the whole session, and ``postgres_dsn`` a fresh database in it per test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.services import PostgresServer, RedisServer, postgres_server, redis_server

_databases = itertools.count(1)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL cluster."""
    with postgres_server() as server:
        yield server


@pytest.fixture
async def postgres_dsn(postgres: PostgresServer) -> str:
    """The DSN of an empty database of this test's own."""
    import asyncpg

    name = f"test_{next(_databases)}"
    admin = await asyncpg.connect(postgres.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return postgres.dsn(name)
