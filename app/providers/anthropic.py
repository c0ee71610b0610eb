"""Anthropic Messages API upstream: api.anthropic.com, Vertex AI and Bedrock.

Clients speak OpenAI chat completions; this module turns each request into a Messages request
and the answer (a message, or its stream of events) back into OpenAI's shapes, so a client
cannot tell which vendor answered. The three hostings share the body and the events; they
differ in the path, in where the model goes (body or path), in the `anthropic_version` body
field, and for Bedrock streams in the framing (AWS's binary event stream instead of SSE).

The translation is pure - `translate_request`, `translate_response`, `translate_error` and the
`StreamTranslator` state machine - and is kept apart from the small I/O class at the end.
`messages_usage` and `MessagesStreamMeter` read the usage of native (untranslated) Messages
traffic for the `/v1/messages` passthrough. The module is longer than the ~400-line guide
because it is one file by assignment; its seams are where `anthropic/{translate,stream,
adapter}.py` would split it.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Final
from urllib.parse import quote

import msgspec
from msgspec import UNSET, UnsetType

from app.domain import (
    InvalidRequest,
    Operation,
    Payload,
    PromptTokensDetails,
    Reply,
    StreamBroken,
    UpstreamProtocolError,
    UpstreamStatus,
    Usage,
)
from app.providers.eventstream import bedrock_payloads
from app.providers.sse import FrameSplitter
from app.providers.transport import Transport

DEFAULT_MAX_TOKENS: Final = 4096
"""`max_tokens` when the client sets none: Anthropic requires it, OpenAI does not. 4096 is the
Go original's default and fits every Claude model (Claude 3 Haiku's output ceiling is 4096)."""
VERTEX_VERSION: Final = "vertex-2023-10-16"
BEDROCK_VERSION: Final = "bedrock-2023-05-31"
HOSTINGS: Final = frozenset({"", "vertex", "bedrock"})
"""`""` is api.anthropic.com (`anthropic-version` and `x-api-key` headers come with the
transport); `vertex` and `bedrock` name the cloud hostings."""

_FINISH_REASONS: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool"})
_MAX_ERROR_MESSAGE = 1024


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI's `finish_reason` for an Anthropic `stop_reason` (unknown ones end as `stop`)."""
    return _FINISH_REASONS.get(stop_reason or "", "stop")


# --- the OpenAI request, as far as the translation reads it -----------------------------------


class _ImageURL(msgspec.Struct):
    url: str


class _Part(msgspec.Struct):
    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: _ImageURL | str | None = None


class _FunctionCall(msgspec.Struct):
    name: str
    arguments: str = ""


class _ToolCall(msgspec.Struct):
    id: str
    function: _FunctionCall
    type: str = "function"


class _ChatMessage(msgspec.Struct):
    role: str
    content: str | list[_Part] | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None


class _FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: msgspec.Raw = msgspec.Raw()


class _Tool(msgspec.Struct):
    function: _FunctionDef | None = None
    type: str = "function"


class _NamedFunction(msgspec.Struct):
    name: str


class _NamedToolChoice(msgspec.Struct):
    function: _NamedFunction
    type: str = "function"


# --- the Messages request ---------------------------------------------------------------------


