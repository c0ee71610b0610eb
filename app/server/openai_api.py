"""The universal OpenAI API: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models.

These are Litestar `@asgi` route handlers: Litestar routes to them, but its per-request
machinery (request object, DI, response object — about 140 µs a request measured) is skipped;
each handler decodes, calls `Gateway`, and writes the answer itself.
"""

from __future__ import annotations

import functools
import time

import msgspec
from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from app.accounting import Spend, Ticket
from app.cache.replay import replay_as_sse
from app.domain import (
    Forbidden,
    GatewayError,
    Identity,
    MethodNotAllowed,
    NotImplementedByGateway,
    Operation,
    Payload,
    Permission,
    Usage,
)
from app.limits.limiter import period_days
from app.metering import StreamMeter
from app.pricing import NANO_PER_USD
from app.providers.sse import DONE_FRAME, ERROR_FRAME
from app.routing.router import Route, Target
from app.server.asgi import header, read_body, respond
from app.server.errors import JSON, render, stream_error_frame
from app.server.exchange import (
    After,
    Exchange,
    deliver,
    first_answer,
    relay,
    request_id,
)
from app.server.exchange import Handler as Handler  # noqa: PLC0414 - the factory imports it here
from app.server.requests import decode_payload
from app.server.sse import SSE_EXTRA, SseWriter
from app.server.state import WorkerState

_encode = msgspec.json.encode


