"""Decode and check client bodies once, at the edge, into a `Payload`.

Two decodes of the same bytes: a typed view that checks the fields the gateway relies on (so a
wrong type is a 400 naming the field), and a one-level `dict[str, Raw]` that keeps every field
as the client sent it for the upstream. Both are C-speed: about 3 µs for a 200-byte chat body.
"""

from __future__ import annotations

import re

import msgspec

from app.domain import CacheRequest, InvalidRequest, Operation, Payload

_Raw = msgspec.Raw


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[dict[str, _Raw]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, _Raw]] | None = None
    tool_call_id: str | None = None


class ChatRequest(msgspec.Struct):
    model: str
    messages: list[ChatMessage]
    stream: bool | None = None
    stream_options: dict[str, _Raw] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[dict[str, _Raw]] | None = None
    user: str | None = None


class CompletionRequest(msgspec.Struct):
    model: str
    prompt: str | list[str | int | list[int]]
    stream: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    n: int | None = None


class EmbeddingRequest(msgspec.Struct):
    model: str
    input: str | list[str | int | list[int]]
    encoding_format: str | None = None
    dimensions: int | None = None
    user: str | None = None


_VIEWS: dict[
    Operation, msgspec.json.Decoder[ChatRequest | CompletionRequest | EmbeddingRequest]
] = {
    Operation.CHAT: msgspec.json.Decoder(ChatRequest),
    Operation.COMPLETIONS: msgspec.json.Decoder(CompletionRequest),
    Operation.EMBEDDINGS: msgspec.json.Decoder(EmbeddingRequest),
}
_decode_fields = msgspec.json.Decoder(dict[str, _Raw]).decode
_INPUT_FIELD = {
    Operation.CHAT: "messages",
    Operation.COMPLETIONS: "prompt",
    Operation.EMBEDDINGS: "input",
}
CACHE_TEMPERATURE = 0.3
"""Gandalf caches a chat request only with a seed or a temperature at most this."""
NOT_FINGERPRINTED = frozenset({"stream", "stream_options", "user"})
"""Fields that never change the answer. Every other field is part of the cache key, known to
the gateway or not (Gandalf hashed a fixed list, so two requests differing in, say,
`logprobs` shared an answer)."""
_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def decode_payload(operation: Operation, body: bytes) -> Payload:
    """Check a client body and return it as a `Payload`.

    Raises:
        InvalidRequest: the body is not JSON, not an object, misses a required field or has a
            field of the wrong type; `param` names the field.
    """
    try:
        view = _VIEWS[operation].decode(body)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from exc
    if operation is Operation.CHAT and not view.messages:  # type: ignore[union-attr]
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    fields = _decode_fields(body)
    return Payload(
        operation=operation,
        fields=fields,
        model=view.model,
        stream=bool(getattr(view, "stream", False)),
        input_tokens=_estimate(operation, view, fields),
        max_output_tokens=_max_output(view),
        cache=_cacheable(view, fields) if isinstance(view, ChatRequest) else None,
    )


def _max_output(view: ChatRequest | CompletionRequest | EmbeddingRequest) -> int | None:
    """`max_completion_tokens`, else `max_tokens`, else None (embeddings answer no tokens)."""
    if isinstance(view, EmbeddingRequest):
        return None
    newer = getattr(view, "max_completion_tokens", None)
    return newer if newer is not None else view.max_tokens


def _estimate(
    operation: Operation,
    view: ChatRequest | CompletionRequest | EmbeddingRequest,
    fields: dict[str, _Raw],
) -> int:
    """Prompt tokens, about four bytes of JSON a token (Gandalf's rule), never below 1.

    Cheap on purpose: it runs on the event loop for every request and only sizes admission;
    settlement uses the upstream's own count.
    """
    raw = fields.get(_INPUT_FIELD[operation])
    size = len(raw) if raw is not None else 0
    overhead = 4 * len(view.messages) + 3 if isinstance(view, ChatRequest) else 0
    return max(1, -(-size // 4) + overhead)


def _cacheable(view: ChatRequest, fields: dict[str, _Raw]) -> CacheRequest | None:
    if view.n is not None and view.n > 1:
        return None
    deterministic = view.seed is not None or (
        view.temperature is not None and view.temperature <= CACHE_TEMPERATURE
    )
    if not deterministic:
        return None
    return CacheRequest(
        fingerprint_fields=tuple(
            (name, bytes(value))
            for name, value in sorted(fields.items())
            if name not in NOT_FINGERPRINTED
        )
    )


def _invalid(detail: str) -> InvalidRequest:
    missing = _MISSING.search(detail)
    if missing:
        field = missing.group(1)
        at = _PATH.search(detail)
        param = f"{at.group(1)}.{field}" if at and at.group(1) else field
        return InvalidRequest(f"missing required parameter: '{param}'", param=param)
    at = _PATH.search(detail)
    param = at.group(1) if at else None
    reason = detail.split(" - at ", 1)[0]
    where = f" for '{param}'" if param else ""
    return InvalidRequest(f"invalid type{where}: {reason}", param=param)
