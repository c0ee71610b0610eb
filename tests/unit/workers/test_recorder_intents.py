"""Intents: a request admitted by a worker that dies is still recorded, once, at its estimate."""

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
        redis_client, KS, db, block_ms=20, retry_delay=0.01, max_retry_delay=0.05, orphan_after=0.2
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


async def _add(client: aioredis.Redis, field: str, value: object) -> None:
    payload = value if isinstance(value, bytes) else msgspec.json.encode(value)
    await client.xadd(KS.usage_stream, {field: payload})


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


async def _pending(client: aioredis.Redis) -> int:
    info = await client.xpending(KS.usage_stream, KS.usage_group)
    return int(info["pending"])


async def test_an_intent_closed_by_its_event_or_a_cancel_leaves_nothing_pending(
    recorder: Recorder, redis_client: aioredis.Redis, db: Database
) -> None:
    await redis_client.set(KS.worker_heartbeat("w1"), 1)
    await _add(redis_client, "i", _intent("answered"))
    await _add(redis_client, "i", _intent("refused"))
    await _add(redis_client, "e", _event("answered"))
    await _add(redis_client, "x", b"refused")

    async def settled() -> bool:
        return recorder.stats.acknowledged == 4 and await _pending(redis_client) == 0

    await _until(settled)
    assert _rows(db) == [("answered", 200, 10_000, "provider")]
    assert await redis_client.xlen(KS.usage_stream) == 0


async def test_a_dead_workers_open_intent_is_recorded_and_charged_once(
    recorder: Recorder, redis_client: aioredis.Redis, db: Database
) -> None:
    await redis_client.set(KS.worker_heartbeat("alive"), 1)
    reserved = KS.reserved("k1")  # what admission reserved (see app/limits/lua/admit.lua)
    await redis_client.set(reserved, 14_000)
    await redis_client.zadd(f"{reserved}:z", {"lost": 9e15})
    await redis_client.hset(f"{reserved}:h", "lost", 14_000)
    await _add(redis_client, "i", _intent("lost", worker="dead", reserved=True))
    await _add(redis_client, "i", _intent("running", worker="alive"))

    async def orphaned() -> bool:
        return recorder.stats.orphans == 1

    await _until(orphaned)
    assert _rows(db) == [("lost", LOST_STATUS, 14_000, "estimated")]
    assert int(await redis_client.get(KS.spend("k1", PERIOD)) or 0) == 14_000
    assert int(await redis_client.get(reserved) or 0) == 0  # the reservation was released
    await asyncio.sleep(0.5)  # more sweeps: the live worker's request stays open
    assert recorder.stats.orphans == 1
    assert await _pending(redis_client) == 1
    # its event arrives later: one row, everything acknowledged
    await _add(redis_client, "e", _event("running"))

    async def closed() -> bool:
        return await _pending(redis_client) == 0

    await _until(closed)
    assert [row[0] for row in _rows(db)] == ["lost", "running"]


async def test_an_intent_whose_event_was_stored_elsewhere_is_only_acknowledged(
    recorder: Recorder, redis_client: aioredis.Redis, db: Database
) -> None:
    db.write_sync(record_usage, [to_record(_event("elsewhere"))])
    await _add(redis_client, "i", _intent("elsewhere", worker="dead"))

    async def closed() -> bool:
        return recorder.stats.read == 1 and await _pending(redis_client) == 0

    await _until(closed)
    assert recorder.stats.orphans == 0
    assert _rows(db) == [("elsewhere", 200, 10_000, "provider")]
    total = db.read_sync(lambda conn: count(conn, "SELECT COUNT(*) FROM usage_records"))
    assert total == 1
