"""Ollama's native API upstream, translated from and to OpenAI's shapes.

Chat goes to `/api/chat`, legacy completions to `/api/generate`, embeddings to `/api/embed`.
The native API instead of Ollama's `/v1` compatibility layer (what the Go original used)
because it reports the token counts the bill is settled on for streams too, and takes images,
tools and JSON schemas in one documented shape. Ollama streams NDJSON (one JSON object a line,
the last with `"done": true` and the counts) and streams by default, so every body states
`stream`. Base URL without `/v1`, e.g. `http://localhost:11434`.

Deliberate approximations, since Ollama has no equivalent: `tool_choice: "required"` sends the
tools as they are, a named `tool_choice` sends only that tool, `"none"` sends none; `n > 1`
and token-array inputs are refused (400).

Over the ~400-line mark for the reason given in `gemini.py`: one file per adapter, half of it
wire Structs that a shared OpenAI-shapes module would take over.
"""

from __future__ import annotations

import base64
import contextlib
import struct
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from app.domain import (
    InvalidRequest,
    Operation,
    Payload,
    Reply,
    StreamBroken,
    UpstreamProtocolError,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
    Usage,
)
from app.providers.transport import Transport

LIST_TIMEOUT = 10.0
"""Seconds for `GET /api/tags` (model listing, not a request path)."""

_encode = msgspec.json.encode
_decode_any = msgspec.json.Decoder().decode


# --- the client's OpenAI request ------------------------------------------------------------


class _ImageURL(msgspec.Struct):
    url: str


class _ContentPart(msgspec.Struct):
    type: str
    text: str | None = None
    image_url: _ImageURL | str | None = None


class _CallFunction(msgspec.Struct):
    name: str
    arguments: str = ""


class _ToolCall(msgspec.Struct):
    function: _CallFunction
    id: str = ""


class _Message(msgspec.Struct):
    role: str
    content: str | list[_ContentPart] | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None


class _FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: Any = None


class _Tool(msgspec.Struct):
    type: str = "function"
    function: _FunctionDef | None = None


class _ChosenFunction(msgspec.Struct):
    name: str


class _NamedChoice(msgspec.Struct):
    function: _ChosenFunction


class _JsonSchema(msgspec.Struct):
    schema: Any = None


class _ResponseFormat(msgspec.Struct):
    type: str
    json_schema: _JsonSchema | None = None


class _Sampling(msgspec.Struct):
    """The fields chat and legacy completions share."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int | None = None
    response_format: _ResponseFormat | None = None


class _ChatRequest(_Sampling):
    messages: list[_Message] = []
    tools: list[_Tool] | None = None
    tool_choice: str | _NamedChoice | None = None


class _CompletionRequest(_Sampling):
    prompt: Any = None
    suffix: str | None = None


class _EmbeddingRequest(msgspec.Struct):
    input: Any
    dimensions: int | None = None
    encoding_format: str | None = None


# --- Ollama request -------------------------------------------------------------------------


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of the bodies sent to Ollama: unset fields left out."""


class _OutFunctionCall(_Wire):
    name: str
    arguments: dict[str, Any]


class _OutToolCall(_Wire):
    function: _OutFunctionCall


class _OutMessage(_Wire):
    role: str
    content: str
    images: list[str] | None = None
    tool_calls: list[_OutToolCall] | None = None
    tool_name: str | None = None


class _OutFunction(_Wire):
    name: str
    description: str | None = None
    parameters: Any = None


class _OutTool(_Wire):
    type: str
    function: _OutFunction


class _Options(_Wire):
    temperature: float | None = None
    top_p: float | None = None
    num_predict: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class _ChatBody(_Wire):
    model: str
    messages: list[_OutMessage]
    stream: bool  # no default: always sent, since Ollama streams when it is absent
    tools: list[_OutTool] | None = None
    options: _Options | None = None
    format: Any = None


class _GenerateBody(_Wire):
    model: str
    prompt: str
    stream: bool
    suffix: str | None = None
    options: _Options | None = None
    format: Any = None


class _EmbedBody(_Wire):
    model: str
    input: list[str]
    dimensions: int | None = None


def _decode_request(payload: Payload, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(_encode(payload.fields), type=kind)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"invalid request: {exc}") from exc


