"""A fake OpenAI API on loopback: strict about what it receives, fast, and scriptable.

Run from the repository root:
`python -m tests.fakes.upstreams.openai --host 127.0.0.1 --port 8101 [--api-key sk-fake]
[--workers 1]`. It is a Granian RSGI application (`tests.fakes.upstreams.openai:app`, uvloop,
HTTP/1.1, no access log); the key reaches the workers through `FAKE_OPENAI_API_KEY`.

Wire behaviour, under `/v1`, checked like the real API: `Authorization: Bearer <key>` exactly
(else 401 `invalid_api_key`), a JSON object body with the required fields of the right types
(else 400 with an OpenAI error naming the `param`). Unknown fields are accepted (and recorded).

- `POST /v1/chat/completions` (`model`, non-empty `messages` of objects with a valid `role`):
  a `chat.completion`, or with `"stream": true` SSE `chat.completion.chunk` frames: one frame
  with the role and empty content, one frame per token, a finish frame (`"delta": {}`,
  `"finish_reason": "stop"`), a usage frame (`"choices": []`) only when
  `stream_options.include_usage` is true, then `data: [DONE]`.
- `POST /v1/completions` (`model`, `prompt`): a `text_completion`, or streamed the same way.
- `POST /v1/embeddings` (`model`, `input`): 8-float vectors, or base64 of little-endian
  float32 when `encoding_format` is `"base64"` (the openai SDK's default).
- `GET /v1/models`: a fixed list. Anything else: 404 `Invalid URL (METHOD /path)`.

The answer is always the same `chunks` tokens (`"tok0 tok1 ... "`, default 20): streamed one
token per frame, or concatenated in the plain answer, so the same request gives the same text
and the same usage both ways: `completion_tokens` = `chunks`, `prompt_tokens` = characters of
the text in the request // 4 + 1 (plus one per token id when token arrays are sent).

Control, without auth (the state lives in the worker process, so script behaviour and read
stats only with `--workers 1`):

- `POST /_fake/behaviour` `{"model": "<name>" | "*", "status", "error_message", "delay_ms",
  "first_token_delay_ms", "chunk_delay_ms", "chunks", "cut_after_chunks", "times"}`: one
  behaviour per model, a model's own beating `"*"`. `delay_ms` waits before the response head;
  `status` >= 400 then answers that error (streams too, before any frame);
  `first_token_delay_ms` waits after a stream's head, `chunk_delay_ms` between frames;
  `cut_after_chunks` sends that many frames (the role frame counts; more frames than the
  stream has: no cut) then shuts the socket down mid-body (no `[DONE]`, no last chunk of the
  chunked encoding: the client sees a protocol error, see `Cutter`); `times` makes the
  behaviour apply to the next N matching requests only. `GET` lists behaviours, `DELETE`
  clears them. Behaviours apply to chat, completions and embeddings, not to the model list.
- `POST /_fake/reset`: clear behaviours and stats.
- `GET /_fake/stats` (of the worker that answers): `total` (every `/v1` request, refused ones
  included), `requests` (`"POST /v1/chat/completions <model>"` -> count), `disconnects`
  (clients gone before the response ended: during a delay, or mid-stream; counted at once),
  `completed_streams`, `cut_streams`, `last_body` / `last_headers` (per model: the JSON body
  exactly as received, the headers with lower-case names).

Speed: identical bodies are parsed and checked once (a small cache per route), answers are
assembled from pre-encoded pieces; one worker serves well over 10,000 small requests/s.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import functools
import itertools
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Final, NamedTuple

import msgspec
from granian._granian import RSGIHeaders as RequestHeaders
from granian._granian import RSGIHTTPProtocol as HTTPProtocol
from granian._granian import RSGIProtocolClosed as ProtocolClosed
from granian._granian import RSGIProtocolError as ProtocolError
from granian.rsgi import Scope

from tests.fakes.upstreams import control, server

API_KEY_ENV: Final = "FAKE_OPENAI_API_KEY"
CLI: Final = server.Cli("A fake OpenAI API.", 8101, "sk-fake", API_KEY_ENV, rsgi=True)
DEFAULT_CHUNKS: Final = 20

Headers = list[tuple[str, str]]
JSON_HEADERS: Final[Headers] = [("content-type", "application/json")]
SSE_HEADERS: Final[Headers] = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_ids = itertools.count(1)

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Behaviour(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the fake does for one model (or `"*"`): see the module docstring."""

    model: str
    status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None
    error_message: str | None = None
    delay_ms: NonNegative = 0
    first_token_delay_ms: NonNegative = 0
    chunk_delay_ms: NonNegative = 0
    chunks: NonNegative = DEFAULT_CHUNKS
    cut_after_chunks: NonNegative | None = None
    times: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Stats(control.Stats):
    """The shared stats, keyed by model, plus the clients gone before their answer ended.

    `last_headers` holds Granian's header objects: made dicts only when rendered.
    """

    def __init__(self) -> None:
        super().__init__()
        self.disconnects = 0

    def fields(self) -> dict[str, Any]:
        headers = {m: _headers(h) for m, h in self.last_headers.items()}
        return {**super().fields(), "last_headers": headers}


