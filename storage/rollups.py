"""Hourly and daily rollups kept up to date from each inserted usage batch, never by a scan.

`record_usage` inserts a batch and adds the rows that were new (not the redelivered
duplicates) to their buckets in the same transaction, so a rollup always equals the sum of the
raw rows it covers: both commit together or neither does. Counts, tokens and nano-USD add up
exactly; `cost_usd` is rewritten from the new `cost_nano` total.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import apsw

from storage.errors import constraint_errors
from storage.records import UsageRecord
from storage.usage import NANO_PER_USD, insert_new_usage

_Bucket = tuple[str, str, str, str, str]
"""org_id, key_id, model, period, bucket."""

_SUMS = (
    "request_count",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "cost_nano",
    "cached_count",
)
_ADD_TO_ROLLUP = (
    "INSERT INTO usage_rollups (org_id, key_id, model, period, bucket, "  # noqa: S608
    f"{', '.join(_SUMS)}, cost_usd) VALUES (?, ?, ?, ?, ?, {', '.join('?' for _ in _SUMS)}, ?) "
    "ON CONFLICT (org_id, key_id, model, period, bucket) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMS)
    # every SET expression reads the row as it was, so this is the new total's cost
    + f", cost_usd = (cost_nano + excluded.cost_nano) / {float(NANO_PER_USD)!r}"
)


def record_usage(conn: apsw.Connection, records: Iterable[UsageRecord]) -> int:
    """Insert a batch of usage records and add the new ones to the rollups.

    Call it through `Database.write` so that both happen in one transaction.

    Returns:
        How many records were new (the others were already stored and are not counted again).

    Raises:
        InvalidValue: a malformed `created_at`, or a value the schema refuses.
    """
    return len(record_new_usage(conn, records))


def record_new_usage(conn: apsw.Connection, records: Iterable[UsageRecord]) -> list[UsageRecord]:
    """`record_usage`, returning the records that were new."""
    fresh = insert_new_usage(conn, records)
    add_to_rollups(conn, fresh)
    touch_keys(conn, fresh)
    return fresh


def touch_keys(conn: apsw.Connection, records: Iterable[UsageRecord]) -> None:
    """Move each key's `last_used_at` forward to its latest request in `records`.

    The data plane never writes SQLite, so this is where Gandalf's `last_used_at` comes from:
    exact, and costing the hot path nothing. Keys deleted since are skipped by the UPDATE.
    """
    latest: dict[str, str] = {}
    for r in records:
        if r.created_at > latest.get(r.key_id, ""):
            latest[r.key_id] = r.created_at
    conn.executemany(
        "UPDATE api_keys SET last_used_at = :at WHERE id = :key "
        "AND (last_used_at IS NULL OR last_used_at < :at)",
        [{"key": key, "at": at} for key, at in latest.items()],
    )


def add_to_rollups(conn: apsw.Connection, records: Iterable[UsageRecord]) -> int:
    """Add stored records to their hourly and daily buckets; returns the buckets touched.

    Args:
        conn: a connection inside the transaction that inserted `records`.
        records: rows as `insert_new_usage` returns them (`created_at` in the stored form).
    """
    sums: dict[_Bucket, list[int]] = {}
    for r in records:
        for bucket in (
            (r.org_id, r.key_id, r.model, "hourly", hour_of(r.created_at)),
            (r.org_id, r.key_id, r.model, "daily", day_of(r.created_at)),
        ):
            total = sums.get(bucket)
            if total is None:
                total = sums[bucket] = [0, 0, 0, 0, 0, 0, 0]
            total[0] += 1
            total[1] += r.prompt_tokens
            total[2] += r.completion_tokens
            total[3] += r.cached_tokens
            total[4] += r.total_tokens
            total[5] += r.cost_nano
            total[6] += r.cached
    if not sums:
        return 0
    rows = [(*bucket, *total, total[5] / NANO_PER_USD) for bucket, total in sums.items()]
    with constraint_errors("rollup"):
        conn.executemany(_ADD_TO_ROLLUP, rows)
    return len(rows)


def hour_of(created_at: str) -> str:
    """Start of the UTC hour of a stored time (`2026-01-01T10:42:07.123Z` → `…T10:00:00.000Z`)."""
    return f"{created_at[:13]}:00:00.000Z"


def day_of(created_at: str) -> str:
    """Start of the UTC day of a stored time (`2026-01-01T10:42:07.123Z` → `…T00:00:00.000Z`)."""
    return f"{created_at[:10]}T00:00:00.000Z"


def spend_by_key(conn: apsw.Connection, days: tuple[str, str] | None = None) -> dict[str, int]:
    """Nano-USD recorded per key, from the daily rollups (raw-row retention cannot shrink it).

    Args:
        conn: the database.
        days: `(first, after_last)` as `YYYY-MM-DD` UTC days; None sums every day (the
            `total` budget period).
    """
    sql = "SELECT key_id, SUM(cost_nano) FROM usage_rollups WHERE period = 'daily'"
    params: tuple[str, ...] = ()
    if days is not None:
        sql += " AND bucket >= ? AND bucket < ?"
        params = (f"{days[0]}T00:00:00.000Z", f"{days[1]}T00:00:00.000Z")
    rows = conn.execute(sql + " GROUP BY key_id HAVING SUM(cost_nano) > 0", params).fetchall()
    return {str(key_id): int(cast("int", total)) for key_id, total in rows}
