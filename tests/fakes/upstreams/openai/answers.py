"""The answers' bytes, pre-encoded per `chunks` so a benchmark spends its time in the gateway."""

from __future__ import annotations

import base64
import functools
import struct
from typing import Any, Final

from tests.fakes.upstreams.openai.wire import (
    _encode,
)

# --- precomputed answer pieces --------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _tokens(chunks: int) -> tuple[str, ...]:
    return tuple(f"tok{i} " for i in range(chunks))


@functools.lru_cache(maxsize=64)
def _text(chunks: int) -> bytes:
    """The whole answer as a JSON string."""
    return _encode("".join(_tokens(chunks)))


@functools.lru_cache(maxsize=64)
def _chat_choices(chunks: int) -> tuple[bytes, ...]:
    """The `choices` entry of every chat chunk frame: role, one per token, finish."""

    def choice(delta: dict[str, str], finish: str | None = None) -> bytes:
        return _encode([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    first = choice({"role": "assistant", "content": ""})
    return (first, *(choice({"content": t}) for t in _tokens(chunks)), choice({}, "stop"))


@functools.lru_cache(maxsize=64)
def _completion_choices(chunks: int) -> tuple[bytes, ...]:
    """The `choices` entry of every legacy completion frame: one per token, then finish."""

    def choice(text: str, finish: str | None = None) -> bytes:
        return _encode([{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}])

    return (*(choice(t) for t in _tokens(chunks)), choice("", "stop"))


def _usage(prompt: int, completion: int) -> bytes:
    return b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (
        prompt,
        completion,
        prompt + completion,
    )


_VECTOR: Final = [0.125 * (i + 1) for i in range(8)]
_VECTOR_JSON: Final = _encode(_VECTOR)
_VECTOR_BASE64: Final = _encode(base64.b64encode(struct.pack("<8f", *_VECTOR)).decode())
_MODELS: Final = _encode(
    {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
            for m in ("gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small")
        ],
    }
)
_DONE: Final = b"data: [DONE]\n\n"


def _frames(
    head: bytes, choices: tuple[bytes, ...], body: dict[str, Any], usage: bytes
) -> list[bytes]:
    """The SSE frames of a stream: `head` + each choice, then the usage frame if asked for."""
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    tail = b',"usage":null}\n\n' if with_usage else b"}\n\n"
    frames = [head + choice + tail for choice in choices]
    if with_usage:
        frames.append(head + b'[],"usage":' + usage + b"}\n\n")
    return frames
