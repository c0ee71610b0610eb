"""OpenAI chat request → Anthropic Messages request. Pure: no I/O, no settings.

The request is read field by field from the body decoded one level, so a bad field names
itself in the 400 (`Invalid value for 'tools': ...`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Final

import msgspec
from msgspec import UNSET, UnsetType

from app.domain import InvalidRequest
from app.providers.openai_shapes.request import (
    ChatMessage,
    ContentPart,
    NamedToolChoice,
    Tool,
    ToolCall,
)

DEFAULT_MAX_TOKENS: Final = 4096
"""`max_tokens` when the client sets none: Anthropic requires it, OpenAI does not. 4096 is the
Go original's default and fits every Claude model (Claude 3 Haiku's output ceiling is 4096)."""

_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool"})


class _ToolCall(ToolCall):
    id: str  # required: a tool_use block without its id cannot be answered


class _ChatMessage(ChatMessage):
    tool_calls: Sequence[_ToolCall] | None = None


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
    "tools": msgspec.json.Decoder(list[Tool] | None).decode,
    "tool_choice": msgspec.json.Decoder(str | NamedToolChoice | None).decode,
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


def _tool(tool: Tool, i: int) -> AnthropicTool:
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
    if isinstance(choice, NamedToolChoice):
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
    content: str | list[ContentPart] | None, param: str, *, images: bool
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
