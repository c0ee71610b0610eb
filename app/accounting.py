"""Limits, budgets, the response cache and usage around one request: two Redis round trips.

Before the upstream call, `admit` runs one pipeline: the request's intent (written into this
worker's hash of requests in flight, see `domain.UsageIntent`), the admission script (RPM
token, TPM estimate, budget reservation, all or nothing, on Redis's clock) and, for a cacheable
request, the cache lookup. After the answer, `settle` queues the settlement script (TPM refund
or extra charge, reservation released, real cost added to the spend counter), for a cacheable
answer the cache store, the usage event, and the intent's deletion; a background task sends
the settlements of all requests that finished within 2 ms in one pipeline. Both scripts keep
their keys in one hash slot, so they run unchanged on Redis Cluster. Another task keeps the
worker's heartbeat alive, by which the recorder tells a worker that died with requests in
flight.

When Redis cannot be reached, `rate_limits.redis_failure` decides: `fail_open` serves without
limits or cache (and logs), `fail_closed` answers 503. Nothing needs resetting when Redis
returns: the next request uses it again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
import structlog

from app.cache.fingerprint import fingerprint
from app.config import Config
from app.domain import (
    Identity,
    Payload,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    Usage,
    UsageEvent,
    UsageIntent,
)
from app.keyspace import Keyspace
from app.limits.limiter import Admission, Client, Limiter, Limits, spend_period, spend_ttl
from app.pricing import NANO_PER_USD, PriceTable
from app.resp import REDIS_ERRORS, NotSent
from app.routing.router import Route

log = structlog.get_logger("gandalf.accounting")
_encode_event = msgspec.json.Encoder().encode
HEARTBEAT_EVERY = 1.0
"""Seconds between two refreshes of the worker's heartbeat key."""
HEARTBEAT_TTL = 10.0
"""Seconds a heartbeat outlives its last refresh: a worker silent that long is taken for dead."""

SETTLE_DELAY = 0.002
"""Seconds a settlement waits for others to share its round trip."""
RETRY_DELAY = 1.0
"""Seconds before settlements Redis did not take are sent again."""
MAX_PENDING = 100_000
"""Settlements kept for a Redis that does not answer (about 50 MB); the oldest go first."""
_DEGRADED_LOG_EVERY = 10.0
"""Seconds between two warnings about serving without Redis (one per request would flood)."""


class Ticket:
    """One admitted request: what was reserved, and where its answer may be cached."""

    __slots__ = (
        "admission",
        "cache_key",
        "cache_ttl",
        "cached",
        "cost_nano",
        "finished",
        "identity",
        "key_id",
        "limits",
        "model",
        "period",
        "request_id",
        "started",
        "tokens",
    )

    def __init__(self, identity: Identity, model: str, request_id: str, limits: Limits) -> None:
        self.identity = identity
        self.key_id = identity.key_id
        self.model = model
        self.request_id = request_id
        self.limits = limits
        self.started = time.time()
        self.tokens = 0
        self.cost_nano = 0
        self.period = ""
        self.admission: Admission | None = None
        """None when no limit applies or Redis was unreachable: nothing to settle."""
        self.cache_key: str | None = None
        self.cache_ttl = 0
        self.finished = False
        """`Accounting.finish` ran: settled and recorded once, whatever path got there."""
        self.cached: bytes | None = None
        """The cached answer, when the lookup hit."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.admission.headers() if self.admission is not None else []

    @property
    def cacheable(self) -> bool:
        return self.cache_key is not None


_Settlement = tuple[Ticket, int, int, bytes | None, UsageEvent | None]
"""A finished request as queued: ticket, real tokens, cost nano-USD, answer to cache, event."""


class Spend(NamedTuple):
    period: str
    """The spend period's name (`m:2026-11`, …, `total`)."""
    spent_nano: int
    reserved_nano: int
    """Estimated cost of the key's requests in flight."""