def _text(content: str | list[_ContentPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "\n".join(part.text for part in content if part.type == "text" and part.text)


def _images(content: str | list[_ContentPart] | None) -> list[str] | None:
    """The base64 data of a message's images (Ollama takes no URLs)."""
    if not isinstance(content, list):
        return None
    images = []
    for part in content:
        if part.type == "text":
            continue
        if part.type != "image_url":
            raise InvalidRequest(f"content parts of type '{part.type}' are not supported by Ollama")
        image = part.image_url
        url = image.url if isinstance(image, _ImageURL) else image or ""
        header, comma, data = url.partition(",")
        if not url.startswith("data:") or not comma or not header.endswith(";base64"):
            raise InvalidRequest("Ollama needs images inline as data URLs", param="messages")
        images.append(data)
    return images or None


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = _decode_any(text or "{}")
    except msgspec.DecodeError as exc:
        raise InvalidRequest("tool call arguments must be JSON", param="messages") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param="messages")
    return value


def _messages(messages: list[_Message]) -> list[_OutMessage]:
    out = []
    names: dict[str, str] = {}  # tool_call_id → function name; later calls win
    for message in messages:
        role = message.role
        if role in ("system", "developer", "user"):
            out.append(
                _OutMessage(
                    role="system" if role == "developer" else role,
                    content=_text(message.content),
                    images=_images(message.content) if role == "user" else None,
                )
            )
        elif role == "assistant":
            calls = []
            for call in message.tool_calls or ():
                names[call.id] = call.function.name
                arguments = _arguments(call.function.arguments)
                calls.append(
                    _OutToolCall(
                        function=_OutFunctionCall(name=call.function.name, arguments=arguments)
                    )
                )
            content = _text(message.content)
            out.append(_OutMessage(role="assistant", content=content, tool_calls=calls or None))
        elif role in ("tool", "function"):
            name = message.name if role == "function" else names.get(message.tool_call_id or "")
            out.append(_OutMessage(role="tool", content=_text(message.content), tool_name=name))
        else:
            raise InvalidRequest(f"unknown message role '{role}'", param="messages")
    return out


def _tools(request: _ChatRequest) -> list[_OutTool] | None:
    choice = request.tool_choice
    if choice == "none":
        return None
    tools = []
    for tool in request.tools or ():
        function = tool.function
        if tool.type != "function" or function is None:
            raise InvalidRequest(f"tools of type '{tool.type}' are not supported", param="tools")
        if isinstance(choice, _NamedChoice) and function.name != choice.function.name:
            continue
        out = _OutFunction(
            name=function.name, description=function.description, parameters=function.parameters
        )
        tools.append(_OutTool(type="function", function=out))
    return tools or None


def _stops(stop: str | list[str] | None) -> list[str] | None:
    """OpenAI's `stop` (a string or a list) as a list without empty strings; None for none."""
    stops = [stop] if isinstance(stop, str) else stop or []
    return [text for text in stops if text] or None


def _options(request: _Sampling) -> _Options | None:
    if request.n is not None and request.n > 1:
        raise InvalidRequest("Ollama answers one choice: n must be 1", param="n")
    options = _Options(
        temperature=request.temperature,
        top_p=request.top_p,
        num_predict=request.max_completion_tokens or request.max_tokens,
        stop=_stops(request.stop),
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )
    return None if options == _Options() else options


def _format(request: _Sampling) -> Any:
    response_format = request.response_format
    if response_format is None or response_format.type not in ("json_object", "json_schema"):
        return None
    schema = response_format.json_schema
    return schema.schema if schema is not None and schema.schema else "json"


def build_chat_body(payload: Payload, upstream_model: str) -> bytes:
    request: _ChatRequest = _decode_request(payload, _ChatRequest)
    body = _ChatBody(
        model=upstream_model,
        messages=_messages(request.messages),
        stream=payload.stream,
        tools=_tools(request),
        options=_options(request),
        format=_format(request),
    )
    return _encode(body)


def build_generate_body(payload: Payload, upstream_model: str) -> bytes:
    request: _CompletionRequest = _decode_request(payload, _CompletionRequest)
    prompt = request.prompt
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest(
            "Ollama completes one text prompt: prompt must be a string", param="prompt"
        )
    body = _GenerateBody(
        model=upstream_model,
        prompt=prompt,
        stream=payload.stream,
        suffix=request.suffix,
        options=_options(request),
        format=_format(request),
    )
    return _encode(body)


def build_embed_body(payload: Payload, upstream_model: str) -> tuple[bytes, bool]:
    """The `/api/embed` body, and whether the client wants base64 vectors."""
    request: _EmbeddingRequest = _decode_request(payload, _EmbeddingRequest)
    value = request.input
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            "Ollama embeds text only: input must be a string or a list of strings", param="input"
        )
    body = _EmbedBody(model=upstream_model, input=texts, dimensions=request.dimensions)
    return _encode(body), request.encoding_format == "base64"


