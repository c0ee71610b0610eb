"""The OpenAI answers the translating adapters write: completions, embeddings, usage, errors.

Encode-only Structs: `UNSET` fields are left out, so one shape serves every vendor (Gemini's
`extra_content`, Anthropic's `refusal: null` appear only where set).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

from app.domain import PromptTokensDetails, Usage

encode = msgspec.json.encode


class FunctionOut(msgspec.Struct):
    name: str
    arguments: str


class ToolCallOut(msgspec.Struct, kw_only=True):
    id: str
    type: str = "function"
    function: FunctionOut
    extra_content: dict[str, Any] | UnsetType = UNSET


class MessageOut(msgspec.Struct, kw_only=True):
    role: str = "assistant"
    content: str | None
    refusal: UnsetType | None = UNSET
    tool_calls: list[ToolCallOut] | UnsetType = UNSET


class Choice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: MessageOut
    logprobs: None = None
    finish_reason: str


class TextChoice(msgspec.Struct, kw_only=True):
    """A legacy `text_completion` choice (and chunk choice)."""

    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: str | None


class CachedTokens(msgspec.Struct):
    cached_tokens: int


class ReasoningTokens(msgspec.Struct):
    reasoning_tokens: int


class UsageOut(msgspec.Struct, kw_only=True):
    """OpenAI's `usage` as written; unlike `domain.Usage`, absent details are left out."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: CachedTokens | UnsetType = UNSET
    completion_tokens_details: ReasoningTokens | UnsetType = UNSET


class Completion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: Sequence[Choice | TextChoice]
    usage: UsageOut | Usage


class EmbeddingOut(msgspec.Struct, kw_only=True):
    object: str = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[EmbeddingOut]
    model: str
    usage: EmbeddingUsage


def usage_pair(
    prompt: int, completion: int, *, cached: int | None = None, reasoning: int = 0
) -> tuple[UsageOut, Usage]:
    """The usage as written to the client and as settled; details only where given."""
    total = prompt + completion
    wire = UsageOut(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)
    details = None
    if cached is not None:
        wire.prompt_tokens_details = CachedTokens(cached)
        details = PromptTokensDetails(cached_tokens=cached)
    if reasoning:
        wire.completion_tokens_details = ReasoningTokens(reasoning)
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        prompt_tokens_details=details,
    )
    return wire, usage


def embedding_list(
    vectors: Sequence[list[float]], model: str, tokens: int, *, base64_vectors: bool
) -> bytes:
    """An OpenAI embeddings list; `base64_vectors` packs each as little-endian float32."""
    data = []
    for index, values in enumerate(vectors):
        vector: list[float] | str = values
        if base64_vectors:
            vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append(EmbeddingOut(index=index, embedding=vector))
    usage = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    return encode(EmbeddingList(data=data, model=model, usage=usage))


class _Error(msgspec.Struct):
    message: str
    type: str
    param: None = None
    code: None = None


class _ErrorBody(msgspec.Struct):
    error: _Error


_ERROR_TYPES: Final = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


def error_body(message: str, kind: str) -> bytes:
    """OpenAI's error body: `{"error": {"message", "type", "param": null, "code": null}}`."""
    return encode(_ErrorBody(error=_Error(message=message, type=kind)))


def status_error_body(vendor: str, status: int, message: str) -> bytes:
    """The error body for an upstream status whose body named no error type of its own."""
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return error_body(message or f"{vendor} answered HTTP {status}", kind)
