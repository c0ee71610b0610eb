"""storage/usage.py: idempotent inserts by request id, filtered listing, the summary."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import msgspec
import pytest

from storage.db import config_version, open_connection
from storage.errors import InvalidValue
from storage.migrate import available, migrate
from storage.records import Rollup
from storage.usage import (
    UsageFilters,
    insert_new_usage,
    insert_usage,
    list_usage,
    upsert_rollups,
    usage_summary,
)
from tests.unit.storage.factories import usage_record


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = open_connection(str(tmp_path / "gandalf.db"))
    migrate(connection)
    yield connection
    connection.close()


def _rollup(bucket: str, period: str = "hourly", **fields: Any) -> Rollup:
    base: dict[str, Any] = {
        "org_id": "default",
        "key_id": "k1",
        "model": "chat",
        "period": period,
        "bucket": bucket,
        "request_count": 2,
        "prompt_tokens": 20,
        "completion_tokens": 10,
        "cached_tokens": 0,
        "total_tokens": 30,
        "cost_usd": 0.01,
        "cost_nano": 10_000_000,
        "cached_count": 1,
    }
    return Rollup(**{**base, **fields})


def test_insert_assigns_ids_and_round_trips(conn: apsw.Connection) -> None:
    record = usage_record(
        "r1",
        "2026-01-01T10:00:00Z",
        upstream_model="gpt-4o-2024",
        provider_id="openai",
        cached_tokens=3,
        cost_nano=500_000_001,
        cost_usd=0.500000001,
        price_version="2026-01",
        ttft_ms=40,
        user_id="u1",
        usage_source="estimated",
    )
    assert insert_usage(conn, [record]) == 1
    rows, total = list_usage(conn, UsageFilters())
    assert total == 1
    stored = rows[0]
    assert uuid.UUID(stored.id).version == 7
    assert stored.created_at == "2026-01-01T10:00:00.000Z"
    assert msgspec.structs.replace(stored, id="", created_at=record.created_at) == record


def test_a_redelivered_request_id_is_ignored(conn: apsw.Connection) -> None:
    batch = [usage_record("r1", "2026-01-01T10:00:00Z"), usage_record("r2", "2026-01-01T10:00:01Z")]
    assert insert_usage(conn, batch) == 2
    again = [
        usage_record("r2", "2026-01-01T10:00:01Z", total_tokens=999),
        usage_record("r3", "2026-01-01T10:00:02Z"),
    ]
    assert insert_usage(conn, again) == 1
    rows, total = list_usage(conn, UsageFilters())
    assert total == 3
    assert {r.request_id: r.total_tokens for r in rows}["r2"] == 15
    assert insert_usage(conn, []) == 0


def test_insert_new_usage_returns_only_the_rows_inserted(conn: apsw.Connection) -> None:
    insert_usage(conn, [usage_record("r1", "2026-01-01T10:00:00Z")])
    fresh = insert_new_usage(
        conn,
        [
            usage_record("r1", "2026-01-01T10:00:00Z"),
            usage_record("r2", "2026-01-01T11:00:00+01:00", prompt_tokens=1),
            usage_record("r2", "2026-01-01T10:00:00Z", prompt_tokens=2),
            usage_record("r3", "2026-01-01T10:00:01Z", cost_nano=7),
        ],
    )
    assert [(r.request_id, r.prompt_tokens) for r in fresh] == [("r2", 1), ("r3", 10)]
    assert all(uuid.UUID(r.id).version == 7 for r in fresh)
    assert fresh[0].created_at == "2026-01-01T10:00:00.000Z"
    assert fresh[1].cost_usd == 7e-9
    assert insert_new_usage(conn, []) == []


def test_cost_usd_is_derived_from_cost_nano(conn: apsw.Connection) -> None:
    insert_usage(conn, [usage_record("r1", "2026-01-01T10:00:00Z", cost_nano=1_234, cost_usd=99.0)])
    (stored,), _ = list_usage(conn, UsageFilters())
    assert (stored.cost_nano, stored.cost_usd) == (1_234, 1.234e-6)


def test_migration_2_backfills_cost_nano_from_cost_usd(tmp_path: Path) -> None:
    connection = open_connection(str(tmp_path / "old.db"))
    first, *later = available()
    migrate(connection, [first])
    connection.execute(
        "INSERT INTO usage_records (id, request_id, key_id, org_id, model, cost_usd, "
        "status_code, created_at) VALUES ('i', 'r', 'k', 'default', 'm', 0.000123456, 200, 't')"
    )
    connection.execute(
        "INSERT INTO usage_rollups (org_id, key_id, model, period, bucket, cost_usd) "
        "VALUES ('default', 'k', 'm', 'daily', 't', 1.5)"
    )
    assert migrate(connection) == [m.version for m in later]
    row = connection.execute("SELECT cost_nano, price_version FROM usage_records").fetchall()
    assert row == [(123_456, "")]
    assert connection.execute("SELECT cost_nano FROM usage_rollups").fetchall() == [
        (1_500_000_000,)
    ]
    connection.close()


def test_a_bad_row_fails_the_batch_instead_of_vanishing(conn: apsw.Connection) -> None:
    with pytest.raises(InvalidValue):
        insert_usage(conn, [usage_record("r1", "2026-01-01T10:00:00Z", usage_source="guessed")])
    with pytest.raises(InvalidValue, match="RFC3339"):
        insert_usage(conn, [usage_record("r1", "not a time")])


def test_usage_does_not_bump_the_config_version(conn: apsw.Connection) -> None:
    start = config_version(conn)
    insert_usage(conn, [usage_record("r1", "2026-01-01T10:00:00Z")])
    upsert_rollups(conn, [_rollup("2026-01-01T10:00:00Z")])
    assert config_version(conn) == start


@pytest.fixture
def filled(conn: apsw.Connection) -> apsw.Connection:
    insert_usage(
        conn,
        [
            usage_record("a", "2026-01-01T09:59:59.999Z"),
            usage_record("b", "2026-01-01T10:00:00Z"),
            usage_record("c", "2026-01-01T10:30:00Z", model="embed"),
            usage_record("d", "2026-01-01T11:00:00Z", key_id="k2", org_id="acme"),
        ],
    )
    return conn


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (UsageFilters(), ["d", "c", "b", "a"]),
        (UsageFilters(org_id="default"), ["c", "b", "a"]),
        (UsageFilters(key_id="k2"), ["d"]),
        (UsageFilters(model="embed"), ["c"]),
        (UsageFilters(since="2026-01-01T10:00:00Z"), ["d", "c", "b"]),
        (UsageFilters(until="2026-01-01T11:00:00Z"), ["c", "b", "a"]),
        # the same instants with an offset: Gandalf compared raw strings and got these wrong
        (
            UsageFilters(since="2026-01-01T12:00:00+02:00", until="2026-01-01T13:00+02:00"),
            ["c", "b"],
        ),
        (UsageFilters(org_id="default", model="chat", since="2026-01-01T10:00:00Z"), ["b"]),
    ],
)
def test_list_filters(filled: apsw.Connection, filters: UsageFilters, expected: list[str]) -> None:
    rows, total = list_usage(filled, filters)
    assert [r.request_id for r in rows] == expected
    assert total == len(expected)


def test_list_paginates_newest_first(filled: apsw.Connection) -> None:
    rows, total = list_usage(filled, UsageFilters(), offset=1, limit=2)
    assert ([r.request_id for r in rows], total) == (["c", "b"], 4)


def test_bad_since_is_invalid(filled: apsw.Connection) -> None:
    with pytest.raises(InvalidValue, match="RFC3339"):
        list_usage(filled, UsageFilters(since="yesterday"))


def test_rollups_upsert_replaces_values(conn: apsw.Connection) -> None:
    assert upsert_rollups(conn, [_rollup("2026-01-01T10:00:00Z")]) == 1
    upsert_rollups(conn, [_rollup("2026-01-01T10:00:00Z", request_count=7)])
    (stored,) = usage_summary(conn, UsageFilters())
    assert stored.request_count == 7
    assert (stored.cost_nano, stored.cost_usd) == (10_000_000, 0.01)
    assert stored.bucket == "2026-01-01T10:00:00.000Z"
    assert upsert_rollups(conn, []) == 0


def test_summary_filters_by_period_and_bucket(conn: apsw.Connection) -> None:
    upsert_rollups(
        conn,
        [
            _rollup("2026-01-01T09:00:00Z"),
            _rollup("2026-01-01T10:00:00Z"),
            _rollup("2026-01-01T00:00:00Z", period="daily"),
            _rollup("2026-01-01T10:00:00Z", org_id="acme", key_id="k2"),
        ],
    )
    hourly = usage_summary(conn, UsageFilters(period="hourly", org_id="default"))
    assert [r.bucket for r in hourly] == ["2026-01-01T10:00:00.000Z", "2026-01-01T09:00:00.000Z"]
    daily = usage_summary(conn, UsageFilters(period="daily"))
    assert [(r.period, r.bucket) for r in daily] == [("daily", "2026-01-01T00:00:00.000Z")]
    window = usage_summary(
        conn, UsageFilters(since="2026-01-01T09:30:00Z", until="2026-01-01T11:00:00Z")
    )
    assert [(r.org_id, r.bucket) for r in window] == [
        ("acme", "2026-01-01T10:00:00.000Z"),
        ("default", "2026-01-01T10:00:00.000Z"),
    ]
    with pytest.raises(InvalidValue, match="period"):
        usage_summary(conn, UsageFilters(period="weekly"))


def test_rollup_json_has_gandalf_fields(conn: apsw.Connection) -> None:
    body = msgspec.json.decode(msgspec.json.encode(_rollup("2026-01-01T10:00:00.000Z")))
    assert set(body) >= {
        "org_id", "key_id", "model", "period", "bucket", "request_count", "prompt_tokens",
        "completion_tokens", "total_tokens", "cost_usd", "cached_count", "cost_nano",
    }  # fmt: skip
