"""Fixtures for the external services some tests need: PostgreSQL and Redis on 127.0.0.1.

An unreachable service skips the tests that need it, unless AILB_REQUIRE_SERVICES=1 (CI), where
it fails them: a missing service must not turn a whole suite silently green.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
TIMEOUT = 2.0


def unavailable(message: str) -> NoReturn:
    """Skip the test for `message`, or fail it where services are required (CI)."""
    if os.environ.get("AILB_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def unreachable(service: str, url: str, default_port: int, exc: Exception) -> NoReturn:
    parts = urlsplit(url)
    reason = str(exc) or type(exc).__name__
    where = f"{parts.hostname}:{parts.port or default_port}"
    unavailable(f"{service} not reachable at {where}: {reason}")


def require_cluster(options: Any) -> None:
    """What `ailb cluster` needs (nginx, redis-server, PostgreSQL, chroma) is installed."""
    from ailb.cluster import missing

    problems = missing(options)
    if problems:
        unavailable("the local cluster cannot run here: " + "; ".join(problems))


async def _pg_execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=TIMEOUT)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL database that accepts connections (AILB_TEST_DATABASE_URL)."""
    dsn = os.environ.get("AILB_TEST_DATABASE_URL", DEFAULT_POSTGRES)
    try:
        asyncio.run(_pg_execute(dsn, "SELECT 1"))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        unreachable("PostgreSQL", dsn, 5432, exc)
    yield dsn


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh schema name (not created), dropped with everything in it afterwards."""
    schema = f"t_{secrets.token_hex(6)}"
    yield schema
    asyncio.run(_pg_execute(postgres_dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a Redis server that answers PING (AILB_TEST_REDIS_URL)."""
    url = os.environ.get("AILB_TEST_REDIS_URL", DEFAULT_REDIS)
    client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
    try:
        client.ping()
    except (OSError, redis.RedisError) as exc:
        unreachable("Redis", url, 6379, exc)
    finally:
        client.close()
    yield url