class _Out(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of the bodies sent upstream: absent stays absent."""


class _Block(_Out, tag_field="type"):
    """A content block; `type` is the tag."""


class TextBlock(_Block, tag="text"):
    text: str


class Base64Source(_Out, tag_field="type", tag="base64"):
    media_type: str
    data: str


class URLSource(_Out, tag_field="type", tag="url"):
    url: str


class ImageBlock(_Block, tag="image"):
    source: Base64Source | URLSource


class ToolUseBlock(_Block, tag="tool_use"):
    id: str
    name: str
    input: dict[str, msgspec.Raw]


class ToolResultBlock(_Block, tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | UnsetType = UNSET


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock


class AnthropicMessage(_Out):
    role: str
    content: list[Block]


class AnthropicTool(_Out, kw_only=True):
    name: str
    description: str | UnsetType = UNSET
    input_schema: msgspec.Raw


class ToolChoice(_Out):
    type: str
    name: str | UnsetType = UNSET
    disable_parallel_tool_use: bool = False


class Metadata(_Out):
    user_id: str


class MessagesRequest(_Out, kw_only=True):
    """A Messages request body; `model`, `anthropic_version` and `stream` depend on hosting."""

    model: str | UnsetType = UNSET
    anthropic_version: str | UnsetType = UNSET
    max_tokens: int
    messages: list[AnthropicMessage]
    system: list[TextBlock] | UnsetType = UNSET
    stop_sequences: list[str] | UnsetType = UNSET
    temperature: float | UnsetType = UNSET
    top_p: float | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET
    tools: list[AnthropicTool] | UnsetType = UNSET
    tool_choice: ToolChoice | UnsetType = UNSET
    stream: bool = False


_EMPTY_SCHEMA: Final = msgspec.Raw(b'{"type":"object","properties":{}}')
_decode_arguments = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_FIELD_DECODERS: Final = {
    "messages": msgspec.json.Decoder(list[_ChatMessage]).decode,
    "tools": msgspec.json.Decoder(list[_Tool] | None).decode,
    "tool_choice": msgspec.json.Decoder(str | _NamedToolChoice | None).decode,
    "parallel_tool_calls": msgspec.json.Decoder(bool | None).decode,
    "stop": msgspec.json.Decoder(str | list[str] | None).decode,
    "max_tokens": msgspec.json.Decoder(int | None).decode,
    "max_completion_tokens": msgspec.json.Decoder(int | None).decode,
    "temperature": msgspec.json.Decoder(float | None).decode,
    "top_p": msgspec.json.Decoder(float | None).decode,
    "user": msgspec.json.Decoder(str | None).decode,
    "n": msgspec.json.Decoder(int | None).decode,
}


def _field(fields: Mapping[str, msgspec.Raw], name: str) -> object:
    raw = fields.get(name)
    if raw is None:
        return None
    try:
        return _FIELD_DECODERS[name](raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"Invalid value for '{name}': {exc}", param=name) from None


def translate_request(fields: Mapping[str, msgspec.Raw]) -> MessagesRequest:
    """The Messages request for an OpenAI chat request (its body decoded one level).

    Fields Anthropic cannot express are dropped; ones whose loss would change the answer
    (`n` > 1, audio or file parts, non-function tools, invalid tool-call arguments) raise
    `InvalidRequest`. `model`, `anthropic_version` and `stream` are left to the caller.
    """
    n = _field(fields, "n")
    if isinstance(n, int) and n > 1:
        raise InvalidRequest("Anthropic models return one choice: 'n' must be 1", param="n")
    messages = _field(fields, "messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    system, turns = _translate_messages(messages)
    request = MessagesRequest(max_tokens=_max_tokens(fields), messages=turns)
    if system:
        request.system = system
    stop = _field(fields, "stop")
    if isinstance(stop, str):
        request.stop_sequences = [stop]
    elif isinstance(stop, list) and stop:
        request.stop_sequences = stop
    temperature, top_p, user = (_field(fields, key) for key in ("temperature", "top_p", "user"))
    if isinstance(temperature, float):
        request.temperature = temperature
    if isinstance(top_p, float):
        request.top_p = top_p
    if isinstance(user, str) and user:
        request.metadata = Metadata(user_id=user)
    tools = _field(fields, "tools")
    if isinstance(tools, list) and tools:
        request.tools = [_tool(tool, i) for i, tool in enumerate(tools)]
        choice = _tool_choice(_field(fields, "tool_choice"), _field(fields, "parallel_tool_calls"))
        if choice is not None:
            request.tool_choice = choice
    return request


def _max_tokens(fields: Mapping[str, msgspec.Raw]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = _field(fields, name)
        if isinstance(value, int):
            return value
    return DEFAULT_MAX_TOKENS


def _tool(tool: _Tool, i: int) -> AnthropicTool:
    function = tool.function
    if tool.type != "function" or function is None:
        raise InvalidRequest(
            f"tool type '{tool.type}' is not supported by Anthropic models", param=f"tools[{i}]"
        )
    schema = function.parameters
    described = AnthropicTool(
        name=function.name,
        input_schema=_EMPTY_SCHEMA if bytes(schema) in (b"", b"null") else schema,
    )
    if function.description:
        described.description = function.description
    return described


def _tool_choice(choice: object, parallel: object) -> ToolChoice | None:
    if isinstance(choice, _NamedToolChoice):
        result = ToolChoice(type="tool", name=choice.function.name)
    elif choice in (None, "auto"):
        result = ToolChoice(type="auto")
    elif choice == "required":
        result = ToolChoice(type="any")
    elif choice == "none":
        return ToolChoice(type="none")  # takes no disable_parallel_tool_use
    else:
        raise InvalidRequest(f"Invalid value for 'tool_choice': {choice}", param="tool_choice")
    if parallel is False:
        result.disable_parallel_tool_use = True
    elif choice is None:
        return None  # nothing said: Anthropic's default is auto
    return result


def _translate_messages(
    messages: Sequence[_ChatMessage],
) -> tuple[list[TextBlock], list[AnthropicMessage]]:
    """`system` (every system and developer message, in order) and the alternating turns.

    Tool results become `tool_result` blocks of a user turn; consecutive turns of one role
    merge, since Anthropic requires alternation; a user turn's tool results go first.
    """
    system: list[TextBlock] = []
    turns: list[AnthropicMessage] = []
    for i, message in enumerate(messages):
        role = message.role
        param = f"messages.[{i}].content"
        if role not in _ROLES:
            raise InvalidRequest(f"role '{role}' is not supported", param=f"messages.[{i}].role")
        if role in ("system", "developer"):
            system += [
                b
                for b in _blocks(message.content, param, images=False)
                if isinstance(b, TextBlock) and b.text
            ]
            continue
        blocks: list[Block]
        if role == "tool":
            role, blocks = "user", [_tool_result(message, i)]
        elif role == "assistant":
            blocks = [*_blocks(message.content, param, images=False)]
            blocks += [_tool_use(call, i, j) for j, call in enumerate(message.tool_calls or ())]
        else:
            blocks = [*_blocks(message.content, param, images=True)]
        blocks = [b for b in blocks if not isinstance(b, TextBlock) or b.text]
        if not blocks:
            continue
        if turns and turns[-1].role == role:
            turns[-1].content += blocks
        else:
            turns.append(AnthropicMessage(role=role, content=blocks))
    for turn in turns:
        if turn.role == "user":
            turn.content.sort(key=lambda block: not isinstance(block, ToolResultBlock))
    return system, turns


def _blocks(
    content: str | list[_Part] | None, param: str, *, images: bool
) -> Iterator[TextBlock | ImageBlock]:
    if content is None:
        return
    if isinstance(content, str):
        yield TextBlock(text=content)
        return
    for part in content:
        if part.type == "text" and part.text is not None:
            yield TextBlock(text=part.text)
        elif part.type == "refusal" and part.refusal is not None:
            yield TextBlock(text=part.refusal)
        elif part.type == "image_url" and images and part.image_url is not None:
            image = part.image_url
            yield _image(image if isinstance(image, str) else image.url, param)
        else:
            raise InvalidRequest(
                f"content part type '{part.type}' is not supported here by Anthropic models",
                param=param,
            )


def _image(url: str, param: str) -> ImageBlock:
    """An OpenAI image URL as an Anthropic image: base64 data URLs, or http(s) URLs."""
    if url.startswith("data:"):
        head, comma, data = url[5:].partition(",")
        media_type, *options = head.split(";")
        if not comma or not media_type or "base64" not in options:
            raise InvalidRequest(
                "image data URLs must look like data:<media type>;base64,<data>", param=param
            )
        return ImageBlock(source=Base64Source(media_type=media_type, data=data))
    if url.startswith(("https://", "http://")):
        return ImageBlock(source=URLSource(url=url))
    raise InvalidRequest("image URLs must be http(s) or base64 data URLs", param=param)


def _tool_use(call: _ToolCall, i: int, j: int) -> ToolUseBlock:
    text = call.function.arguments
    try:
        arguments = _decode_arguments(text) if text.strip() else {}
    except msgspec.DecodeError:
        raise InvalidRequest(
            "tool call arguments must be a JSON object",
            param=f"messages.[{i}].tool_calls.[{j}].function.arguments",
        ) from None
    return ToolUseBlock(id=call.id, name=call.function.name, input=arguments)


def _tool_result(message: _ChatMessage, i: int) -> ToolResultBlock:
    if not message.tool_call_id:
        raise InvalidRequest(
            "tool messages need a 'tool_call_id'", param=f"messages.[{i}].tool_call_id"
        )
    result = ToolResultBlock(tool_use_id=message.tool_call_id)
    content = message.content
    if isinstance(content, str):
        if content:
            result.content = content
    elif content:
        blocks = [b for b in _blocks(content, f"messages.[{i}].content", images=True)]
        result.content = [b for b in blocks if not isinstance(b, TextBlock) or b.text]
    return result


# --- the answer -------------------------------------------------------------------------------


class _AnthropicUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Tally:
    """Usage as Anthropic reports it, piece by piece; every number given replaces the last."""

    __slots__ = ("cache_creation", "cache_read", "input", "output")

    def __init__(self) -> None:
        self.input = 0
        self.output = 0
        self.cache_creation = 0
        self.cache_read: int | None = None

    def update(self, usage: _AnthropicUsage | None) -> None:
        if usage is None:
            return
        if usage.input_tokens is not None:
            self.input = usage.input_tokens
        if usage.output_tokens is not None:
            self.output = usage.output_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_creation = usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens

    def usage(self) -> Usage:
        """OpenAI's usage: the prompt counts every input token, cache reads and writes too."""
        prompt = self.input + self.cache_creation + (self.cache_read or 0)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=self.output,
            total_tokens=prompt + self.output,
            prompt_tokens_details=(
                None
                if self.cache_read is None
                else PromptTokensDetails(cached_tokens=self.cache_read)
            ),
        )


