"""Gemini upstream (Google AI Studio and Vertex AI), translated from and to OpenAI's shapes.

Chat goes to `generateContent` and `streamGenerateContent?alt=sse`, embeddings (direct only)
to `batchEmbedContents`. Both hostings take the same relative paths and bodies; only the base
URL and the credential (set by the caller on the `Transport`) differ, so one adapter serves
both. Every answer leaves in OpenAI's shapes, errors included. The pure parts
(`build_chat_body`, `translate_response`, `GeminiStream`, `openai_error_body`) do no I/O.

Fixed from the Go original: every system message is kept (not only the last); tool results
name the *function* (found by `tool_call_id`), not the call id; assistant tool calls, images,
`n`, seed, penalties and JSON output are translated instead of dropped; schemas lose the keys
Gemini refuses; streamed function calls reach the client; tool call ids are unique.

Over the ~400-line mark because the task fixed one file per adapter: about 300 lines are the
wire Structs (OpenAI request and answer, Gemini request and answer). The next step is a package
(`gemini/{translate,stream,adapter}.py`) with the OpenAI Structs shared by every translating
adapter.
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
from urllib.parse import quote, urlsplit

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
from app.providers.sse import FrameSplitter
from app.providers.transport import Transport

HOSTINGS = frozenset({"", "vertex"})
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
"""Gemini `finishReason` → OpenAI `finish_reason`; any other reason is `stop`."""
IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
}
"""Media type of an image URL by extension (a table: `mimetypes` reads files on first use)."""
REFUSED_SCHEMA_KEYS = frozenset({"additionalProperties", "$schema", "strict"})
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_SCHEMA_DATA = frozenset({"enum", "default", "example", "examples", "const"})
_TOOL_CHOICE_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}

_encode = msgspec.json.encode


# --- the client's OpenAI request ------------------------------------------------------------


class _ImageURL(msgspec.Struct):
    url: str
    detail: str | None = None


class _ContentPart(msgspec.Struct):
    type: str
    text: str | None = None
    image_url: _ImageURL | str | None = None


class _CallFunction(msgspec.Struct):
    name: str
    arguments: str = ""


class _GoogleExtra(msgspec.Struct):
    thought_signature: str | None = None


class _ExtraContent(msgspec.Struct):
    google: _GoogleExtra | None = None


class _ToolCall(msgspec.Struct):
    function: _CallFunction
    id: str = ""
    type: str = "function"
    extra_content: _ExtraContent | None = None


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
    type: str = "function"


class _JsonSchema(msgspec.Struct):
    name: str = ""
    schema: Any = None


class _ResponseFormat(msgspec.Struct):
    type: str
    json_schema: _JsonSchema | None = None


class _ChatRequest(msgspec.Struct):
    messages: list[_Message]
    tools: list[_Tool] | None = None
    tool_choice: str | _NamedChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: _ResponseFormat | None = None


class _EmbeddingRequest(msgspec.Struct):
    input: Any
    dimensions: int | None = None
    encoding_format: str | None = None


_decode_chat = msgspec.json.Decoder(_ChatRequest).decode
_decode_embedding = msgspec.json.Decoder(_EmbeddingRequest).decode
_decode_any = msgspec.json.Decoder().decode


# --- Gemini request -------------------------------------------------------------------------


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """Base of the bodies sent to Gemini: camelCase names, unset fields left out."""


class _Blob(_Wire):
    mime_type: str
    data: str


class _FileData(_Wire):
    mime_type: str
    file_uri: str


class _OutFunctionCall(_Wire):
    name: str
    args: dict[str, Any]
    id: str | None = None


class _OutFunctionResponse(_Wire):
    name: str
    response: dict[str, Any]
    id: str | None = None


class _Part(_Wire):
    text: str | None = None
    inline_data: _Blob | None = None
    file_data: _FileData | None = None
    function_call: _OutFunctionCall | None = None
    function_response: _OutFunctionResponse | None = None
    thought_signature: str | None = None


class _Content(_Wire):
    parts: list[_Part]
    role: str | None = None


class _Declaration(_Wire):
    name: str
    description: str | None = None
    parameters: Any = None


class _Tools(_Wire):
    function_declarations: list[_Declaration]


class _CallingConfig(_Wire):
    mode: str
    allowed_function_names: list[str] | None = None


class _ToolConfig(_Wire):
    function_calling_config: _CallingConfig


class _GenerationConfig(_Wire):
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    candidate_count: int | None = None
    seed: int | None = None
    response_mime_type: str | None = None
    response_schema: Any = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class _GenerateRequest(_Wire):
    contents: list[_Content]
    system_instruction: _Content | None = None
    tools: list[_Tools] | None = None
    tool_config: _ToolConfig | None = None
    generation_config: _GenerationConfig | None = None


class _EmbedOne(_Wire):
    model: str
    content: _Content
    output_dimensionality: int | None = None


class _BatchEmbed(_Wire):
    requests: list[_EmbedOne]


def _texts(content: str | list[_ContentPart] | None) -> list[str]:
    """The non-empty text pieces of an OpenAI message content (non-text parts are the caller's).

    Gemini refuses an empty text part, and clients send `"content": ""` beside tool calls.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    return [part.text for part in content if part.type == "text" and part.text]


def _image_part(image: _ImageURL | str | None) -> _Part:
    url = image.url if isinstance(image, _ImageURL) else image or ""
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64" or not data:
            raise InvalidRequest("image data URLs must be base64: data:<type>;base64,<data>")
        return _Part(inline_data=_Blob(mime_type=media_type or "image/jpeg", data=data))
    if url.startswith(("http://", "https://")):
        extension = urlsplit(url).path.rpartition(".")[2].lower()
        media_type = IMAGE_TYPES.get(extension, "image/jpeg")
        return _Part(file_data=_FileData(mime_type=media_type, file_uri=url))
    raise InvalidRequest("image_url must be an http(s) URL or a base64 data URL", param="messages")


def _user_parts(content: str | list[_ContentPart] | None) -> list[_Part]:
    if not isinstance(content, list):
        return [_Part(text=content)] if content else []
    parts = []
    for part in content:
        if part.type == "text":
            if part.text:
                parts.append(_Part(text=part.text))
        elif part.type == "image_url":
            parts.append(_image_part(part.image_url))
        else:
            raise InvalidRequest(
                f"content parts of type '{part.type}' are not supported by Gemini here",
                param="messages",
            )
    return parts


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = _decode_any(text or "{}")
    except msgspec.DecodeError as exc:
        raise InvalidRequest("tool call arguments must be JSON", param="messages") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param="messages")
    return value


