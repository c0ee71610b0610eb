"""The data plane's link to the control plane: keys and configuration, read from Redis only.

Keys: a per-process cache of the key index (hash → identity). A known key costs no Redis trip;
a miss costs one HGET. The control plane announces every key change on a pub/sub channel and
the entry is dropped at once, so revoking or blocking a key reaches every worker within
milliseconds. Entries also expire after `KEY_TTL` seconds, and the whole cache is dropped
when a lost subscription is restored (messages may have been missed meanwhile).

While Redis is unreachable, a worker keeps serving the identities it holds, expired or not:
nothing can be revoked then anyway, since revocations travel through Redis. A key it has
never seen gets 503 rather than a wrong 401.

Configuration: the published snapshot (routes, providers without secrets) is loaded at start
and again whenever another version is announced. Versions are compared for equality, not
order: a supervisor restarted on a restored or in-memory database counts from a lower number,
and its snapshots must still be served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio as aioredis
import structlog

from app.domain import ConfigSnapshot, Identity, ServiceUnavailable
from app.keyspace import Keyspace
from app.resp import REDIS_ERRORS

log = structlog.get_logger("gandalf.control")

KEY_TTL = 60.0
"""Seconds a cached identity is trusted without news from the control plane."""
UNKNOWN_KEY_TTL = 5.0
"""Seconds an unknown key hash is remembered as unknown (bounds Redis trips for bad keys)."""
MAX_CACHED_KEYS = 100_000


class ControlEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A change announced by the control plane on the events channel."""

    kind: str
    """`key` (one key changed), `keys` (drop every cached key), `config` (new snapshot)."""
    hash: str = ""
    version: int = 0


encode_event = msgspec.json.Encoder().encode
_decode_event = msgspec.json.Decoder(ControlEvent).decode
encode_identity = msgspec.json.Encoder().encode
_decode_identity = msgspec.json.Decoder(Identity).decode
_decode_snapshot = msgspec.json.Decoder(ConfigSnapshot).decode


class KeyCache:
    """hash → identity, filled from the Redis key index on a miss."""

    def __init__(self, client: aioredis.Redis, keyspace: Keyspace) -> None:
        self._client = client
        self._index = keyspace.key_index
        self._entries: dict[str, tuple[Identity | None, float]] = {}

    async def lookup(self, digest: str) -> Identity | None:
        entry = self._entries.get(digest)
        now = time.monotonic()
        if entry is not None and entry[1] > now:
            return entry[0]
        try:
            raw = await self._client.hget(self._index, digest)
        except REDIS_ERRORS as exc:
            if entry is not None and entry[0] is not None:
                # stale beats down (see the module docstring); ask Redis again only later,
                # so requests during an outage do not each wait for it to time out
                self._entries[digest] = (entry[0], now + UNKNOWN_KEY_TTL)
                return entry[0]
            raise ServiceUnavailable("the key store is unreachable; try again shortly") from exc
        identity = _decode_identity(raw) if raw is not None else None
        if len(self._entries) >= MAX_CACHED_KEYS:
            self._entries.clear()
        self._entries[digest] = (identity, now + (KEY_TTL if identity else UNKNOWN_KEY_TTL))
        return identity

    def drop(self, digest: str) -> None:
        self._entries.pop(digest, None)

    def clear(self) -> None:
        self._entries.clear()


class ControlLink:
    """Loads the published snapshot and follows the control plane's announcements."""

    def __init__(
        self,
        client: aioredis.Redis,
        keyspace: Keyspace,
        keys: KeyCache,
        apply: Callable[[ConfigSnapshot], Awaitable[None]],
    ) -> None:
        self._client = client
        self._keyspace = keyspace
        self._keys = keys
        self._apply = apply
        self.version = -1

    async def load_snapshot(self) -> bool:
        """Serve the published snapshot unless we serve it already; False when none is published."""
        raw = await self._client.get(self._keyspace.snapshot)
        if raw is None:
            return False
        snapshot = _decode_snapshot(raw)
        if snapshot.version != self.version:
            await self._apply(snapshot)
            self.version = snapshot.version
        return True

    async def follow(self, retry_delay: float = 0.5) -> None:
        """Subscribe to announcements for ever; resubscribe (and resync) after a failure."""
        while True:
            try:
                await self._follow_once()
            except REDIS_ERRORS as exc:
                log.warning("lost the control plane's announcements; resyncing", error=str(exc))
            await asyncio.sleep(retry_delay)

    async def _follow_once(self) -> None:
        async with self._client.pubsub() as pubsub:
            await pubsub.subscribe(self._keyspace.events)
            # Anything announced before the subscription took effect is covered by a resync.
            self._keys.clear()
            await self.load_snapshot()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    await self._handle(message["data"])

    async def _handle(self, data: bytes) -> None:
        try:
            event = _decode_event(data)
        except msgspec.DecodeError:
            log.warning("ignored an unreadable control event")
            return
        if event.kind == "key":
            self._keys.drop(event.hash)
        elif event.kind == "keys":
            self._keys.clear()
        elif event.kind == "config" and event.version != self.version:
            await self.load_snapshot()
