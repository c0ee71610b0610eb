"""One request's life around its answer, shared by the universal and the native routes.

`openai_api` and `native_api` differ in what they decode and in the shape of their errors, not
in how a request is answered and accounted for; that part lives here, written once: the
envelope (`Exchange`: request id, error answer, settlement of whatever was admitted, the
access-log line), the whole answer (`first_answer`, `deliver`) and the streamed one (`relay`:
keep-alives, client disconnects, the error after the first byte, settlement on the meter).
Plain functions and one slotted class, no framework objects: this is the hot path. Moving
`openai_api` onto it cost nothing measurable: the envelope adds < 1 µs a call (in-process
timing), and `loadtests/bench.py` CPU/req moved within its run-to-run noise (five interleaved
runs each way on a shared 2-core machine; medians -3.5 % to +8 %, single runs ±20 %).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Protocol, TypeVar

import structlog
import uuid_utils
from litestar.types import Receive, Scope, Send

from app.accounting import Accounting, Ticket
from app.cache.replay import StreamAssembler
from app.domain import GatewayError, Identity, Payload, StreamBroken, Usage
from app.routing.router import Route, Target
from app.server.asgi import ClientDisconnected, header, respond, wait_for_disconnect
from app.server.state import WorkerState

log = structlog.get_logger("gandalf.request")

CLIENT_CLOSED = 499
"""Status logged for a request whose client went away (nginx's convention)."""
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")

Handler = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]
Renderer = Callable[[GatewayError], tuple[int, bytes, bytes]]
"""A failure as (status, body, content type), in the shape the route's clients expect."""
T = TypeVar("T")


def request_id(scope: Scope) -> bytes:
    """The client's `X-Request-Id` when it is a sane token, else a new UUIDv7."""
    given = header(scope, b"x-request-id")
    if given is not None and _VALID_REQUEST_ID.fullmatch(given):
        return given
    return str(uuid_utils.uuid7()).encode()


class Exchange:
    """The envelope of one request: `async with Exchange(...) as call:` around its handling.

    The body reads `rid`, `started`, `send` and `extra` (the headers of every answer), and
    sets `model`, `ticket`, `status` and `provider` as it learns them. On the way out, a
    `GatewayError` becomes the error answer (through `render`), a client that went away is
    logged as 499, and anything admitted is settled once, however it ended (the paths that
    know more have finished the ticket already; this is then a no-op); then the request is
    logged.
    """

    __slots__ = (
        "_render",
        "_scope",
        "_state",
        "extra",
        "model",
        "path",
        "provider",
        "rid",
        "send",
        "started",
        "status",
        "ticket",
    )

    def __init__(
        self, state: WorkerState, scope: Scope, send: Send, path: str, render: Renderer
    ) -> None:
        self.started = time.perf_counter()
        self.rid = request_id(scope)
        self.extra = [(b"x-request-id", self.rid)]
        self.path = path
        self.model = ""
        self.provider = ""
        self.status = 200
        self.ticket: Ticket | None = None
        self.send = send
        self._scope = scope
        self._state = state
        self._render = render

    async def __aenter__(self) -> Exchange:
        return self

    async def admit(
        self, identity: Identity, payload: Payload, route: Route, *, bypass: bool
    ) -> Ticket | None:
        """Admit the call against the key's limits and budget; None without accounting.

        The call is admitted and recorded under an id no other request has: a client may send
        the same X-Request-Id with every retry, and each retry is a call of its own, so a
        client's id gets a fresh UUIDv7 here (the answer still echoes the client's).
        """
        accounting = self._state.accounting
        if accounting is None:
            return None
        given = header(self._scope, b"x-request-id") == self.rid
        unique = str(uuid_utils.uuid7()) if given else self.rid.decode()
        return await accounting.admit(identity, payload, unique, route, bypass=bypass)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            return await self._answer_failure(exc)
        finally:
            self._close()

    async def _answer_failure(self, exc: BaseException | None) -> bool:
        """Answer or classify what ended the request; True when it is dealt with."""
        if exc is None:
            return False
        if isinstance(exc, GatewayError):
            self.status, body, content_type = self._render(exc)
            self.provider = getattr(exc, "provider", self.provider)
            headers = [*self.extra, *getattr(exc, "headers", ())]
            await respond(self.send, self.status, body, content_type, headers)
            return True
        if isinstance(exc, ClientDisconnected):
            self.status = CLIENT_CLOSED
            return True
        if isinstance(exc, asyncio.CancelledError):
            self.status = CLIENT_CLOSED
        elif isinstance(exc, Exception):
            self.status = 500
        return False

    def _close(self) -> None:
        accounting = self._state.accounting
        if self.ticket is not None and accounting is not None:
            accounting.finish(self.ticket, status=self.status, provider=self.provider)
        log.info(
            "request",
            request_id=self.rid.decode(),
            path=self.path,
            model=self.model,
            provider=self.provider,
            status=self.status,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
        )


async def first_answer(
    accounting: Accounting | None, ticket: Ticket | None, call: Awaitable[T]
) -> T:
    """What `call` answers; a failure settles the ticket on the error (nothing used) first."""
    try:
        return await call
    except GatewayError as exc:
        if accounting is not None and ticket is not None:
            accounting.finish(ticket, status=exc.http_status, provider=getattr(exc, "provider", ""))
        raise


