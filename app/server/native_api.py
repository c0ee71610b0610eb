"""The native passthrough routes: `/v1/messages`, `/v1beta`, `/openai/deployments`, `/api`.

A client of Anthropic's, Google's, Azure's or Ollama's own SDK points it at the gateway and
keeps its code: the gateway key goes where that SDK puts its key, answers and errors come in
that vendor's shapes. Unlike Gandalf's passthrough (no failover, limits or usage), every call
is treated as on the universal routes: the key is authenticated and authorised, the alias is
routed (to targets speaking that wire format only), admitted against the key's limits and
budget, failed over, and settled and recorded exactly once on the usage the answer reports.
Token counting (`/v1/messages/count_tokens`, Gemini's `:countTokens`) is authenticated,
authorised and routed but not admitted, billed or recorded: it generates nothing, the vendors
do not charge for it, and SDKs call it around real calls, which an RPM charge would starve.

The vendor-specific parts (paths, bodies, usage, error shapes) are `app.providers.native`;
this module is the HTTP side, raw ASGI handlers mounted in Litestar like `openai_api`'s, with
which it shares the request envelope and the stream relay (`app.server.exchange`).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import structlog
from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from app.accounting import Ticket
from app.domain import (
    Forbidden,
    GatewayError,
    Identity,
    MethodNotAllowed,
    ModelNotFound,
    Payload,
    Permission,
    UpstreamStatus,
)
from app.providers import native
from app.providers.native import NativeMeter, NativeRequest, Vendor
from app.routing.failover import first_success
from app.routing.router import Route, Target, build_route
from app.server.asgi import header, read_body, respond
from app.server.errors import JSON, render
from app.server.exchange import (
    Exchange,
    Handler,
    PlainStreamWriter,
    StreamWriter,
    deliver,
    first_answer,
    relay,
)
from app.server.sse import SseWriter
from app.server.state import WorkerState

log = structlog.get_logger("gandalf.request")

MOUNTS = (
    (Vendor.ANTHROPIC, "/v1/messages"),
    (Vendor.GEMINI, "/v1beta"),
    (Vendor.AZURE, "/openai"),
    (Vendor.OLLAMA, "/api"),
)
"""Each native API and the path it is mounted at."""
LISTINGS = {(Vendor.OLLAMA, "/tags"), (Vendor.GEMINI, "/models")}
"""GET paths answered from the routes, with no upstream call."""
_KEY_HEADERS = {
    Vendor.ANTHROPIC: b"x-api-key",
    Vendor.GEMINI: b"x-goog-api-key",
    Vendor.AZURE: b"api-key",
}
"""Where each vendor's SDK puts its key; `Authorization: Bearer` is accepted everywhere."""


def credential(vendor: Vendor, scope: Scope) -> bytes | None:
    """The gateway key as an `Authorization` value, from wherever the vendor's SDK sends it."""
    name = _KEY_HEADERS.get(vendor)
    key = header(scope, name) if name is not None else None
    if key is None and vendor is Vendor.GEMINI:
        key = _query_key(scope["query_string"])
    if key is not None:
        return b"Bearer " + key.strip()
    return header(scope, b"authorization")


def _query_key(query: bytes) -> bytes | None:
    """Gemini's `?key=` (gateway keys are URL-safe, so no decoding is needed)."""
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"key" and value:
            return value
    return None


def remainder(scope: Scope, prefix: str) -> str:
    """The raw path after a mount's prefix, still percent-encoded (`%2F` stays `%2F`)."""
    raw: bytes | None = scope.get("raw_path")
    if raw:
        path = raw.split(b"?", 1)[0].decode("latin-1")
        if not path.startswith(prefix):
            raise native.PathNotFound
        return path[len(prefix) :]
    # without raw_path, Litestar's mount leaves the decoded rest (with a trailing slash)
    rest: str = scope["path"]
    return rest[:-1] if rest.endswith("/") else rest