def _call_part(call: _ToolCall) -> _Part:
    extra = call.extra_content
    signature = extra.google.thought_signature if extra and extra.google else None
    return _Part(
        function_call=_OutFunctionCall(
            name=call.function.name, args=_arguments(call.function.arguments), id=call.id or None
        ),
        thought_signature=signature,
    )


def _tool_result(message: _Message, names: dict[str, str]) -> _Part:
    call_id = message.tool_call_id or ""
    name = message.name if message.role == "function" else names.get(call_id)
    if not name:
        raise InvalidRequest(
            f"tool message refers to unknown tool_call_id '{call_id}'", param="messages"
        )
    text = "".join(_texts(message.content))
    result: Any = text
    if text.startswith("{"):
        with contextlib.suppress(msgspec.DecodeError):
            result = _decode_any(text)
    return _Part(
        function_response=_OutFunctionResponse(
            name=name, response={"content": result}, id=call_id or None
        )
    )


def _contents(messages: list[_Message]) -> tuple[list[_Content], list[_Part]]:
    """OpenAI messages → Gemini `contents` and the `systemInstruction` parts."""
    system: list[_Part] = []
    contents: list[_Content] = []
    names: dict[str, str] = {}  # tool_call_id → function name; later calls win
    results: _Content | None = None  # the user content collecting consecutive tool results
    for message in messages:
        role = message.role
        if role in ("tool", "function"):
            part = _tool_result(message, names)
            if results is None:
                results = _Content(role="user", parts=[])
                contents.append(results)
            results.parts.append(part)
            continue
        results = None
        if role in ("system", "developer"):
            system.extend(_Part(text=text) for text in _texts(message.content))
        elif role == "user":
            parts = _user_parts(message.content)
            if parts:
                contents.append(_Content(role="user", parts=parts))
        elif role == "assistant":
            parts = [_Part(text=text) for text in _texts(message.content)]
            for call in message.tool_calls or ():
                names[call.id] = call.function.name
                parts.append(_call_part(call))
            if parts:
                contents.append(_Content(role="model", parts=parts))
        else:
            raise InvalidRequest(f"unknown message role '{role}'", param="messages")
    return contents, system


