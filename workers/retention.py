"""Raw usage rows older than `database.usage_retention_days` are deleted, hourly, in batches.

The hourly and daily rollups are kept: summaries and budget rebuilds (`workers/quota.py`) read
them, so neither changes when raw rows go.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import apsw
import structlog

from storage.db import Database
from storage.errors import StorageError
from storage.records import format_time
from storage.usage import delete_usage_before

log = structlog.get_logger("gandalf.retention")

BATCH = 5000
PAUSE_S = 0.05
"""Between batches: lets the recorder's transactions in."""


async def prune_usage(db: Database, days: int, *, now: datetime | None = None) -> int:
    """Delete the raw rows older than `days` days; returns how many went."""
    cutoff = format_time((now or datetime.now(UTC)) - timedelta(days=days))
    deleted = 0
    while True:
        batch = await db.write(delete_usage_before, cutoff, BATCH)
        deleted += batch
        if batch < BATCH:
            return deleted
        await asyncio.sleep(PAUSE_S)


async def keep_pruning(db: Database, days: int, interval: float = 3600.0) -> None:
    """The supervisor's task: prune now, then every `interval` seconds; `days` 0 never prunes."""
    if days <= 0:
        return
    while True:
        try:
            deleted = await prune_usage(db, days)
        except (apsw.Error, StorageError) as exc:
            log.error("usage retention failed; retrying next round", error=str(exc))
        else:
            if deleted:
                log.info("old usage rows deleted", rows=deleted, older_than_days=days)
        await asyncio.sleep(interval)