def error_response(vendor: Vendor, error: GatewayError) -> tuple[int, bytes, bytes]:
    """(status, body, content type) of a failure, in the vendor's error shape."""
    status, body, content_type = render(error)  # an upstream 4xx passes through as it came
    if isinstance(error, UpstreamStatus) and error.passes_through:
        return status, body, content_type
    shaped = native.error_body(vendor, status, error.message)
    return (status, shaped, JSON) if shaped is not None else (status, body, content_type)


class NativeApi:
    """Handlers of the native routes, bound to one worker's state."""

    def __init__(self, state: WorkerState) -> None:
        self._state = state

    def handlers(self) -> list[ASGIRouteHandler]:
        return [
            asgi(prefix, is_mount=True, copy_scope=False)(self._mount(vendor, prefix))
            for vendor, prefix in MOUNTS
        ]

    def _mount(self, vendor: Vendor, prefix: str) -> Handler:
        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            await self.handle(vendor, prefix, scope, receive, send)

        return handler

    async def handle(
        self, vendor: Vendor, prefix: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        call = Exchange(self._state, scope, send, prefix, functools.partial(error_response, vendor))
        async with call:
            rest = remainder(scope, prefix)
            call.path = prefix + rest
            method = scope.get("method")
            if method == "GET" and (vendor, rest.rstrip("/")) in LISTINGS:
                identity = await self._authenticate(vendor, scope)
                await respond(send, 200, self._listing(vendor, identity), JSON, call.extra)
                return
            if method != "POST":
                raise MethodNotAllowed(f"method {method} not allowed; use POST")
            identity = await self._authenticate(vendor, scope)
            request = await self._read(vendor, rest, scope, receive)
            call.model = request.model
            payload = request.payload()
            route = self._compatible(self._state.gateway.resolve(identity, payload), request)
            if request.metered:
                call.ticket = await call.admit(identity, payload, route, bypass=True)
                if call.ticket is not None:
                    call.extra += call.ticket.headers()
            call.status, call.provider = await self._answer(request, route, payload, call, receive)

    async def _authenticate(self, vendor: Vendor, scope: Scope) -> Identity:
        return await self._state.authenticator.authenticate(credential(vendor, scope))

    async def _read(
        self, vendor: Vendor, rest: str, scope: Scope, receive: Receive
    ) -> NativeRequest:
        allowed: dict[str, str] = {}
        if vendor is Vendor.ANTHROPIC:
            for name in native.ALLOWED_HEADERS:
                value = header(scope, name.encode())
                if value is not None:
                    allowed[name] = value.decode("latin-1")
        body = await read_body(scope, receive, self._state.max_body_bytes)
        return native.parse(vendor, rest, scope["query_string"], body, allowed)

    def _compatible(self, route: Route, request: NativeRequest) -> Route:
        """The route's targets that speak the request's wire format (none: a 404)."""
        targets = [t for group in route.groups for t in group if native.speaks(t.provider, request)]
        if not targets:
            raise ModelNotFound(request.model)
        if len(targets) == sum(len(group) for group in route.groups):
            return route
        return build_route(route.alias, targets, route.cache_ttl_s)

    def _listing(self, vendor: Vendor, identity: Identity) -> bytes:
        """The aliases the key may use that route to providers of the vendor's format."""
        if not identity.can(Permission.USE_MODELS):
            raise Forbidden("insufficient permissions")
        router = self._state.gateway.router
        aliases = []
        for alias in router.aliases:
            route = router.route(alias)
            if route is None or not identity.may_use(alias):
                continue
            if any(native.serves(t.provider, vendor) for group in route.groups for t in group):
                aliases.append(alias)
        if vendor is Vendor.OLLAMA:
            now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            return native.ollama_tags(aliases, now)
        return native.gemini_models(aliases)

    async def _answer(
        self,
        request: NativeRequest,
        route: Route,
        payload: Payload,
        call: Exchange,
        receive: Receive,
    ) -> tuple[int, str]:
        targets = self._state.gateway.router.targets(route)
        ticket, send, extra = call.ticket, call.send, call.extra
        if request.stream:
            channel = (receive, send)
            return await self._stream(request, targets, payload, channel, extra, ticket=ticket)
        return await self._complete(request, targets, send, extra, ticket=ticket)

    async def _complete(
        self,
        request: NativeRequest,
        targets: Sequence[Target],
        send: Send,
        extra: list[tuple[bytes, bytes]],
        *,
        ticket: Ticket | None,
    ) -> tuple[int, str]:
        async def attempt(target: Target) -> tuple[bytes, str]:
            plan = native.plan(target.provider, request, target.model)
            status, body, content_type = await plan.transport.post(
                plan.path, plan.body, plan.headers
            )
            if status >= 300:
                body, content_type = native.upstream_error(plan, status, body, content_type)
                raise UpstreamStatus(target.provider.name, status, body, content_type)
            return body, content_type

        accounting = self._state.accounting
        call = first_success(request.model, targets, attempt)
        target, (body, content_type) = await first_answer(accounting, ticket, call)
        usage = native.answer_usage(request.vendor, body) if ticket is not None else None
        answer = (body, content_type.encode() or JSON, extra)
        await deliver(send, answer, accounting, ticket, target, usage=usage)
        return 200, target.provider.name

    async def _stream(
        self,
        request: NativeRequest,
        targets: Sequence[Target],
        payload: Payload,
        channel: tuple[Receive, Send],
        extra: list[tuple[bytes, bytes]],
        *,
        ticket: Ticket | None,
    ) -> tuple[int, str]:
        """Open the upstream stream (failover happens here) and relay it to the client.

        As on the universal route (`exchange.relay`): until the first byte is written a failure
        is an error answer; after it, the stream ends with the vendor's error event. A client
        that goes away cancels the upstream request at once. The request is settled on the
        usage seen.
        """
        receive, send = channel
        framing = request.framing
        writer: StreamWriter
        if framing is native.Framing.SSE:
            writer = SseWriter(send, self._state.keepalive_interval, extra)
        else:
            writer = PlainStreamWriter(send, native.CONTENT_TYPES[framing], extra)
        meter = native.meter(request)
        error = native.stream_error(request.vendor, framing)

        async def open_stream(stack: AsyncExitStack) -> tuple[Target, AsyncIterator[bytes]]:
            async def attempt(target: Target) -> AsyncIterator[bytes]:
                plan = native.plan(target.provider, request, target.model)
                opening = plan.transport.post_stream(plan.path, plan.body, plan.headers)
                try:
                    pieces = await stack.enter_async_context(opening)
                except UpstreamStatus as exc:
                    body, kind = native.upstream_error(
                        plan, exc.upstream_status, exc.body, exc.content_type
                    )
                    raise UpstreamStatus(exc.provider, exc.upstream_status, body, kind) from exc
                return native.client_frames(pieces, plan.framing)

            return await first_success(request.model, targets, attempt)

        async def check_end(target: Target, status: int) -> int:
            return await _ended_well(status, writer, meter, request, error)

        return await relay(
            writer,
            receive,
            open_stream,
            meter,
            accounting=self._state.accounting,
            ticket=ticket,
            input_tokens=payload.input_tokens,
            broken=error,
            error_frame=lambda _failure: error,
            end=b"",
            after=check_end,
        )


async def _ended_well(
    status: int, writer: StreamWriter, meter: NativeMeter, request: NativeRequest, error: bytes
) -> int:
    """The status of a stream that was not broken: 200 only if the vendor's last event came.

    A stream that ends without it is broken as well, and gets the vendor's error event, unless
    the upstream sent its own error event (the client has that already).
    """
    if status != 200 or meter.complete:
        return status
    if not meter.failed:
        log.warning("upstream stream ended early", vendor=request.vendor.value)
        await writer.write(error)
    return 502