class OpenAIApi:
    """Handlers of the universal API, bound to one worker's state."""

    def __init__(self, state: WorkerState) -> None:
        self._state = state

    def hot_paths(self) -> dict[str, Handler]:
        """Exact paths served without going through Litestar's router and middleware."""
        return {
            "/v1/chat/completions": self._op(Operation.CHAT),
            "/v1/completions": self._op(Operation.COMPLETIONS),
            "/v1/embeddings": self._op(Operation.EMBEDDINGS),
        }

    def handlers(self) -> list[ASGIRouteHandler]:
        """The same routes as Litestar handlers (reached when a hot path is not taken)."""
        handlers = [asgi(path, copy_scope=False)(fn) for path, fn in self.hot_paths().items()]
        # A mount, so that model ids with slashes (`org/model`) can be retrieved.
        handlers.append(asgi("/v1/models", is_mount=True, copy_scope=False)(self._models_handler()))
        handlers.append(asgi("/v1/usage", copy_scope=False)(self._usage_handler()))
        return handlers

    def _op(self, operation: Operation) -> Handler:
        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            await self.handle(operation, scope, receive, send)

        return handler

    def _models_handler(self) -> Handler:
        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            await self.models(scope, send)

        return handler

    def _usage_handler(self) -> Handler:
        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            await self.usage(scope, send)

        return handler

    async def handle(
        self, operation: Operation, scope: Scope, receive: Receive, send: Send
    ) -> None:
        state = self._state
        call = Exchange(state, scope, send, scope["path"], render)
        async with call:
            method = scope.get("method")
            if method != "POST":
                raise MethodNotAllowed(f"method {method} not allowed; use POST")
            identity = await state.authenticator.authenticate(header(scope, b"authorization"))
            body = await read_body(scope, receive, state.max_body_bytes)
            payload = decode_payload(operation, body)
            call.model = payload.model
            route = state.gateway.resolve(identity, payload)
            no_cache = header(scope, b"cache-control")
            bypass = no_cache is not None and b"no-cache" in no_cache.lower()
            call.ticket = await call.admit(identity, payload, route, bypass=bypass)
            meta = self._metadata(scope, call.rid, call.started)
            call.status, call.provider = await self._answer(
                operation,
                route,
                payload,
                ticket=call.ticket,
                channel=(receive, send),
                extra=call.extra,
                meta=meta,
            )

    async def _answer(
        self,
        operation: Operation,
        route: Route,
        payload: Payload,
        *,
        ticket: Ticket | None,
        channel: tuple[Receive, Send],
        extra: list[tuple[bytes, bytes]],
        meta: Metadata | None,
    ) -> tuple[int, str]:
        """From the cache, as a stream or as one answer; returns the status and provider."""
        receive, send = channel
        answer = _cached_answer(ticket, payload)
        if ticket is not None:
            extra += ticket.headers()
            if ticket.cacheable:
                extra.append((b"x-cache", b"HIT" if answer is not None else b"MISS"))
        if ticket is not None and answer is not None:
            content_type = b"text/event-stream" if payload.stream else JSON
            headers = [*SSE_EXTRA, *extra] if payload.stream else extra
            if meta is not None:
                answer = meta.attach(answer, payload.stream, provider="cache", cost_nano=0)
            try:
                await respond(send, 200, answer, content_type, headers)
            finally:
                if self._state.accounting is not None:  # a request (its RPM token), no more
                    self._state.accounting.finish(ticket, status=200, cached=True)
            return 200, "cache"
        if payload.stream and operation is not Operation.EMBEDDINGS:
            return await self._stream(
                route, payload, receive, send, extra, ticket=ticket, meta=meta
            )
        return await self._complete(route, payload, send, extra, ticket=ticket, meta=meta)

    async def _complete(
        self,
        route: Route,
        payload: Payload,
        send: Send,
        extra: list[tuple[bytes, bytes]],
        *,
        ticket: Ticket | None,
        meta: Metadata | None,
    ) -> tuple[int, str]:
        accounting = self._state.accounting
        call = self._state.gateway.complete(route, payload)
        target, reply = await first_answer(accounting, ticket, call)
        body = reply.body
        if meta is not None:
            cost = self._cost(ticket, target.model, reply.usage)
            body = meta.attach(body, False, provider=target.provider.name, cost_nano=cost)
        answer = (body, JSON, extra)
        await deliver(send, answer, accounting, ticket, target, usage=reply.usage, store=reply.body)
        return 200, target.provider.name

    async def _stream(
        self,
        route: Route,
        payload: Payload,
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
        *,
        ticket: Ticket | None,
        meta: Metadata | None = None,
    ) -> tuple[int, str]:
        """Open the upstream stream (failover happens here) and pump it to the client.

        Until the first byte is written, a failure is raised and becomes a JSON error. After
        it, a failure ends the stream with an `event: error` frame and `[DONE]` (Gandalf's
        frame for a stream that breaks mid-way). A client that goes away cancels the upstream
        request at once, whether it is still opening or already streaming. Whatever happens,
        the request is settled on what it used: the upstream's usage chunk when there was
        one, otherwise the chunks that reached the client.
        """
        writer = SseWriter(send, self._state.keepalive_interval, extra)
        meter = StreamMeter(
            strip_usage="stream_options" not in payload.fields,
            assemble=ticket is not None and ticket.cacheable,
        )
        after = None if meta is None else self._commented(meta, meter, writer, payload, ticket)
        return await relay(
            writer,
            receive,
            functools.partial(self._state.gateway.open_stream, route, payload),
            meter,
            accounting=self._state.accounting,
            ticket=ticket,
            input_tokens=payload.input_tokens,
            assembler=meter.assembler,
            broken=ERROR_FRAME,
            error_frame=stream_error_frame,
            end=DONE_FRAME,
            after=after,
        )

    def _commented(
        self,
        meta: Metadata,
        meter: StreamMeter,
        writer: SseWriter,
        payload: Payload,
        ticket: Ticket | None,
    ) -> After:
        """What ends a stream with the `x_gateway` comment (its cost is known only then)."""

        async def comment(target: Target, status: int) -> int:
            used = meter.used(payload.input_tokens) if status == 200 else None
            cost = self._cost(ticket, target.model, used)
            await writer.write(meta.comment(target.provider.name, cost))
            return status

        return comment

    def _metadata(self, scope: Scope, rid: bytes, started: float) -> Metadata | None:
        """The `x_gateway` builder when the config or the request asks for it, else None."""
        asked = header(scope, b"x-gateway-metadata")
        if self._state.x_gateway or (asked is not None and asked.lower() in (b"true", b"1")):
            return Metadata(rid.decode(), started)
        return None

    def _cost(self, ticket: Ticket | None, model: str, usage: Usage | None) -> int:
        """What the answer is charged, as accounting charges it (or priced plainly without it)."""
        accounting = self._state.accounting
        if accounting is not None and ticket is not None:
            return accounting.charge(ticket, model, usage)[1]
        if usage is None:
            return 0
        return self._state.prices.cost_nano(
            model, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
        )

    async def models(self, scope: Scope, send: Send) -> None:
        rid = request_id(scope)
        extra = [(b"x-request-id", rid)]
        try:
            method = scope.get("method")
            if method != "GET":
                raise MethodNotAllowed(f"method {method} not allowed; use GET")
            identity = await self._state.authenticator.authenticate(header(scope, b"authorization"))
            wanted = scope["path"].strip("/") or None
            body = self._state.model_list.render(identity, wanted)
            await respond(send, 200, body, JSON, extra)
        except GatewayError as exc:
            status, error, content_type = render(exc)
            await respond(send, status, error, content_type, extra)

    async def usage(self, scope: Scope, send: Send) -> None:
        """`GET /v1/usage`: the calling key's spend, budget and period, from Redis.

        The spend counter is what admission enforces, so this is the number that decides the
        next request, in-flight reservations aside (given as `reserved_usd`).
        """
        extra = [(b"x-request-id", request_id(scope))]
        try:
            method = scope.get("method")
            if method != "GET":
                raise MethodNotAllowed(f"method {method} not allowed; use GET")
            identity = await self._state.authenticator.authenticate(header(scope, b"authorization"))
            if not (identity.can(Permission.USE_MODELS) or identity.can(Permission.VIEW_OWN_USAGE)):
                raise Forbidden("this key may not view usage")
            accounting = self._state.accounting
            if accounting is None:
                raise NotImplementedByGateway("usage tracking not enabled (it needs Redis)")
            spend = await accounting.spend(identity)
            await respond(send, 200, _encode(usage_report(identity, spend)), JSON, extra)
        except GatewayError as exc:
            status, error, content_type = render(exc)
            await respond(send, status, error, content_type, extra)


