"""The usage recorder: every entry of the usage stream stored in SQLite exactly once.

Workers append one entry per request (field `e`: a `UsageEvent` as JSON). The recorder reads
them through the consumer group, inserts each batch and its rollups in one SQLite transaction
(a request id already stored is skipped), and only then acknowledges the entries. A crash or an
error between the commit and the acknowledgement leaves the entries pending; they are read
again, by this recorder or by the next one through XAUTOCLAIM, and the unique request id keeps
them from being counted twice.

Recorded entries are deleted (XACK and XDEL in one MULTI), not trimmed: only what is stored
leaves the stream, so the stream holds exactly the backlog. A MAXLEN trim would drop entries
not yet recorded whenever the backlog outgrew it (a stopped supervisor, a failing disk), and a
MINID trim would need the oldest pending id of every consumer first.

Errors never end the task: Redis errors are logged and retried with a growing delay; a batch
that SQLite refuses is not acknowledged and is read again from this consumer's pending list.
A malformed entry is logged, acknowledged and dropped, so it never blocks the stream.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import apsw
import msgspec
import redis.asyncio as aioredis
import structlog

from app.domain import UsageEvent, UsageIntent
from app.keyspace import Keyspace
from app.limits.limiter import Limiter, Limits, spend_ttl
from app.resp import REDIS_ERRORS
from storage.db import Database
from storage.errors import StorageError
from storage.records import UsageRecord, format_time
from storage.rollups import record_new_usage, record_usage
from storage.usage import stored_request_ids
from workers.quota import QuotaSync

log = structlog.get_logger("gandalf.recorder")

SQLITE_ERRORS = (apsw.Error, StorageError)

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as redis-py returns it: id and fields (empty when the entry was deleted)."""

_decode_event = msgspec.json.Decoder(UsageEvent).decode
_decode_intent = msgspec.json.Decoder(UsageIntent).decode
_NO_LIMITS = Limits()
LOST_STATUS = 500
"""Status of a request whose worker died before settling it (its client lost the answer)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_CREATED_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last instant the stored time form can hold."""
_MAX_INTEGER = 2**63 - 1
"""SQLite's largest integer."""
_COUNTED = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost_nano", "latency_ms")


def to_record(event: UsageEvent) -> UsageRecord:
    """The usage record of an event.

    Raises:
        ValueError: a value no request can have (a negative count, a time out of range, an
            integer SQLite cannot store).
    """
    if not 0 <= event.created_ms <= _MAX_CREATED_MS:
        raise ValueError(f"created_ms {event.created_ms} is out of range")
    for name in _COUNTED:
        value = getattr(event, name)
        if not 0 <= value <= _MAX_INTEGER:
            raise ValueError(f"{name} {value} is out of range")
    total = event.prompt_tokens + event.completion_tokens
    if total > _MAX_INTEGER or not 0 <= event.status <= _MAX_INTEGER:
        raise ValueError("total tokens or status out of range")
    if event.ttft_ms is not None and not 0 <= event.ttft_ms <= _MAX_INTEGER:
        raise ValueError(f"ttft_ms {event.ttft_ms} is out of range")
    return UsageRecord(
        request_id=event.request_id,
        key_id=event.key_id,
        org_id=event.org_id,
        model=event.model,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=total,
        cached=event.cached,
        latency_ms=event.latency_ms,
        status_code=event.status,
        usage_source="estimated" if event.estimated else "provider",
        created_at=format_time(_EPOCH + timedelta(milliseconds=event.created_ms)),
        user_id=event.user_id,
        team_id=event.team_id,
        upstream_model=event.upstream_model,
        provider_id=event.provider,
        cached_tokens=event.cached_tokens,
        cost_nano=event.cost_nano,
        price_version=event.price_version,
        ttft_ms=event.ttft_ms,
    )


def consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(slots=True)
class RecorderStats:
    read: int = 0
    """Entries taken from the stream (new, redelivered or claimed)."""
    recorded: int = 0
    """New usage rows stored."""
    duplicates: int = 0
    """Events whose request id was already stored (redeliveries)."""
    malformed: int = 0
    """Entries dropped because they could not be decoded."""
    acknowledged: int = 0
    """Entries acknowledged and deleted from the stream (recorded, duplicate or malformed)."""
    failures: int = 0
    """Rounds that failed (Redis or SQLite) and were retried."""
    orphans: int = 0
    """Requests of dead workers stored from their intents."""