# --- Ollama answer --------------------------------------------------------------------------


class _InFunction(msgspec.Struct):
    name: str
    arguments: Any = None


class _InToolCall(msgspec.Struct):
    function: _InFunction
    id: str | None = None


class _InMessage(msgspec.Struct):
    content: str = ""
    tool_calls: list[_InToolCall] | None = None
    thinking: str | None = None


class _Answer(msgspec.Struct):
    """A line of `/api/chat` or `/api/generate` (a whole answer is one line with `done`)."""

    message: _InMessage | None = None
    response: str = ""
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: str | None = None


class _EmbedAnswer(msgspec.Struct):
    embeddings: list[list[float]]
    prompt_eval_count: int = 0


class _ErrorAnswer(msgspec.Struct):
    error: str = ""


_decode_answer = msgspec.json.Decoder(_Answer).decode
_decode_embed_answer = msgspec.json.Decoder(_EmbedAnswer).decode
_decode_error = msgspec.json.Decoder(_ErrorAnswer).decode


# --- OpenAI answer --------------------------------------------------------------------------


class _Function(msgspec.Struct):
    name: str
    arguments: str


class _OpenAIToolCall(msgspec.Struct, kw_only=True):
    id: str
    type: str = "function"
    function: _Function


class _OpenAIMessage(msgspec.Struct, kw_only=True):
    role: str = "assistant"
    content: str | None
    tool_calls: list[_OpenAIToolCall] | UnsetType = UNSET


class _ChatChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: _OpenAIMessage
    logprobs: None = None
    finish_reason: str


class _TextChoice(msgspec.Struct, kw_only=True):
    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: str | None


class _OpenAIUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class _Completion(msgspec.Struct, kw_only=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_ChatChoice] | list[_TextChoice]
    usage: _OpenAIUsage


class _OpenAIEmbedding(msgspec.Struct, kw_only=True):
    object: str = "embedding"
    index: int
    embedding: list[float] | str


class _EmbedUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class _EmbeddingList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[_OpenAIEmbedding]
    model: str
    usage: _EmbedUsage


def _usage(answer: _Answer) -> tuple[_OpenAIUsage, Usage]:
    prompt, completion = answer.prompt_eval_count, answer.eval_count
    total = prompt + completion
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)
    return _OpenAIUsage(prompt, completion, total), usage


def finish_reason(done_reason: str | None, *, called: bool) -> str:
    if done_reason == "length":
        return "length"
    return "tool_calls" if called else "stop"


def _call_id(call: _InToolCall, n: int) -> str:
    return call.id or f"call_{n}"


def _arguments_json(call: _InToolCall) -> str:
    arguments = call.function.arguments
    if isinstance(arguments, str):  # some models' templates leave the arguments as text
        return arguments
    return _encode(arguments if arguments is not None else {}).decode()


def _read(provider: str, body: bytes) -> _Answer:
    try:
        return _decode_answer(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, f"invalid Ollama answer: {exc}") from exc


def translate_chat(provider: str, body: bytes, model: str) -> tuple[bytes, Usage]:
    """An `/api/chat` answer as an OpenAI `chat.completion`, and its usage."""
    answer = _read(provider, body)
    message = answer.message or _InMessage()
    calls = [
        _OpenAIToolCall(
            id=_call_id(call, n),
            function=_Function(name=call.function.name, arguments=_arguments_json(call)),
        )
        for n, call in enumerate(message.tool_calls or ())
    ]
    out = _OpenAIMessage(content=message.content if message.content or not calls else None)
    if calls:
        out.tool_calls = calls
    choice = _ChatChoice(
        message=out, finish_reason=finish_reason(answer.done_reason, called=bool(calls))
    )
    wire, usage = _usage(answer)
    completion = _Completion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        object="chat.completion",
        created=int(time.time()),
        model=model,
        choices=[choice],
        usage=wire,
    )
    return _encode(completion), usage


def translate_generate(provider: str, body: bytes, model: str) -> tuple[bytes, Usage]:
    """An `/api/generate` answer as an OpenAI `text_completion`, and its usage."""
    answer = _read(provider, body)
    choice = _TextChoice(
        text=answer.response, finish_reason=finish_reason(answer.done_reason, called=False)
    )
    wire, usage = _usage(answer)
    completion = _Completion(
        id=f"cmpl-{uuid.uuid4().hex}",
        object="text_completion",
        created=int(time.time()),
        model=model,
        choices=[choice],
        usage=wire,
    )
    return _encode(completion), usage