class Metadata:
    """The opt-in `x_gateway` object of one request (the ai-gateway's fields)."""

    __slots__ = ("request_id", "started")

    def __init__(self, request_id: str, started: float) -> None:
        self.request_id = request_id
        self.started = started
        """`time.perf_counter()` when the request arrived."""

    def render(self, provider: str, cost_nano: int) -> bytes:
        return _encode(
            {
                "provider": provider,
                "latency_ms": int((time.perf_counter() - self.started) * 1000),
                "cost_usd": cost_nano / NANO_PER_USD,
                "cache_hit": provider == "cache",
                "request_id": self.request_id,
            }
        )

    def comment(self, provider: str, cost_nano: int) -> bytes:
        """The SSE comment that ends a stream: ignored by every SSE parser that did not ask."""
        return b": x_gateway " + self.render(provider, cost_nano) + b"\n\n"

    def attach(self, answer: bytes, stream: bool, *, provider: str, cost_nano: int) -> bytes:
        """`answer` (a JSON object, or an SSE stream ending in `[DONE]`) with the metadata."""
        if stream:
            if not answer.endswith(DONE_FRAME):
                return answer
            done = len(answer) - len(DONE_FRAME)
            return answer[:done] + self.comment(provider, cost_nano) + DONE_FRAME
        body = answer.rstrip()
        if not body.endswith(b"}"):
            return answer
        head = body[:-1].rstrip()
        comma = b"" if head.endswith(b"{") else b","
        return head + comma + b'"x_gateway":' + self.render(provider, cost_nano) + b"}"


def usage_report(identity: Identity, spend: Spend) -> dict[str, object]:
    """The body of `GET /v1/usage` (the ai-gateway fields, plus the key's own)."""
    budget = identity.max_budget or None
    spent = spend.spent_nano / NANO_PER_USD
    report: dict[str, object] = {
        "object": "usage",
        "key_id": identity.key_id,
        "tenant_id": identity.org_id,
        "org_id": identity.org_id,
        "budget_period": identity.budget_period,
        "period_start": None,
        "period_end": None,
        "total_cost_usd": spent,
        "total_cost_nano_usd": spend.spent_nano,
        "reserved_usd": spend.reserved_nano / NANO_PER_USD,
        "budget_usd": budget,
        "remaining_usd": None if budget is None else max(0.0, budget - spent),
        "budget_used_pct": None if budget is None else round(100 * spent / budget, 6),
    }
    if spend.period != "total":
        first, after = period_days(spend.period)
        report["period_start"] = f"{first.isoformat()}T00:00:00Z"
        report["period_end"] = f"{after.isoformat()}T00:00:00Z"
    return report


def _cached_answer(ticket: Ticket | None, payload: Payload) -> bytes | None:
    """The cached answer in the shape the client asked for; None to ask the upstream.

    A streamed request gets the stored completion replayed as SSE; a stored answer that
    cannot be replayed is treated as a miss rather than an error.
    """
    if ticket is None or ticket.cached is None:
        return None
    if not payload.stream:
        return ticket.cached
    return replay_as_sse(ticket.cached, _wants_usage(payload))


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


_decode_stream_options = msgspec.json.Decoder(_StreamOptions).decode


def _wants_usage(payload: Payload) -> bool:
    """Whether the client asked for the usage chunk (`stream_options.include_usage: true`)."""
    options = payload.fields.get("stream_options")
    if options is None:
        return False
    try:
        return _decode_stream_options(options).include_usage
    except msgspec.DecodeError:
        return False
