"""workers/retention.py: old raw usage rows go, in batches; rollups and budgets stay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.domain import UsageEvent
from storage.db import Database, count
from storage.rollups import record_usage, spend_by_key
from workers import retention
from workers.recorder import to_record

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open_sync(str(tmp_path / "retention.db"))
    yield database
    database.close()


def _events(prefix: str, n: int, when: datetime) -> list[UsageEvent]:
    return [
        UsageEvent(
            request_id=f"{prefix}-{i}",
            key_id="k1",
            org_id="default",
            model="chat",
            created_ms=int(when.timestamp() * 1000),
            status=200,
            cost_nano=7,
        )
        for i in range(n)
    ]


def _rows(db: Database) -> int:
    return int(db.read_sync(lambda conn: count(conn, "SELECT COUNT(*) FROM usage_records")))


async def test_rows_older_than_the_retention_go_in_batches_and_rollups_stay(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH", 4)
    monkeypatch.setattr(retention, "PAUSE_S", 0)
    old = _events("old", 10, NOW - timedelta(days=31))
    recent = _events("recent", 3, NOW - timedelta(days=29))
    db.write_sync(record_usage, [to_record(e) for e in old + recent])
    spent_before = db.read_sync(spend_by_key)

    deleted = await retention.prune_usage(db, 30, now=NOW)

    assert deleted == 10
    assert _rows(db) == 3
    assert db.read_sync(spend_by_key) == spent_before == {"k1": 13 * 7}
    assert await retention.prune_usage(db, 30, now=NOW) == 0


async def test_zero_days_keeps_everything(db: Database) -> None:
    db.write_sync(
        record_usage, [to_record(e) for e in _events("old", 2, NOW - timedelta(days=900))]
    )
    await retention.keep_pruning(db, 0)  # returns at once: nothing to do, ever
    assert _rows(db) == 2
