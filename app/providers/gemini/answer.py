"""Gemini answers → OpenAI's: completions, embeddings, usage and error bodies. Pure.

Tool call ids are unique within an answer (Gemini's own, else made up); a call's thought
signature rides in `extra_content`, where Google's OpenAI compatibility layer puts it.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from app.domain import UpstreamProtocolError, Usage
from app.providers.gemini.wire import (
    Candidate,
    InFunctionCall,
    InPart,
    UsageMetadata,
    decode_embeddings,
    decode_error,
    decode_predictions,
    decode_response,
)
from app.providers.openai_shapes.answer import (
    Choice,
    Completion,
    FunctionOut,
    MessageOut,
    ToolCallOut,
    UsageOut,
    embedding_list,
    encode,
    status_error_body,
    usage_pair,
)

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


def usage_of(meta: UsageMetadata | None) -> tuple[UsageOut, Usage]:
    """OpenAI usage (wire and domain) from `usageMetadata`; thinking counts as completion."""
    meta = meta or UsageMetadata()
    return usage_pair(
        meta.prompt_token_count,
        meta.candidates_token_count + meta.thoughts_token_count,
        cached=meta.cached_content_token_count,
        reasoning=meta.thoughts_token_count,
    )


def finish_reason(reason: str | None, *, called: bool) -> str:
    mapped = FINISH_REASONS.get(reason or "STOP", "stop")
    return "tool_calls" if called and mapped == "stop" else mapped


def signature_extra(signature: str | None) -> dict[str, Any] | UnsetType:
    """A call's thought signature, where Google's OpenAI compatibility layer carries it.

    Gemini 3 wants the signature back with the call in the next turn; `_call_part` returns it.
    """
    return {"google": {"thought_signature": signature}} if signature else UNSET


class CallIds:
    """Tool call ids unique within one answer: Gemini's own, else `call_<n>_<name>`."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def take(self, call: InFunctionCall) -> str:
        n = self._next
        self._next += 1
        return call.id or f"call_{n}_{call.name}"


def arguments_json(call: InFunctionCall) -> str:
    return encode(call.args if call.args is not None else {}).decode()


def skip_part(part: InPart, skipped: Counter[str]) -> bool:
    """Whether a part carries nothing the OpenAI answer can hold (counted by kind)."""
    if part.thought:
        skipped["thought"] += 1
        return True
    if part.text is None and part.function_call is None:
        skipped["part"] += 1
        return True
    return False


def _choice(candidate: Candidate, ids: CallIds, skipped: Counter[str]) -> Choice:
    texts: list[str] = []
    calls: list[ToolCallOut] = []
    for part in candidate.content.parts if candidate.content else ():
        if skip_part(part, skipped):
            continue
        call = part.function_call
        if call is not None:
            calls.append(
                ToolCallOut(
                    id=ids.take(call),
                    function=FunctionOut(name=call.name, arguments=arguments_json(call)),
                    extra_content=signature_extra(part.thought_signature),
                )
            )
        elif part.text:
            texts.append(part.text)
    text = "".join(texts)
    message = MessageOut(content=text if text or not calls else None)
    if calls:
        message.tool_calls = calls
    reason = finish_reason(candidate.finish_reason, called=bool(calls))
    return Choice(index=candidate.index, message=message, finish_reason=reason)


def chunk_id(response_id: str | None) -> str:
    return f"chatcmpl-{response_id}" if response_id else f"chatcmpl-{uuid.uuid4().hex}"


def translate_response(
    provider: str, body: bytes, model: str, skipped: Counter[str]
) -> tuple[bytes, Usage]:
    """A `generateContent` answer as an OpenAI `chat.completion`, and its usage."""
    try:
        answer = decode_response(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, f"invalid generateContent answer: {exc}") from exc
    ids = CallIds()
    choices = [_choice(candidate, ids, skipped) for candidate in answer.candidates]
    if not choices:
        if answer.prompt_feedback is None or not answer.prompt_feedback.block_reason:
            raise UpstreamProtocolError(provider, "an answer without candidates")
        choices = [Choice(index=0, message=MessageOut(content=""), finish_reason="content_filter")]
    wire_usage, usage = usage_of(answer.usage_metadata)
    completion = Completion(
        id=chunk_id(answer.response_id),
        created=int(time.time()),
        model=model,
        choices=choices,
        usage=wire_usage,
    )
    return encode(completion), usage


def translate_embeddings(
    provider: str, body: bytes, model: str, *, base64_vectors: bool, input_tokens: int
) -> bytes:
    """A `batchEmbedContents` answer as an OpenAI embeddings list.

    Gemini reports no usage: the body carries the gateway's estimate so OpenAI clients find
    the field, while the adapter's `Reply.usage` stays None (settled as an estimate).
    """
    try:
        answer = decode_embeddings(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, f"invalid batchEmbedContents answer: {exc}") from exc
    vectors = [item.values for item in answer.embeddings]
    return embedding_list(vectors, model, input_tokens, base64_vectors=base64_vectors)


def translate_predictions(
    provider: str, body: bytes, model: str, *, base64_vectors: bool
) -> tuple[bytes, Usage]:
    """A Vertex AI `:predict` answer as an OpenAI embeddings list, and its usage.

    Unlike `batchEmbedContents`, Vertex counts each input's tokens (`statistics.token_count`),
    so these embeddings are billed on the provider's numbers.
    """
    try:
        answer = decode_predictions(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, f"invalid predict answer: {exc}") from exc
    vectors = [p.embeddings.values for p in answer.predictions]
    tokens = sum(p.embeddings.statistics.token_count for p in answer.predictions)
    listing = embedding_list(vectors, model, tokens, base64_vectors=base64_vectors)
    return listing, Usage(prompt_tokens=tokens, total_tokens=tokens)


def openai_error_body(status: int, body: bytes) -> bytes:
    """Gemini's `{"error": {"code", "message", "status"}}` (or a list of them) as OpenAI's."""
    try:
        decoded = decode_error(body)
        detail = decoded[0].error if isinstance(decoded, list) else decoded.error
        message = detail.message
    except (msgspec.DecodeError, IndexError):
        message = ""
    return status_error_body("Gemini", status, message)
