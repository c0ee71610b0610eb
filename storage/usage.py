"""Usage records and rollups: idempotent batch inserts, filtered listing, the summary.

A usage event redelivered by the Redis stream has the same `request_id` and is ignored, so
the recorder can insert then acknowledge without counting anything twice. `insert_new_usage`
says which rows were new, so that storage/rollups.py adds exactly those to the rollups.
Costs are stored as exact nano-USD integers; `cost_usd` is derived from them.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import apsw
import msgspec
import uuid_utils

from storage.db import count
from storage.errors import InvalidValue, constraint_errors
from storage.records import PERIODS, Rollup, UsageRecord, normalize_time

_USAGE_COLUMNS = tuple(UsageRecord.__struct_fields__)
_ROLLUP_COLUMNS = tuple(Rollup.__struct_fields__)
_ROLLUP_KEY = ("org_id", "key_id", "model", "period", "bucket")
NANO_PER_USD = 1_000_000_000
_ROWS_PER_INSERT = 500
"""Rows per INSERT statement (11,000 parameters; SQLite allows 32,766)."""


class UsageFilters(msgspec.Struct, kw_only=True):
    """Query filters of `GET /usage` and `/usage/summary`; None = any."""

    org_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    since: str | None = None
    """Inclusive lower bound (RFC3339, any offset)."""
    until: str | None = None
    """Exclusive upper bound (RFC3339, any offset)."""
    period: str | None = None
    """`hourly` or `daily`: the summary only."""


def insert_usage(conn: apsw.Connection, records: Iterable[UsageRecord]) -> int:
    """Insert a batch; records whose `request_id` is already stored are skipped.

    Returns:
        How many rows were inserted.

    Raises:
        InvalidValue: a malformed `created_at`, or a value the schema refuses.
    """
    return len(insert_new_usage(conn, records))


def insert_new_usage(conn: apsw.Connection, records: Iterable[UsageRecord]) -> list[UsageRecord]:
    """Insert a batch; returns the records actually inserted, as stored.

    A record whose `request_id` is already stored, or appears earlier in the batch, is skipped
    and not returned. The returned records have their `id` assigned, `created_at` in the stored
    form and `cost_usd` set from `cost_nano`.

    Raises:
        InvalidValue: a malformed `created_at`, or a value the schema refuses.
    """
    stored = [_stored(r) for r in records]
    if not stored:
        return []
    # Many rows per statement, not one statement per row: after the first statement of a
    # transaction SQLite journals every page a statement changes (in a temp file past 64 KiB),
    # so one row per statement wrote a shared index page once per row: 35 µs a row against
    # 23 µs (100,000 rows in batches of 1,000 with 3 secondary indexes).
    inserted: set[str] = set()
    with constraint_errors("usage record"):
        for start in range(0, len(stored), _ROWS_PER_INSERT):
            chunk = stored[start : start + _ROWS_PER_INSERT]
            values = list(itertools.chain.from_iterable(map(msgspec.structs.astuple, chunk)))
            inserted.update(row[0] for row in conn.execute(_insert_sql(len(chunk)), values))
    fresh: list[UsageRecord] = []
    for record in stored:
        if record.request_id in inserted:
            inserted.discard(record.request_id)  # only its first copy in the batch went in
            fresh.append(record)
    return fresh


@functools.lru_cache(maxsize=8)
def _insert_sql(rows: int) -> str:
    # ON CONFLICT (request_id) rather than INSERT OR IGNORE: OR IGNORE would also drop rows
    # that break a NOT NULL or CHECK constraint, silently losing usage. RETURNING yields only
    # the rows inserted, so the skipped duplicates are known without a second query.
    row = f"({', '.join('?' * len(_USAGE_COLUMNS))})"
    return (
        f"INSERT INTO usage_records ({', '.join(_USAGE_COLUMNS)}) "  # noqa: S608
        f"VALUES {', '.join([row] * rows)} "
        "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
    )


def _stored(record: UsageRecord) -> UsageRecord:
    return msgspec.structs.replace(
        record,
        id=record.id or str(uuid_utils.uuid7()),
        created_at=normalize_time(record.created_at),
        cost_usd=record.cost_nano / NANO_PER_USD,
    )


def _usage(row: Sequence[Any]) -> UsageRecord:
    fields = dict(zip(_USAGE_COLUMNS, row, strict=True))
    fields["cached"] = bool(fields["cached"])
    return UsageRecord(**fields)


def _where(filters: UsageFilters, time_column: str) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for column in ("org_id", "key_id", "model"):
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    # normalized so that the text comparison is a time comparison (Gandalf compared the raw
    # strings: `+02:00` offsets or missing milliseconds gave wrong answers)
    if filters.since is not None:
        clauses.append(f"{time_column} >= :since")
        params["since"] = normalize_time(filters.since)
    if filters.until is not None:
        clauses.append(f"{time_column} < :until")
        params["until"] = normalize_time(filters.until)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def list_usage(
    conn: apsw.Connection, filters: UsageFilters, offset: int = 0, limit: int = 50
) -> tuple[list[UsageRecord], int]:
    """A page of usage records, newest first, and the total matching the filters."""
    where, params = _where(filters, "created_at")
    rows = conn.execute(
        f"SELECT {', '.join(_USAGE_COLUMNS)} FROM usage_records {where} "  # noqa: S608
        "ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset",
        {**params, "limit": max(0, limit), "offset": max(0, offset)},
    ).fetchall()
    total = count(conn, f"SELECT COUNT(*) FROM usage_records {where}", params)  # noqa: S608
    return [_usage(r) for r in rows], total


def usage_summary(conn: apsw.Connection, filters: UsageFilters) -> list[Rollup]:
    """Rollups matching the filters (`since`/`until` bound the bucket), newest bucket first."""
    where, params = _where(filters, "bucket")
    if filters.period is not None:
        if filters.period not in PERIODS:
            raise InvalidValue(f"invalid period {filters.period!r}: use hourly or daily")
        where = f"{where} AND period = :period" if where else "WHERE period = :period"
        params["period"] = filters.period
    rows = conn.execute(
        f"SELECT {', '.join(_ROLLUP_COLUMNS)} FROM usage_rollups {where} "  # noqa: S608
        "ORDER BY bucket DESC, org_id, key_id, model",
        params,
    ).fetchall()
    return [_rollup(r) for r in rows]


def _rollup(row: Sequence[Any]) -> Rollup:
    fields: dict[str, Any] = dict(zip(_ROLLUP_COLUMNS, row, strict=True))
    return Rollup(**fields)


def upsert_rollups(conn: apsw.Connection, rollups: Iterable[Rollup]) -> int:
    """Store rollups, replacing the values of existing buckets (recomputing is idempotent).

    `cost_usd` is stored as `cost_nano / 1e9`; storage/rollups.py adds batches instead.
    """
    rows = [msgspec.structs.asdict(r) for r in rollups]
    for row in rows:
        row["bucket"] = normalize_time(row["bucket"])
        row["cost_usd"] = row["cost_nano"] / NANO_PER_USD
    if not rows:
        return 0
    marks = ", ".join(f":{c}" for c in _ROLLUP_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _ROLLUP_COLUMNS if c not in _ROLLUP_KEY)
    with constraint_errors("rollup"):
        conn.executemany(
            f"INSERT INTO usage_rollups ({', '.join(_ROLLUP_COLUMNS)}) VALUES ({marks}) "  # noqa: S608
            f"ON CONFLICT ({', '.join(_ROLLUP_KEY)}) DO UPDATE SET {updates}",
            rows,
        )
    return len(rows)


def delete_usage_before(conn: apsw.Connection, cutoff: str, limit: int = 5000) -> int:
    """Delete up to `limit` raw usage rows created before `cutoff` (RFC3339); rollups stay.

    Small batches keep each write transaction short, so the recorder is never held up long.

    Returns:
        How many rows were deleted (fewer than `limit`: none older are left).
    """
    conn.execute(
        "DELETE FROM usage_records WHERE rowid IN "
        "(SELECT rowid FROM usage_records WHERE created_at < ? LIMIT ?)",
        (normalize_time(cutoff), limit),
    )
    return int(conn.changes())


def stored_request_ids(conn: apsw.Connection, request_ids: Iterable[str]) -> set[str]:
    """Which of `request_ids` have a usage row."""
    wanted = list(request_ids)
    stored: set[str] = set()
    for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit, with room
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = conn.execute(
            f"SELECT request_id FROM usage_records WHERE request_id IN ({marks})",  # noqa: S608
            chunk,
        ).fetchall()
        stored.update(str(row[0]) for row in rows)
    return stored
