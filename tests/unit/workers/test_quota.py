"""workers/quota.py: spend counters rebuilt from SQLite after Redis lost them, never twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from app.domain import UsageEvent
from app.keyspace import Keyspace
from app.limits.limiter import spend_period
from storage import keys
from storage.db import Database
from storage.rollups import record_usage
from workers.quota import QuotaSync, recorded_spend
from workers.recorder import Recorder, to_record

KS = Keyspace("test")
WAIT = 10.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open_sync(str(tmp_path / "quota.db"))
    yield database
    database.close()


def _key(db: Database, key_id: str, **fields: object) -> None:
    db.write_sync(
        keys.create_key,
        key_hash=f"{abs(hash(key_id)):064x}"[-64:],
        key_prefix=f"gnd_{key_id}",
        key_id=key_id,
        **fields,
    )


def _event(request_id: str, key_id: str, cost_nano: int, when: datetime) -> UsageEvent:
    return UsageEvent(
        request_id=request_id,
        key_id=key_id,
        org_id="default",
        model="chat",
        created_ms=int(when.timestamp() * 1000),
        status=200,
        cost_nano=cost_nano,
    )


def _record(db: Database, *events: UsageEvent) -> None:
    db.write_sync(record_usage, [to_record(event) for event in events])


def _counter(key_id: str, budget_period: str = "monthly") -> str:
    return KS.spend(key_id, spend_period(budget_period, datetime.now(UTC)))


async def _value(client: aioredis.Redis, name: str) -> int:
    return int(await client.get(name) or 0)


def test_recorded_spend_sums_each_key_over_its_own_period(db: Database) -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    _key(db, "monthly", max_budget=1.0)
    _key(db, "daily", budget_period="daily")
    _key(db, "total", budget_period="total")
    _key(db, "idle")
    _record(
        db,
        _event("m-this", "monthly", 300, now - timedelta(days=20)),
        _event("m-last", "monthly", 7000, now - timedelta(days=40)),  # October: not counted
        _event("d-today", "daily", 50, now - timedelta(hours=2)),
        _event("d-yesterday", "daily", 9000, now - timedelta(days=1)),
        _event("t-old", "total", 11, now - timedelta(days=400)),
        _event("t-new", "total", 22, now),
    )

    spent = sorted(db.read_sync(recorded_spend, now))

    assert spent == [
        ("daily", "d:2026-11-26", 50),
        ("monthly", "m:2026-11", 300),
        ("total", "total", 33),
    ]


async def test_a_lost_redis_gets_recorded_spend_added_to_what_was_settled_since(
    db: Database, redis_client: aioredis.Redis
) -> None:
    now = datetime.now(UTC)
    _key(db, "k1", max_budget=1.0)
    _record(db, _event("r1", "k1", 1_000, now), _event("r2", "k1", 2_000, now))
    # after the loss a worker already settled a request: its cost is in the new counter only
    await redis_client.incrby(_counter("k1"), 500)
    sync = QuotaSync(redis_client, KS, db)

    await sync.check(group_exists=False)

    assert await _value(redis_client, _counter("k1")) == 3_500
    assert await redis_client.ttl(_counter("k1")) > 0  # a monthly counter expires
    assert sync.rebuilds == 1
    # the marker now says the counters are whole: a second check adds nothing
    await sync.check(group_exists=False)
    assert await _value(redis_client, _counter("k1")) == 3_500
    assert sync.rebuilds == 1


async def test_a_group_that_survived_means_the_counters_did_too(
    db: Database, redis_client: aioredis.Redis
) -> None:
    _key(db, "k1", max_budget=1.0)
    _record(db, _event("r1", "k1", 1_000, datetime.now(UTC)))
    await redis_client.set(_counter("k1"), 1_000)
    sync = QuotaSync(redis_client, KS, db)

    await sync.check(group_exists=True)  # e.g. a Redis kept across an upgrade: no marker yet

    assert await _value(redis_client, _counter("k1")) == 1_000
    assert await redis_client.exists(KS.quota_marker)
    assert sync.rebuilds == 0


async def test_two_supervisors_racing_rebuild_once(
    db: Database, redis_client: aioredis.Redis
) -> None:
    _key(db, "k1", max_budget=1.0)
    _record(db, _event("r1", "k1", 1_000, datetime.now(UTC)))
    syncs = [QuotaSync(redis_client, KS, db) for _ in range(4)]

    await asyncio.gather(*(sync.check(group_exists=False) for sync in syncs))

    assert await _value(redis_client, _counter("k1")) == 1_000
    assert sum(sync.rebuilds for sync in syncs) == 1


async def test_the_recorder_rebuilds_before_recording_anything_after_a_flush(
    db: Database, redis_client: aioredis.Redis
) -> None:
    """FLUSHALL under a running recorder: the counter ends equal to everything recorded."""
    now = datetime.now(UTC)
    _key(db, "k1", max_budget=1.0)
    recorder = Recorder(
        redis_client,
        KS,
        db,
        quota=QuotaSync(redis_client, KS, db),
        block_ms=50,
        retry_delay=0.01,
        max_retry_delay=0.05,
    )

    async def settle(request_id: str, cost: int) -> None:
        """What a worker's settlement does: count the cost, then append the event."""
        await redis_client.incrby(_counter("k1"), cost)
        event = _event(request_id, "k1", cost, now)
        await redis_client.xadd(KS.usage_stream, {"e": msgspec.json.encode(event)})

    async def recorded() -> int:
        return int(recorder.stats.recorded)

    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(recorder.run())
        for n in range(5):
            await settle(f"before-{n}", 100)
        async with asyncio.timeout(WAIT):
            while await recorded() < 5:
                await asyncio.sleep(0.01)
        await redis_client.flushall()
        for n in range(3):
            await settle(f"after-{n}", 10)
        async with asyncio.timeout(WAIT):
            while await recorded() < 8:
                await asyncio.sleep(0.01)
        task.cancel()

    assert await _value(redis_client, _counter("k1")) == 5 * 100 + 3 * 10
    assert db.read_sync(recorded_spend, now) == [("k1", spend_period("monthly", now), 530)]
