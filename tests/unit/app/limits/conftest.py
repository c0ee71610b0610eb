"""Shared fixtures for the limiter tests: one real embedded Redis per module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from app.keyspace import Keyspace
from app.limits.limiter import Limiter


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A fresh client on an empty server, with the limiter scripts loaded."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    await client.script_flush()
    yield client
    await client.aclose()


@pytest.fixture
def keyspace() -> Keyspace:
    return Keyspace("gandalf")


@pytest.fixture
async def limiter(keyspace: Keyspace, redis_client: aioredis.Redis) -> Limiter:
    limiter = Limiter(keyspace)
    await limiter.load(redis_client)
    return limiter