class _ContentBlock(msgspec.Struct):
    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.Raw()


class _Message(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[_ContentBlock] = []
    stop_reason: str | None = None
    usage: _AnthropicUsage | None = None


class _FunctionOut(msgspec.Struct):
    name: str
    arguments: str


class _ToolCallOut(msgspec.Struct, kw_only=True):
    id: str
    type: str = "function"
    function: _FunctionOut


class _MessageOut(msgspec.Struct, kw_only=True):
    role: str = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[_ToolCallOut] | UnsetType = UNSET


class _ChoiceOut(msgspec.Struct, kw_only=True):
    index: int = 0
    message: _MessageOut
    logprobs: None = None
    finish_reason: str


class _Completion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[_ChoiceOut]
    usage: Usage


_decode_message = msgspec.json.Decoder(_Message).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def translate_response(
    body: bytes, model: str, skipped: Counter[str] | None = None, *, created: int | None = None
) -> tuple[bytes, Usage]:
    """The OpenAI `chat.completion` for a Messages answer, and its usage.

    `model` stands in when the answer names none. Block types other than text and tool_use
    (thinking, server tools, new ones) are counted in `skipped`. Raises `msgspec.DecodeError`
    for an answer that is not a Messages answer.
    """
    message = _decode_message(body)
    texts: list[str] = []
    calls: list[_ToolCallOut] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            arguments = _encode(_decode_any(block.input)) if block.input else b"{}"
            function = _FunctionOut(name=block.name, arguments=arguments.decode())
            calls.append(_ToolCallOut(id=block.id, function=function))
        elif skipped is not None:
            skipped[f"block:{block.type}"] += 1
    tally = _Tally()
    tally.update(message.usage)
    usage = tally.usage()
    out = _MessageOut(content="".join(texts) if texts or not calls else None)
    if calls:
        out.tool_calls = calls
    completion = _Completion(
        id=message.id,
        created=int(time.time()) if created is None else created,
        model=message.model or model,
        choices=[_ChoiceOut(message=out, finish_reason=finish_reason(message.stop_reason))],
        usage=usage,
    )
    return _encode(completion), usage


class _VendorError(msgspec.Struct):
    type: str | None = None
    message: str | None = None
    status: str | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _VendorError | None = None
    message: str | None = None
    Message: str | None = None  # AWS spells it so in some errors


class _OpenAIError(msgspec.Struct):
    message: str
    type: str
    param: None = None
    code: None = None


class _OpenAIErrorBody(msgspec.Struct):
    error: _OpenAIError


_decode_error = msgspec.json.Decoder(_ErrorEnvelope | list[_ErrorEnvelope]).decode
_TYPES_BY_STATUS: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def translate_error(status: int, body: bytes) -> bytes:
    """An OpenAI error body carrying the message of an Anthropic, Google or AWS error body."""
    try:
        decoded = _decode_error(body)
    except msgspec.DecodeError:
        decoded = _ErrorEnvelope()
    envelope = (
        (decoded[0] if decoded else _ErrorEnvelope()) if isinstance(decoded, list) else decoded
    )
    error = envelope.error or _VendorError()
    message = error.message or envelope.message or envelope.Message
    kind = error.type or _TYPES_BY_STATUS.get(status, "api_error")
    text = message[:_MAX_ERROR_MESSAGE] if message else f"upstream answered {status}"
    return _encode(_OpenAIErrorBody(error=_OpenAIError(message=text, type=kind)))


# --- streams ----------------------------------------------------------------------------------


class _StartMessage(msgspec.Struct):
    id: str = ""
    model: str = ""
    usage: _AnthropicUsage | None = None


class _StreamBlock(msgspec.Struct):
    type: str
    text: str = ""
    id: str = ""
    name: str = ""


class _StreamDelta(msgspec.Struct):
    type: str
    text: str = ""
    partial_json: str = ""


class _StopDelta(msgspec.Struct):
    stop_reason: str | None = None


class _Event(msgspec.Struct, tag_field="type"):
    """A stream event; `type` is the tag."""


class MessageStart(_Event, tag="message_start"):
    message: _StartMessage


class ContentBlockStart(_Event, tag="content_block_start"):
    index: int
    content_block: _StreamBlock


class ContentBlockDelta(_Event, tag="content_block_delta"):
    index: int
    delta: _StreamDelta


class ContentBlockStop(_Event, tag="content_block_stop"):
    index: int = 0


class MessageDelta(_Event, tag="message_delta"):
    delta: _StopDelta = msgspec.field(default_factory=_StopDelta)
    usage: _AnthropicUsage | None = None


class MessageStop(_Event, tag="message_stop"):
    pass


class Ping(_Event, tag="ping"):
    pass


class ErrorEvent(_Event, tag="error"):
    error: _VendorError = msgspec.field(default_factory=_VendorError)


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | ErrorEvent
)
KNOWN_EVENTS: Final = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)


