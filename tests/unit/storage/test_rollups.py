"""storage/rollups.py: batches added to hourly and daily buckets, duplicates never counted."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from storage.db import Database
from storage.errors import InvalidValue
from storage.records import Rollup, UsageRecord
from storage.rollups import add_to_rollups, day_of, hour_of, record_usage
from storage.usage import UsageFilters, list_usage, usage_summary
from tests.unit.storage.factories import usage_record


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open_sync(str(tmp_path / "gandalf.db"))
    yield database
    database.close()


def _random_batch(rng: random.Random, ids: range) -> list[UsageRecord]:
    batch = []
    for i in ids:
        prompt, completion = rng.randrange(0, 5000), rng.randrange(0, 2000)
        # hours on both sides of midnight, and an offset that moves the UTC day
        hour = rng.choice(["2026-01-01T23", "2026-01-02T00", "2026-01-02T01"])
        offset = rng.choice(["Z", "+00:00", "+02:00"])
        batch.append(
            usage_record(
                f"req-{i}",
                f"{hour}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{i % 1000:03d}{offset}",
                key_id=rng.choice(["k1", "k2"]),
                org_id=rng.choice(["default", "acme"]),
                model=rng.choice(["chat", "embed"]),
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
                cached_tokens=rng.randrange(0, 100),
                cached=rng.random() < 0.2,
                cost_nano=rng.choice([0, 1, 7, 999_999_999, rng.randrange(10**12)]),
            )
        )
    return batch


_RAW_SUMS = """
    SELECT org_id, key_id, model, 'hourly', substr(created_at, 1, 13) || ':00:00.000Z',
           COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens),
           SUM(total_tokens), SUM(cost_nano), SUM(cached)
    FROM usage_records GROUP BY 1, 2, 3, 5
    UNION ALL
    SELECT org_id, key_id, model, 'daily', substr(created_at, 1, 10) || 'T00:00:00.000Z',
           COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens),
           SUM(total_tokens), SUM(cost_nano), SUM(cached)
    FROM usage_records GROUP BY 1, 2, 3, 5
