"""app/accounting.py on a real Redis: the hot path's two round trips, and what they decide."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from app.accounting import Accounting, Ticket
from app.config import load_config
from app.domain import (
    Identity,
    Operation,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    Usage,
    UsageEvent,
    UsageIntent,
)
from app.keyspace import Keyspace
from app.pricing import Price, PriceTable
from app.routing.router import Route, Target, build_route
from app.server.requests import decode_payload
from tests.fakes.providers import FakeProvider
from workers.embedded_redis import EmbeddedRedis

CACHEABLE = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":0}'
PLAIN = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":10}'


class CountingPipeline(Pipeline):
    """A real pipeline that counts its round trips (`execute` calls)."""

    trips = 0

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        CountingPipeline.trips += 1
        return await super().execute(raise_on_error)


class CountingRedis(aioredis.Redis):
    """A real client that counts single commands and hands out counting pipelines."""

    singles = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        CountingRedis.singles += 1
        return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        return CountingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    embedded.start()
    yield embedded
    embedded.stop()


def _config(tmp_path: Path, policy: str = "fail_open") -> Any:
    path = tmp_path / "gandalf.yaml"
    path.write_text(
        f"rate_limits:\n  default_rpm: 0\n  default_tpm: 0\n  redis_failure: {policy}\n"
    )
    config, _ = load_config(path)
    return config


@pytest.fixture
async def accounting(server: EmbeddedRedis, tmp_path: Path) -> AsyncIterator[Accounting]:
    client = CountingRedis.from_url(server.url)
    await client.flushall()
    prices = PriceTable({"up": Price(input=0, output=1000)})
    accounting = Accounting(client, Keyspace(), prices, _config(tmp_path))
    await accounting.start()
    CountingPipeline.trips = CountingRedis.singles = 0
    yield accounting
    await client.aclose()


def _route() -> Route:
    return build_route("chat", [Target(FakeProvider("p"), "up")], cache_ttl_s=60)


def _identity(**limits: Any) -> Identity:
    return Identity(key_id="k1", key_prefix="gnd_k1", **limits)


async def _admit(accounting: Accounting, identity: Identity, body: bytes, rid: str) -> Ticket:
    payload = decode_payload(Operation.CHAT, body)
    return await accounting.admit(identity, payload, rid, _route(), bypass=False)


async def test_a_limited_cacheable_request_costs_two_round_trips(accounting: Accounting) -> None:
    identity = _identity(rpm_limit=100, tpm_limit=100_000, max_budget=10.0)
    ticket = await _admit(accounting, identity, CACHEABLE, "r1")
    assert ticket.admission is not None and ticket.cacheable and ticket.cached is None
    accounting.settle(ticket, tokens=20, cost_nano=1000, store=b'{"id":"x"}')
    await accounting.flush()
    assert (CountingPipeline.trips, CountingRedis.singles) == (2, 0)

    again = await _admit(accounting, identity, CACHEABLE, "r2")
    assert again.cached == b'{"id":"x"}'
    accounting.settle(again, tokens=0, cost_nano=0)
    await accounting.flush()
    assert (CountingPipeline.trips, CountingRedis.singles) == (4, 0)


async def test_an_admitted_request_is_an_intent_until_it_is_settled(
    accounting: Accounting, server: EmbeddedRedis
) -> None:
    """No limit to take, nothing to look up: the admission round trip writes the intent only."""
    intents = Keyspace().intents(accounting.worker_id)
    ticket = await _admit(accounting, _identity(), PLAIN, "r1")
    assert ticket.admission is None
    async with aioredis.Redis.from_url(server.url) as client:
        raw = await client.hget(intents, "r1")
        assert raw is not None
        intent = msgspec.json.decode(raw, type=UsageIntent)
        assert (intent.request_id, intent.worker) == ("r1", accounting.worker_id)
        assert (intent.completion_tokens, intent.reserved) == (10, False)  # max_tokens: 10
        accounting.finish(ticket, status=200, usage=Usage(prompt_tokens=3, completion_tokens=2))
        await accounting.flush()
        assert (CountingPipeline.trips, CountingRedis.singles) == (2, 0)
        assert await client.hlen(intents) == 0  # settled: its event replaces it
        assert await client.xlen(Keyspace().usage_stream) == 1


async def test_refusals_raise_the_errors_with_headers(
    accounting: Accounting, server: EmbeddedRedis
) -> None:
    identity = _identity(rpm_limit=1)
    await _admit(accounting, identity, PLAIN, "r1")
    with pytest.raises(RateLimited) as refused:
        await _admit(accounting, identity, PLAIN, "r2")
    headers = dict(refused.value.headers)
    assert headers[b"x-ratelimit-limit-requests"] == b"1"
    assert headers[b"x-ratelimit-remaining-requests"] == b"0"
    assert int(headers[b"retry-after"]) >= 1
    await accounting.flush()  # the refused request's intent goes; the admitted one's stays
    async with aioredis.Redis.from_url(server.url) as client:
        assert await client.hkeys(Keyspace().intents(accounting.worker_id)) == [b"r1"]


async def test_the_budget_reserves_the_longest_answer(accounting: Accounting) -> None:
    # 10 output tokens at 1000 USD per million = 0.01 USD; a budget of 0.025 fits two
    identity = _identity(max_budget=0.025)
    first = await _admit(accounting, identity, PLAIN, "r1")
    await _admit(accounting, identity, PLAIN, "r2")
    with pytest.raises(QuotaExceeded):
        await _admit(accounting, identity, PLAIN, "r3")
    accounting.settle(first, tokens=5, cost_nano=5_000_000)
    await accounting.flush()  # used half: 0.005 back
    await _admit(accounting, identity, PLAIN, "r4")


async def test_fail_open_and_fail_closed(tmp_path: Path) -> None:
    dead = aioredis.Redis.from_url(f"unix://{tmp_path}/nothing.sock")
    prices = PriceTable({})
    identity = _identity(rpm_limit=1)
    payload = decode_payload(Operation.CHAT, CACHEABLE)
    open_ = Accounting(dead, Keyspace(), prices, _config(tmp_path))
    ticket = await open_.admit(identity, payload, "r1", _route(), bypass=False)
    assert ticket.admission is None and not ticket.cacheable  # served without limits or cache
    open_.settle(ticket, tokens=1, cost_nano=1)
    await open_.flush()  # nothing to do, and no error
    closed = Accounting(dead, Keyspace(), prices, _config(tmp_path, "fail_closed"))
    with pytest.raises(ServiceUnavailable, match="rate limiting is unavailable"):
        await closed.admit(identity, payload, "r1", _route(), bypass=False)
    await dead.aclose()


async def test_queued_settlements_share_one_round_trip(accounting: Accounting) -> None:
    identity = _identity(tpm_limit=300)  # refills 5 tokens a second: nothing in this test
    tickets = [await _admit(accounting, identity, PLAIN, f"r{i}") for i in range(10)]
    assert CountingPipeline.trips == 10
    for ticket in tickets:
        accounting.settle(ticket, tokens=ticket.tokens + 5, cost_nano=0)
    await accounting.flush()
    assert CountingPipeline.trips == 11
    # each request was charged its 5 extra tokens when the batch settled
    final = await _admit(accounting, identity, PLAIN, "last")
    assert final.admission is not None
    assert tickets[0].tokens == 15
    assert final.admission.tpm_remaining in (300 - 11 * 15 - 50, 300 - 11 * 15 - 50 + 1)


async def _events(server: EmbeddedRedis) -> list[UsageEvent]:
    async with aioredis.Redis.from_url(server.url) as client:
        entries = await client.xrange(Keyspace().usage_stream)
    return [msgspec.json.decode(fields[b"e"], type=UsageEvent) for _, fields in entries]


async def test_every_finished_request_appends_one_usage_event(
    accounting: Accounting, server: EmbeddedRedis
) -> None:
    identity = Identity(key_id="k9", key_prefix="gnd_k9", org_id="acme", team_id="t1")
    answered = await _admit(accounting, identity, PLAIN, "answered")
    accounting.finish(
        answered,
        status=200,
        provider="p",
        upstream_model="up",
        usage=Usage(prompt_tokens=7, completion_tokens=10, total_tokens=17),
    )
    failed = await _admit(accounting, identity, PLAIN, "failed")
    accounting.finish(failed, status=502, provider="p")
    silent = await _admit(accounting, identity, PLAIN, "silent")
    accounting.finish(silent, status=200, provider="p", upstream_model="up")
    hit = await _admit(accounting, identity, CACHEABLE, "hit")
    accounting.finish(hit, status=200, cached=True)
    await accounting.flush()
    # one admission trip each (no limits: only the intent, and the cache lookup for the
    # cacheable one), and one settlement trip for all four
    assert CountingPipeline.trips == 5

    events = {e.request_id: e for e in await _events(server)}
    assert set(events) == {"answered", "failed", "silent", "hit"}
    ok = events["answered"]
    assert (ok.key_id, ok.org_id, ok.team_id, ok.model, ok.upstream_model) == (
        "k9",
        "acme",
        "t1",
        "chat",
        "up",
    )
    # 10 output tokens at 1000 USD per million, input free: 0.01 USD
    assert (ok.prompt_tokens, ok.completion_tokens, ok.cost_nano) == (7, 10, 10_000_000)
    assert not ok.estimated and not ok.cached and ok.status == 200
    assert (events["failed"].status, events["failed"].cost_nano) == (502, 0)
    assert events["silent"].estimated and events["silent"].prompt_tokens == failed.tokens
    assert events["hit"].cached and events["hit"].provider == "cache"
    assert events["hit"].cost_nano == 0


async def test_a_usage_without_total_tokens_is_charged_its_parts(
    accounting: Accounting, server: EmbeddedRedis
) -> None:
    identity = _identity(tpm_limit=300)
    first = await _admit(accounting, identity, PLAIN, "r1")
    accounting.finish(
        first, status=200, upstream_model="up", usage=Usage(prompt_tokens=20, completion_tokens=30)
    )
    await accounting.flush()
    after = await _admit(accounting, identity, PLAIN, "r2")
    assert after.admission is not None
    # 300 - 50 used - 15 for this request (not 300 - 15: nothing was refunded)
    assert after.admission.tpm_remaining in (300 - 50 - 15, 300 - 50 - 15 + 1)


async def test_settlements_after_the_task_stopped_are_still_sent(
    accounting: Accounting, server: EmbeddedRedis
) -> None:
    settler = asyncio.create_task(accounting.run_settlements())
    await asyncio.sleep(0)
    settler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await settler
    late = await _admit(accounting, _identity(), PLAIN, "late")
    accounting.finish(late, status=200, upstream_model="up", usage=Usage(completion_tokens=1))
    for _ in range(100):  # sent by a task of its own
        if await _events(server):
            break
        await asyncio.sleep(0.01)
    assert [e.request_id for e in await _events(server)] == ["late"]


async def test_a_ticket_is_finished_once(accounting: Accounting, server: EmbeddedRedis) -> None:
    ticket = await _admit(accounting, _identity(), PLAIN, "once")
    accounting.finish(ticket, status=200, upstream_model="up", usage=Usage(completion_tokens=3))
    accounting.finish(ticket, status=499)  # the catch-all after the path that knew more
    await accounting.flush()
    (event,) = await _events(server)
    assert (event.status, event.completion_tokens) == (200, 3)


async def test_a_batch_redis_may_have_run_is_resent_as_events_only(
    accounting: Accounting,
) -> None:
    """Sent but unanswered: a second settlement could count a cost twice, an event cannot."""
    identity = _identity(rpm_limit=100)
    ticket = await _admit(accounting, identity, CACHEABLE, "r1")
    event = UsageEvent(
        request_id="r1", key_id="k1", org_id="default", model="chat", created_ms=1, status=200
    )
    accounting._keep([(ticket, 20, 1000, b'{"id":"x"}', event)], ["refused"], sent=True)
    assert accounting.retrying
    assert accounting._settlements == [(ticket, 0, 0, None, event)]
    assert ticket.admission is None  # the settlement script is not run again
    assert accounting._cancels == ["refused"]
    never_sent = await _admit(accounting, identity, PLAIN, "r2")
    accounting._keep([(never_sent, 20, 1000, None, event)], [], sent=False)
    assert accounting._settlements[0] == (never_sent, 20, 1000, None, event)  # whole, first
    assert never_sent.admission is not None
