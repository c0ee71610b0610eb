"""The shared limiter: queues the admit and settle scripts in the caller's Redis pipeline.

Both scripts run atomically on Redis's clock, so limits are exact across every worker and pod.
They are queued as raw `EVALSHA` with a precomputed SHA-1: redis-py's `Script` objects would
send `SCRIPT EXISTS` before each pipeline, one more round trip per request. A Redis that lost
its scripts (a restart, `SCRIPT FLUSH`) answers `NOSCRIPT`; `Limiter.run` then loads them and
re-sends only the script calls that failed, so the other commands never run twice.

Caller, one round trip in the normal case:

    def build(pipe: Pipe) -> None:
        limiter.queue_admit(pipe, key_id=..., request_id=..., limits=limits, ...)
        pipe.get(cache_key)

    results = await limiter.run(client, build)
    admission = limiter.read_admit(results[0], limits)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any, Final, TypeAlias

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import NoScriptError

from app.keyspace import Keyspace
from app.resp import RespClient, RespPipeline

Client: TypeAlias = "Redis | RedisCluster | RespClient"
Pipe: TypeAlias = "Pipeline | ClusterPipeline | RespPipeline"

RESERVATION_HOLD_S: Final = 3600
"""How long a budget reservation counts if its request is never settled (a worker died)."""
SPEND_TTL_GRACE: Final = timedelta(days=35)
"""A period's spend counter outlives the period by this much (late settles, quota sync)."""

_REFUSALS: Final = {0: "", 1: "budget", 2: "rpm", 3: "tpm"}


def _script(name: str) -> tuple[str, str]:
    source = resources.files(__package__).joinpath("lua", name).read_text(encoding="utf-8")
    return source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """A key's effective limits; 0 means none."""

    rpm: int = 0
    tpm: int = 0
    budget_nano: int = 0
    """Budget of the current period in nano-USD."""


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one admission, and what the HTTP layer tells the client."""

    allowed: bool
    refused: str = ""
    """Which check refused: "" (none), "budget", "rpm" or "tpm"."""
    rpm_limit: int = 0
    rpm_remaining: int = 0
    tpm_limit: int = 0
    tpm_remaining: int = 0
    retry_after_s: int = 0
    """For an rpm/tpm refusal: whole seconds until it would pass, plus one (Gandalf)."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Rate-limit headers for an ASGI response (names lowercase)."""
        out: list[tuple[bytes, bytes]] = []
        if self.rpm_limit > 0:
            out.append((b"x-ratelimit-limit-requests", b"%d" % self.rpm_limit))
            out.append((b"x-ratelimit-remaining-requests", b"%d" % self.rpm_remaining))
        if self.tpm_limit > 0:
            out.append((b"x-ratelimit-limit-tokens", b"%d" % self.tpm_limit))
            out.append((b"x-ratelimit-remaining-tokens", b"%d" % self.tpm_remaining))
        if self.refused in ("rpm", "tpm"):
            out.append((b"retry-after", b"%d" % self.retry_after_s))
        return out


class ScriptCall(msgspec.Struct, frozen=True):
    """One queued script: its position in the pipeline and the command, to re-send it."""

    index: int
    args: tuple[str | int, ...]