# --- OpenAI-shaped errors -------------------------------------------------------------------


def error_body(
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> bytes:
    """The body of an OpenAI error response."""
    return _encode({"error": {"message": message, "type": kind, "param": param, "code": code}})


_UNAUTHORIZED: Final = error_body("Incorrect API key provided", code="invalid_api_key")
_NOT_AN_OBJECT: Final = error_body("Invalid type for body: expected an object.")
_BAD_JSON: Final = error_body(
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)


def _status_error(status: int, message: str | None) -> bytes:
    """The error body for a scripted `status`, typed the way the real API types it."""
    if status == 429:
        return error_body(message or "Rate limit reached", None, "rate_limit_exceeded", "requests")
    if status >= 500:
        return error_body(message or "The server had an error", kind="server_error")
    return error_body(message or f"Fake upstream error {status}")


# --- validation -----------------------------------------------------------------------------

Problem = tuple[str, str | None]
ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
ENCODINGS: Final = frozenset({"float", "base64"})


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), "an unknown type")


def _bad_type(param: str, expected: str, value: Any) -> Problem:
    got = _type_name(value)
    return f"Invalid type for '{param}': expected {expected}, but got {got} instead.", param


def _missing(param: str) -> Problem:
    return f"Missing required parameter: '{param}'.", param


def _check_common(body: dict[str, Any]) -> Problem | None:
    model = body.get("model")
    if model is None:
        return "you must provide a model parameter", "model"
    if not isinstance(model, str):
        return _bad_type("model", "a string", model)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return _bad_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            return _bad_type("stream_options", "an object", options)
        if not stream:
            message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            return message, "stream_options"
    return None


def _check_chat(body: dict[str, Any]) -> Problem | None:  # noqa: PLR0911 - one per rule
    messages = body.get("messages")
    if messages is None:
        return _missing("messages")
    if not isinstance(messages, list):
        return _bad_type("messages", "an array", messages)
    if not messages:
        message = "Invalid 'messages': empty array. Expected an array with minimum length 1, "
        return message + "but got an empty array instead.", "messages"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return _bad_type(f"messages[{i}]", "an object", message)
        role = message.get("role")
        if role is None:
            return _missing(f"messages[{i}].role")
        if not isinstance(role, str):
            return _bad_type(f"messages[{i}].role", "a string", role)
        if role not in ROLES:
            supported = ", ".join(f"'{r}'" for r in sorted(ROLES))
            text = f"Invalid value: '{role}'. Supported values are: {supported}."
            return text, f"messages[{i}].role"
    return None


def _is_text_or_tokens(value: Any) -> bool:
    """A string, a list of strings, a list of token ids or a list of token-id lists."""
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    if isinstance(first, str):
        return all(isinstance(v, str) for v in value)
    if isinstance(first, list):
        return all(isinstance(v, list) and v and _is_tokens(v) for v in value)
    return _is_tokens(value)


