"""The RSGI application: routing, auth, scripted behaviours and streaming; and `main`."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from granian._granian import RSGIHTTPProtocol as HTTPProtocol
from granian._granian import RSGIProtocolClosed as ProtocolClosed
from granian._granian import RSGIProtocolError as ProtocolError
from granian.rsgi import Scope

from tests.fakes.upstreams import control
from tests.fakes.upstreams.openai.answers import (
    _DONE,
    _MODELS,
    _VECTOR_BASE64,
    _VECTOR_JSON,
    _chat_choices,
    _completion_choices,
    _frames,
    _text,
    _usage,
)
from tests.fakes.upstreams.openai.checks import (
    Check,
    Parsed,
    _check_chat,
    _check_completions,
    _check_embeddings,
    _is_tokens,
    _parse,
)
from tests.fakes.upstreams.openai.cutter import (
    Cutter,
    _wire_size,
)
from tests.fakes.upstreams.openai.wire import (
    _BAD_JSON,
    _UNAUTHORIZED,
    API_KEY_ENV,
    JSON_HEADERS,
    SSE_HEADERS,
    Behaviour,
    Stats,
    _encode,
    _ids,
    _status_error,
    error_body,
)

# --- the application ------------------------------------------------------------------------

Handler = Callable[["FakeOpenAI", Scope, HTTPProtocol, Parsed, Behaviour], Awaitable[None]]


class Route:
    """One API endpoint: its handler, its checks, and the bodies it has already parsed."""

    CACHE_SIZE: Final = 1024
    CACHE_BODY_MAX: Final = 16 * 1024

    def __init__(self, handler: Handler, check: Check) -> None:
        self.handler = handler
        self.check = check
        self._parsed: dict[bytes, Parsed] = {}

    def parse(self, raw: bytes) -> Parsed:
        parsed = self._parsed.get(raw)
        if parsed is None:
            parsed = _parse(raw, self.check)
            if len(raw) <= self.CACHE_BODY_MAX:
                if len(self._parsed) >= self.CACHE_SIZE:
                    self._parsed.clear()
                self._parsed[raw] = parsed
        return parsed


class FakeOpenAI:
    """The RSGI application: `__rsgi__(scope, protocol)`."""

    def __init__(self, api_key: str = "sk-fake") -> None:
        self.expected_auth = f"Bearer {api_key}"
        self.control = control.Control(
            Behaviour(model="*"),
            Stats,
            lambda _, message: error_body(message),
            not_found="Invalid URL ({method} {path})",
        )

    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol) -> None:
        path = scope.path
        raw = await proto()
        if path.startswith("/_fake/"):
            status, answer = self.control.answer(scope.method, path, raw)
            proto.response_bytes(status, JSON_HEADERS, answer)
            return
        method = scope.method
        stats = self.control.stats
        stats.total += 1
        route = _ROUTES.get(path) if method == "POST" else None
        if route is None:
            stats.requests[f"{method} {path}"] += 1
            self._other(scope, proto, method, path)
            return
        parsed = route.parse(raw)
        model = parsed.model
        headers = scope.headers
        if model is not None:
            stats.requests[f"POST {path} {model}"] += 1
            stats.last_body[model] = msgspec.Raw(raw)
            stats.last_headers[model] = headers
        else:
            stats.requests[f"POST {path}"] += 1
        if headers.get("authorization") != self.expected_auth:
            proto.response_bytes(401, JSON_HEADERS, _UNAUTHORIZED)
        elif parsed.error is not None or model is None:
            proto.response_bytes(400, JSON_HEADERS, parsed.error or _BAD_JSON)
        else:
            await route.handler(self, scope, proto, parsed, self.control.take(model))

    def _other(self, scope: Scope, proto: HTTPProtocol, method: str, path: str) -> None:
        if scope.headers.get("authorization") != self.expected_auth:
            proto.response_bytes(401, JSON_HEADERS, _UNAUTHORIZED)
        elif method == "GET" and path == "/v1/models":
            proto.response_bytes(200, JSON_HEADERS, _MODELS)
        else:
            not_found = error_body(f"Invalid URL ({method} {path})")
            proto.response_bytes(404, JSON_HEADERS, not_found)

    async def _pause(self, proto: HTTPProtocol, ms: int) -> bool:
        """Wait `ms`; False (a disconnect, counted) as soon as the client goes away first."""
        if ms <= 0:
            return True
        try:
            async with asyncio.timeout(ms / 1000):
                await proto.client_disconnect()
        except TimeoutError:
            return True
        self.control.stats.disconnects += 1
        return False

    async def _prelude(self, proto: HTTPProtocol, behaviour: Behaviour) -> bool:
        """`delay_ms`, then a scripted error status; True when the answer should follow."""
        if not await self._pause(proto, behaviour.delay_ms):
            return False
        status = behaviour.status
        if status is not None and status >= 400:
            body = _status_error(status, behaviour.error_message)
            proto.response_bytes(status, JSON_HEADERS, body)
            return False
        return True

    async def chat(self, scope: Scope, proto: HTTPProtocol, parsed: Parsed, b: Behaviour) -> None:
        if (b.delay_ms or b.status) and not await self._prelude(proto, b):
            return
        body = parsed.body
        model = _encode(body["model"])
        usage = _usage(parsed.prompt_tokens, b.chunks)
        created = int(time.time())
        ident = next(_ids)
        if not body.get("stream"):
            answer = (
                b'{"id":"chatcmpl-fake%d","object":"chat.completion","created":%d,"model":%s,'
                b'"choices":[{"index":0,"message":{"role":"assistant","content":%s,'
                b'"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":%s,'
                b'"system_fingerprint":"fp_fake","service_tier":"default"}'
            ) % (ident, created, model, _text(b.chunks), usage)
            proto.response_bytes(200, JSON_HEADERS, answer)
            return
        head = (
            b'data: {"id":"chatcmpl-fake%d","object":"chat.completion.chunk","created":%d,'
            b'"model":%s,"system_fingerprint":"fp_fake","choices":'
        ) % (ident, created, model)
        frames = _frames(head, _chat_choices(b.chunks), body, usage)
        await self._stream(scope, proto, frames, b)

    async def completions(
        self, scope: Scope, proto: HTTPProtocol, parsed: Parsed, b: Behaviour
    ) -> None:
        if (b.delay_ms or b.status) and not await self._prelude(proto, b):
            return
        body = parsed.body
        model = _encode(body["model"])
        usage = _usage(parsed.prompt_tokens, b.chunks)
        head = b'{"id":"cmpl-fake%d","object":"text_completion","created":%d,"model":%s,' % (
            next(_ids),
            int(time.time()),
            model,
        )
        if not body.get("stream"):
            answer = head + (
                b'"system_fingerprint":"fp_fake","choices":[{"text":%s,"index":0,'
                b'"logprobs":null,"finish_reason":"stop"}],"usage":%s}'
            ) % (_text(b.chunks), usage)
            proto.response_bytes(200, JSON_HEADERS, answer)
            return
        head = b"data: " + head + b'"system_fingerprint":"fp_fake","choices":'
        frames = _frames(head, _completion_choices(b.chunks), body, usage)
        await self._stream(scope, proto, frames, b)

    async def embeddings(
        self, scope: Scope, proto: HTTPProtocol, parsed: Parsed, b: Behaviour
    ) -> None:
        if (b.delay_ms or b.status) and not await self._prelude(proto, b):
            return
        body = parsed.body
        value = body["input"]
        count = len(value) if isinstance(value, list) and not _is_tokens(value) else 1
        vector = _VECTOR_BASE64 if body.get("encoding_format") == "base64" else _VECTOR_JSON
        data = b",".join(
            b'{"object":"embedding","index":%d,"embedding":%s}' % (i, vector) for i in range(count)
        )
        tokens = parsed.prompt_tokens
        answer = b'{"object":"list","data":[%s],"model":%s,"usage":{"prompt_tokens":%d,' % (
            data,
            _encode(body["model"]),
            tokens,
        )
        proto.response_bytes(200, JSON_HEADERS, answer + b'"total_tokens":%d}}' % tokens)

    async def _stream(
        self, scope: Scope, proto: HTTPProtocol, frames: list[bytes], b: Behaviour
    ) -> None:
        cut = b.cut_after_chunks
        cutter = Cutter(scope.client) if cut is not None and cut <= len(frames) else None
        if cutter is not None:
            frames = frames[:cut]
        try:
            transport = proto.response_stream(200, SSE_HEADERS)
            if not await self._pause(proto, b.first_token_delay_ms):
                return
            for i, frame in enumerate(frames):
                if i and b.chunk_delay_ms and not await self._pause(proto, b.chunk_delay_ms):
                    return
                await transport.send_bytes(frame)
            if cutter is None:
                await transport.send_bytes(_DONE)
                self.control.stats.completed_streams += 1
                return
            self.control.stats.cut_streams += 1
            await cutter.cut(_wire_size(SSE_HEADERS, frames))
        except (ProtocolClosed, ProtocolError):
            self.control.stats.disconnects += 1
        finally:
            if cutter is not None:
                cutter.close()


_ROUTES: Final = {
    "/v1/chat/completions": Route(FakeOpenAI.chat, _check_chat),
    "/v1/completions": Route(FakeOpenAI.completions, _check_completions),
    "/v1/embeddings": Route(FakeOpenAI.embeddings, _check_embeddings),
}

app = FakeOpenAI(os.environ.get(API_KEY_ENV, "sk-fake"))