def clean_schema(node: Any) -> Any:
    """A JSON schema without the keys Gemini refuses, and `type: [T, "null"]` made nullable.

    Property names are kept even when they look like refused keys (a property may be called
    `strict`), and `enum`/`default`/`example` values are data, copied as they are.
    """
    if isinstance(node, list):
        return [clean_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in REFUSED_SCHEMA_KEYS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_DATA:
            out[key] = value
        else:
            out[key] = clean_schema(value)
    kind = out.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if t != "null"]
        if len(types) == 1:
            out["type"] = types[0]
            if len(types) < len(kind):
                out["nullable"] = True
    return out


def _parameters(schema: Any) -> Any:
    """Cleaned parameters; None for an object without properties (Gemini refuses those)."""
    if schema is None:
        return None
    cleaned = clean_schema(schema)
    if (
        isinstance(cleaned, dict)
        and str(cleaned.get("type", "object")).lower() == "object"
        and not cleaned.get("properties")
    ):
        return None
    return cleaned


def _tools(request: _ChatRequest) -> tuple[list[_Tools] | None, _ToolConfig | None]:
    declarations = []
    for tool in request.tools or ():
        function = tool.function
        if tool.type != "function" or function is None:
            raise InvalidRequest(f"tools of type '{tool.type}' are not supported", param="tools")
        declarations.append(
            _Declaration(
                name=function.name,
                description=function.description,
                parameters=_parameters(function.parameters),
            )
        )
    if not declarations:
        return None, None
    choice = request.tool_choice
    if choice is None:
        return [_Tools(function_declarations=declarations)], None
    if isinstance(choice, _NamedChoice):
        config = _CallingConfig(mode="ANY", allowed_function_names=[choice.function.name])
    elif choice in _TOOL_CHOICE_MODES:
        config = _CallingConfig(mode=_TOOL_CHOICE_MODES[choice])
    else:
        raise InvalidRequest(f"unknown tool_choice '{choice}'", param="tool_choice")
    return [_Tools(function_declarations=declarations)], _ToolConfig(function_calling_config=config)


def _stops(stop: str | list[str] | None) -> list[str] | None:
    """OpenAI's `stop` (a string or a list) as a list without empty strings; None for none."""
    stops = [stop] if isinstance(stop, str) else stop or []
    return [text for text in stops if text] or None


def _generation_config(request: _ChatRequest) -> _GenerationConfig | None:
    mime_type = schema = None
    response_format = request.response_format
    if response_format is not None and response_format.type in ("json_object", "json_schema"):
        mime_type = "application/json"
        if response_format.json_schema is not None and response_format.json_schema.schema:
            schema = clean_schema(response_format.json_schema.schema)
    config = _GenerationConfig(
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_completion_tokens or request.max_tokens,
        stop_sequences=_stops(request.stop),
        candidate_count=request.n if request.n != 1 else None,
        seed=request.seed,
        response_mime_type=mime_type,
        response_schema=schema,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )
    return None if config == _GenerationConfig() else config


def build_chat_body(payload: Payload) -> bytes:
    """The `generateContent` body for an OpenAI chat request (also the streaming body)."""
    try:
        request = _decode_chat(_encode(payload.fields))
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"invalid chat request: {exc}") from exc
    contents, system = _contents(request.messages)
    if not contents:
        raise InvalidRequest(
            "Gemini needs at least one user or assistant message", param="messages"
        )
    tools, tool_config = _tools(request)
    body = _GenerateRequest(
        contents=contents,
        system_instruction=_Content(parts=system) if system else None,
        tools=tools,
        tool_config=tool_config,
        generation_config=_generation_config(request),
    )
    return _encode(body)