def _is_tokens(value: list[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _check_completions(body: dict[str, Any]) -> Problem | None:
    prompt = body.get("prompt")
    if prompt is None:
        return _missing("prompt")
    if not _is_text_or_tokens(prompt):
        return "Invalid value for 'prompt': expected a string or an array.", "prompt"
    return None


def _check_embeddings(body: dict[str, Any]) -> Problem | None:
    value = body.get("input")
    if value is None:
        return _missing("input")
    if value == "" or not _is_text_or_tokens(value):
        return "'$.input' is invalid. Please check the API reference.", "input"
    if isinstance(value, list) and any(v == "" for v in value):
        return "'$.input' is invalid. Please check the API reference.", "input"
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        text = f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'."
        return text, "encoding_format"
    if body.get("stream"):
        return "Unrecognized request argument supplied: stream", "stream"
    return None


class Parsed(NamedTuple):
    """What a request body says, worked out once per distinct body (they repeat in benchmarks)."""

    body: dict[str, Any]  # {} when the body is not a JSON object
    model: str | None
    error: bytes | None  # the 400 answer, when the body is invalid
    prompt_tokens: int


Check = Callable[[dict[str, Any]], "Problem | None"]


def _parse(raw: bytes, check: Check) -> Parsed:
    body: Any
    try:
        body = _decode(raw)
    except msgspec.DecodeError:
        return Parsed({}, None, _BAD_JSON, 0)
    if not isinstance(body, dict):
        return Parsed({}, None, _NOT_AN_OBJECT, 0)
    model = body.get("model")
    problem = _check_common(body) or check(body)
    if problem is not None:
        return Parsed(body, model if isinstance(model, str) else None, error_body(*problem), 0)
    return Parsed(body, model, None, _prompt_tokens(body))


def _prompt_tokens(body: dict[str, Any]) -> int:
    """Deterministic: characters of the request's text // 4 + 1, plus one per token id."""
    chars = ids = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    chars += len(text)
    for field in ("prompt", "input"):
        value = body.get(field)
        items = value if isinstance(value, list) else (value,)
        for item in items:
            if isinstance(item, str):
                chars += len(item)
            elif isinstance(item, int):
                ids += 1
            elif isinstance(item, list):
                ids += len(item)
    return chars // 4 + 1 + ids


# --- precomputed answer pieces --------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _tokens(chunks: int) -> tuple[str, ...]:
    return tuple(f"tok{i} " for i in range(chunks))


@functools.lru_cache(maxsize=64)
def _text(chunks: int) -> bytes:
    """The whole answer as a JSON string."""
    return _encode("".join(_tokens(chunks)))


@functools.lru_cache(maxsize=64)
def _chat_choices(chunks: int) -> tuple[bytes, ...]:
    """The `choices` entry of every chat chunk frame: role, one per token, finish."""

    def choice(delta: dict[str, str], finish: str | None = None) -> bytes:
        return _encode([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    first = choice({"role": "assistant", "content": ""})
    return (first, *(choice({"content": t}) for t in _tokens(chunks)), choice({}, "stop"))


@functools.lru_cache(maxsize=64)
def _completion_choices(chunks: int) -> tuple[bytes, ...]:
    """The `choices` entry of every legacy completion frame: one per token, then finish."""

    def choice(text: str, finish: str | None = None) -> bytes:
        return _encode([{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}])

    return (*(choice(t) for t in _tokens(chunks)), choice("", "stop"))


def _usage(prompt: int, completion: int) -> bytes:
    return b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (
        prompt,
        completion,
        prompt + completion,
    )


_VECTOR: Final = [0.125 * (i + 1) for i in range(8)]
_VECTOR_JSON: Final = _encode(_VECTOR)
_VECTOR_BASE64: Final = _encode(base64.b64encode(struct.pack("<8f", *_VECTOR)).decode())
_MODELS: Final = _encode(
    {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
            for m in ("gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small")
        ],
    }
)
_DONE: Final = b"data: [DONE]\n\n"


class Cutter:
    """Drops one client connection in the middle of a chunked body (Linux only).

    RSGI has no way to abort a response: raising in the application, or returning, after
    `response_stream()` makes Granian end the chunked body cleanly. So this finds this
    process's socket connected to the client and shuts it down under Granian, once Granian has
    handed the bytes sent so far to the kernel (`send_bytes` only queues them): the client then
    gets the head and the frames, then an unterminated body, like from an upstream that died.
    """

    TIMEOUT: Final = 1.0
    _TCP_INFO_SIZE: Final = 232  # up to tcpi_bytes_sent (Linux 4.19+)
    _BYTES_ACKED: Final = struct.Struct("=Q")  # tcpi_bytes_acked, at offset 120
    _SIOCOUTQ: Final = 0x5411  # bytes in the send queue, unacknowledged or unsent

    def __init__(self, client: str) -> None:
        """Find the socket; call before the response starts so byte counts start with it."""
        self._sock = _connected_socket(client)
        self._start = self._written()

    def _written(self) -> int | None:
        """Bytes written to the socket so far (acknowledged plus still queued), if known."""
        if self._sock is None:
            return None
        try:
            info = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, self._TCP_INFO_SIZE)
            acked: int = self._BYTES_ACKED.unpack_from(info, 120)[0]
            queued = fcntl.ioctl(self._sock.fileno(), self._SIOCOUTQ, b"\0\0\0\0")
        except (OSError, struct.error):
            return None
        return acked + int.from_bytes(queued, sys.byteorder)

    async def cut(self, at_least: int) -> bool:
        """Shut the connection down once `at_least` bytes of the response reached the kernel."""
        sock = self._sock
        if sock is None:
            return False
        deadline = time.monotonic() + self.TIMEOUT
        start = self._start
        with sock:
            if start is None:  # no byte counts: give Granian a moment instead
                await asyncio.sleep(0.05)
            while start is not None and time.monotonic() < deadline:
                written = self._written()
                if written is None or written - start >= at_least:
                    break
                await asyncio.sleep(0.001)
            sock.shutdown(socket.SHUT_RDWR)
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


def _connected_socket(client: str) -> socket.socket | None:
    """A duplicate of this process's TCP socket whose peer is `client` ("host:port")."""
    host, _, port_text = client.rpartition(":")
    peer = (host.strip("[]"), int(port_text))
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return None
    for entry in fds.iterdir():
        try:
            if not entry.readlink().name.startswith("socket:"):
                continue
            dup = os.dup(int(entry.name))
        except (OSError, ValueError):
            continue
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.getpeername()[:2] == peer:
                return sock
        except OSError:
            pass
        sock.close()
    return None


def _wire_size(head_lines: Headers, frames: list[bytes]) -> int:
    """A lower bound of the bytes of a chunked response: our head lines, the frames framed.

    Granian adds `server` and `date` lines to the head (about 55 bytes, fewer than any frame),
    so reaching this count means every frame was written.
    """
    head = len(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    head += sum(len(name) + len(value) + 4 for name, value in head_lines)
    return head + sum(len(b"%x\r\n" % len(frame)) + len(frame) + 2 for frame in frames)


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


def _frames(
    head: bytes, choices: tuple[bytes, ...], body: dict[str, Any], usage: bytes
) -> list[bytes]:
    """The SSE frames of a stream: `head` + each choice, then the usage frame if asked for."""
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    tail = b',"usage":null}\n\n' if with_usage else b"}\n\n"
    frames = [head + choice + tail for choice in choices]
    if with_usage:
        frames.append(head + b'[],"usage":' + usage + b"}\n\n")
    return frames


def _headers(request_headers: RequestHeaders) -> dict[str, str]:
    """The request headers by lower-case name; repeated ones joined with ", "."""
    items = request_headers.items()
    headers = dict(items)
    if len(headers) != len(items):
        headers = {}
        for name, value in items:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


_ROUTES: Final = {
    "/v1/chat/completions": Route(FakeOpenAI.chat, _check_chat),
    "/v1/completions": Route(FakeOpenAI.completions, _check_completions),
    "/v1/embeddings": Route(FakeOpenAI.embeddings, _check_embeddings),
}

app = FakeOpenAI(os.environ.get(API_KEY_ENV, "sk-fake"))


def main(argv: list[str] | None = None) -> None:
    """Serve the fake with Granian until SIGINT/SIGTERM."""
    server.serve("tests.fakes.upstreams.openai:app", CLI, argv)


if __name__ == "__main__":
    main()
