"""app/server/control.py against a real Redis: the per-process key cache and its outage rules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app.domain import Identity, ServiceUnavailable
from app.keyspace import Keyspace
from app.server import control
from app.server.control import KeyCache, encode_identity
from workers.embedded_redis import EmbeddedRedis

KNOWN = "a" * 64
UNKNOWN = "b" * 64
IDENTITY = Identity(key_id="k1", key_prefix="gnd_abcdefgh", role="member")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis(tmp_path / "redis")
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
async def cache(server: EmbeddedRedis) -> AsyncIterator[KeyCache]:
    client = aioredis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    await client.hset(Keyspace().key_index, KNOWN, encode_identity(IDENTITY))
    yield KeyCache(client, Keyspace())
    await client.aclose()


async def test_a_known_key_is_read_once_then_served_from_the_process(
    cache: KeyCache, server: EmbeddedRedis
) -> None:
    assert await cache.lookup(KNOWN) == IDENTITY
    async with aioredis.Redis.from_url(server.url) as other:
        await other.delete(Keyspace().key_index)
    assert await cache.lookup(KNOWN) == IDENTITY  # no second trip: the index is gone
    cache.drop(KNOWN)
    assert await cache.lookup(KNOWN) is None  # dropped: read again, and now unknown


async def test_unknown_keys_are_remembered_as_unknown(
    cache: KeyCache, server: EmbeddedRedis
) -> None:
    assert await cache.lookup(UNKNOWN) is None
    async with aioredis.Redis.from_url(server.url) as other:
        await other.hset(Keyspace().key_index, UNKNOWN, encode_identity(IDENTITY))
    assert await cache.lookup(UNKNOWN) is None  # within UNKNOWN_KEY_TTL
    cache.clear()
    assert await cache.lookup(UNKNOWN) == IDENTITY


async def test_while_redis_is_down_held_identities_serve_even_expired(
    cache: KeyCache, server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "KEY_TTL", -1.0)  # every entry is expired at once
    assert await cache.lookup(KNOWN) == IDENTITY
    server.stop()
    assert await cache.lookup(KNOWN) == IDENTITY
    with pytest.raises(ServiceUnavailable, match="key store is unreachable"):
        await cache.lookup(UNKNOWN)


async def test_while_redis_is_down_a_stale_identity_is_not_asked_for_at_every_request(
    cache: KeyCache, server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "KEY_TTL", -1.0)
    assert await cache.lookup(KNOWN) == IDENTITY
    server.stop()
    asked = 0
    real_hget = cache._client.hget

    async def counting_hget(*args: object) -> object:
        nonlocal asked
        asked += 1
        return await real_hget(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cache._client, "hget", counting_hget)
    for _ in range(3):
        assert await cache.lookup(KNOWN) == IDENTITY
    assert asked == 1  # each would otherwise wait for Redis to fail
