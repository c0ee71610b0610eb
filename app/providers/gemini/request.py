"""OpenAI chat and embeddings requests → Gemini `generateContent` / `batchEmbedContents` bodies.

Pure. Fixed from the Go original: every system message is kept (not only the last); tool
results name the *function* (found by `tool_call_id`), not the call id; assistant tool calls,
images, `n`, seed, penalties and JSON output are translated instead of dropped; schemas lose
the keys Gemini refuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec

from app.domain import InvalidRequest, Payload
from app.providers.gemini.wire import (
    BatchEmbed,
    Blob,
    CallingConfig,
    Content,
    Declaration,
    EmbedOne,
    FileData,
    GenerateRequest,
    GenerationConfig,
    OutFunctionCall,
    OutFunctionResponse,
    Part,
    Predict,
    PredictInstance,
    PredictParameters,
    ToolConfig,
    Tools,
)
from app.providers.openai_shapes.request import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    EmbeddingRequest,
    ImageURL,
    NamedToolChoice,
    ToolCall,
    call_arguments,
    decode_any,
    decode_fields,
    embedding_texts,
    encode,
    json_output,
    raw_value,
    stop_list,
)

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


class _GoogleExtra(msgspec.Struct):
    thought_signature: str | None = None


class _ExtraContent(msgspec.Struct):
    google: _GoogleExtra | None = None


class _ToolCall(ToolCall):
    extra_content: _ExtraContent | None = None
    """Where Google's OpenAI layer carries a call's thought signature (`signature_extra`)."""


class _Message(ChatMessage):
    tool_calls: Sequence[_ToolCall] | None = None


class _ChatRequest(ChatRequest, kw_only=True):
    messages: Sequence[_Message]  # required here: Gemini needs a turn to answer


_decode_chat = msgspec.json.Decoder(_ChatRequest).decode
_decode_embedding = msgspec.json.Decoder(EmbeddingRequest).decode


def _texts(content: str | list[ContentPart] | None) -> list[str]:
    """The non-empty text pieces of an OpenAI message content (non-text parts are the caller's).

    Gemini refuses an empty text part, and clients send `"content": ""` beside tool calls.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    return [part.text for part in content if part.type == "text" and part.text]


def _image_part(image: ImageURL | str | None) -> Part:
    url = image.url if isinstance(image, ImageURL) else image or ""
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64" or not data:
            raise InvalidRequest("image data URLs must be base64: data:<type>;base64,<data>")
        return Part(inline_data=Blob(mime_type=media_type or "image/jpeg", data=data))
    if url.startswith(("http://", "https://")):
        extension = urlsplit(url).path.rpartition(".")[2].lower()
        media_type = IMAGE_TYPES.get(extension, "image/jpeg")
        return Part(file_data=FileData(mime_type=media_type, file_uri=url))
    raise InvalidRequest("image_url must be an http(s) URL or a base64 data URL", param="messages")


def _user_parts(content: str | list[ContentPart] | None) -> list[Part]:
    if not isinstance(content, list):
        return [Part(text=content)] if content else []
    parts = []
    for part in content:
        if part.type == "text":
            if part.text:
                parts.append(Part(text=part.text))
        elif part.type == "image_url":
            parts.append(_image_part(part.image_url))
        else:
            raise InvalidRequest(
                f"content parts of type '{part.type}' are not supported by Gemini here",
                param="messages",
            )
    return parts


def _call_part(call: _ToolCall) -> Part:
    extra = call.extra_content
    signature = extra.google.thought_signature if extra and extra.google else None
    return Part(
        function_call=OutFunctionCall(
            name=call.function.name,
            args=call_arguments(call.function.arguments),
            id=call.id or None,
        ),
        thought_signature=signature,
    )


def _tool_result(message: _Message, names: dict[str, str]) -> Part:
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
            result = decode_any(text)
    return Part(
        function_response=OutFunctionResponse(
            name=name, response={"content": result}, id=call_id or None
        )
    )


def _contents(messages: Sequence[_Message]) -> tuple[list[Content], list[Part]]:
    """OpenAI messages → Gemini `contents` and the `systemInstruction` parts."""
    system: list[Part] = []
    contents: list[Content] = []
    names: dict[str, str] = {}  # tool_call_id → function name; later calls win
    results: Content | None = None  # the user content collecting consecutive tool results
    for message in messages:
        role = message.role
        if role in ("tool", "function"):
            part = _tool_result(message, names)
            if results is None:
                results = Content(role="user", parts=[])
                contents.append(results)
            results.parts.append(part)
            continue
        results = None
        if role in ("system", "developer"):
            system.extend(Part(text=text) for text in _texts(message.content))
        elif role == "user":
            parts = _user_parts(message.content)
            if parts:
                contents.append(Content(role="user", parts=parts))
        elif role == "assistant":
            parts = [Part(text=text) for text in _texts(message.content)]
            for call in message.tool_calls or ():
                names[call.id] = call.function.name
                parts.append(_call_part(call))
            if parts:
                contents.append(Content(role="model", parts=parts))
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


def _tools(request: _ChatRequest) -> tuple[list[Tools] | None, ToolConfig | None]:
    declarations = []
    for tool in request.tools or ():
        function = tool.function
        if tool.type != "function" or function is None:
            raise InvalidRequest(f"tools of type '{tool.type}' are not supported", param="tools")
        declarations.append(
            Declaration(
                name=function.name,
                description=function.description,
                parameters=_parameters(raw_value(function.parameters)),
            )
        )
    if not declarations:
        return None, None
    choice = request.tool_choice
    if choice is None:
        return [Tools(function_declarations=declarations)], None
    if isinstance(choice, NamedToolChoice):
        config = CallingConfig(mode="ANY", allowed_function_names=[choice.function.name])
    elif choice in _TOOL_CHOICE_MODES:
        config = CallingConfig(mode=_TOOL_CHOICE_MODES[choice])
    else:
        raise InvalidRequest(f"unknown tool_choice '{choice}'", param="tool_choice")
    return [Tools(function_declarations=declarations)], ToolConfig(function_calling_config=config)


def _generation_config(request: _ChatRequest) -> GenerationConfig | None:
    wants_json, schema = json_output(request.response_format)
    config = GenerationConfig(
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_completion_tokens or request.max_tokens,
        stop_sequences=stop_list(request.stop),
        candidate_count=request.n if request.n != 1 else None,
        seed=request.seed,
        response_mime_type="application/json" if wants_json else None,
        response_schema=None if schema is None else clean_schema(schema),
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )
    return None if config == GenerationConfig() else config


def build_chat_body(payload: Payload) -> bytes:
    """The `generateContent` body for an OpenAI chat request (also the streaming body)."""
    request = decode_fields(payload.fields, _decode_chat, "chat request")
    contents, system = _contents(request.messages)
    if not contents:
        raise InvalidRequest(
            "Gemini needs at least one user or assistant message", param="messages"
        )
    tools, tool_config = _tools(request)
    body = GenerateRequest(
        contents=contents,
        system_instruction=Content(parts=system) if system else None,
        tools=tools,
        tool_config=tool_config,
        generation_config=_generation_config(request),
    )
    return encode(body)


def build_embedding_body(payload: Payload, upstream_model: str) -> tuple[bytes, bool]:
    """The `batchEmbedContents` body, and whether the client wants base64 vectors."""
    request = decode_fields(payload.fields, _decode_embedding, "embeddings request")
    texts = embedding_texts(request.input, "Gemini")
    model = "models/" + upstream_model.removeprefix("models/")
    body = BatchEmbed(
        requests=[
            EmbedOne(
                model=model,
                content=Content(parts=[Part(text=text)]),
                output_dimensionality=request.dimensions,
            )
            for text in texts
        ]
    )
    return encode(body), request.encoding_format == "base64"


def build_predict_body(payload: Payload) -> tuple[bytes, bool]:
    """Vertex AI's `:predict` body for text-embedding models, and whether base64 is wanted."""
    request = decode_fields(payload.fields, _decode_embedding, "embeddings request")
    texts = embedding_texts(request.input, "Vertex AI")
    parameters = (
        PredictParameters(output_dimensionality=request.dimensions)
        if request.dimensions is not None
        else None
    )
    body = Predict(
        instances=[PredictInstance(content=text) for text in texts], parameters=parameters
    )
    return encode(body), request.encoding_format == "base64"
