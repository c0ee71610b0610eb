"""OpenAI requests → Ollama `/api/chat`, `/api/generate` and `/api/embed` bodies. Pure.

Ollama streams when `stream` is absent, so every body states it. Deliberate approximations,
since Ollama has no equivalent: `tool_choice: "required"` sends the tools as they are, a named
`tool_choice` sends only that tool, `"none"` sends none; `n > 1` and token-array inputs are
refused (400).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from app.domain import InvalidRequest, Payload
from app.providers.openai_shapes.request import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    EmbeddingRequest,
    ImageURL,
    NamedToolChoice,
    Sampling,
    call_arguments,
    decode_fields,
    embedding_texts,
    encode,
    json_output,
    raw_value,
    stop_list,
)


class _CompletionRequest(Sampling):
    prompt: Any = None
    suffix: str | None = None


_decode_chat = msgspec.json.Decoder(ChatRequest).decode
_decode_completion = msgspec.json.Decoder(_CompletionRequest).decode
_decode_embedding = msgspec.json.Decoder(EmbeddingRequest).decode


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


def _text(content: str | list[ContentPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "\n".join(part.text for part in content if part.type == "text" and part.text)


def _images(content: str | list[ContentPart] | None) -> list[str] | None:
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
        url = image.url if isinstance(image, ImageURL) else image or ""
        header, comma, data = url.partition(",")
        if not url.startswith("data:") or not comma or not header.endswith(";base64"):
            raise InvalidRequest("Ollama needs images inline as data URLs", param="messages")
        images.append(data)
    return images or None


def _messages(messages: Sequence[ChatMessage]) -> list[_OutMessage]:
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
                arguments = call_arguments(call.function.arguments)
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


def _tools(request: ChatRequest) -> list[_OutTool] | None:
    choice = request.tool_choice
    if choice == "none":
        return None
    tools = []
    for tool in request.tools or ():
        function = tool.function
        if tool.type != "function" or function is None:
            raise InvalidRequest(f"tools of type '{tool.type}' are not supported", param="tools")
        if isinstance(choice, NamedToolChoice) and function.name != choice.function.name:
            continue
        out = _OutFunction(
            name=function.name,
            description=function.description,
            parameters=raw_value(function.parameters),
        )
        tools.append(_OutTool(type="function", function=out))
    return tools or None


def _options(request: Sampling) -> _Options | None:
    if request.n is not None and request.n > 1:
        raise InvalidRequest("Ollama answers one choice: n must be 1", param="n")
    options = _Options(
        temperature=request.temperature,
        top_p=request.top_p,
        num_predict=request.max_completion_tokens or request.max_tokens,
        stop=stop_list(request.stop),
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )
    return None if options == _Options() else options


def _format(request: Sampling) -> Any:
    """Ollama's `format`: a JSON schema, `"json"` for JSON without one, None for text."""
    wants_json, schema = json_output(request.response_format)
    if not wants_json:
        return None
    return "json" if schema is None else schema


def build_chat_body(payload: Payload, upstream_model: str) -> bytes:
    request = decode_fields(payload.fields, _decode_chat, "request")
    body = _ChatBody(
        model=upstream_model,
        messages=_messages(request.messages),
        stream=payload.stream,
        tools=_tools(request),
        options=_options(request),
        format=_format(request),
    )
    return encode(body)


def build_generate_body(payload: Payload, upstream_model: str) -> bytes:
    request = decode_fields(payload.fields, _decode_completion, "request")
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
    return encode(body)


def build_embed_body(payload: Payload, upstream_model: str) -> tuple[bytes, bool]:
    """The `/api/embed` body, and whether the client wants base64 vectors."""
    request = decode_fields(payload.fields, _decode_embedding, "request")
    texts = embedding_texts(request.input, "Ollama")
    body = _EmbedBody(model=upstream_model, input=texts, dimensions=request.dimensions)
    return encode(body), request.encoding_format == "base64"