class _Tag(msgspec.Struct):
    type: str = ""


_decode_event = msgspec.json.Decoder(StreamEvent).decode
_peek = msgspec.json.Decoder(_Tag).decode


def decode_event(data: bytes) -> StreamEvent | str:
    """The event in one event's JSON, or the type name of an event this module does not know.

    Raises `StreamBroken` for JSON that is unreadable or a known event that is malformed.
    """
    try:
        event: StreamEvent = _decode_event(data)
    except msgspec.ValidationError:
        kind = _peek_type(data)
        if kind in KNOWN_EVENTS:
            raise StreamBroken(f"malformed {kind} event from upstream") from None
        return kind
    except msgspec.DecodeError:
        raise StreamBroken("unreadable event from upstream") from None
    return event


def _peek_type(data: bytes) -> str:
    try:
        return _peek(data).type
    except msgspec.DecodeError:
        raise StreamBroken("unreadable event from upstream") from None


class _FunctionDelta(msgspec.Struct, kw_only=True):
    name: str | UnsetType = UNSET
    arguments: str


class _ToolCallDelta(msgspec.Struct, kw_only=True):
    index: int
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    function: _FunctionDelta


class _Delta(msgspec.Struct, kw_only=True):
    role: str | UnsetType = UNSET
    content: str | UnsetType = UNSET
    tool_calls: list[_ToolCallDelta] | UnsetType = UNSET


