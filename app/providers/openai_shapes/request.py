"""The OpenAI request, as far as the translating adapters read it; decoded, never forwarded.

Each Struct holds the fields some adapter reads, so one decode validates what any of them
decides on. Adapters narrow a field where their vendor needs more (Anthropic requires a tool
call's `id`; Gemini reads `extra_content`) by subclassing, not by copying.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from app.domain import InvalidRequest

T = TypeVar("T")

encode = msgspec.json.encode
decode_any = msgspec.json.Decoder().decode


class ImageURL(msgspec.Struct):
    url: str
    detail: str | None = None


class ContentPart(msgspec.Struct):
    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: ImageURL | str | None = None


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct):
    function: FunctionCall
    id: str = ""
    type: str = "function"


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: Sequence[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: msgspec.Raw = msgspec.Raw()
    """Raw, so Anthropic forwards the schema byte for byte; `raw_value` decodes it for others."""


class Tool(msgspec.Struct):
    type: str = "function"
    function: FunctionDef | None = None


class NamedFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    function: NamedFunction
    type: str = "function"


class JsonSchema(msgspec.Struct):
    name: str = ""
    schema: Any = None


class ResponseFormat(msgspec.Struct):
    type: str
    json_schema: JsonSchema | None = None


class Sampling(msgspec.Struct):
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
    response_format: ResponseFormat | None = None


class ChatRequest(Sampling):
    messages: Sequence[ChatMessage] = []
    tools: list[Tool] | None = None
    tool_choice: str | NamedToolChoice | None = None


class EmbeddingRequest(msgspec.Struct):
    input: Any
    dimensions: int | None = None
    encoding_format: str | None = None


def decode_fields(fields: Mapping[str, msgspec.Raw], decode: Callable[[bytes], T], what: str) -> T:
    """The client's body (decoded one level by the server) as a whole request Struct.

    Raises `InvalidRequest` ("invalid <what>: ...") when it does not fit.
    """
    try:
        return decode(encode(fields))
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"invalid {what}: {exc}") from exc


def raw_value(raw: msgspec.Raw) -> Any:
    """The JSON value in `raw`; None when the field was absent."""
    return decode_any(raw) if len(raw) else None


def call_arguments(text: str) -> dict[str, Any]:
    """A tool call's `arguments` string as the JSON object it must hold (empty: `{}`)."""
    try:
        value = decode_any(text or "{}")
    except msgspec.DecodeError as exc:
        raise InvalidRequest("tool call arguments must be JSON", param="messages") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param="messages")
    return value


def stop_list(stop: str | list[str] | None) -> list[str] | None:
    """OpenAI's `stop` (a string or a list) as a list without empty strings; None for none."""
    stops = [stop] if isinstance(stop, str) else stop or []
    return [text for text in stops if text] or None


def json_output(response_format: ResponseFormat | None) -> tuple[bool, Any]:
    """Whether the client asked for JSON output, and the schema it gave (None for none)."""
    if response_format is None or response_format.type not in ("json_object", "json_schema"):
        return False, None
    schema = response_format.json_schema
    return True, schema.schema if schema is not None and schema.schema else None


def embedding_texts(value: Any, vendor: str) -> list[str]:
    """An embeddings `input` as its list of texts; `InvalidRequest` for tokens or other shapes."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest(
            f"{vendor} embeds text only: input must be a string or a list of strings",
            param="input",
        )
    return texts
