"""Anthropic answers → OpenAI's: the message, its usage, and error bodies. Pure.

`Tally` also serves the stream and the native `/v1/messages` meter: Anthropic reports usage in
pieces (at `message_start`, then in `message_delta`), and every piece replaces the last.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Final

import msgspec

from app.domain import PromptTokensDetails, Usage
from app.providers.openai_shapes.answer import (
    Choice,
    Completion,
    FunctionOut,
    MessageOut,
    ToolCallOut,
    error_body,
)
from app.providers.openai_shapes.request import decode_any

_FINISH_REASONS: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_MAX_ERROR_MESSAGE: Final = 1024


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI's `finish_reason` for an Anthropic `stop_reason` (unknown ones end as `stop`)."""
    return _FINISH_REASONS.get(stop_reason or "", "stop")


class AnthropicUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Tally:
    """Usage as Anthropic reports it, piece by piece; every number given replaces the last."""

    __slots__ = ("cache_creation", "cache_read", "input", "output")

    def __init__(self) -> None:
        self.input = 0
        self.output = 0
        self.cache_creation = 0
        self.cache_read: int | None = None

    def update(self, usage: AnthropicUsage | None) -> None:
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
    usage: AnthropicUsage | None = None


_decode_message = msgspec.json.Decoder(_Message).decode
encode = msgspec.json.Encoder().encode


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
    calls: list[ToolCallOut] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            arguments = encode(decode_any(block.input)) if block.input else b"{}"
            function = FunctionOut(name=block.name, arguments=arguments.decode())
            calls.append(ToolCallOut(id=block.id, function=function))
        elif skipped is not None:
            skipped[f"block:{block.type}"] += 1
    tally = Tally()
    tally.update(message.usage)
    usage = tally.usage()
    out = MessageOut(content="".join(texts) if texts or not calls else None, refusal=None)
    if calls:
        out.tool_calls = calls
    completion = Completion(
        id=message.id,
        created=int(time.time()) if created is None else created,
        model=message.model or model,
        choices=[Choice(message=out, finish_reason=finish_reason(message.stop_reason))],
        usage=usage,
    )
    return encode(completion), usage


class VendorError(msgspec.Struct):
    type: str | None = None
    message: str | None = None
    status: str | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: VendorError | None = None
    message: str | None = None
    Message: str | None = None  # AWS spells it so in some errors


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
    error = envelope.error or VendorError()
    message = error.message or envelope.message or envelope.Message
    kind = error.type or _TYPES_BY_STATUS.get(status, "api_error")
    text = message[:_MAX_ERROR_MESSAGE] if message else f"upstream answered {status}"
    return error_body(text, kind)
