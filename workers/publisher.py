"""Publishes what the data plane needs to Redis: the key index and the configuration snapshot.

SQLite is the truth; Redis holds a copy that the supervisor rewrites whenever it changes and
whenever Redis has lost it (a restart, a flush, an eviction): `watch` checks every second. A
change that could not be published (Redis unreachable) is not an admin error, since SQLite
already holds it: the publisher marks itself stale and `watch` republishes everything as soon
as Redis answers again.
Each change is announced on the events channel so workers drop or reload at once.
Provider secrets are never published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis
import structlog

from app.domain import ConfigSnapshot, Identity
from app.keyspace import Keyspace
from app.resp import REDIS_ERRORS
from app.server.control import ControlEvent, encode_event, encode_identity

log = structlog.get_logger("gandalf.publisher")

HEARTBEAT_TTL = 5


class Publisher:
    """Writes the key index and snapshot to Redis and announces changes."""

    def __init__(
        self,
        client: aioredis.Redis,
        keyspace: Keyspace,
        load_keys: Callable[[], Awaitable[Sequence[tuple[str, Identity]]]],
        load_snapshot: Callable[[], Awaitable[ConfigSnapshot]],
    ) -> None:
        self._client = client
        self._keyspace = keyspace
        self._load_keys = load_keys
        self._load_snapshot = load_snapshot
        self.version = 0
        self.published = False
        """True once everything was published at least once."""
        self.stale = False
        """A change is in SQLite but not in Redis: `watch` republishes everything."""

    async def publish_all(self) -> None:
        """Rewrite the whole key index and the snapshot, then tell every worker."""
        keys = await self._load_keys()
        snapshot = await self._load_snapshot()
        ks = self._keyspace
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(ks.key_index)
            if keys:
                pipe.hset(ks.key_index, mapping={h: encode_identity(i) for h, i in keys})
            pipe.set(ks.snapshot, encode_event(snapshot))
            pipe.set(ks.snapshot_version, snapshot.version)
            pipe.publish(ks.events, encode_event(ControlEvent(kind="keys")))
            pipe.publish(
                ks.events, encode_event(ControlEvent(kind="config", version=snapshot.version))
            )
            await pipe.execute()
        self.version = snapshot.version
        self.published = True
        self.stale = False
        log.info("published", keys=len(keys), version=snapshot.version)

    async def key_changed(self, key_hash: str, identity: Identity | None) -> None:
        """One key was created, changed or deleted (`identity` None)."""
        ks = self._keyspace
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                if identity is None:
                    pipe.hdel(ks.key_index, key_hash)
                else:
                    pipe.hset(ks.key_index, key_hash, encode_identity(identity))
                pipe.publish(ks.events, encode_event(ControlEvent(kind="key", hash=key_hash)))
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._mark_stale(exc)

    async def config_changed(self) -> None:
        """Routes or providers changed: publish a new snapshot."""
        snapshot = await self._load_snapshot()
        ks = self._keyspace
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(ks.snapshot, encode_event(snapshot))
                pipe.set(ks.snapshot_version, snapshot.version)
                pipe.publish(
                    ks.events, encode_event(ControlEvent(kind="config", version=snapshot.version))
                )
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._mark_stale(exc)
            return
        self.version = snapshot.version

    def _mark_stale(self, exc: BaseException) -> None:
        self.stale = True
        log.warning(
            "redis unavailable; the change will be published when it returns", error=str(exc)
        )

    async def watch(self, interval: float = 1.0) -> None:
        """Keep the heartbeat alive and republish everything when Redis has lost it."""
        ks = self._keyspace
        task = asyncio.current_task()
        while True:
            # redis-py's asyncio.wait_for can drop a cancellation on Python 3.11 (CPython
            # gh-86296); a pending one is honoured here, so the supervisor always stops
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.set(ks.supervisor_heartbeat, 1, ex=HEARTBEAT_TTL)
                    pipe.exists(ks.snapshot_version)
                    _, present = await pipe.execute()
                if not present:
                    log.warning("redis lost the published configuration; republishing")
                    await self.publish_all()
                elif self.stale or not self.published:
                    log.info("redis is back; publishing the changes it missed")
                    await self.publish_all()
            except REDIS_ERRORS as exc:
                log.warning("redis unavailable; will republish when it returns", error=str(exc))
            await asyncio.sleep(interval)