def build_embedding_body(payload: Payload, upstream_model: str) -> tuple[bytes, bool]:
    """The `batchEmbedContents` body, and whether the client wants base64 vectors."""
    try:
        request = _decode_embedding(_encode(payload.fields))
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"invalid embeddings request: {exc}") from exc
    value = request.input
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            "Gemini embeds text only: input must be a string or a list of strings", param="input"
        )
    model = "models/" + upstream_model.removeprefix("models/")
    body = _BatchEmbed(
        requests=[
            _EmbedOne(
                model=model,
                content=_Content(parts=[_Part(text=text)]),
                output_dimensionality=request.dimensions,
            )
            for text in texts
        ]
    )
    return _encode(body), request.encoding_format == "base64"


# --- Gemini answer --------------------------------------------------------------------------


class _InFunctionCall(msgspec.Struct):
    name: str
    args: Any = None
    id: str | None = None


class _InPart(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    function_call: _InFunctionCall | None = None
    thought_signature: str | None = None


class _InContent(msgspec.Struct):
    parts: list[_InPart] = []


class _Candidate(msgspec.Struct, rename="camel"):
    content: _InContent | None = None
    finish_reason: str | None = None
    index: int = 0


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    cached_content_token_count: int | None = None


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class _ErrorDetail(msgspec.Struct):
    message: str = ""
    code: int = 0
    status: str = ""


class _GenerateResponse(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] = []
    usage_metadata: _UsageMetadata | None = None
    prompt_feedback: _PromptFeedback | None = None
    response_id: str | None = None
    error: _ErrorDetail | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorDetail


class _Embedding(msgspec.Struct):
    values: list[float]


class _BatchEmbedResponse(msgspec.Struct):
    embeddings: list[_Embedding]


_decode_response = msgspec.json.Decoder(_GenerateResponse).decode
_decode_error = msgspec.json.Decoder(_ErrorEnvelope | list[_ErrorEnvelope]).decode
_decode_embeddings = msgspec.json.Decoder(_BatchEmbedResponse).decode


# --- OpenAI answer --------------------------------------------------------------------------


class _OutFunction(msgspec.Struct):
    name: str
    arguments: str


class _OutToolCall(msgspec.Struct, kw_only=True):
    id: str
    type: str = "function"
    function: _OutFunction
    extra_content: dict[str, Any] | UnsetType = UNSET


class _OutMessage(msgspec.Struct, kw_only=True):
    role: str = "assistant"
    content: str | None
    tool_calls: list[_OutToolCall] | UnsetType = UNSET


class _Choice(msgspec.Struct, kw_only=True):
    index: int
    message: _OutMessage
    logprobs: None = None
    finish_reason: str


class _Cached(msgspec.Struct):
    cached_tokens: int


class _Reasoning(msgspec.Struct):
    reasoning_tokens: int


class _OutUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: _Cached | UnsetType = UNSET
    completion_tokens_details: _Reasoning | UnsetType = UNSET


class _Completion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[_Choice]
    usage: _OutUsage


class _OutEmbedding(msgspec.Struct, kw_only=True):
    object: str = "embedding"
    index: int
    embedding: list[float] | str


class _EmbedUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class _EmbeddingList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[_OutEmbedding]
    model: str
    usage: _EmbedUsage


def usage_of(meta: _UsageMetadata | None) -> tuple[_OutUsage, Usage]:
    """OpenAI usage (wire and domain) from `usageMetadata`; thinking counts as completion."""
    meta = meta or _UsageMetadata()
    prompt = meta.prompt_token_count
    completion = meta.candidates_token_count + meta.thoughts_token_count
    cached = meta.cached_content_token_count
    wire = _OutUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
    details = None
    if cached is not None:
        wire.prompt_tokens_details = _Cached(cached)
        details = PromptTokensDetails(cached_tokens=cached)
    if meta.thoughts_token_count:
        wire.completion_tokens_details = _Reasoning(meta.thoughts_token_count)
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=details,
    )
    return wire, usage


def finish_reason(reason: str | None, *, called: bool) -> str:
    mapped = FINISH_REASONS.get(reason or "STOP", "stop")
    return "tool_calls" if called and mapped == "stop" else mapped


def _signature_extra(signature: str | None) -> dict[str, Any] | UnsetType:
    """A call's thought signature, where Google's OpenAI compatibility layer carries it.

    Gemini 3 wants the signature back with the call in the next turn; `_call_part` returns it.
    """
    return {"google": {"thought_signature": signature}} if signature else UNSET