def translate_embed(
    provider: str, body: bytes, model: str, *, base64_vectors: bool
) -> tuple[bytes, Usage]:
    """An `/api/embed` answer as an OpenAI embeddings list, and its usage."""
    try:
        answer = _decode_embed_answer(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, f"invalid /api/embed answer: {exc}") from exc
    data = []
    for index, values in enumerate(answer.embeddings):
        vector: list[float] | str = values
        if base64_vectors:
            vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append(_OpenAIEmbedding(index=index, embedding=vector))
    tokens = answer.prompt_eval_count
    wire = _EmbedUsage(prompt_tokens=tokens, total_tokens=tokens)
    usage = Usage(prompt_tokens=tokens, total_tokens=tokens)
    return _encode(_EmbeddingList(data=data, model=model, usage=wire)), usage


_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_error_body(status: int, body: bytes) -> bytes:
    """Ollama's `{"error": "..."}` as OpenAI's error object."""
    try:
        message = _decode_error(body).error
    except msgspec.DecodeError:
        message = ""
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    error = {
        "message": message or f"Ollama answered HTTP {status}",
        "type": kind,
        "param": None,
        "code": None,
    }
    return _encode({"error": error})


# --- streams --------------------------------------------------------------------------------


class _DeltaFunction(msgspec.Struct, kw_only=True):
    name: str | UnsetType = UNSET
    arguments: str


class _DeltaToolCall(msgspec.Struct, kw_only=True):
    index: int
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    function: _DeltaFunction


class _Delta(msgspec.Struct, kw_only=True):
    role: str | UnsetType = UNSET
    content: str | UnsetType = UNSET
    tool_calls: list[_DeltaToolCall] | UnsetType = UNSET


class _ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: _Delta
    logprobs: None = None
    finish_reason: str | None = None


class OllamaStream:
    """State machine: Ollama's NDJSON lines → OpenAI chunk frames.

    `feed` takes body pieces as they arrive and returns complete frames; after the `done` line
    (finish chunk and usage chunk) `done` is True. A line with `error` raises `StreamBroken`,
    and so does `close` when the body ended before `done`. With `chat=False` it translates
    `/api/generate` into `text_completion` chunks.
    """

    def __init__(
        self, model: str, skipped: Counter[str], *, chat: bool = True, created: int | None = None
    ) -> None:
        self._chat = chat
        self._skipped = skipped
        created = int(time.time()) if created is None else created
        prefix, kind = (
            ("chatcmpl", "chat.completion.chunk") if chat else ("cmpl", "text_completion")
        )
        self._head = b'data: {"id":"%s-%s","object":"%s","created":%d,"model":%s,"choices":' % (
            prefix.encode(),
            uuid.uuid4().hex.encode(),
            kind.encode(),
            created,
            _encode(model),
        )
        self._pending = b""
        self._calls = 0
        self.done = False
        self.usage: Usage | None = None

    def _frame(self, choices: bytes) -> bytes:
        return b"%s%s}\n\n" % (self._head, choices)

    def _chunk(self, delta: _Delta, finish: str | None = None) -> bytes:
        return self._frame(b"[%s]" % _encode(_ChunkChoice(delta=delta, finish_reason=finish)))

    def _text(self, text: str, finish: str | None = None) -> bytes:
        return self._frame(b"[%s]" % _encode(_TextChoice(text=text, finish_reason=finish)))

    def start(self) -> bytes:
        """The role chunk that opens a chat stream (nothing for completions)."""
        return self._chunk(_Delta(role="assistant", content="")) if self._chat else b""

    def feed(self, piece: bytes) -> bytes:
        data = self._pending + piece if self._pending else piece
        lines = data.split(b"\n")
        self._pending = lines.pop()
        out = [self._line(line) for line in lines if line.strip() and not self.done]
        return b"".join(out)

    def _line(self, line: bytes) -> bytes:
        try:
            answer = _decode_answer(line)
        except msgspec.DecodeError as exc:
            raise StreamBroken(f"unreadable Ollama stream line: {exc}") from exc
        if answer.error is not None:
            raise StreamBroken(f"Ollama stream error: {answer.error}")
        out = []
        if not self._chat:
            if answer.response:
                out.append(self._text(answer.response))
        elif answer.message is not None:
            out.extend(self._message(answer.message))
        if answer.done:
            self.done = True
            reason = finish_reason(answer.done_reason, called=self._calls > 0)
            out.append(self._chunk(_Delta(), reason) if self._chat else self._text("", reason))
            wire, self.usage = _usage(answer)
            out.append(self._frame(b'[],"usage":%s' % _encode(wire)))
        return b"".join(out)

    def _message(self, message: _InMessage) -> Iterator[bytes]:
        if message.thinking:
            self._skipped["thinking"] += 1
        if message.content:
            yield self._chunk(_Delta(content=message.content))
        for call in message.tool_calls or ():
            n = self._calls
            self._calls += 1
            first = _DeltaToolCall(
                index=n,
                id=_call_id(call, n),
                type="function",
                function=_DeltaFunction(name=call.function.name, arguments=""),
            )
            rest = _DeltaToolCall(index=n, function=_DeltaFunction(arguments=_arguments_json(call)))
            yield self._chunk(_Delta(tool_calls=[first]))
            yield self._chunk(_Delta(tool_calls=[rest]))

    def close(self) -> bytes:
        """At EOF: the last line when it had no newline; `StreamBroken` without `done`."""
        out = self._line(self._pending) if self._pending.strip() and not self.done else b""
        self._pending = b""
        if not self.done:
            raise StreamBroken("Ollama stream ended before its done line")
        return out


