"""workers/publisher.py against a real Redis and a real SQLite file, read through a subscriber."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from app.config.load import load_config
from app.domain import ConfigSnapshot, Identity
from app.keyspace import Keyspace
from app.server.control import ControlEvent
from storage import keys, routes
from storage.db import Database
from storage.records import RouteRecord, RouteTarget
from storage.seed import seed_from_config
from workers.embedded_redis import EmbeddedRedis
from workers.publisher import HEARTBEAT_TTL, Publisher
from workers.snapshots import identity_of, load_identities, load_snapshot

KS = Keyspace("test")
SENTINEL = b"end-of-test-events"
WAIT = 10.0
"""Upper bound for anything awaited here; reaching it means the behaviour is missing."""

_decode_event = msgspec.json.Decoder(ControlEvent).decode
_decode_identity = msgspec.json.Decoder(Identity).decode
_decode_snapshot = msgspec.json.Decoder(ConfigSnapshot).decode


class Events:
    """A real subscriber on the events channel."""

    def __init__(self, client: aioredis.Redis, pubsub: aioredis.client.PubSub) -> None:
        self._client = client
        self._pubsub = pubsub
        self.raw: list[bytes] = []

    async def drain(self) -> list[ControlEvent]:
        """Every event announced so far: publishes a sentinel and reads up to it."""
        await self._client.publish(KS.events, SENTINEL)
        found: list[ControlEvent] = []
        async with asyncio.timeout(WAIT):
            while True:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=WAIT
                )
                if message is None:
                    continue
                data = message["data"]
                if data == SENTINEL:
                    return found
                self.raw.append(data)
                found.append(_decode_event(data))


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT):
        while not await check():
            await asyncio.sleep(0.01)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open_sync(str(tmp_path / "g.db"))
    yield database
    database.close()


def _publisher(client: aioredis.Redis, db: Database) -> Publisher:
    return Publisher(client, KS, lambda: db.read(load_identities), lambda: db.read(load_snapshot))


@pytest.fixture
def publisher(redis_client: aioredis.Redis, db: Database) -> Publisher:
    return _publisher(redis_client, db)


@pytest.fixture
async def events(redis_client: aioredis.Redis) -> AsyncIterator[Events]:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(KS.events)
    # Wait for the confirmation: only then is every later publish delivered to us.
    async with asyncio.timeout(WAIT):
        confirmation = None
        while confirmation is None:
            confirmation = await pubsub.get_message(timeout=WAIT)
    assert confirmation["type"] == "subscribe"
    yield Events(redis_client, pubsub)
    await pubsub.aclose()


def _add_key(db: Database, **fields: Any) -> tuple[str, str, Identity]:
    """A key in SQLite: (plaintext, hash, identity)."""
    plaintext, key_hash, prefix = keys.generate_key()
    record = db.write_sync(keys.create_key, key_hash=key_hash, key_prefix=prefix, **fields)
    return plaintext, key_hash, identity_of(record)


def _add_route(db: Database, alias: str) -> None:
    targets = [RouteTarget(provider_id="openai", model="gpt-4o")]
    db.write_sync(routes.create_route, RouteRecord(id="", model_alias=alias, targets=targets))


async def _key_index(client: aioredis.Redis) -> dict[str, Identity]:
    raw = await client.hgetall(KS.key_index)
    return {h.decode(): _decode_identity(v) for h, v in raw.items()}


async def _published_snapshot(client: aioredis.Redis) -> ConfigSnapshot:
    raw = await client.get(KS.snapshot)
    assert raw is not None
    return _decode_snapshot(raw)


async def test_publish_all_writes_the_index_the_snapshot_and_the_version(
    publisher: Publisher, redis_client: aioredis.Redis, db: Database, events: Events
) -> None:
    _, hash_a, identity_a = _add_key(db, role="admin")
    _, hash_b, identity_b = _add_key(db, allowed_models=["gpt-4o"], rpm_limit=5)
    _add_route(db, "smart")
    await redis_client.hset(KS.key_index, "stale-hash", b"{}")
    expected = await db.read(load_snapshot)
    assert publisher.published is False

    await publisher.publish_all()

    assert await _key_index(redis_client) == {hash_a: identity_a, hash_b: identity_b}
    assert await _published_snapshot(redis_client) == expected
    assert [r.model_alias for r in expected.routes] == ["smart"]
    assert await redis_client.get(KS.snapshot_version) == str(expected.version).encode()
    assert await events.drain() == [
        ControlEvent(kind="keys"),
        ControlEvent(kind="config", version=expected.version),
    ]
    assert publisher.version == expected.version
    assert publisher.published is True


async def test_publish_all_without_keys_empties_the_index(
    publisher: Publisher, redis_client: aioredis.Redis, events: Events
) -> None:
    await redis_client.hset(KS.key_index, "revoked-meanwhile", b"{}")

    await publisher.publish_all()

    assert await redis_client.exists(KS.key_index) == 0
    assert await redis_client.exists(KS.snapshot, KS.snapshot_version) == 2
    assert [e.kind for e in await events.drain()] == ["keys", "config"]


async def test_key_changed_sets_the_index_field_and_announces_the_key(
    publisher: Publisher, redis_client: aioredis.Redis, db: Database, events: Events
) -> None:
    _, kept_hash, kept = _add_key(db)
    await publisher.publish_all()
    await events.drain()
    identity = Identity(key_id="k2", key_prefix="gnd_abcdefgh", role="viewer", blocked=True)

    await publisher.key_changed("a" * 64, identity)

    assert await _key_index(redis_client) == {kept_hash: kept, "a" * 64: identity}
    assert await events.drain() == [ControlEvent(kind="key", hash="a" * 64)]


async def test_key_changed_to_none_deletes_the_index_field(
    publisher: Publisher, redis_client: aioredis.Redis, db: Database, events: Events
) -> None:
    _, gone_hash, _ = _add_key(db)
    _, kept_hash, kept = _add_key(db)
    await publisher.publish_all()
    await events.drain()

    await publisher.key_changed(gone_hash, None)

    assert await _key_index(redis_client) == {kept_hash: kept}
    assert await events.drain() == [ControlEvent(kind="key", hash=gone_hash)]


async def test_config_changed_publishes_a_new_version(
    publisher: Publisher, redis_client: aioredis.Redis, db: Database, events: Events
) -> None:
    _, key_hash, identity = _add_key(db)
    await publisher.publish_all()
    first = publisher.version
    await events.drain()
    _add_route(db, "fresh")

    await publisher.config_changed()

    snapshot = await _published_snapshot(redis_client)
    assert snapshot.version > first
    assert snapshot == await db.read(load_snapshot)
    assert [r.model_alias for r in snapshot.routes] == ["fresh"]
    assert await redis_client.get(KS.snapshot_version) == str(snapshot.version).encode()
    assert publisher.version == snapshot.version
    assert await events.drain() == [ControlEvent(kind="config", version=snapshot.version)]
    assert await _key_index(redis_client) == {key_hash: identity}


async def test_watch_keeps_the_heartbeat_and_republishes_after_a_flush(
    publisher: Publisher, redis_client: aioredis.Redis, db: Database, events: Events
) -> None:
    _, key_hash, identity = _add_key(db)
    _add_route(db, "smart")
    await publisher.publish_all()
    snapshot = await _published_snapshot(redis_client)
    await events.drain()

    async with asyncio.TaskGroup() as tasks:
        watcher = tasks.create_task(publisher.watch(interval=0.01), name="publisher-watch")

        await _eventually(lambda: _exists(redis_client, KS.supervisor_heartbeat))
        assert 0 < await redis_client.ttl(KS.supervisor_heartbeat) <= HEARTBEAT_TTL
        # The watch ran and found the configuration in place: nothing was republished.
        assert await events.drain() == []

        await redis_client.flushall()
        await _eventually(lambda: _exists(redis_client, KS.snapshot_version))

        assert await _key_index(redis_client) == {key_hash: identity}
        assert await _published_snapshot(redis_client) == snapshot
        assert await events.drain() == [
            ControlEvent(kind="keys"),
            ControlEvent(kind="config", version=snapshot.version),
        ]
        await _eventually(lambda: _exists(redis_client, KS.supervisor_heartbeat))
        assert 0 < await redis_client.ttl(KS.supervisor_heartbeat) <= HEARTBEAT_TTL
        assert not watcher.done()
        watcher.cancel()
    assert watcher.cancelled()


async def test_watch_outlives_an_unreachable_redis_and_publishes_when_it_returns(
    tmp_path: Path, db: Database
) -> None:
    _, key_hash, identity = _add_key(db)
    server = EmbeddedRedis(tmp_path / "late")
    client = aioredis.Redis.from_url(server.url)
    publisher = _publisher(client, db)
    try:
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(publisher.watch(interval=0.01), name="publisher-watch")
            await asyncio.sleep(0.1)  # several failed rounds; not a timing assertion
            assert not watcher.done()
            assert publisher.published is False

            server.start()
            await _eventually(lambda: _exists(client, KS.snapshot_version))

            assert await _key_index(client) == {key_hash: identity}
            assert await client.exists(KS.supervisor_heartbeat) == 1
            assert publisher.published is True
            watcher.cancel()
    finally:
        await client.aclose()
        server.stop()


async def test_changes_redis_missed_mark_the_publisher_stale_and_watch_publishes_them(
    tmp_path: Path, db: Database
) -> None:
    server = EmbeddedRedis(tmp_path / "flaky")
    client = aioredis.Redis.from_url(server.start())
    publisher = _publisher(client, db)
    try:
        await publisher.publish_all()
        published_version = publisher.version
        server.stop()
        _, key_hash, identity = _add_key(db)
        _add_route(db, "late")

        await publisher.key_changed(key_hash, identity)  # SQLite has it: not an admin error
        await publisher.config_changed()

        assert publisher.stale is True
        assert publisher.version == published_version
        server.start()
        # Redis kept its copy and only the link was down: the stale flag alone must trigger.
        await client.set(KS.snapshot_version, published_version)
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(publisher.watch(interval=0.01), name="publisher-watch")
            await _eventually(lambda: _has_field(client, KS.key_index, key_hash))
            watcher.cancel()
        assert await _key_index(client) == {key_hash: identity}
        snapshot = await _published_snapshot(client)
        assert [r.model_alias for r in snapshot.routes] == ["late"]
        assert publisher.version == snapshot.version > published_version
        assert publisher.stale is False
    finally:
        await client.aclose()
        server.stop()


async def test_nothing_published_holds_a_plaintext_key_or_a_provider_secret(
    tmp_path: Path, db: Database, redis_client: aioredis.Redis, events: Events
) -> None:
    secrets = {
        "OPENAI_TEST_KEY": "sk-test-provider-secret-1234567890",
        "AZURE_TEST_KEY": "az-test-auth-secret-0987654321",
        "MEMBER_KEY": "gnd_configured-member-plaintext-key",
    }
    config_file = tmp_path / "gandalf.yaml"
    config_file.write_text(
        textwrap.dedent(
            """
            providers:
              - name: openai-test
                type: openai
                base_url: http://127.0.0.1:9/v1
                api_key: ${OPENAI_TEST_KEY}
                models: [gpt-4o]
              - name: azure-test
                type: openai
                hosting: azure
                base_url: https://example.openai.azure.com
                api_version: "2024-10-21"
                auth: {api_key: "${AZURE_TEST_KEY}"}
            routes:
              - model_alias: smart
                targets: [{provider: openai-test, model: gpt-4o}]
            keys:
              - {name: member, key: "${MEMBER_KEY}", role: member}
            """
        )
    )
    config, _ = load_config(config_file, environ=secrets)
    db.write_sync(seed_from_config, config.providers, config.routes, config.keys)
    generated, generated_hash, generated_identity = _add_key(db)
    publisher = _publisher(redis_client, db)

    await publisher.publish_all()
    await publisher.key_changed(generated_hash, generated_identity)
    await publisher.config_changed()
    await events.drain()

    published = b"\n".join([*events.raw, *await _every_value(redis_client)])
    # The check can fail: what was published does name the providers, routes and keys.
    for present in (b"openai-test", b"azure-test", b"smart", generated[:12].encode()):
        assert present in published
    for secret in [generated, *secrets.values()]:
        assert secret.encode() not in published
    assert keys.hash_key(secrets["MEMBER_KEY"]).encode() in published


async def _exists(client: aioredis.Redis, key: str) -> bool:
    return bool(await client.exists(key))


async def _has_field(client: aioredis.Redis, key: str, field: str) -> bool:
    return bool(await client.hexists(key, field))


async def _every_value(client: aioredis.Redis) -> list[bytes]:
    """Every key name and value in the server, whatever its type."""
    found: list[bytes] = []
    async for key in client.scan_iter():
        found.append(key)
        kind = (await client.type(key)).decode()
        if kind == "string":
            found.append(await client.get(key))
        elif kind == "hash":
            for field, value in (await client.hgetall(key)).items():
                found += [field, value]
        else:
            pytest.fail(f"unexpected {kind} key {key!r}")
    return found