class _ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: _Delta
    logprobs: None = None
    finish_reason: str | None = None


class StreamTranslator:
    """Anthropic stream events in, complete OpenAI `chat.completion.chunk` SSE frames out.

    Text deltas become content deltas; each tool_use block becomes one tool call (numbered
    0, 1, ... in order, whatever its block index) whose first delta carries id and name.
    `message_stop` yields the finish chunk and the usage chunk and makes `complete` true.
    Thinking blocks and unknown blocks, deltas and events are skipped and counted.
    """

    __slots__ = (
        "_created",
        "_head",
        "_model",
        "_skipped_blocks",
        "_stop_reason",
        "_tally",
        "_tools",
        "complete",
        "skipped",
        "started",
    )

    def __init__(
        self, model: str, skipped: Counter[str] | None = None, *, created: int | None = None
    ) -> None:
        self._model = model
        self._created = int(time.time()) if created is None else created
        self._head = self._chunk_head("")
        self._tally = _Tally()
        self._stop_reason: str | None = None
        self._tools: dict[int, int] = {}
        self._skipped_blocks: set[int] = set()
        self.skipped: Counter[str] = Counter() if skipped is None else skipped
        self.started = False
        """`message_start` came."""
        self.complete = False
        """`message_stop` came: the stream is whole."""

    @property
    def usage(self) -> Usage | None:
        """The usage so far; None before `message_start`."""
        return self._tally.usage() if self.started else None

    def _chunk_head(self, ident: str) -> bytes:
        return b'data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,' % (
            _encode(ident),
            self._created,
            _encode(self._model),
        )

    def _chunk(self, delta: _Delta, finish: str | None = None) -> bytes:
        choice = _ChunkChoice(delta=delta, finish_reason=finish)
        return self._head + b'"choices":[' + _encode(choice) + b"]}\n\n"

    def feed(self, data: bytes) -> bytes:
        """Translate one event's JSON; the frames it produced (often one, maybe none)."""
        if self.complete:
            return b""
        event = decode_event(data)
        frames = b""
        if isinstance(event, ContentBlockDelta):
            frames = self._delta(event)
        elif isinstance(event, ContentBlockStart):
            frames = self._block_start(event)
        elif isinstance(event, MessageStart):
            frames = self._start(event)
        elif isinstance(event, MessageDelta):
            self._tally.update(event.usage)
            if event.delta.stop_reason is not None:
                self._stop_reason = event.delta.stop_reason
        elif isinstance(event, MessageStop):
            frames = self._stop()
        elif isinstance(event, ErrorEvent):
            error = event.error
            detail = (error.message or "")[:200]
            raise StreamBroken(f"upstream stream error: {error.type or 'error'}: {detail}")
        elif isinstance(event, str):
            self.skipped[f"event:{event}"] += 1
        return frames

    def _start(self, event: MessageStart) -> bytes:
        message = event.message
        if message.model:
            self._model = message.model
        self._head = self._chunk_head(message.id)
        self._tally.update(message.usage)
        self.started = True
        return self._chunk(_Delta(role="assistant", content=""))

    def _block_start(self, event: ContentBlockStart) -> bytes:
        block = event.content_block
        if block.type == "text":
            return self._chunk(_Delta(content=block.text)) if block.text else b""
        if block.type == "tool_use":
            call = self._tools[event.index] = len(self._tools)
            function = _FunctionDelta(name=block.name, arguments="")
            first = _ToolCallDelta(index=call, id=block.id, type="function", function=function)
            return self._chunk(_Delta(tool_calls=[first]))
        self._skipped_blocks.add(event.index)
        self.skipped[f"block:{block.type}"] += 1
        return b""

    def _delta(self, event: ContentBlockDelta) -> bytes:
        delta = event.delta
        if event.index in self._skipped_blocks:
            return b""
        if delta.type == "text_delta":
            return self._chunk(_Delta(content=delta.text)) if delta.text else b""
        call = self._tools.get(event.index)
        if delta.type == "input_json_delta" and call is not None:
            if not delta.partial_json:
                return b""
            fragment = _ToolCallDelta(
                index=call, function=_FunctionDelta(arguments=delta.partial_json)
            )
            return self._chunk(_Delta(tool_calls=[fragment]))
        self.skipped[f"delta:{delta.type}"] += 1
        return b""

    def _stop(self) -> bytes:
        self.complete = True
        if not self.started:
            raise StreamBroken("upstream stream ended without message_start")
        finish = self._chunk(_Delta(), finish_reason(self._stop_reason))
        usage = self._head + b'"choices":[],"usage":' + _encode(self._tally.usage()) + b"}\n\n"
        return finish + usage