"""


def _raw_sums(conn: apsw.Connection) -> set[tuple[Any, ...]]:
    return set(conn.execute(_RAW_SUMS).fetchall())


_ROLLUP_SUMS = (
    "org_id", "key_id", "model", "period", "bucket", "request_count", "prompt_tokens",
    "completion_tokens", "cached_tokens", "total_tokens", "cost_nano", "cached_count",
)  # fmt: skip


def _rollup_sums(conn: apsw.Connection) -> set[tuple[Any, ...]]:
    summary = usage_summary(conn, UsageFilters())
    return {tuple(getattr(r, f) for f in _ROLLUP_SUMS) for r in summary}


@pytest.mark.parametrize(
    ("created_at", "hour", "day"),
    [
        ("2026-01-01T10:42:07.123Z", "2026-01-01T10:00:00.000Z", "2026-01-01T00:00:00.000Z"),
        ("2026-12-31T23:59:59.999Z", "2026-12-31T23:00:00.000Z", "2026-12-31T00:00:00.000Z"),
        ("2026-01-02T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-02T00:00:00.000Z"),
    ],
)
def test_buckets_start_at_the_utc_hour_and_day(created_at: str, hour: str, day: str) -> None:
    assert (hour_of(created_at), day_of(created_at)) == (hour, day)


def test_rollups_equal_the_raw_rows_after_batches_with_duplicates(db: Database) -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible test data
    first = _random_batch(rng, range(300))
    assert db.write_sync(record_usage, first) == 300
    # redelivered entries (some changed, to prove the stored copy wins), a copy inside the
    # batch, and new rows
    second = [*rng.sample(first, 50), *_random_batch(rng, range(300, 500))]
    second = [*second, second[-1]]
    second[0] = UsageRecord(**{**_fields(second[0]), "prompt_tokens": 10**6})
    assert db.write_sync(record_usage, second) == 200
    assert db.write_sync(record_usage, first[:10]) == 0
    assert db.write_sync(record_usage, []) == 0

    raw = db.read_sync(_raw_sums)
    assert db.read_sync(_rollup_sums) == raw
    assert sum(row[5] for row in raw if row[3] == "daily") == 500
    assert db.read_sync(lambda c: list_usage(c, UsageFilters(), limit=0)[1]) == 500


def _fields(record: UsageRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in record.__struct_fields__}


def test_costs_sum_exactly_in_nano_usd(db: Database) -> None:
    # 0.1 USD ten thousand times: a float sum drifts, an integer sum does not
    batch = [
        usage_record(f"r{i}", "2026-01-01T10:00:00Z", cost_nano=100_000_000) for i in range(10_000)
    ]
    db.write_sync(record_usage, batch[:5_000])
    db.write_sync(record_usage, batch[4_000:])
    summary = db.read_sync(usage_summary, UsageFilters())
    assert {(r.period, r.cost_nano, r.request_count) for r in summary} == {
        ("hourly", 1_000_000_000_000, 10_000),
        ("daily", 1_000_000_000_000, 10_000),
    }
    assert all(r.cost_usd == 1000.0 for r in summary)
    assert sum([0.1] * 10_000) != 1000.0  # what summing cost_usd would have given


def test_a_failed_batch_adds_nothing_to_the_rollups(db: Database) -> None:
    db.write_sync(record_usage, [usage_record("r1", "2026-01-01T10:00:00Z")])
    bad = [
        usage_record("r2", "2026-01-01T10:00:00Z"),
        usage_record("r3", "2026-01-01T10:00:00Z", usage_source="x"),
    ]
    with pytest.raises(InvalidValue):
        db.write_sync(record_usage, bad)
    (hourly,) = db.read_sync(usage_summary, UsageFilters(period="hourly"))
    assert hourly.request_count == 1
    assert db.read_sync(lambda c: list_usage(c, UsageFilters())[1]) == 1


def test_adding_keeps_what_the_bucket_held(db: Database) -> None:
    def scenario(conn: apsw.Connection) -> list[Rollup]:
        assert (
            add_to_rollups(conn, [usage_record("r1", "2026-01-01T10:05:00.000Z", cost_nano=3)]) == 2
        )
        late = usage_record("r2", "2026-01-01T10:59:59.999Z", cost_nano=5, cached=True)
        assert add_to_rollups(conn, [late]) == 2
        assert add_to_rollups(conn, []) == 0
        return usage_summary(conn, UsageFilters(period="hourly"))

    (hourly,) = db.write_sync(scenario)
    assert (hourly.request_count, hourly.cost_nano, hourly.cost_usd) == (2, 8, 8e-9)
    assert (hourly.total_tokens, hourly.cached_count) == (30, 1)


def test_recording_moves_last_used_at_forward_only(db: Database) -> None:
    from storage import keys  # noqa: PLC0415 - only this test creates keys

    key = db.write_sync(keys.create_key, key_hash="a" * 64, key_prefix="gnd_aaaaaaaa", key_id="k1")
    assert key.last_used_at is None
    db.write_sync(
        record_usage,
        [
            usage_record("r1", "2026-11-26T10:00:00.000Z"),
            usage_record("r2", "2026-11-26T12:00:00.000Z"),
            usage_record("r3", "2026-11-26T11:00:00.000Z", key_id="gone"),  # no such key: skipped
        ],
    )
    assert db.read_sync(keys.get_key, "k1").last_used_at == "2026-11-26T12:00:00.000Z"
    db.write_sync(record_usage, [usage_record("r4", "2026-11-26T09:00:00.000Z")])  # late, older
    assert db.read_sync(keys.get_key, "k1").last_used_at == "2026-11-26T12:00:00.000Z"