class _CallIds:
    """Tool call ids unique within one answer: Gemini's own, else `call_<n>_<name>`."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def take(self, call: _InFunctionCall) -> str:
        n = self._next
        self._next += 1
        return call.id or f"call_{n}_{call.name}"


def _arguments_json(call: _InFunctionCall) -> str:
    return _encode(call.args if call.args is not None else {}).decode()


def _skip(part: _InPart, skipped: Counter[str]) -> bool:
    """Whether a part carries nothing the OpenAI answer can hold (counted by kind)."""
    if part.thought:
        skipped["thought"] += 1
        return True
    if part.text is None and part.function_call is None:
        skipped["part"] += 1
        return True
    return False


def _choice(candidate: _Candidate, ids: _CallIds, skipped: Counter[str]) -> _Choice:
    texts: list[str] = []
    calls: list[_OutToolCall] = []
    for part in candidate.content.parts if candidate.content else ():
        if _skip(part, skipped):
            continue
        call = part.function_call
        if call is not None:
            calls.append(
                _OutToolCall(
                    id=ids.take(call),
                    function=_OutFunction(name=call.name, arguments=_arguments_json(call)),
                    extra_content=_signature_extra(part.thought_signature),
                )
            )
        elif part.text:
            texts.append(part.text)
    text = "".join(texts)
    message = _OutMessage(content=text if text or not calls else None)
    if calls:
        message.tool_calls = calls
    reason = finish_reason(candidate.finish_reason, called=bool(calls))
    return _Choice(index=candidate.index, message=message, finish_reason=reason)


def _chunk_id(response_id: str | None) -> str:
    return f"chatcmpl-{response_id}" if response_id else f"chatcmpl-{uuid.uuid4().hex}"


def translate_response(
    provider: str, body: bytes, model: str, skipped: Counter[str]
) -> tuple[bytes, Usage]:
    """A `generateContent` answer as an OpenAI `chat.completion`, and its usage."""
    try:
        answer = _decode_response(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, f"invalid generateContent answer: {exc}") from exc
    ids = _CallIds()
    choices = [_choice(candidate, ids, skipped) for candidate in answer.candidates]
    if not choices:
        if answer.prompt_feedback is None or not answer.prompt_feedback.block_reason:
            raise UpstreamProtocolError(provider, "an answer without candidates")
        choices = [
            _Choice(index=0, message=_OutMessage(content=""), finish_reason="content_filter")
        ]
    wire_usage, usage = usage_of(answer.usage_metadata)
    completion = _Completion(
        id=_chunk_id(answer.response_id),
        created=int(time.time()),
        model=model,
        choices=choices,
        usage=wire_usage,
    )
    return _encode(completion), usage


def translate_embeddings(
    provider: str, body: bytes, model: str, *, base64_vectors: bool, input_tokens: int
) -> bytes:
    """A `batchEmbedContents` answer as an OpenAI embeddings list.

    Gemini reports no usage: the body carries the gateway's estimate so OpenAI clients find
    the field, while the adapter's `Reply.usage` stays None (settled as an estimate).
    """
    try:
        answer = _decode_embeddings(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, f"invalid batchEmbedContents answer: {exc}") from exc
    data = []
    for index, item in enumerate(answer.embeddings):
        vector: list[float] | str = item.values
        if base64_vectors:
            packed = struct.pack(f"<{len(item.values)}f", *item.values)
            vector = base64.b64encode(packed).decode()
        data.append(_OutEmbedding(index=index, embedding=vector))
    usage = _EmbedUsage(prompt_tokens=input_tokens, total_tokens=input_tokens)
    return _encode(_EmbeddingList(data=data, model=model, usage=usage))


_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_error_body(status: int, body: bytes) -> bytes:
    """Gemini's `{"error": {"code", "message", "status"}}` (or a list of them) as OpenAI's."""
    try:
        decoded = _decode_error(body)
        detail = decoded[0].error if isinstance(decoded, list) else decoded.error
        message = detail.message
    except (msgspec.DecodeError, IndexError):
        message = ""
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    error = {
        "message": message or f"Gemini answered HTTP {status}",
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
    extra_content: dict[str, Any] | UnsetType = UNSET


class _Delta(msgspec.Struct, kw_only=True):
    role: str | UnsetType = UNSET
    content: str | UnsetType = UNSET
    tool_calls: list[_DeltaToolCall] | UnsetType = UNSET


class _ChunkChoice(msgspec.Struct, kw_only=True):
    index: int
    delta: _Delta
    logprobs: None = None
    finish_reason: str | None = None


_ROLE_DELTA = _Delta(role="assistant", content="")


class GeminiStream:
    """State machine: Gemini stream answers (each a `GenerateContentResponse`) → OpenAI chunks.

    `feed` takes one event's JSON and returns complete SSE frames; `close` (at EOF) returns the
    remaining frames with the usage chunk, or raises `StreamBroken` when no candidate finished.
    Gemini sends each function call whole: it becomes a first delta with id, type, name and
    empty arguments, then one with the arguments, as OpenAI streams them.
    """

    def __init__(self, model: str, skipped: Counter[str], created: int | None = None) -> None:
        self._model = model
        self._created = int(time.time()) if created is None else created
        self._skipped = skipped
        self._head = b""
        self._ids = _CallIds()
        self._calls: dict[int, int] = {}  # choice → tool calls so far
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._usage: _UsageMetadata | None = None

    def _frame(self, choices: bytes) -> bytes:
        return b"%s%s}\n\n" % (self._head, choices)

    def _chunk(self, index: int, delta: _Delta, finish: str | None = None) -> bytes:
        choice = _ChunkChoice(index=index, delta=delta, finish_reason=finish)
        return self._frame(b"[%s]" % _encode(choice))

    def _start(self, index: int, out: list[bytes]) -> None:
        if index not in self._started:
            self._started.add(index)
            self._calls[index] = 0
            out.append(self._chunk(index, _ROLE_DELTA))

    def feed(self, data: bytes) -> bytes:
        try:
            event = _decode_response(data)
        except msgspec.DecodeError as exc:
            raise StreamBroken(f"unreadable Gemini stream event: {exc}") from exc
        if event.error is not None:
            raise StreamBroken(f"Gemini stream error: {event.error.message}")
        if not self._head:
            self._head = b'data: {"id":%s,"object":"chat.completion.chunk","created":%d,' % (
                _encode(_chunk_id(event.response_id)),
                self._created,
            ) + b'"model":%s,"choices":' % _encode(self._model)
        out: list[bytes] = []
        for candidate in event.candidates:
            self._candidate(candidate, out)
        feedback = event.prompt_feedback
        if not event.candidates and feedback is not None and feedback.block_reason:
            self._start(0, out)
            self._finished.add(0)
            out.append(self._chunk(0, _Delta(), "content_filter"))
        if event.usage_metadata is not None:
            self._usage = event.usage_metadata
        return b"".join(out)

    def _candidate(self, candidate: _Candidate, out: list[bytes]) -> None:
        index = candidate.index
        self._start(index, out)
        for part in candidate.content.parts if candidate.content else ():
            if _skip(part, self._skipped):
                continue
            call = part.function_call
            if call is None:
                if part.text:
                    out.append(self._chunk(index, _Delta(content=part.text)))
                continue
            position = self._calls[index]
            self._calls[index] = position + 1
            first = _DeltaToolCall(
                index=position,
                id=self._ids.take(call),
                type="function",
                function=_DeltaFunction(name=call.name, arguments=""),
                extra_content=_signature_extra(part.thought_signature),
            )
            rest = _DeltaToolCall(
                index=position, function=_DeltaFunction(arguments=_arguments_json(call))
            )
            out.append(self._chunk(index, _Delta(tool_calls=[first])))
            out.append(self._chunk(index, _Delta(tool_calls=[rest])))
        if candidate.finish_reason and index not in self._finished:
            self._finished.add(index)
            reason = finish_reason(candidate.finish_reason, called=self._calls[index] > 0)
            out.append(self._chunk(index, _Delta(), reason))

    @property
    def usage(self) -> Usage | None:
        return None if self._usage is None else usage_of(self._usage)[1]

    def close(self) -> bytes:
        """The frames that end the stream: finishes still owed, then the usage chunk."""
        if not self._finished:
            raise StreamBroken("Gemini stream ended without a finishReason")
        out = [
            self._chunk(index, _Delta(), "stop") for index in sorted(self._started - self._finished)
        ]
        if self._usage is not None:
            wire, _ = usage_of(self._usage)
            out.append(self._frame(b'[],"usage":%s' % _encode(wire)))
        return b"".join(out)


def sse_data(event: bytes) -> bytes:
    """The data of one SSE event (its `data:` lines joined); b"" for none."""
    lines = [
        line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
    ]
    return b"\n".join(lines)


async def translate_stream(
    pieces: AsyncIterator[bytes], translator: GeminiStream
) -> AsyncIterator[bytes]:
    """Gemini's SSE body (no `[DONE]`: it ends at EOF) as OpenAI chunk frames."""
    splitter = FrameSplitter()
    async for piece in pieces:
        frames = splitter.feed(piece)
        if not frames:
            continue
        out = [
            translator.feed(data) for event in frames.split(b"\n\n") if (data := sse_data(event))
        ]
        joined = b"".join(out)
        if joined:
            yield joined
    # an event without its closing blank line at EOF is incomplete: SSE drops it
    yield translator.close()


