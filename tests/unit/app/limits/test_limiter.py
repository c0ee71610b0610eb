"""The shared limiter against a real Redis: exact under concurrency, nothing taken on refusal."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from app.keyspace import Keyspace
from app.limits.limiter import Admission, Limiter, Limits, Pipe, spend_period, spend_ttl

PERIOD = "m:2026-11"
_ids = itertools.count()


def new_id() -> str:
    return f"req-{next(_ids)}"


async def admit(
    limiter: Limiter,
    client: aioredis.Redis,
    limits: Limits,
    *,
    key_id: str = "k1",
    request_id: str | None = None,
    tokens: int = 0,
    cost: int = 0,
) -> Admission:
    def build(pipe: Pipe) -> None:
        limiter.queue_admit(
            pipe,
            key_id=key_id,
            request_id=request_id or new_id(),
            limits=limits,
            tokens=tokens,
            cost_nano=cost,
            period=PERIOD,
        )

    results = await limiter.run(client, build)
    return limiter.read_admit(results[0], limits)


async def settle(
    limiter: Limiter,
    client: aioredis.Redis,
    limits: Limits,
    request_id: str,
    *,
    key_id: str = "k1",
    estimated: int = 0,
    real: int = 0,
    cost: int = 0,
) -> list[int]:
    def build(pipe: Pipe) -> None:
        limiter.queue_settle(
            pipe,
            key_id=key_id,
            request_id=request_id,
            limits=limits,
            estimated_tokens=estimated,
            real_tokens=real,
            cost_nano=cost,
            period=PERIOD,
        )

    (result,) = await limiter.run(client, build)
    assert not isinstance(result, Exception)
    return [int(v) for v in result]


async def redis_us(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return seconds * 1_000_000 + micros


def refill_bound(start_us: int, end_us: int, limit: int) -> int:
    """Most whole tokens a bucket of `limit`/minute can have regained between two clock reads.

    0 unless the machine stalled for a whole token's worth of time: it keeps the exact counts
    below honest without asserting any timing.
    """
    return math.ceil((end_us - start_us) * limit / 60_000_000)


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[aioredis.Redis]]:
    """Several clients, each with its own connection pool, like several workers."""
    pool = [aioredis.Redis.from_url(redis_url) for _ in range(8)]
    yield pool
    for client in pool:
        await client.aclose()


async def storm(
    limiter: Limiter, clients: list[aioredis.Redis], limits: Limits, n: int, **kwargs: int
) -> list[Admission]:
    return await asyncio.gather(
        *(admit(limiter, clients[i % len(clients)], limits, **kwargs) for i in range(n))
    )


async def test_rpm_is_exact_across_concurrent_clients(
    limiter: Limiter,
    redis_client: aioredis.Redis,
    clients: list[aioredis.Redis],
    keyspace: Keyspace,
) -> None:
    limits = Limits(rpm=50, tpm=100_000, budget_nano=10**12)
    start = await redis_us(redis_client)
    results = await storm(limiter, clients, limits, 200, tokens=100, cost=7)
    end = await redis_us(redis_client)

    allowed = [a for a in results if a.allowed]
    slack = refill_bound(start, end, 50)
    assert 50 <= len(allowed) <= 50 + slack
    refused = [a for a in results if not a.allowed]
    assert refused
    for a in refused:
        assert a.refused == "rpm"
        assert a.rpm_remaining == 0
        assert a.retry_after_s >= 1
        assert (b"retry-after", str(a.retry_after_s).encode()) in a.headers()
    # refusals took nothing: not the tokens, not the budget
    rate = await redis_client.hgetall(keyspace.rate("k1"))
    assert float(rate[b"t"]) >= 100_000 - 100 * len(allowed)
    reserved = keyspace.reserved("k1")
    assert int(await redis_client.get(reserved)) == 7 * len(allowed)
    assert await redis_client.zcard(f"{reserved}:z") == len(allowed)
    assert await redis_client.hlen(f"{reserved}:h") == len(allowed)


async def test_tpm_is_exact_across_concurrent_clients(
    limiter: Limiter,
    redis_client: aioredis.Redis,
    clients: list[aioredis.Redis],
    keyspace: Keyspace,
) -> None:
    limits = Limits(rpm=100_000, tpm=6_000)
    start = await redis_us(redis_client)
    results = await storm(limiter, clients, limits, 200, tokens=100)
    end = await redis_us(redis_client)

    allowed = [a for a in results if a.allowed]
    slack = refill_bound(start, end, 6_000) // 100 + 1
    assert 60 <= len(allowed) <= 60 + slack
    for a in results:
        if not a.allowed:
            assert a.refused == "tpm"
            assert a.tpm_remaining < 100
            assert a.retry_after_s >= 1
    # refused requests did not take their RPM token either
    rate = await redis_client.hgetall(keyspace.rate("k1"))
    assert float(rate[b"r"]) >= 100_000 - len(allowed)


async def test_estimate_above_capacity_never_passes_and_takes_nothing(
    limiter: Limiter, redis_client: aioredis.Redis, keyspace: Keyspace
) -> None:
    limits = Limits(rpm=10, tpm=1_000)
    assert (await admit(limiter, redis_client, limits, tokens=100)).allowed
    before = await redis_client.hgetall(keyspace.rate("k1"))

    refused = await admit(limiter, redis_client, limits, tokens=1_001)

    assert refused.refused == "tpm"
    assert refused.retry_after_s == 61  # the full minute: no retry loop that cannot succeed
    assert await redis_client.hgetall(keyspace.rate("k1")) == before


async def test_refused_request_passes_after_retry_after(
    limiter: Limiter, redis_client: aioredis.Redis
) -> None:
    # 6000 per minute refills 100 per second, so retry_after is one second
    limits = Limits(rpm=6_000)

    def build(pipe: Pipe) -> None:
        for _ in range(6_100):
            limiter.queue_admit(
                pipe,
                key_id="k1",
                request_id=new_id(),
                limits=limits,
                tokens=0,
                cost_nano=0,
                period=PERIOD,
            )

    drained = [limiter.read_admit(r, limits) for r in await limiter.run(redis_client, build)]
    refusal = next(a for a in reversed(drained) if not a.allowed)
    assert refusal.refused == "rpm"

    await asyncio.sleep(refusal.retry_after_s)

    assert (await admit(limiter, redis_client, limits)).allowed


async def test_tpm_refills_after_retry_after(
    limiter: Limiter, redis_client: aioredis.Redis
) -> None:
    limits = Limits(tpm=6_000)
    assert (await admit(limiter, redis_client, limits, tokens=6_000)).allowed
    refusal = await admit(limiter, redis_client, limits, tokens=50)
    assert refusal.refused == "tpm"
    assert refusal.retry_after_s >= 1

    await asyncio.sleep(refusal.retry_after_s)

    assert (await admit(limiter, redis_client, limits, tokens=50)).allowed


async def test_budget_is_exact_and_settling_frees_the_difference(
    limiter: Limiter,
    redis_client: aioredis.Redis,
    clients: list[aioredis.Redis],
    keyspace: Keyspace,
) -> None:
    n, cost = 20, 1_000
    limits = Limits(budget_nano=n * cost)
    ids = [new_id() for _ in range(5 * n)]
    results = await asyncio.gather(
        *(
            admit(limiter, clients[i % len(clients)], limits, request_id=rid, cost=cost)
            for i, rid in enumerate(ids)
        )
    )
    admitted = [rid for rid, a in zip(ids, results, strict=True) if a.allowed]
    assert len(admitted) == n
    for a in results:
        if not a.allowed:
            assert a.refused == "budget"
            assert a.retry_after_s == 0
            assert a.headers() == []

    # one request really cost 400 of its 1000: 600 is free again, and not one nano more
    first, *rest = admitted
    await settle(limiter, redis_client, limits, first, cost=400)
    assert not (await admit(limiter, redis_client, limits, cost=601)).allowed
    late = new_id()
    assert (await admit(limiter, redis_client, limits, request_id=late, cost=600)).allowed

    real_costs = [400]
    for i, rid in enumerate([*rest, late]):
        real_costs.append(100 + i)
        await settle(limiter, redis_client, limits, rid, cost=100 + i)

    assert int(await redis_client.get(keyspace.spend("k1", PERIOD))) == sum(real_costs)
    reserved = keyspace.reserved("k1")
    assert await redis_client.exists(reserved, f"{reserved}:z", f"{reserved}:h") == 0


async def test_expired_reservation_is_purged_at_the_next_admission(
    keyspace: Keyspace, redis_client: aioredis.Redis
) -> None:
    # a hold of 0 expires each reservation at once: a worker that died before settling
    limiter = Limiter(keyspace, hold_s=0)
    await limiter.load(redis_client)
    limits = Limits(budget_nano=1_500)
    orphan, survivor = new_id(), new_id()
    assert (await admit(limiter, redis_client, limits, request_id=orphan, cost=1_000)).allowed

    assert (await admit(limiter, redis_client, limits, request_id=survivor, cost=1_000)).allowed

    reserved = keyspace.reserved("k1")
    assert int(await redis_client.get(reserved)) == 1_000
    assert await redis_client.zrange(f"{reserved}:z", 0, -1) == [survivor.encode()]
    assert await redis_client.hkeys(f"{reserved}:h") == [survivor.encode()]


async def test_reservation_keys_expire_after_the_hold(
    limiter: Limiter, redis_client: aioredis.Redis, keyspace: Keyspace
) -> None:
    assert (await admit(limiter, redis_client, Limits(budget_nano=10), cost=5)).allowed
    reserved = keyspace.reserved("k1")
    for key in (reserved, f"{reserved}:z", f"{reserved}:h"):
        ttl = await redis_client.pttl(key)
        assert 3_600_000 < ttl <= 3_660_000


async def test_settle_of_unknown_request_still_counts_the_cost(
    limiter: Limiter, redis_client: aioredis.Redis, keyspace: Keyspace
) -> None:
    limits = Limits(budget_nano=10_000)
    kept = new_id()
    assert (await admit(limiter, redis_client, limits, request_id=kept, cost=2_000)).allowed

    remaining, spent = await settle(limiter, redis_client, limits, "never-admitted", cost=300)

    assert (remaining, spent) == (-1, 300)
    assert int(await redis_client.get(keyspace.spend("k1", PERIOD))) == 300
    assert int(await redis_client.get(keyspace.reserved("k1"))) == 2_000
    ttl = await redis_client.ttl(keyspace.spend("k1", PERIOD))
    assert ttl == -1 or ttl > 0


async def test_settle_refunds_and_charges_the_tpm_bucket(
    limiter: Limiter, redis_client: aioredis.Redis
) -> None:
    limits = Limits(tpm=1_000)
    start = await redis_us(redis_client)
    rid = new_id()
    assert (await admit(limiter, redis_client, limits, request_id=rid, tokens=600)).allowed
    remaining, _ = await settle(limiter, redis_client, limits, rid, estimated=600, real=100)
    end = await redis_us(redis_client)
    # 400 left after the admission, 500 refunded
    assert 900 <= remaining <= 900 + refill_bound(start, end, 1_000)

    start = await redis_us(redis_client)
    rid = new_id()
    before = (await admit(limiter, redis_client, limits, request_id=rid, tokens=100)).tpm_remaining
    remaining, _ = await settle(limiter, redis_client, limits, rid, estimated=100, real=700)
    end = await redis_us(redis_client)
    # the answer used 600 more than estimated: charged now
    assert before - 600 <= remaining <= before - 600 + refill_bound(start, end, 1_000)

    # a charge beyond what is left empties the bucket, never below zero
    remaining, _ = await settle(limiter, redis_client, limits, new_id(), estimated=0, real=5_000)
    assert remaining == 0


async def test_failed_upstream_gives_everything_back_but_the_request(
    limiter: Limiter, redis_client: aioredis.Redis, keyspace: Keyspace
) -> None:
    limits = Limits(rpm=10, tpm=1_000, budget_nano=10_000)
    rid = new_id()
    admitted = await admit(limiter, redis_client, limits, request_id=rid, tokens=800, cost=5_000)
    assert admitted.allowed
    assert admitted.rpm_remaining == 9
    assert admitted.tpm_remaining == 200

    remaining, spent = await settle(limiter, redis_client, limits, rid, estimated=800)

    assert remaining == 1_000
    assert spent == 0
    reserved = keyspace.reserved("k1")
    assert await redis_client.exists(reserved, f"{reserved}:z", f"{reserved}:h") == 0
    assert await redis_client.exists(keyspace.spend("k1", PERIOD)) == 0
    again = await admit(limiter, redis_client, limits, tokens=1_000, cost=10_000)
    assert again.allowed
    assert again.rpm_remaining == 8  # the RPM token stays taken


async def test_changed_limit_starts_a_fresh_full_bucket(
    limiter: Limiter, redis_client: aioredis.Redis
) -> None:
    for _ in range(5):
        assert (await admit(limiter, redis_client, Limits(rpm=5, tpm=500), tokens=100)).allowed
    assert (await admit(limiter, redis_client, Limits(rpm=5, tpm=500), tokens=100)).refused == "rpm"

    raised = await admit(limiter, redis_client, Limits(rpm=6, tpm=500), tokens=0)
    assert raised.allowed
    assert raised.rpm_remaining == 5
    assert raised.tpm_remaining == 0  # the TPM limit did not change: its bucket carries on

    fresh = await admit(limiter, redis_client, Limits(rpm=6, tpm=600), tokens=100)
    assert fresh.allowed
    assert fresh.tpm_remaining == 500


async def test_zero_limits_are_unlimited_and_write_nothing(
    limiter: Limiter, redis_client: aioredis.Redis
) -> None:
    limits = Limits()
    for _ in range(20):
        result = await admit(limiter, redis_client, limits, tokens=10**9, cost=10**12)
        assert result == Admission(allowed=True)
        assert result.headers() == []
    await settle(limiter, redis_client, limits, new_id(), estimated=10, real=500)

    assert await redis_client.keys("*") == []


async def test_only_the_limited_bucket_is_written(
    limiter: Limiter, redis_client: aioredis.Redis, keyspace: Keyspace
) -> None:
    result = await admit(limiter, redis_client, Limits(tpm=100), tokens=10)

    assert result.rpm_limit == 0
    assert result.tpm_remaining == 90
    assert set(await redis_client.hkeys(keyspace.rate("k1"))) == {b"t", b"tts", b"tl"}
    assert 0 < await redis_client.pttl(keyspace.rate("k1")) <= 120_000


async def test_lost_scripts_are_reloaded_and_only_the_script_is_resent(
    limiter: Limiter, redis_client: aioredis.Redis, keyspace: Keyspace
) -> None:
    limits = Limits(rpm=10)
    await redis_client.set("cached", b"answer")
    await redis_client.script_flush()

    def build(pipe: Pipe) -> None:
        pipe.incr("side-effect")
        limiter.queue_admit(
            pipe,
            key_id="k1",
            request_id=new_id(),
            limits=limits,
            tokens=0,
            cost_nano=0,
            period=PERIOD,
        )
        pipe.get("cached")

    counter, raw, cached = await limiter.run(redis_client, build)

    assert limiter.read_admit(raw, limits).rpm_remaining == 9
    assert (counter, cached) == (1, b"answer")
    assert int(await redis_client.get("side-effect")) == 1  # not run twice
    assert await redis_client.exists(keyspace.rate("k1")) == 1


async def test_other_errors_come_back_in_place(
    limiter: Limiter, redis_client: aioredis.Redis
) -> None:
    await redis_client.set("s", "x")

    def build(pipe: Pipe) -> None:
        pipe.lpush("s", "y")
        limiter.queue_admit(
            pipe,
            key_id="k1",
            request_id=new_id(),
            limits=Limits(rpm=1),
            tokens=0,
            cost_nano=0,
            period=PERIOD,
        )

    wrong, raw = await limiter.run(redis_client, build)

    assert isinstance(wrong, ResponseError)
    assert limiter.read_admit(raw, Limits(rpm=1)).allowed
    with pytest.raises(ResponseError):
        limiter.read_admit(wrong, Limits(rpm=1))


@pytest.mark.parametrize(
    ("admission", "expected"),
    [
        (Admission(allowed=True), []),
        (
            Admission(
                allowed=True, rpm_limit=60, rpm_remaining=59, tpm_limit=1000, tpm_remaining=9
            ),
            [
                (b"x-ratelimit-limit-requests", b"60"),
                (b"x-ratelimit-remaining-requests", b"59"),
                (b"x-ratelimit-limit-tokens", b"1000"),
                (b"x-ratelimit-remaining-tokens", b"9"),
            ],
        ),
        (
            Admission(allowed=False, refused="tpm", tpm_limit=10, retry_after_s=3),
            [
                (b"x-ratelimit-limit-tokens", b"10"),
                (b"x-ratelimit-remaining-tokens", b"0"),
                (b"retry-after", b"3"),
            ],
        ),
        (
            Admission(allowed=False, refused="budget", rpm_limit=5, rpm_remaining=4),
            [
                (b"x-ratelimit-limit-requests", b"5"),
                (b"x-ratelimit-remaining-requests", b"4"),
            ],
        ),
    ],
)
def test_headers(admission: Admission, expected: list[tuple[bytes, bytes]]) -> None:
    assert admission.headers() == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # (refused, rpm remaining, tpm remaining, retry_after_s = floor(wait) + 1)
        ([0, 4, 90, 0], ("", 4, 90, 0)),
        ([1, 4, 90, 0], ("budget", 4, 90, 0)),
        ([2, 0, 90, 1200], ("rpm", 0, 90, 2)),
        ([3, 4, 9, 999], ("tpm", 4, 9, 1)),
        ([3, 4, 9, 1000], ("tpm", 4, 9, 2)),
        ([3, 4, 9, 60000], ("tpm", 4, 9, 61)),
    ],
)
def test_read_admit(limiter: Limiter, raw: list[int], expected: tuple[str, int, int, int]) -> None:
    refused, rpm_remaining, tpm_remaining, retry_after_s = expected
    assert limiter.read_admit(raw, Limits(rpm=5, tpm=100)) == Admission(
        allowed=not refused,
        refused=refused,
        rpm_limit=5,
        rpm_remaining=rpm_remaining,
        tpm_limit=100,
        tpm_remaining=tpm_remaining,
        retry_after_s=retry_after_s,
    )


@pytest.mark.parametrize(
    ("budget_period", "now", "expected"),
    [
        ("monthly", datetime(2026, 11, 26, 12, tzinfo=UTC), "m:2026-11"),
        ("", datetime(2026, 11, 26, 12, tzinfo=UTC), "m:2026-11"),
        ("fortnightly", datetime(2026, 1, 1, tzinfo=UTC), "m:2026-01"),
        ("daily", datetime(2026, 11, 26, 23, 59, tzinfo=UTC), "d:2026-11-26"),
        ("weekly", datetime(2026, 11, 26, tzinfo=UTC), "w:2026-W48"),
        ("weekly", datetime(2027, 1, 1, tzinfo=UTC), "w:2026-W53"),  # ISO year, not calendar
        ("weekly", datetime(2026, 1, 1, tzinfo=UTC), "w:2026-W01"),
        ("total", datetime(2026, 11, 26, tzinfo=UTC), "total"),
        ("monthly", datetime(2026, 11, 30, 23, 30), "m:2026-11"),  # naive = UTC
    ],
)
def test_spend_period(budget_period: str, now: datetime, expected: str) -> None:
    assert spend_period(budget_period, now) == expected


DAY = 86_400


@pytest.mark.parametrize(
    ("period", "now", "expected"),
    [
        ("total", datetime(2026, 11, 26, tzinfo=UTC), 0),
        ("m:2026-11", datetime(2026, 11, 30, tzinfo=UTC), (1 + 35) * DAY),
        ("m:2026-12", datetime(2026, 12, 31, 23, 0, tzinfo=UTC), 3_600 + 35 * DAY),
        ("d:2026-11-26", datetime(2026, 11, 26, 12, tzinfo=UTC), DAY // 2 + 35 * DAY),
        ("w:2026-W48", datetime(2026, 11, 26, tzinfo=UTC), (4 + 35) * DAY),  # a Thursday
        ("m:2026-11", datetime(2027, 1, 1, tzinfo=UTC), 4 * DAY),  # a late settle
        ("m:2026-01", datetime(2027, 1, 1, tzinfo=UTC), 1),  # long over: expire soon
    ],
)
def test_spend_ttl(period: str, now: datetime, expected: int) -> None:
    assert spend_ttl(period, now) == expected


def test_spend_ttl_rejects_an_unknown_period() -> None:
    with pytest.raises(ValueError, match="unknown spend period"):
        spend_ttl("y:2026", datetime(2026, 1, 1, tzinfo=UTC))