class Accounting:
    """Admission and settlement of requests against the shared state in Redis."""

    def __init__(
        self, client: Client, keyspace: Keyspace, prices: PriceTable, config: Config
    ) -> None:
        self._client = client
        self._keyspace = keyspace
        self._limiter = Limiter(keyspace)
        self.prices = prices
        limits = config.rate_limits
        self._default_rpm = limits.default_rpm
        self._default_tpm = limits.default_tpm
        self._default_output = limits.default_output_tokens
        self._fail_open = limits.redis_failure == "fail_open"
        cache = config.cache
        self._cache_on = cache.enabled
        self._cache_by_org = cache.scope == "org"
        self._cache_ttl = int(cache.default_ttl)
        self.max_entry_bytes = cache.max_entry_bytes
        self._last_warning = 0.0
        self._settlements: list[_Settlement] = []
        self._period_day = -1
        self._periods: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._closed = False
        """The settlement task has ended: later settlements are sent one batch at a time."""
        self._late: set[asyncio.Task[None]] = set()
        self._cancels: list[str] = []
        self.retrying = False
        """The last flush did not reach Redis: its settlements wait to be sent again."""
        self.worker_id = uuid.uuid4().hex
        """Names this worker's heartbeat and its hash of intents."""
        self._intents = keyspace.intents(self.worker_id)

    async def start(self) -> None:
        """Load the scripts (a worker that starts while Redis is down loads them later)."""
        try:
            await self._limiter.load(self._client)
        except REDIS_ERRORS as exc:
            self._degraded(exc)

    def limits_of(self, identity: Identity) -> Limits:
        budget = identity.max_budget or 0.0
        return Limits(
            rpm=identity.rpm_limit or self._default_rpm,
            tpm=identity.tpm_limit or self._default_tpm,
            budget_nano=round(budget * NANO_PER_USD),
        )

    async def admit(
        self, identity: Identity, payload: Payload, request_id: str, route: Route, *, bypass: bool
    ) -> Ticket:
        """Write the intent, take from the key's limits and look in the cache: one round trip.

        Raises:
            RateLimited: requests or tokens per minute are used up (429 with headers).
            QuotaExceeded: the budget of the period is spent (429).
            ServiceUnavailable: Redis is unreachable and the policy is `fail_closed`.
        """
        ticket = Ticket(identity, payload.model, request_id, self.limits_of(identity))
        limited = ticket.limits.rpm or ticket.limits.tpm or ticket.limits.budget_nano
        if self._cache_on and payload.cache is not None:
            scope = f"org:{identity.org_id}" if self._cache_by_org else identity.key_id
            ticket.cache_key = self._keyspace.cache(
                payload.model, fingerprint(scope, payload.cache)
            )
            ttl = route.cache_ttl_s
            ticket.cache_ttl = min(ttl, self._cache_ttl) if ttl > 0 else self._cache_ttl
        lookup = ticket.cache_key is not None and not bypass
        ticket.tokens = payload.input_tokens
        ticket.period = self._period(identity.budget_period)
        output = payload.max_output_tokens or self._default_output
        estimate = self._estimated_cost(payload, route, output)
        if ticket.limits.budget_nano:
            ticket.cost_nano = estimate
        intent = self._intent(ticket, output, estimate)
        try:
            results = await self._run(
                lambda pipe: self._queue_admission(pipe, ticket, limited, lookup, intent)
            )
            # results: the intent's HSET, then the admission when limited, then the cache GET
            admission = self._limiter.read_admit(results[1], ticket.limits) if limited else None
            cached = results[-1] if lookup else None
            if isinstance(cached, BaseException):
                raise cached
        except REDIS_ERRORS as exc:
            if not self._fail_open:
                raise ServiceUnavailable("rate limiting is unavailable; try again shortly") from exc
            self._degraded(exc)
            ticket.cache_key = None
            return ticket
        if admission is not None:
            if not admission.allowed:
                self._cancel(ticket)
                if admission.refused == "budget":
                    raise QuotaExceeded
                raise RateLimited(admission.headers())
            ticket.admission = admission
        ticket.cached = bytes(cached) if cached is not None else None
        return ticket

    async def spend(self, identity: Identity) -> Spend:
        """What the key spent in its current budget period, and holds reserved, from Redis.

        Raises:
            ServiceUnavailable: Redis is unreachable.
        """
        period = self._period(identity.budget_period)
        names = (
            self._keyspace.spend(identity.key_id, period),
            self._keyspace.reserved(identity.key_id),
        )
        try:
            spent, reserved = await self._run(lambda pipe: [pipe.get(name) for name in names])
            for result in (spent, reserved):
                if isinstance(result, BaseException):
                    raise result
        except REDIS_ERRORS as exc:
            raise ServiceUnavailable("usage is unavailable; try again shortly") from exc
        return Spend(period, int(spent or 0), max(0, int(reserved or 0)))

    def _intent(self, ticket: Ticket, output: int, estimate: int) -> bytes:
        identity = ticket.identity
        return _encode_event(
            UsageIntent(
                request_id=ticket.request_id,
                key_id=identity.key_id,
                org_id=identity.org_id,
                team_id=identity.team_id,
                user_id=identity.user_id,
                model=ticket.model,
                created_ms=int(ticket.started * 1000),
                worker=self.worker_id,
                prompt_tokens=ticket.tokens,
                completion_tokens=output,
                cost_nano=estimate,
                period=ticket.period,
                reserved=ticket.cost_nano > 0,
            )
        )

    def _queue_admission(
        self, pipe: Any, ticket: Ticket, limited: object, lookup: bool, intent: bytes
    ) -> None:
        # the intent first: a worker killed once the upstream has the request still leaves it
        # (in this worker's hash of requests in flight; the settlement deletes it)
        pipe.execute_command("HSET", self._intents, ticket.request_id, intent)
        if limited:
            self._limiter.queue_admit(
                pipe,
                key_id=ticket.key_id,
                request_id=ticket.request_id,
                limits=ticket.limits,
                tokens=ticket.tokens,
                cost_nano=ticket.cost_nano,
                period=ticket.period,
            )
        if lookup:
            pipe.get(ticket.cache_key)

    def _period(self, budget_period: str) -> str:
        """`spend_period` for now, computed once a day per kind of period (UTC)."""
        day = int(time.time() // 86400)
        if day != self._period_day:
            self._period_day, self._periods = day, {}
        period = self._periods.get(budget_period)
        if period is None:
            period = self._periods[budget_period] = spend_period(budget_period, datetime.now(UTC))
        return period

    def _estimated_cost(self, payload: Payload, route: Route, output: int) -> int:
        """The most the request can cost: prompt plus `output` tokens, at the highest price.

        The highest among the route's targets, since failover may land on any of them.
        """
        models = {target.model for group in route.groups for target in group} or {payload.model}
        return max(self.prices.cost_nano(m, payload.input_tokens, output) for m in models)

    def charge(
        self, ticket: Ticket, upstream_model: str, usage: Usage | None, estimated: bool = False
    ) -> tuple[Usage, int, bool]:
        """What an answer is charged: (usage, nano-USD, estimated).

        Its usage at the upstream model's price; the admission estimate (then `estimated`)
        when the answer has no usage.
        """
        if usage is None:
            usage = Usage(prompt_tokens=ticket.tokens, total_tokens=ticket.tokens)
            estimated = True
        cost = self.prices.cost_nano(
            upstream_model or ticket.model,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
        )
        return usage, cost, estimated

    def finish(
        self,
        ticket: Ticket,
        *,
        status: int,
        provider: str = "",
        upstream_model: str = "",
        usage: Usage | None = None,
        estimated: bool = False,
        cached: bool = False,
        ttft_ms: int | None = None,
        store: bytes | None = None,
    ) -> None:
        """The request is over: settle its limits, record its usage, cache its answer.

        `usage` is what the upstream reported (or the gateway counted: `estimated`), or None:
        a successful answer without usage is charged its estimate (and recorded as
        estimated); a failure costs nothing. A cache hit costs nothing either. Queued, not
        awaited (see `run_settlements`). Only the first call for a ticket counts.
        """
        if ticket.finished:
            return
        ticket.finished = True
        if cached or (usage is None and status != 200):
            usage, cost = Usage(), 0
        else:
            usage, cost, estimated = self.charge(ticket, upstream_model, usage, estimated)
        identity = ticket.identity
        event = UsageEvent(
            request_id=ticket.request_id,
            key_id=identity.key_id,
            org_id=identity.org_id,
            team_id=identity.team_id,
            user_id=identity.user_id,
            model=ticket.model,
            upstream_model=upstream_model,
            provider="cache" if cached else provider,
            created_ms=int(ticket.started * 1000),
            status=status,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cost_nano=cost,
            price_version=self.prices.version,
            latency_ms=int((time.time() - ticket.started) * 1000),
            ttft_ms=ttft_ms,
            cached=cached,
            estimated=estimated,
        )
        # some upstreams leave total_tokens out: never refund a whole estimate for that
        tokens = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
        self.settle(ticket, tokens=tokens, cost_nano=cost, store=store, event=event)

    def settle(
        self,
        ticket: Ticket,
        *,
        tokens: int,
        cost_nano: int,
        store: bytes | None = None,
        event: UsageEvent | None = None,
    ) -> None:
        """Queue what the request used, its answer for the cache and its usage event.

        Queued, not awaited: the client has its answer already, and the settlements of all
        requests that finish within `SETTLE_DELAY` leave together, in one round trip (under
        load, dozens of requests share it). Never raises; a failure is logged, the
        reservation then expires by itself.
        """
        store = store if ticket.cache_key is not None and store is not None else None
        if store is not None and len(store) > self.max_entry_bytes:
            store = None
        if ticket.admission is None and store is None and event is None:
            return
        self._settlements.append((ticket, tokens, cost_nano, store, event))
        if self._closed:  # a stream still finishing while the worker stops
            task = asyncio.get_running_loop().create_task(self.flush())
            self._late.add(task)
            task.add_done_callback(self._late.discard)
        elif not self._wake.is_set():
            self._wake.set()

    def _cancel(self, ticket: Ticket) -> None:
        """A refused request: its intent is closed without usage (queued like settlements)."""
        ticket.finished = True
        self._cancels.append(ticket.request_id)
        if not self._wake.is_set():
            self._wake.set()

    async def run_heartbeat(self) -> None:
        """Keep this worker's heartbeat key alive (the recorder's sign that it still settles)."""
        keyspace, worker = self._keyspace, self.worker_id
        key = keyspace.worker_heartbeat(worker)
        ttl = str(int(HEARTBEAT_TTL * 1000))

        def beat(pipe: Any) -> None:
            pipe.execute_command("SET", key, b"1", "PX", ttl)
            pipe.execute_command("SADD", keyspace.workers, worker)

        while True:
            try:
                await self._run(beat)
            except REDIS_ERRORS as exc:
                self._degraded(exc)
            await asyncio.sleep(HEARTBEAT_EVERY)

    async def run_settlements(self) -> None:
        """The worker's background task that sends queued settlements; runs until cancelled."""
        try:
            while True:
                await self._wake.wait()
                await asyncio.sleep(SETTLE_DELAY)
                self._wake.clear()
                try:
                    await self.flush()
                except Exception:  # the task boundary: a bad batch must not stop the next ones
                    log.exception("settlements not sent")
                if self.retrying:  # Redis did not take them: again a little later
                    await asyncio.sleep(RETRY_DELAY)
                    self._wake.set()
        finally:
            self._closed = True
            await self.flush()

    async def flush(self) -> None:
        """Send every queued settlement now, in one round trip."""
        batch, self._settlements = self._settlements, []
        cancels, self._cancels = self._cancels, []
        if not batch and not cancels:
            return
        now = datetime.now(UTC)
        ttls: dict[str, int] = {}
        stream = self._keyspace.usage_stream

        def queue(pipe: Any) -> None:
            for ticket, tokens, cost_nano, store, event in batch:
                if ticket.admission is not None:
                    ttl = ttls.get(ticket.period)
                    if ttl is None:
                        ttl = ttls[ticket.period] = spend_ttl(ticket.period, now)
                    self._limiter.queue_settle(
                        pipe,
                        key_id=ticket.key_id,
                        request_id=ticket.request_id,
                        limits=ticket.limits,
                        estimated_tokens=ticket.tokens,
                        real_tokens=tokens,
                        cost_nano=cost_nano,
                        period=ticket.period,
                        ttl=ttl,
                        reserved=ticket.cost_nano > 0,
                    )
                if store is not None:
                    pipe.set(ticket.cache_key, store, ex=max(1, ticket.cache_ttl))
                if event is not None:
                    # never trimmed here: an event is deleted once the recorder stored it
                    pipe.execute_command("XADD", stream, "*", "e", _encode_event(event))
            # after the events: a worker killed between the two leaves an intent the recorder
            # finds already stored, never a request with neither
            closed = [ticket.request_id for ticket, *_ in batch] + cancels
            pipe.execute_command("HDEL", self._intents, *closed)

        try:
            results = await self._run(queue)
        except REDIS_ERRORS as exc:
            self._degraded(exc)
            self._keep(batch, cancels, sent=not isinstance(exc, NotSent))
            return
        self.retrying = False
        for result in results:
            if isinstance(result, BaseException):
                log.warning("settlement refused by redis", error=str(result))

    def _keep(self, batch: list[_Settlement], cancels: list[str], *, sent: bool) -> None:
        """Queue a batch Redis did not take again, ahead of newer ones, up to `MAX_PENDING`.

        A batch never sent (`NotSent`) goes again whole. One that was sent may have run: its
        scripts and cache stores are not sent twice (a cost would count twice), but its usage
        events and intent deletions are (the recorder skips a request id it has stored), so no
        request goes missing from usage.
        """
        if sent:
            batch = [(ticket, 0, 0, None, event) for ticket, _, _, _, event in batch if event]
            for ticket, *_ in batch:
                ticket.admission = None  # its settlement script is not run again
        self.retrying = True
        self._settlements[:0] = batch
        self._cancels[:0] = cancels
        excess = len(self._settlements) - MAX_PENDING
        if excess > 0:
            del self._settlements[:excess]
            log.error("redis unreachable for long: oldest settlements dropped", dropped=excess)
        del self._cancels[: max(0, len(self._cancels) - MAX_PENDING)]

    async def _run(self, queue: Any) -> list[Any]:
        return await self._limiter.run(self._client, queue)

    def _degraded(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _DEGRADED_LOG_EVERY:
            self._last_warning = now
            log.warning("redis unreachable; serving without limits or cache", error=str(exc))
