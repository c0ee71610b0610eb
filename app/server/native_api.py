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
this module is the HTTP side, shaped like `openai_api` (raw ASGI handlers mounted in Litestar).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Protocol

import structlog
import uuid_utils
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
    StreamBroken,
    UpstreamStatus,
)
from app.providers import native
from app.providers.native import NativeMeter, NativeRequest, Vendor
from app.routing.failover import first_success
from app.routing.router import Route, Target, build_route
from app.server.asgi import ClientDisconnected, header, read_body, respond, wait_for_disconnect
from app.server.errors import JSON, render
from app.server.openai_api import CLIENT_CLOSED, Handler, request_id
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


class _Writer(Protocol):
    started: bool

    async def start(self) -> None: ...
    async def write(self, data: bytes) -> None: ...
    async def finish(self, data: bytes) -> None: ...
    async def keep_alive(self) -> None: ...


class _PlainStreamWriter:
    """A streamed answer that is not SSE (NDJSON, a JSON array): no keep-alives fit in it."""

    __slots__ = ("_content_type", "_extra", "_send", "started")

    def __init__(self, send: Send, content_type: bytes, extra: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self._content_type = content_type
        self._extra = extra
        self.started = False

    async def start(self) -> None:
        if not self.started:
            self.started = True
            headers = [(b"content-type", self._content_type), *self._extra]
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def write(self, data: bytes) -> None:
        await self.start()
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def keep_alive(self) -> None:
        await asyncio.Event().wait()  # until cancelled


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
        started = time.perf_counter()
        rid = request_id(scope)
        extra = [(b"x-request-id", rid)]
        model = provider = ""
        status = 200
        ticket: Ticket | None = None
        rest: str | None = None
        try:
            rest = remainder(scope, prefix)
            method = scope.get("method")
            if method == "GET" and (vendor, rest.rstrip("/")) in LISTINGS:
                identity = await self._authenticate(vendor, scope)
                await respond(send, 200, self._listing(vendor, identity), JSON, extra)
                return
            if method != "POST":
                raise MethodNotAllowed(f"method {method} not allowed; use POST")
            identity = await self._authenticate(vendor, scope)
            request = await self._read(vendor, rest, scope, receive)
            model = request.model
            payload = request.payload()
            route = self._compatible(self._state.gateway.resolve(identity, payload), request)
            if request.metered:
                ticket = await self._admit(identity, payload, rid, route, scope)
                if ticket is not None:
                    extra += ticket.headers()
            status, provider = await self._answer(
                request, route, payload, ticket=ticket, channel=(receive, send), extra=extra
            )
        except GatewayError as exc:
            status, error, content_type = error_response(vendor, exc)
            provider = getattr(exc, "provider", provider)
            await respond(send, status, error, content_type, [*extra, *getattr(exc, "headers", ())])
        except ClientDisconnected:
            status = CLIENT_CLOSED
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except Exception:
            status = 500
            raise
        finally:
            # every admitted request is settled and recorded once, however it ended
            if ticket is not None and self._state.accounting is not None:
                self._state.accounting.finish(ticket, status=status, provider=provider)
            log.info(
                "request",
                request_id=rid.decode(),
                path=prefix + (rest if rest is not None else ""),
                model=model,
                provider=provider,
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
            )

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

    async def _admit(
        self, identity: Identity, payload: Payload, rid: bytes, route: Route, scope: Scope
    ) -> Ticket | None:
        accounting = self._state.accounting
        if accounting is None:
            return None
        # a client may send one X-Request-Id with every retry: each call needs an id of its own
        given = header(scope, b"x-request-id") == rid
        unique = str(uuid_utils.uuid7()) if given else rid.decode()
        return await accounting.admit(identity, payload, unique, route, bypass=True)

    async def _answer(
        self,
        request: NativeRequest,
        route: Route,
        payload: Payload,
        *,
        ticket: Ticket | None,
        channel: tuple[Receive, Send],
        extra: list[tuple[bytes, bytes]],
    ) -> tuple[int, str]:
        targets = self._state.gateway.router.targets(route)
        if request.stream:
            return await self._stream(request, targets, payload, channel, extra, ticket=ticket)
        return await self._complete(request, targets, channel[1], extra, ticket=ticket)

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

        accounting = self._state.accounting if ticket is not None else None
        try:
            target, (body, content_type) = await first_success(request.model, targets, attempt)
        except GatewayError as exc:
            if accounting is not None and ticket is not None:
                accounting.finish(
                    ticket, status=exc.http_status, provider=getattr(exc, "provider", "")
                )
            raise
        status = 200
        try:
            await respond(send, 200, body, content_type.encode() or JSON, extra)
        except ClientDisconnected:
            status = CLIENT_CLOSED  # the answer was paid for all the same
            raise
        finally:
            if accounting is not None and ticket is not None:
                accounting.finish(
                    ticket,
                    status=status,
                    provider=target.provider.name,
                    upstream_model=target.model,
                    usage=native.answer_usage(request.vendor, body),
                )
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
        """Open the upstream stream (failover happens here) and pump it to the client.

        As on the universal route: until the first byte is written a failure is an error
        answer; after it, the stream ends with the vendor's error event. A client that goes
        away cancels the upstream request at once. The request is settled on the usage seen.
        """
        receive, send = channel
        framing = request.framing
        writer: _Writer
        if framing is native.Framing.SSE:
            writer = SseWriter(send, self._state.keepalive_interval, extra)
        else:
            writer = _PlainStreamWriter(send, native.CONTENT_TYPES[framing], extra)
        meter = native.meter(request)
        status, provider, model = 200, "", ""
        failure: GatewayError | None = None
        gone = False
        async with contextlib.AsyncExitStack() as stack:

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

            try:
                async with asyncio.TaskGroup() as tasks:
                    watcher = tasks.create_task(wait_for_disconnect(receive), name="sse-disconnect")
                    ticker = tasks.create_task(writer.keep_alive(), name="sse-keepalive")
                    try:
                        target, frames = await first_success(request.model, targets, attempt)
                        provider, model = target.provider.name, target.model
                        await writer.start()
                        status = await _pump(frames, writer, meter, request)
                        await writer.finish(b"")
                    except GatewayError as exc:
                        failure = exc
                    finally:
                        watcher.cancel()
                        ticker.cancel()
            except* ClientDisconnected:
                gone = True
        final = CLIENT_CLOSED if gone else failure.http_status if failure is not None else status
        self._settle(ticket, meter, payload, provider=provider, model=model, status=final)
        if gone:
            return CLIENT_CLOSED, provider
        if failure is not None:
            if not writer.started:
                raise failure
            await writer.write(native.stream_error(request.vendor, framing))
            await writer.finish(b"")
            return failure.http_status, getattr(failure, "provider", provider)
        return status, provider

    def _settle(
        self,
        ticket: Ticket | None,
        meter: NativeMeter,
        payload: Payload,
        *,
        provider: str,
        model: str,
        status: int,
    ) -> None:
        """Settle on the usage the stream reported, or on what it showed; unopened cost 0."""
        accounting = self._state.accounting
        if ticket is None or accounting is None:
            return
        if not model:  # no upstream stream opened: the failure was the answer
            accounting.finish(ticket, status=status, provider=provider)
            return
        first = meter.first_at
        accounting.finish(
            ticket,
            status=status,
            provider=provider,
            upstream_model=model,
            usage=meter.used(payload.input_tokens),
            estimated=meter.usage is None,
            ttft_ms=None if first is None else int((first - ticket.started) * 1000),
        )


async def _pump(
    frames: AsyncIterator[bytes], writer: _Writer, meter: NativeMeter, request: NativeRequest
) -> int:
    """Forward frames as they arrive; end a broken stream with the vendor's error event."""
    try:
        async for run in frames:
            forward = meter.see(run)
            if forward:
                await writer.write(forward)
    except StreamBroken as exc:
        log.warning("upstream stream broke", error=str(exc))
        await writer.write(native.stream_error(request.vendor, request.framing))
        return 502
    if meter.complete:
        return 200
    if not meter.failed:  # ended without the vendor's last event: broken as well
        log.warning("upstream stream ended early", vendor=request.vendor.value)
        await writer.write(native.stream_error(request.vendor, request.framing))
    return 502
