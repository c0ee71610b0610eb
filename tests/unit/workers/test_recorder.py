"""workers/recorder.py against a real Redis stream and a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import msgspec
import pytest
import redis.asyncio as aioredis

from app.domain import UsageEvent
from app.keyspace import Keyspace
from storage.db import Database, count
from storage.records import UsageRecord
from storage.rollups import record_usage
from storage.usage import UsageFilters, list_usage, usage_summary
from workers.recorder import Recorder, consumer_name, to_record

KS = Keyspace("test")
WAIT = 10.0
"""Upper bound for anything awaited here; reaching it means the behaviour is missing."""

_encode = msgspec.json.Encoder().encode


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open_sync(str(tmp_path / "usage.db"))
    yield database
    database.close()


def _event(request_id: str, **fields: Any) -> UsageEvent:
    base: dict[str, Any] = {
        "request_id": request_id,
        "key_id": "k1",
        "org_id": "default",
        "model": "chat",
        "created_ms": 1_767_225_600_123,  # 2026-01-01T00:00:00.123Z
        "status": 200,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_nano": 1_500,
    }
    return UsageEvent(**{**base, **fields})


async def _append(client: aioredis.Redis, *events: UsageEvent | bytes) -> list[bytes]:
    ids = []
    for event in events:
        payload = event if isinstance(event, bytes) else _encode(event)
        ids.append(await client.xadd(KS.usage_stream, {"e": payload}))
    return ids


def _recorder(client: aioredis.Redis, db: Database, **options: Any) -> Recorder:
    settings: dict[str, Any] = {"block_ms": 50, "retry_delay": 0.01, "max_retry_delay": 0.05}
    return Recorder(client, KS, db, **{**settings, **options})


@contextlib.asynccontextmanager
async def _running(recorder: Recorder) -> AsyncIterator[asyncio.Task[None]]:
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(recorder.run(), name="usage-recorder")
        try:
            yield task
        finally:
            task.cancel()


async def _eventually(check: Callable[[], Awaitable[bool] | bool]) -> None:
    async with asyncio.timeout(WAIT):
        while True:
            result = check()
            if await result if isinstance(result, Awaitable) else result:
                return
            await asyncio.sleep(0.01)


async def _rows(db: Database) -> list[UsageRecord]:
    rows, _ = await db.read(list_usage, UsageFilters(), 0, 10_000)
    return rows


async def _pending(client: aioredis.Redis) -> int:
    summary = await client.xpending(KS.usage_stream, KS.usage_group)
    return int(summary["pending"])


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"created_at": "2026-01-01T00:00:00.123Z", "total_tokens": 15}),
        ({"created_ms": 0}, {"created_at": "1970-01-01T00:00:00.000Z"}),
        ({"estimated": True}, {"usage_source": "estimated"}),
        ({"estimated": False}, {"usage_source": "provider"}),
        ({"provider": "cache", "cached": True}, {"provider_id": "cache", "cached": True}),
        ({"status": 499, "ttft_ms": 40}, {"status_code": 499, "ttft_ms": 40}),
        ({"cost_nano": 7, "price_version": "v2"}, {"cost_nano": 7, "price_version": "v2"}),
        (
            {"user_id": "u", "team_id": "t", "upstream_model": "gpt-4o-2024", "cached_tokens": 3},
            {"user_id": "u", "team_id": "t", "upstream_model": "gpt-4o-2024", "cached_tokens": 3},
        ),
    ],
)
def test_an_event_becomes_a_usage_record(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    record = to_record(_event("r1", **fields))
    assert {name: getattr(record, name) for name in expected} == expected
    assert (record.request_id, record.key_id, record.org_id) == ("r1", "k1", "default")


@pytest.mark.parametrize(
    "fields",
    [
        {"created_ms": -1},
        {"created_ms": 253_402_300_800_000},
        {"prompt_tokens": -1},
        {"cost_nano": 2**63},
        {"prompt_tokens": 2**62, "completion_tokens": 2**62},
        {"ttft_ms": -5},
    ],
)
def test_values_no_request_can_have_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        to_record(_event("r1", **fields))


def test_consumer_names_differ_per_recorder() -> None:
    assert consumer_name() != consumer_name()


async def test_a_client_that_decodes_responses_is_refused(redis_url: str, db: Database) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="bytes"):
            Recorder(client, KS, db)
    finally:
        await client.aclose()


async def test_appended_events_are_recorded_once(
    redis_client: aioredis.Redis, db: Database
) -> None:
    recorder = _recorder(redis_client, db)
    await _append(redis_client, _event("r1"), _event("r2", estimated=True, provider="openai"))
    async with _running(recorder):
        await _eventually(lambda: recorder.stats.acknowledged == 2)
        await _append(redis_client, _event("r3", cached=True))
        await _eventually(lambda: recorder.stats.acknowledged == 3)
    rows = {r.request_id: r for r in await _rows(db)}
    assert sorted(rows) == ["r1", "r2", "r3"]
    assert rows["r1"].created_at == "2026-01-01T00:00:00.123Z"
    assert (rows["r2"].usage_source, rows["r2"].provider_id) == ("estimated", "openai")
    assert (rows["r1"].cost_nano, rows["r1"].cost_usd) == (1_500, 1.5e-6)
    assert rows["r3"].cached
    assert await redis_client.xlen(KS.usage_stream) == 0  # recorded entries are deleted
    assert await _pending(redis_client) == 0
    assert (recorder.stats.recorded, recorder.stats.duplicates) == (3, 0)


async def test_the_same_event_appended_twice_is_one_row(
    redis_client: aioredis.Redis, db: Database
) -> None:
    recorder = _recorder(redis_client, db)
    event = _event("r1", prompt_tokens=100)
    await _append(redis_client, event, event)
    async with _running(recorder):
        await _eventually(lambda: recorder.stats.acknowledged == 2)
        await _append(redis_client, event)  # and once more, in a later batch
        await _eventually(lambda: recorder.stats.acknowledged == 3)
    assert [r.request_id for r in await _rows(db)] == ["r1"]
    assert (recorder.stats.recorded, recorder.stats.duplicates) == (1, 2)
    daily = await db.read(usage_summary, UsageFilters(period="daily"))
    assert [(r.request_count, r.prompt_tokens) for r in daily] == [(1, 100)]


async def test_malformed_entries_are_acknowledged_and_the_rest_recorded(
    redis_client: aioredis.Redis, db: Database
) -> None:
    recorder = _recorder(redis_client, db)
    await _append(
        redis_client,
        _event("good-1"),
        b"not json",
        b'{"request_id": "r", "key_id": 1}',
        _encode({"request_id": "r", "key_id": "k"}),  # required fields missing
        _event("negative", prompt_tokens=-3),
        _event("good-2"),
    )
    await redis_client.xadd(KS.usage_stream, {"other": b"field"})
    async with _running(recorder):
        await _eventually(lambda: recorder.stats.acknowledged == 7)
    assert sorted(r.request_id for r in await _rows(db)) == ["good-1", "good-2"]
    assert recorder.stats.malformed == 5
    assert await redis_client.xlen(KS.usage_stream) == 0
    assert await _pending(redis_client) == 0


async def test_entries_left_pending_by_a_dead_consumer_are_claimed_at_start(
    redis_client: aioredis.Redis, db: Database
) -> None:
    recorder = _recorder(redis_client, db, min_idle_ms=1)
    await recorder.ensure_group()
    await _append(redis_client, _event("r1"), _event("r2"), _event("r3"))
    read = await redis_client.xreadgroup(
        KS.usage_group, "dead-supervisor", {KS.usage_stream: ">"}, count=10
    )
    assert len(read[0][1]) == 3
    # the dead recorder had committed r1 and crashed before acknowledging it
    await db.write(record_usage, [to_record(_event("r1"))])
    await asyncio.sleep(0.01)
    async with _running(recorder):
        await _eventually(lambda: recorder.stats.acknowledged == 3)
    assert sorted(r.request_id for r in await _rows(db)) == ["r1", "r2", "r3"]
    assert (recorder.stats.recorded, recorder.stats.duplicates) == (2, 1)
    assert await _pending(redis_client) == 0
    (daily,) = await db.read(usage_summary, UsageFilters(period="daily"))
    assert daily.request_count == 3  # r1 was not counted twice


async def test_entries_abandoned_later_are_claimed_by_the_periodic_check(
    redis_client: aioredis.Redis, db: Database
) -> None:
    recorder = _recorder(redis_client, db, min_idle_ms=300, claim_interval=0.05)
    await recorder.ensure_group()
    await _append(redis_client, _event("r1"))
    await redis_client.xreadgroup(KS.usage_group, "dead", {KS.usage_stream: ">"}, count=10)
    async with _running(recorder):
        await asyncio.sleep(0.1)
        assert recorder.stats.read == 0  # not idle for long enough yet: maybe still working
        await _eventually(lambda: recorder.stats.acknowledged == 1)
    assert [r.request_id for r in await _rows(db)] == ["r1"]


async def test_a_sqlite_failure_leaves_entries_pending_until_a_retry_stores_them(
    redis_client: aioredis.Redis, db: Database
) -> None:
    def break_inserts(conn: apsw.Connection) -> None:
        conn.execute(
            "CREATE TRIGGER broken BEFORE INSERT ON usage_records "
            "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
        )

    await db.write(break_inserts)
    recorder = _recorder(redis_client, db)
    await _append(redis_client, _event("r1"), _event("r2"))
    async with _running(recorder):
        await _eventually(lambda: recorder.stats.failures >= 2)
        assert await _pending(redis_client) == 2
        assert await redis_client.xlen(KS.usage_stream) == 2
        assert recorder.stats.acknowledged == 0
        await db.write(lambda conn: conn.execute("DROP TRIGGER broken"))
        await _eventually(lambda: recorder.stats.acknowledged == 2)
        await _append(redis_client, _event("r3"))  # and new entries flow again
        await _eventually(lambda: recorder.stats.acknowledged == 3)
    assert sorted(r.request_id for r in await _rows(db)) == ["r1", "r2", "r3"]
    assert await _pending(redis_client) == 0


async def test_a_redis_that_lost_the_stream_and_group_is_set_up_again(
    redis_client: aioredis.Redis, db: Database
) -> None:
    recorder = _recorder(redis_client, db)
    async with _running(recorder):
        await _append(redis_client, _event("r1"))
        await _eventually(lambda: recorder.stats.acknowledged == 1)
        await redis_client.flushall()  # a restart of a Redis without persistence
        await _eventually(lambda: recorder.stats.failures >= 1)
        await _eventually(lambda: redis_client.exists(KS.usage_stream))
        await _append(redis_client, _event("r2"))
        await _eventually(lambda: recorder.stats.acknowledged == 2)
    assert sorted(r.request_id for r in await _rows(db)) == ["r1", "r2"]


async def test_rollups_and_costs_match_the_rows_over_many_batches(
    redis_client: aioredis.Redis, db: Database
) -> None:
    rng = random.Random(3)  # noqa: S311 - reproducible test data
    events = [
        _event(
            f"r{i}",
            key_id=rng.choice(["k1", "k2", "k3"]),
            model=rng.choice(["chat", "embed"]),
            created_ms=1_767_225_600_000 + rng.randrange(3 * 86_400_000),
            prompt_tokens=rng.randrange(5_000),
            completion_tokens=rng.randrange(1_000),
            cached_tokens=rng.randrange(100),
            cached=rng.random() < 0.2,
            cost_nano=rng.choice([1, 3, 100_000_000, rng.randrange(10**10)]),
        )
        for i in range(600)
    ]
    redelivered = rng.sample(events, 100)
    recorder = _recorder(redis_client, db, batch_size=64)
    await _append(redis_client, *events, *redelivered)
    async with _running(recorder):
        await _eventually(lambda: recorder.stats.acknowledged == 700)
    assert (recorder.stats.recorded, recorder.stats.duplicates) == (600, 100)

    def totals(conn: apsw.Connection) -> tuple[Any, ...]:
        raw = conn.execute(
            "SELECT org_id, key_id, model, substr(created_at, 1, 13) || ':00:00.000Z', COUNT(*), "
            "SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens), SUM(total_tokens), "
            "SUM(cost_nano), SUM(cached) FROM usage_records GROUP BY 1, 2, 3, 4"
        ).fetchall()
        hourly = conn.execute(
            "SELECT org_id, key_id, model, bucket, request_count, prompt_tokens, "
            "completion_tokens, cached_tokens, total_tokens, cost_nano, cached_count "
            "FROM usage_rollups WHERE period = 'hourly'"
        ).fetchall()
        daily_cost = count(conn, "SELECT SUM(cost_nano) FROM usage_rollups WHERE period = 'daily'")
        return set(raw), set(hourly), daily_cost

    raw, hourly, daily_cost = await db.read(totals)
    assert hourly == raw
    assert daily_cost == sum(e.cost_nano for e in events)  # exact, in nano-USD


async def test_drain_stores_what_is_left_then_returns(
    redis_client: aioredis.Redis, db: Database
) -> None:
    recorder = _recorder(redis_client, db, block_ms=5_000)
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(recorder.run(), name="usage-recorder")
        await _append(redis_client, *(_event(f"r{i}") for i in range(5)))
        async with asyncio.timeout(WAIT):
            await recorder.drain()
        assert task.done()
    assert len(await _rows(db)) == 5


async def test_a_cancellation_lost_inside_redis_py_still_stops_the_recorder(
    redis_client: aioredis.Redis, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = redis_client.xreadgroup

    async def swallowing(*args: Any, **kwargs: Any) -> Any:
        try:
            return await real(*args, **kwargs)
        except asyncio.CancelledError:
            return []  # what asyncio.wait_for on Python 3.11 does when the send just finished

    monkeypatch.setattr(redis_client, "xreadgroup", swallowing)
    recorder = _recorder(redis_client, db, block_ms=200)
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(recorder.run(), name="usage-recorder")
        await asyncio.sleep(0.05)
        task.cancel()
        async with asyncio.timeout(WAIT):
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_consumers_gone_quiet_are_forgotten(
    redis_client: aioredis.Redis, db: Database
) -> None:
    recorder = _recorder(redis_client, db, forget_after_ms=20)
    await recorder.ensure_group()
    for name in ("old-empty", "old-busy"):
        await _append(redis_client, _event(f"{name}-r"))
        await redis_client.xreadgroup(KS.usage_group, name, {KS.usage_stream: ">"}, count=1)
    await redis_client.xack(KS.usage_stream, KS.usage_group, *(await _ids(redis_client))[:1])
    await asyncio.sleep(0.05)
    await recorder.claim_abandoned()  # min idle 30 s: claims nothing, then forgets

    consumers = await redis_client.xinfo_consumers(KS.usage_stream, KS.usage_group)
    names = {c["name"] for c in consumers}
    assert names == {b"old-busy", recorder.consumer.encode()}


async def _ids(client: aioredis.Redis) -> list[bytes]:
    return [entry_id for entry_id, _ in await client.xrange(KS.usage_stream)]