async def translate_stream(
    pieces: AsyncIterator[bytes], translator: OllamaStream
) -> AsyncIterator[bytes]:
    """Ollama's NDJSON body as OpenAI chunk frames, ending at the `done` line."""
    first = translator.start()
    if first:
        yield first
    async for piece in pieces:
        frames = translator.feed(piece)
        if frames:
            yield frames
        if translator.done:
            return
    frames = translator.close()
    if frames:
        yield frames


# --- the adapter ----------------------------------------------------------------------------


class _Tags(msgspec.Struct):
    class _Model(msgspec.Struct):
        name: str

    models: list[_Model] = []


_decode_tags = msgspec.json.Decoder(_Tags).decode


class OllamaAdapter:
    """`domain.Provider` over Ollama's native API."""

    def __init__(self, name: str, transport: Transport) -> None:
        self._name = name
        self._transport = transport
        self.skipped: Counter[str] = Counter()
        """Answer pieces the OpenAI shape cannot hold (thinking), by kind."""

    @property
    def name(self) -> str:
        return self._name

    def _status(self, status: int, body: bytes) -> UpstreamStatus:
        return UpstreamStatus(
            self._name, status, openai_error_body(status, body), "application/json"
        )

    async def _post(self, path: str, body: bytes) -> bytes:
        status, answer, _ = await self._transport.post(path, body)
        if status >= 300:
            raise self._status(status, answer)
        return answer

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        operation = payload.operation
        if operation is Operation.EMBEDDINGS:
            body, base64_vectors = build_embed_body(payload, upstream_model)
            answer = await self._post("/api/embed", body)
            translated, usage = translate_embed(
                self._name, answer, upstream_model, base64_vectors=base64_vectors
            )
        elif operation is Operation.COMPLETIONS:
            answer = await self._post("/api/generate", build_generate_body(payload, upstream_model))
            translated, usage = translate_generate(self._name, answer, upstream_model)
        else:
            answer = await self._post("/api/chat", build_chat_body(payload, upstream_model))
            translated, usage = translate_chat(self._name, answer, upstream_model)
        return Reply(body=translated, usage=usage)

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: Payload, upstream_model: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        chat = payload.operation is not Operation.COMPLETIONS
        if payload.operation is Operation.EMBEDDINGS:
            raise InvalidRequest("embeddings do not stream", param="stream")
        if chat:
            path, body = "/api/chat", build_chat_body(payload, upstream_model)
        else:
            path, body = "/api/generate", build_generate_body(payload, upstream_model)
        async with contextlib.AsyncExitStack() as stack:
            try:
                pieces = await stack.enter_async_context(self._transport.post_stream(path, body))
            except UpstreamStatus as exc:
                raise self._status(exc.upstream_status, exc.body) from exc
            yield translate_stream(pieces, OllamaStream(upstream_model, self.skipped, chat=chat))

    async def list_models(self) -> list[str]:
        """The names of the models Ollama has pulled (`GET /api/tags`).

        A plain `httpx.AsyncClient` (Transport only POSTs): listing is no hot path.
        """
        async with httpx.AsyncClient(
            base_url=self._transport.base_url, timeout=LIST_TIMEOUT
        ) as client:
            try:
                response = await client.get("/api/tags")
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout(self._name) from exc
            except httpx.TransportError as exc:
                raise UpstreamUnreachable(self._name, type(exc).__name__) from exc
        if response.status_code >= 300:
            raise self._status(response.status_code, response.content)
        try:
            tags = _decode_tags(response.content)
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(self._name, f"invalid /api/tags answer: {exc}") from exc
        return [model.name for model in tags.models]

    async def aclose(self) -> None:
        await self._transport.aclose()
