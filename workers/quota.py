"""Quota sync: the spend counters in Redis rebuilt from SQLite after Redis lost them.

Workers add each request's cost to a counter per key and budget period in Redis (settle.lua),
and admission refuses a key whose counter has reached its budget. A Redis that restarts without
persistence or is flushed loses those counters, and with them every budget. It also loses the
usage stream and its consumer group, together, which is how the loss is told apart from a quiet
start: the recorder checks its group before reading, and when the group is gone and the marker
key is gone too, this module rebuilds every counter before the group is created again.

Why that order makes the rebuild exact: the recorder has read nothing from the new stream yet,
so SQLite holds exactly the spend that was recorded before the loss, and the counters hold
exactly what workers settled after it. Adding the first to the second (INCRBY, never SET) counts
each request once. Events that were still in the lost stream are gone from SQLite too, so the
two stay in agreement. The rebuild is one MULTI/EXEC under WATCH of the marker: a second
supervisor racing it finds the marker set and adds nothing.

A marker without a group (someone deleted only the stream) means the counters survived: no
rebuild. A group without a marker (a Redis kept across an upgrade) sets the marker only.

A new budget period needs no rebuild: its counter is a new key that starts at zero.
"""

from __future__ import annotations

from datetime import UTC, datetime

import apsw
import redis.asyncio as aioredis
import structlog
from redis.exceptions import WatchError

from app.keyspace import Keyspace
from app.limits.limiter import period_days, spend_period, spend_ttl
from storage.db import Database
from storage.keys import all_keys
from storage.rollups import spend_by_key

log = structlog.get_logger("gandalf.quota")


def recorded_spend(conn: apsw.Connection, now: datetime) -> list[tuple[str, str, int]]:
    """(key id, period, nano-USD) recorded in SQLite for every key's current budget period.

    Keys without a budget are included: `GET /v1/usage` reports their spend too.
    """
    periods: dict[str, list[str]] = {}
    for _, record in all_keys(conn):
        periods.setdefault(spend_period(record.budget_period, now), []).append(record.id)
    spent: list[tuple[str, str, int]] = []
    for period, key_ids in periods.items():
        days = None if period == "total" else period_days(period)
        sums = spend_by_key(conn, None if days is None else (str(days[0]), str(days[1])))
        spent.extend((key_id, period, sums[key_id]) for key_id in key_ids if key_id in sums)
    return spent


class QuotaSync:
    """Rebuilds the spend counters when Redis lost them; the recorder calls `check`."""

    def __init__(self, client: aioredis.Redis, keyspace: Keyspace, db: Database) -> None:
        self._client = client
        self._keyspace = keyspace
        self._db = db
        self.rebuilds = 0
        """Rebuilds this process ran (for tests and logs)."""

    async def check(self, *, group_exists: bool) -> None:
        """Called by the recorder before it creates its group: rebuild if Redis lost its data."""
        marker = self._keyspace.quota_marker
        if group_exists:
            await self._client.set(marker, _stamp(), nx=True)
            return
        async with self._client.pipeline(transaction=True) as pipe:
            await pipe.watch(marker)
            if await pipe.exists(marker):
                return
            now = datetime.now(UTC)
            spent = await self._db.read(recorded_spend, now)
            pipe.multi()  # type: ignore[no-untyped-call]
            for key_id, period, amount in spent:
                counter = self._keyspace.spend(key_id, period)
                _ = pipe.incrby(counter, amount)
                ttl = spend_ttl(period, now)
                if ttl:
                    _ = pipe.expire(counter, ttl)
            _ = pipe.set(marker, _stamp())
            try:
                await pipe.execute()
            except WatchError:
                return  # another supervisor rebuilt them
        self.rebuilds += 1
        log.warning(
            "redis lost the spend counters; rebuilt them from the recorded usage",
            keys=len(spent),
            nano_usd=sum(amount for _, _, amount in spent),
        )


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