async def deliver(
    send: Send,
    answer: tuple[bytes, bytes, list[tuple[bytes, bytes]]],
    accounting: Accounting | None,
    ticket: Ticket | None,
    target: Target,
    *,
    usage: Usage | None,
    store: bytes | None = None,
) -> None:
    """Send a whole answer (body, content type, headers) and settle the ticket on its usage.

    A client gone by the time the answer is written is logged as 499, but the answer was paid
    for all the same. `store` is the body to cache, kept only when it reached the client.
    """
    status = 200
    try:
        await respond(send, 200, *answer)
    except ClientDisconnected:
        status = CLIENT_CLOSED
        raise
    finally:
        if accounting is not None and ticket is not None:
            accounting.finish(
                ticket,
                status=status,
                provider=target.provider.name,
                upstream_model=target.model,
                usage=usage,
                store=store if status == 200 else None,
            )


class StreamWriter(Protocol):
    """What writes a streamed answer: `SseWriter`, or `PlainStreamWriter` where SSE is not."""

    started: bool

    async def start(self) -> None: ...
    async def write(self, data: bytes) -> None: ...
    async def finish(self, data: bytes) -> None: ...
    async def keep_alive(self) -> None: ...


class PlainStreamWriter:
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


class Meter(Protocol):
    """What watches a stream on its way to the client (`StreamMeter`, `NativeMeter`)."""

    @property
    def usage(self) -> Usage | None: ...
    def see(self, frames: bytes) -> bytes: ...
    def used(self, input_estimate: int) -> Usage | None: ...
    def ttft_ms(self, started: float) -> int | None: ...


Opener = Callable[[contextlib.AsyncExitStack], Awaitable[tuple[Target, AsyncIterator[bytes]]]]
"""Opens the upstream stream (failing over) on a stack that owns it: closing it cancels it."""
After = Callable[[Target, int], Awaitable[int]]
"""Runs after the last frame, before the stream's end; returns the status, maybe changed."""


async def relay(
    writer: StreamWriter,
    receive: Receive,
    open_stream: Opener,
    meter: Meter,
    *,
    accounting: Accounting | None,
    ticket: Ticket | None,
    input_tokens: int,
    assembler: StreamAssembler | None = None,
    broken: bytes,
    error_frame: Callable[[GatewayError], bytes],
    end: bytes,
    after: After | None = None,
) -> tuple[int, str]:
    """Open the upstream stream and pump it to the client; returns the status and provider.

    Until the first byte is written, a failure is raised and becomes an error answer. After
    it, the stream ends with `error_frame(failure)` and `end` (a stream that breaks mid-way
    gets `broken` instead). A client that goes away cancels the upstream request at once,
    whether it is still opening or already streaming. Whatever happens, the ticket is settled
    (`settle_stream`) before any error frame is written, so a slow client never delays it.
    """
    status, provider, model = 200, "", ""
    failure: GatewayError | None = None
    gone = False
    async with contextlib.AsyncExitStack() as stack:
        try:
            async with asyncio.TaskGroup() as tasks:
                watcher = tasks.create_task(wait_for_disconnect(receive), name="sse-disconnect")
                ticker = tasks.create_task(writer.keep_alive(), name="sse-keepalive")
                try:
                    target, frames = await open_stream(stack)
                    provider, model = target.provider.name, target.model
                    await writer.start()
                    status = await pump(frames, writer, meter, broken)
                    if after is not None:
                        status = await after(target, status)
                    await writer.finish(end)
                except GatewayError as exc:
                    failure = exc
                finally:
                    watcher.cancel()
                    ticker.cancel()
        except* ClientDisconnected:
            gone = True
    if gone:
        final = CLIENT_CLOSED
    elif failure is not None:
        final = failure.http_status
    else:
        final = status
    settle_stream(
        accounting,
        ticket,
        meter,
        input_tokens,
        assembler,
        provider=provider,
        model=model,
        status=final,
    )
    if gone:
        return CLIENT_CLOSED, provider
    if failure is not None:
        if not writer.started:
            raise failure
        await writer.write(error_frame(failure))
        await writer.finish(end)
        return failure.http_status, getattr(failure, "provider", provider)
    return status, provider


async def pump(
    frames: AsyncIterator[bytes], writer: StreamWriter, meter: Meter, broken: bytes
) -> int:
    """Forward frames as they arrive, through the meter; a broken stream ends with `broken`."""
    try:
        async for run in frames:
            forward = meter.see(run)
            if forward:
                await writer.write(forward)
    except StreamBroken as exc:
        log.warning("upstream stream broke", error=str(exc))
        await writer.write(broken)
        return 502
    return 200


def settle_stream(
    accounting: Accounting | None,
    ticket: Ticket | None,
    meter: Meter,
    input_tokens: int,
    assembler: StreamAssembler | None,
    *,
    provider: str,
    model: str,
    status: int,
) -> None:
    """Settle on the usage the stream reported, else on what it showed; unopened cost 0.

    `assembler` holds the answer to cache, kept only for a stream that completed.
    """
    if ticket is None or accounting is None:
        return
    if not model:  # no upstream stream opened: the failure was the answer
        accounting.finish(ticket, status=status, provider=provider)
        return
    accounting.finish(
        ticket,
        status=status,
        provider=provider,
        upstream_model=model,
        usage=meter.used(input_tokens),
        estimated=meter.usage is None,
        ttft_ms=meter.ttft_ms(ticket.started),
        store=assembler.body() if assembler is not None and status == 200 else None,
    )