class Limiter:
    """Builds and runs the admit/settle script calls; one per worker, shared by its requests.

    Holds no per-request state: only the list that `run` records script calls into while its
    synchronous `build` runs, so no other coroutine can interleave.
    """

    def __init__(self, keyspace: Keyspace, *, hold_s: float = RESERVATION_HOLD_S) -> None:
        self._keyspace = keyspace
        self._hold_ms = int(hold_s * 1000)
        self._admit, self._admit_sha = _script("admit.lua")
        self._settle, self._settle_sha = _script("settle.lua")
        self._recording: list[ScriptCall] | None = None

    async def load(self, client: Client) -> None:
        """Load both scripts: at worker start, and after a `NOSCRIPT`.

        On a cluster, redis-py sends `SCRIPT LOAD` to every primary.
        """
        for source, sha in ((self._admit, self._admit_sha), (self._settle, self._settle_sha)):
            loaded = await client.script_load(source)
            if loaded != sha:
                raise RuntimeError(f"Redis hashed a limiter script to {loaded}, expected {sha}")

    def _keys(self, key_id: str, period: str) -> tuple[str, ...]:
        ks = self._keyspace
        reserved = ks.reserved(key_id)
        # the suffixes keep the {k:<key_id>} hash tag: one slot, so the scripts run on a cluster
        return (
            ks.rate(key_id),
            ks.spend(key_id, period),
            reserved,
            f"{reserved}:z",
            f"{reserved}:h",
        )

    def _queue(self, pipe: Pipe, sha: str, keys: tuple[str, ...], *argv: str | int) -> ScriptCall:
        call = ScriptCall(len(pipe), ("EVALSHA", sha, len(keys), *keys, *argv))
        pipe.execute_command(*call.args)
        if self._recording is not None:
            self._recording.append(call)
        return call

    def queue_admit(
        self,
        pipe: Pipe,
        *,
        key_id: str,
        request_id: str,
        limits: Limits,
        tokens: int,
        cost_nano: int,
        period: str,
    ) -> ScriptCall:
        """Queue the admission of one request estimated at `tokens` and `cost_nano`.

        `period` is the budget period's name from `spend_period`. Nothing is taken on a refusal.
        """
        return self._queue(
            pipe,
            self._admit_sha,
            self._keys(key_id, period),
            request_id,
            limits.rpm,
            limits.tpm,
            tokens,
            limits.budget_nano,
            cost_nano,
            self._hold_ms,
        )

    def read_admit(self, raw: object, limits: Limits) -> Admission:
        """The `Admission` from the admit command's result (raises if it is an error)."""
        if isinstance(raw, BaseException):
            raise raw
        if not isinstance(raw, list) or len(raw) != 4:
            raise TypeError(f"unexpected admit.lua result: {raw!r}")
        code, rpm_remaining, tpm_remaining, wait_ms = (int(v) for v in raw)
        refused = _REFUSALS[code]
        return Admission(
            allowed=code == 0,
            refused=refused,
            rpm_limit=limits.rpm,
            rpm_remaining=rpm_remaining,
            tpm_limit=limits.tpm,
            tpm_remaining=tpm_remaining,
            retry_after_s=wait_ms // 1000 + 1 if refused in ("rpm", "tpm") else 0,
        )

    def queue_settle(
        self,
        pipe: Pipe,
        *,
        key_id: str,
        request_id: str,
        limits: Limits,
        estimated_tokens: int,
        real_tokens: int,
        cost_nano: int,
        period: str,
        ttl: int | None = None,
        reserved: bool = True,
    ) -> ScriptCall:
        """Queue the settlement of one finished request.

        `reserved=False` (its admission reserved no budget) spares Redis the reservation
        lookup.

        The TPM bucket gets `estimated_tokens - real_tokens` back (or loses it when negative),
        the reservation is dropped and `cost_nano` is added to the spend counter. A request
        that failed upstream settles with `real_tokens=0, cost_nano=0`. The result is
        `[tpm remaining or -1, spend counter]`. `ttl` is the spend counter's, from `spend_ttl`
        (computed on this worker's clock when None).
        """
        return self._queue(
            pipe,
            self._settle_sha,
            self._keys(key_id, period),
            request_id,
            limits.tpm,
            estimated_tokens,
            real_tokens,
            cost_nano,
            spend_ttl(period, datetime.now(UTC)) if ttl is None else ttl,
            1 if reserved else 0,
        )

    async def run(self, client: Client, build: Callable[[Pipe], None]) -> list[Any]:
        """Run, in one round trip, the commands that `build` queues on a fresh pipeline.

        Returns every command's result in order; errors come back in place, as exception
        objects (`raise_on_error=False`), except a `NOSCRIPT` on a limiter script: then both
        scripts are loaded and only the failed script calls are sent again, in one more round
        trip, so no other command runs twice.
        """
        pipe = client.pipeline(transaction=False)
        calls: list[ScriptCall] = []
        # `build` is synchronous, so no other request can queue while this one records
        self._recording = calls
        try:
            build(pipe)
        finally:
            self._recording = None
        results: list[Any] = await pipe.execute(raise_on_error=False)
        lost = [call for call in calls if isinstance(results[call.index], NoScriptError)]
        if lost:
            await self.load(client)
            retry = client.pipeline(transaction=False)
            for call in lost:
                retry.execute_command(*call.args)
            retried = await retry.execute(raise_on_error=False)
            for call, result in zip(lost, retried, strict=True):
                results[call.index] = result
        return results


def spend_period(budget_period: str, now: datetime) -> str:
    """The name of the spend period `now` falls in (UTC; a naive `now` is taken as UTC).

    `m:2026-11` (monthly, also for unknown values), `d:2026-11-26`, `w:2026-W48` (ISO week),
    or `total` (never resets).
    """
    day = now.astimezone(UTC).date() if now.tzinfo else now.date()
    if budget_period == "daily":
        return f"d:{day.isoformat()}"
    if budget_period == "weekly":
        year, week, _ = day.isocalendar()
        return f"w:{year}-W{week:02d}"
    if budget_period == "total":
        return "total"
    return f"m:{day.year}-{day.month:02d}"


def period_days(period: str) -> tuple[date, date]:
    """The first day of a spend period and the day after its last (UTC days).

    Raises:
        ValueError: `total` (it has no days) or a name `spend_period` does not make.
    """
    kind, _, name = period.partition(":")
    if kind == "d":
        start = date.fromisoformat(name)
        return start, start + timedelta(days=1)
    if kind == "w":
        year, _, week = name.partition("-W")
        start = date.fromisocalendar(int(year), int(week), 1)
        return start, start + timedelta(weeks=1)
    if kind == "m":
        year, _, month = name.partition("-")
        start = date(int(year), int(month), 1)
        return start, (start + timedelta(days=32)).replace(day=1)
    raise ValueError(f"unknown spend period {period!r}")


def _period_end(period: str) -> date:
    return period_days(period)[1]


def spend_ttl(period: str, now: datetime) -> int:
    """Seconds the spend counter of `period` lives from `now`; 0 (never expires) for `total`.

    Until the period ends plus `SPEND_TTL_GRACE`, at least 1.
    """
    if period == "total":
        return 0
    end = datetime.combine(_period_end(period), datetime.min.time(), UTC) + SPEND_TTL_GRACE
    current = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    return max(1, int((end - current).total_seconds()))
