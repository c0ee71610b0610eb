"""Intents: a request admitted by a worker that dies is still recorded, once, at its estimate.

Each worker keeps its requests in flight in a hash (`Keyspace.intents`) and a heartbeat alive;
the recorder's sweep stores what a dead worker left there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from app.domain import UsageEvent, UsageIntent
from app.keyspace import Keyspace
from app.limits.limiter import spend_period
from storage.db import Database, count
from storage.rollups import record_usage
from workers.recorder import LOST_STATUS, Recorder, to_record

KS = Keyspace("test")
WAIT = 10.0
NOW = datetime.now(UTC)
PERIOD = spend_period("monthly", NOW)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open_sync(str(tmp_path / "usage.db"))
    yield database
    database.close()


@pytest.fixture
async def recorder(redis_client: aioredis.Redis, db: Database) -> AsyncIterator[Recorder]:
    rec = Recorder(
        redis_client,
        KS,
        db,
        block_ms=20,
        retry_delay=0.01,
        max_retry_delay=0.05,
        sweep_interval=0.05,
    )
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(rec.run())
        yield rec
        task.cancel()


def _intent(request_id: str, worker: str = "w1", **fields: object) -> UsageIntent:
    base: dict[str, object] = {
        "request_id": request_id,
        "key_id": "k1",
        "org_id": "default",
        "model": "chat",
        "created_ms": int(NOW.timestamp() * 1000),
        "worker": worker,
        "prompt_tokens": 4,
        "completion_tokens": 14,
        "cost_nano": 14_000,
        "period": PERIOD,
    }
    return UsageIntent(**{**base, **fields})  # type: ignore[arg-type]


def _event(request_id: str) -> UsageEvent:
    return UsageEvent(
        request_id=request_id,
        key_id="k1",
        org_id="default",
        model="chat",
        created_ms=int(NOW.timestamp() * 1000),
        status=200,
        prompt_tokens=4,
        completion_tokens=10,
        cost_nano=10_000,
    )


async def _in_flight(client: aioredis.Redis, *intents: UsageIntent) -> None:
    """What a worker's admissions write: its intents, its name among the workers."""
    for intent in intents:
        await client.hset(KS.intents(intent.worker), intent.request_id, msgspec.json.encode(intent))
        await client.sadd(KS.workers, intent.worker)


def _rows(db: Database) -> list[tuple[object, ...]]:
    return db.read_sync(
        lambda conn: conn.execute(
            "SELECT request_id, status_code, cost_nano, usage_source FROM usage_records "
            "ORDER BY request_id"
        ).fetchall()
    )


async def _until(check: object) -> None:
    async with asyncio.timeout(WAIT):
        while not await check():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_a_dead_workers_intents_are_recorded_and_charged_once(
    recorder: Recorder, redis_client: aioredis.Redis, db: Database
) -> None:
    await redis_client.set(KS.worker_heartbeat("alive"), 1)
    reserved = KS.reserved("k1")  # what admission reserved (see app/limits/lua/admit.lua)
    await redis_client.set(reserved, 14_000)
    await redis_client.zadd(f"{reserved}:z", {"lost": 9e15})
    await redis_client.hset(f"{reserved}:h", "lost", 14_000)
    await _in_flight(
        redis_client,
        _intent("lost", worker="dead", reserved=True),
        _intent("running", worker="alive"),
    )

    async def buried() -> bool:
        return recorder.stats.orphans == 1 and not await redis_client.exists(KS.intents("dead"))

    await _until(buried)
    assert _rows(db) == [("lost", LOST_STATUS, 14_000, "estimated")]
    assert int(await redis_client.get(KS.spend("k1", PERIOD)) or 0) == 14_000
    assert int(await redis_client.get(reserved) or 0) == 0  # the reservation was released
    assert await redis_client.smembers(KS.workers) == {b"alive"}
    await asyncio.sleep(0.3)  # more sweeps: the live worker's request is left alone
    assert recorder.stats.orphans == 1
    assert await redis_client.hkeys(KS.intents("alive")) == [b"running"]


async def test_an_intent_whose_event_was_stored_is_only_dropped(
    recorder: Recorder, redis_client: aioredis.Redis, db: Database
) -> None:
    """The worker appended the event, and died before deleting the intent."""
    db.write_sync(record_usage, [to_record(_event("answered"))])
    await _in_flight(redis_client, _intent("answered", worker="dead"))

    async def forgotten() -> bool:
        return not await redis_client.sismember(KS.workers, "dead")

    await _until(forgotten)
    assert recorder.stats.orphans == 0
    assert _rows(db) == [("answered", 200, 10_000, "provider")]
    assert await redis_client.get(KS.spend("k1", PERIOD)) is None  # the worker charged it
    total = db.read_sync(lambda conn: count(conn, "SELECT COUNT(*) FROM usage_records"))
    assert total == 1


async def test_a_malformed_intent_is_dropped_and_the_others_recorded(
    recorder: Recorder, redis_client: aioredis.Redis, db: Database
) -> None:
    await _in_flight(redis_client, _intent("good", worker="dead"))
    await redis_client.hset(KS.intents("dead"), "bad", b'{"request_id": 7}')
    await redis_client.hset(
        KS.intents("dead"), "negative", msgspec.json.encode(_intent("negative", cost_nano=-1))
    )

    async def forgotten() -> bool:
        return not await redis_client.sismember(KS.workers, "dead")

    await _until(forgotten)
    assert [row[0] for row in _rows(db)] == ["good"]
    assert recorder.stats.malformed == 2