def sse_data(frames: bytes) -> Iterator[bytes]:
    """The `data` of each complete SSE event in `frames`.

    The `event:` lines are not needed: every Anthropic event names its type in its JSON.
    """
    for event in frames.split(b"\n\n"):
        lines = [
            line[6:] if line.startswith(b"data: ") else line[5:]
            for line in event.split(b"\n")
            if line.startswith(b"data:")
        ]
        if lines:
            yield lines[0] if len(lines) == 1 else b"\n".join(lines)


async def _sse_events(pieces: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The events of an SSE body, in the runs that arrived together."""
    splitter = FrameSplitter()
    async for piece in pieces:
        frames = splitter.feed(piece)
        if frames:
            yield list(sse_data(frames))


async def _bedrock_events(pieces: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    async for payload in bedrock_payloads(pieces):
        yield [payload]


async def _openai_frames(
    runs: AsyncIterator[list[bytes]], translator: StreamTranslator
) -> AsyncIterator[bytes]:
    async for run in runs:
        frames = b"".join([translator.feed(event) for event in run])
        if frames:
            yield frames
        if translator.complete:
            return
    raise StreamBroken("upstream closed the stream before message_stop")


# --- native Messages traffic (the /v1/messages passthrough) -----------------------------------


class _UsageEnvelope(msgspec.Struct):
    usage: _AnthropicUsage | None = None


class _MeterEvent(msgspec.Struct):
    type: str = ""
    message: _UsageEnvelope | None = None
    usage: _AnthropicUsage | None = None


_decode_usage_envelope = msgspec.json.Decoder(_UsageEnvelope).decode
_decode_meter_event = msgspec.json.Decoder(_MeterEvent).decode


def messages_usage(body: bytes) -> Usage | None:
    """Usage of a native, non-streamed Messages answer, in OpenAI's shape (None: none given)."""
    try:
        usage = _decode_usage_envelope(body).usage
    except msgspec.DecodeError:
        return None
    if usage is None:
        return None
    tally = _Tally()
    tally.update(usage)
    return tally.usage()


class MessagesStreamMeter:
    """Reads the usage of a native Messages stream as its events pass by, unchanged.

    Only events that can carry usage (`message_start`, `message_delta`) are decoded; unreadable
    ones are ignored, since the stream is the client's to judge, not ours.
    """

    __slots__ = ("_tally", "complete", "started")

    def __init__(self) -> None:
        self._tally = _Tally()
        self.started = False
        self.complete = False

    def see(self, frames: bytes) -> None:
        """Record the usage in `frames` (complete SSE events)."""
        if b"message_" not in frames:
            return
        for data in sse_data(frames):
            if b'"usage"' not in data and b"message_stop" not in data:
                continue
            try:
                event = _decode_meter_event(data)
            except msgspec.DecodeError:
                continue
            if event.type == "message_start" and event.message is not None:
                self.started = True
                self._tally.update(event.message.usage)
            elif event.type == "message_delta":
                self._tally.update(event.usage)
            elif event.type == "message_stop":
                self.complete = True

    @property
    def usage(self) -> Usage | None:
        """The usage so far; None until `message_start` came."""
        return self._tally.usage() if self.started else None


# --- the adapter ------------------------------------------------------------------------------


class AnthropicAdapter:
    """`domain.Provider` over the Messages API of Anthropic, Vertex AI or Bedrock.

    `skipped` counts what streams and answers held that OpenAI cannot show (thinking blocks,
    unknown blocks and events), by `block:<type>`, `delta:<type>` or `event:<type>`.
    """

    def __init__(self, name: str, transport: Transport, *, hosting: str = "") -> None:
        if hosting not in HOSTINGS:
            raise ValueError(f"unknown Anthropic hosting: {hosting!r}")
        self._name = name
        self._transport = transport
        self._hosting = hosting
        self.skipped: Counter[str] = Counter()

    @property
    def name(self) -> str:
        return self._name

    def path(self, upstream_model: str, *, stream: bool) -> str:
        """The upstream path, relative to the base URL the caller configured."""
        if self._hosting == "vertex":
            action = "streamRawPredict" if stream else "rawPredict"
            return f"/{quote(upstream_model, safe='@')}:{action}"
        if self._hosting == "bedrock":
            action = "invoke-with-response-stream" if stream else "invoke"
            return f"/model/{quote(upstream_model, safe='')}/{action}"
        return "/messages"

    def body(self, payload: Payload, upstream_model: str, *, stream: bool) -> bytes:
        """The upstream body; raises `InvalidRequest` for what Anthropic cannot answer."""
        if payload.operation is not Operation.CHAT:
            what = "embeddings" if payload.operation is Operation.EMBEDDINGS else "completions"
            raise InvalidRequest(f"model '{payload.model}' does not support {what}", param="model")
        request = translate_request(payload.fields)
        if self._hosting == "":
            request.model = upstream_model
            request.stream = stream
        elif self._hosting == "vertex":
            request.anthropic_version = VERTEX_VERSION
            request.stream = stream
        else:  # Bedrock: the path says whether to stream, and a `stream` key is refused
            request.anthropic_version = BEDROCK_VERSION
        return _encode(request)

    def _status(self, status: int, body: bytes) -> UpstreamStatus:
        return UpstreamStatus(self._name, status, translate_error(status, body), "application/json")

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        body = self.body(payload, upstream_model, stream=False)
        status, answer, _ = await self._transport.post(
            self.path(upstream_model, stream=False), body
        )
        if status >= 300:
            raise self._status(status, answer)
        try:
            translated, usage = translate_response(answer, upstream_model, self.skipped)
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(self._name, "not a Messages answer") from exc
        return Reply(body=translated, usage=usage)

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: Payload, upstream_model: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        body = self.body(payload, upstream_model, stream=True)
        path = self.path(upstream_model, stream=True)
        async with contextlib.AsyncExitStack() as stack:
            try:
                pieces = await stack.enter_async_context(self._transport.post_stream(path, body))
            except UpstreamStatus as exc:
                raise self._status(exc.upstream_status, exc.body) from exc
            runs = _bedrock_events(pieces) if self._hosting == "bedrock" else _sse_events(pieces)
            yield _openai_frames(runs, StreamTranslator(upstream_model, self.skipped))

    async def aclose(self) -> None:
        await self._transport.aclose()