# --- the adapter ----------------------------------------------------------------------------


def model_path(model: str, action: str) -> str:
    """`/models/{model}:{action}`, the path under both hostings' base URLs."""
    return f"/models/{quote(model.removeprefix('models/'), safe='')}:{action}"


class GeminiAdapter:
    """`domain.Provider` over Gemini's REST API, direct (`hosting=""`) or on Vertex AI."""

    def __init__(self, name: str, transport: Transport, *, hosting: str = "") -> None:
        if hosting not in HOSTINGS:
            raise ValueError(f"unknown Gemini hosting {hosting!r}: use '' or 'vertex'")
        self._name = name
        self._transport = transport
        self.hosting = hosting
        self.skipped: Counter[str] = Counter()
        """Answer parts the OpenAI shape cannot hold (thoughts, code, media), by kind."""

    @property
    def name(self) -> str:
        return self._name

    def _status(self, status: int, body: bytes) -> UpstreamStatus:
        return UpstreamStatus(
            self._name, status, openai_error_body(status, body), "application/json"
        )

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        if payload.operation is Operation.EMBEDDINGS:
            return await self._embed(payload, upstream_model)
        _check_chat(payload)
        path = model_path(upstream_model, "generateContent")
        status, body, _ = await self._transport.post(path, build_chat_body(payload))
        if status >= 300:
            raise self._status(status, body)
        answer, usage = translate_response(self._name, body, upstream_model, self.skipped)
        return Reply(body=answer, usage=usage)

    async def _embed(self, payload: Payload, upstream_model: str) -> Reply:
        if self.hosting == "vertex":
            raise InvalidRequest("embeddings through Vertex AI are not supported yet")
        body, base64_vectors = build_embedding_body(payload, upstream_model)
        path = model_path(upstream_model, "batchEmbedContents")
        status, answer, _ = await self._transport.post(path, body)
        if status >= 300:
            raise self._status(status, answer)
        translated = translate_embeddings(
            self._name,
            answer,
            upstream_model,
            base64_vectors=base64_vectors,
            input_tokens=payload.input_tokens,
        )
        return Reply(body=translated, usage=None)

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: Payload, upstream_model: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        _check_chat(payload)
        body = build_chat_body(payload)
        path = model_path(upstream_model, "streamGenerateContent") + "?alt=sse"
        async with contextlib.AsyncExitStack() as stack:
            with self._translated_status():
                pieces = await stack.enter_async_context(self._transport.post_stream(path, body))
            yield translate_stream(pieces, GeminiStream(upstream_model, self.skipped))

    @contextlib.contextmanager
    def _translated_status(self) -> Iterator[None]:
        try:
            yield
        except UpstreamStatus as exc:
            raise self._status(exc.upstream_status, exc.body) from exc

    async def aclose(self) -> None:
        await self._transport.aclose()


def _check_chat(payload: Payload) -> None:
    if payload.operation is not Operation.CHAT:
        raise InvalidRequest(
            "Gemini serves chat completions and embeddings; legacy completions are not "
            "supported: use /v1/chat/completions"
        )