class Recorder:
    """Reads the usage stream into SQLite; `run` is the supervisor's task."""

    def __init__(
        self,
        client: aioredis.Redis,
        keyspace: Keyspace,
        db: Database,
        *,
        consumer: str | None = None,
        quota: QuotaSync | None = None,
        batch_size: int = 2000,
        block_ms: int = 1000,
        min_idle_ms: int = 5_000,
        claim_interval: float = 5.0,
        forget_after_ms: int = 3_600_000,
        retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
        sweep_interval: float = 1.0,
    ) -> None:
        """Set up the recorder; nothing touches Redis or SQLite before `run`.

        Args:
            client: a Redis client that returns bytes (not `decode_responses`).
            keyspace: the stream and group names.
            db: where usage is stored.
            consumer: this recorder's name in the group; unique per process by default.
            quota: rebuilds the spend counters when Redis lost them (None: never).
            batch_size: most entries read, stored and acknowledged together. A backlog is
                recorded at about 18,000 events/s in batches of 1,000, 22,500 of 2,000 and
                25,800 of 5,000 (loadtests/recorder_bench.py, 2 cores); a batch of 2,000
                holds the SQLite write lock for about 80 ms.
            block_ms: how long one read waits for new entries.
            min_idle_ms: how long an entry stays pending before another consumer may take it.
            claim_interval: seconds between looks for entries a dead consumer left pending.
            forget_after_ms: a consumer that holds nothing and has not read for this long is
                gone (each supervisor process reads under a new name): its name is removed.
            retry_delay: first wait after an error; it doubles up to `max_retry_delay`.
            max_retry_delay: longest wait between retries.
            sweep_interval: seconds between two looks for workers that died.
        """
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the recorder needs a Redis client that returns bytes")
        self._client = client
        self._db = db
        self._stream = keyspace.usage_stream
        self._group = keyspace.usage_group
        self.consumer = consumer or consumer_name()
        self._quota = quota
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.min_idle_ms = min_idle_ms
        self.claim_interval = claim_interval
        self.forget_after_ms = forget_after_ms
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.stats = RecorderStats()
        self.sweep_interval = sweep_interval
        self._keyspace = keyspace
        self._limiter = Limiter(keyspace)
        self._next_sweep = 0.0
        self._ready = False
        self._own_pending = True
        """Read this consumer's unacknowledged entries ("0") before new ones (">")."""
        self._next_claim = 0.0
        """Loop time of the next XAUTOCLAIM; 0: at once, a crashed recorder may have left some."""
        self._draining = False
        self._drained = asyncio.Event()

    async def run(self) -> None:
        """Record until cancelled, or until the stream is empty once `drain` was called."""
        task = asyncio.current_task()
        delay = self.retry_delay
        while True:
            # redis-py sends each command inside asyncio.wait_for, which on Python 3.11 drops a
            # cancellation that arrives just as the send completes (CPython gh-86296): the
            # task ran on and its TaskGroup waited forever. The request is still counted.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            try:
                drained = await self._round()
            except REDIS_ERRORS as exc:
                self._ready = False  # NOGROUP after Redis lost the stream: create it again
                log.warning("usage stream unavailable; retrying", error=str(exc), delay=delay)
            except SQLITE_ERRORS as exc:
                log.error(
                    "usage batch not stored; it stays pending and is retried",
                    error=str(exc),
                    delay=delay,
                )
            except Exception:  # the task boundary: log, count, retry; never end the supervisor
                log.exception("usage recorder failed; retrying", delay=delay)
            else:
                if drained:
                    self._drained.set()
                    return
                delay = self.retry_delay
                continue
            self.stats.failures += 1
            self._own_pending = True  # what was read but not acknowledged is read again
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_delay)

    async def _round(self) -> bool:
        """One read-record-acknowledge round; True once draining found the stream empty."""
        loop = asyncio.get_running_loop()
        if not self._ready:
            await self.ensure_group()
            self._ready = True
        if loop.time() >= self._next_claim:
            await self.claim_abandoned()
            self._next_claim = loop.time() + self.claim_interval
        if loop.time() >= self._next_sweep:
            await self.settle_orphans()
            self._next_sweep = loop.time() + self.sweep_interval
        if self._own_pending:
            entries = await self.read("0")
            self._own_pending = bool(entries)
            await self.record(entries)
            return False
        entries = await self.read(">")
        await self.record(entries)
        return not entries and self._draining

    async def drain(self) -> None:
        """Ask `run` to record what is left in the stream and return; wait until it has.

        Bound the wait with `asyncio.timeout`: while Redis or SQLite fail it does not end.
        """
        self._draining = True
        await self._drained.wait()

    async def ensure_group(self) -> None:
        """Create the stream and the consumer group unless they exist.

        A missing group means Redis lost the stream (or never had it): quota sync first gets
        its chance to rebuild the spend counters, before anything from the new stream is
        recorded (see `workers/quota.py` for why that order matters).
        """
        exists = await self._group_exists()
        if self._quota is not None:
            await self._quota.check(group_exists=exists)
        if exists:
            return
        try:
            await self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def _group_exists(self) -> bool:
        try:
            groups = await self._client.xinfo_groups(self._stream)
        except aioredis.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return False
            raise
        name = self._group.encode()
        return any(group["name"] in (name, self._group) for group in groups)

    async def read(self, cursor: str) -> list[Entry]:
        """One batch: `>` new entries (waiting up to `block_ms`), `0` this consumer's pending."""
        block = self.block_ms if cursor == ">" and not self._draining else None
        response = await self._client.xreadgroup(
            self._group, self.consumer, {self._stream: cursor}, count=self.batch_size, block=block
        )
        return _entries(response)

    async def claim_abandoned(self) -> int:
        """Take over and record the entries pending longer than `min_idle_ms`.

        Returns:
            How many entries were claimed.
        """
        start: bytes | str = "0-0"
        claimed = 0
        while True:
            reply = await self._client.xautoclaim(
                self._stream,
                self._group,
                self.consumer,
                min_idle_time=self.min_idle_ms,
                start_id=start,
                count=self.batch_size,
            )
            start, entries = reply[0], reply[1]
            if len(reply) > 2 and reply[2]:
                # deleted from the stream while pending: Redis dropped them from the group too
                log.warning("pending usage entries were deleted by someone else", ids=len(reply[2]))
            if entries:
                log.info("claimed pending usage entries", entries=len(entries))
                await self.record(entries)
                claimed += len(entries)
            if start in (b"0-0", "0-0"):
                break
        await self._forget_stale_consumers()
        return claimed

    async def record(self, entries: Sequence[Entry]) -> None:
        """Store the events of `entries` in one transaction, then acknowledge and delete all."""
        if not entries:
            return
        self.stats.read += len(entries)
        records = [r for r in map(self._to_record, entries) if r is not None]
        if records:
            recorded = await self._db.write(record_usage, records)
            self.stats.recorded += recorded
            self.stats.duplicates += len(records) - recorded
        await self._acknowledge([entry_id for entry_id, _ in entries])
        self.stats.acknowledged += len(entries)

    async def settle_orphans(self) -> int:
        """Store the requests in flight of workers that died; returns how many became rows.

        Each worker keeps its admitted, unsettled requests (`domain.UsageIntent`) in a hash of
        its own and a heartbeat key alive. A worker whose heartbeat expired will settle nothing
        more: each of its intents whose event is not stored already becomes an estimated row
        at the admission estimate (status `LOST_STATUS`), and that cost is settled in Redis as
        the worker would have (the budget reservation released, the spend counted). The
        heartbeat outlives the worker by `HEARTBEAT_TTL` (10 s), long enough for the events
        it appended before dying to be recorded first: those are only dropped from the hash.
        """
        keyspace = self._keyspace
        workers: list[bytes] = sorted(await self._client.smembers(keyspace.workers))  # type: ignore[arg-type]
        if not workers:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for worker in workers:
                _ = pipe.exists(keyspace.worker_heartbeat(worker.decode()))
            alive = await pipe.execute()
        recorded = 0
        for worker, live in zip(workers, alive, strict=True):
            if not live:
                recorded += await self._bury(worker.decode())
        return recorded

    async def _bury(self, worker: str) -> int:
        """Record a dead worker's intents, then forget the worker."""
        keyspace = self._keyspace
        stored_intents: dict[bytes, bytes] = await self._client.hgetall(  # type: ignore[assignment]
            keyspace.intents(worker)
        )
        lost = [orphan for raw in stored_intents.values() if (orphan := self._orphan(raw))]
        stored = await self._db.read(stored_request_ids, [i.request_id for i, _ in lost])
        orphans = [(i, record) for i, record in lost if i.request_id not in stored]
        fresh: list[UsageRecord] = []
        if orphans:
            fresh = await self._db.write(record_new_usage, [record for _, record in orphans])
            new_ids = {record.request_id for record in fresh}
            await self._charge([i for i, _ in orphans if i.request_id in new_ids])
            self.stats.orphans += len(fresh)
            log.warning(
                "requests of a worker that died recorded at their estimate",
                requests=len(fresh),
                worker=worker,
            )
        async with self._client.pipeline(transaction=True) as pipe:
            _ = pipe.delete(keyspace.intents(worker))
            _ = pipe.srem(keyspace.workers, worker)
            await pipe.execute()
        return len(fresh)

    async def _charge(self, intents: Sequence[UsageIntent]) -> None:
        """Settle lost requests' cost in Redis: release each reservation, count the spend."""
        if not intents:
            return
        now = datetime.now(UTC)

        def build(pipe: Any) -> None:
            for intent in intents:
                self._limiter.queue_settle(
                    pipe,
                    key_id=intent.key_id,
                    request_id=intent.request_id,
                    limits=_NO_LIMITS,
                    estimated_tokens=0,
                    real_tokens=0,
                    cost_nano=intent.cost_nano,
                    period=intent.period,
                    ttl=spend_ttl(intent.period, now) if intent.period else 0,
                    reserved=intent.reserved,
                )

        await self._limiter.run(self._client, build)

    def _orphan(self, raw: bytes) -> tuple[UsageIntent, UsageRecord] | None:
        """An intent and its row; None (counted, logged) for one no row can hold."""
        try:
            intent = _decode_intent(raw)
            return intent, _orphan_record(intent)
        except (msgspec.DecodeError, ValueError) as exc:
            self.stats.malformed += 1
            log.warning("malformed usage intent dropped", error=str(exc), intent=raw[:300])
            return None

    def _to_record(self, entry: Entry) -> UsageRecord | None:
        entry_id, fields = entry
        raw = fields.get(b"e")
        try:
            if raw is None:
                raise ValueError("no field `e`")
            return to_record(_decode_event(raw))
        except (msgspec.DecodeError, ValueError) as exc:
            self.stats.malformed += 1
            log.warning(
                "malformed usage entry dropped",
                id=entry_id.decode(),
                error=str(exc),
                entry=repr(fields)[:300],
            )
            return None

    async def _acknowledge(self, ids: list[bytes]) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            _ = pipe.xack(self._stream, self._group, *ids)
            _ = pipe.xdel(self._stream, *ids)
            await pipe.execute()

    async def _forget_stale_consumers(self) -> None:
        """Remove the names of consumers that hold nothing and stopped reading long ago.

        Each supervisor process reads under a new name, so without this the group would keep
        one name per restart forever. A consumer with pending entries is kept: XAUTOCLAIM
        empties it first.
        """
        me = self.consumer.encode()
        for consumer in await self._client.xinfo_consumers(self._stream, self._group):
            name = consumer["name"]
            if name != me and consumer["pending"] == 0 and consumer["idle"] > self.forget_after_ms:
                await self._client.xgroup_delconsumer(self._stream, self._group, name)
                log.info("removed a consumer gone quiet", consumer=name.decode())


def _orphan_record(intent: UsageIntent) -> UsageRecord:
    """The usage row of a request whose worker died before it was settled."""
    return to_record(
        UsageEvent(
            request_id=intent.request_id,
            key_id=intent.key_id,
            org_id=intent.org_id,
            team_id=intent.team_id,
            user_id=intent.user_id,
            model=intent.model,
            created_ms=intent.created_ms,
            status=LOST_STATUS,
            prompt_tokens=intent.prompt_tokens,
            completion_tokens=intent.completion_tokens,
            cost_nano=intent.cost_nano,
            estimated=True,
        )
    )


def _entries(response: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply on one stream, as RESP2 or RESP3 shape it."""
    if not response:
        return []
    if isinstance(response, dict):
        return [entry for entries in response.values() for entry in _flatten(entries)]
    return [entry for _stream, entries in response for entry in _flatten(entries)]


def _flatten(entries: Any) -> list[Entry]:
    # RESP3 wraps a stream's entries in one more list
    if entries and isinstance(entries[0], list):
        return [entry for inner in entries for entry in inner]
    return list(entries)
