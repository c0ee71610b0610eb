"""What the fake answers: the shared conversation script as chat completions, chunks, embeddings.

Kept apart from the service so the answer's shape can be read without the HTTP plumbing.
"""

from __future__ import annotations

import base64
import re
import struct
import time
from typing import Any, NamedTuple

from tests.fakes.upstreams import script as conversation
from tests.fakes.upstreams.azure.checks import (
    _is_tokens,
)
from tests.fakes.upstreams.azure.wire import (
    _FILTER_RESULTS,
    _VECTOR,
    _encode,
    _ids,
)

# --- the conversation script ----------------------------------------------------------------


class Answer(NamedTuple):
    text: str | None
    tool: tuple[str, str] | None  # (function name, arguments JSON)
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _images(content: Any) -> list[str]:
    """The media type of each image part (`url` for an http(s) URL)."""
    kinds = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = part["image_url"]["url"]
            kinds.append(url[5:].split(";", 1)[0] if url.startswith("data:") else "url")
    return kinds


def script(body: dict[str, Any]) -> Answer:
    """The shared script (`tests.fakes.upstreams.script`) over a Chat Completions body."""
    messages: list[dict[str, Any]] = body["messages"]
    chars = sum(len(_text(m.get("content"))) for m in messages)
    images = sum(len(_images(m.get("content"))) for m in messages)
    prompt = conversation.prompt_tokens(chars, images)
    system = [_text(m.get("content")) for m in messages if m["role"] in ("system", "developer")]
    cached = min(conversation.CACHED_TOKENS, prompt) if system else 0
    last = messages[-1]
    users = [m for m in messages if m["role"] == "user"]
    user = users[-1] if users else {}
    tools = body.get("tools")
    text = conversation.reply(
        tool_result=_text(last.get("content")) if last["role"] in ("tool", "function") else None,
        call=bool(tools) and last["role"] == "user",
        said=_text(user.get("content")),
        images=_images(user.get("content")),
        system=system,
    )
    output = conversation.output_tokens(text)
    if text is None:
        arguments = _encode({"echo": _text(last.get("content"))}).decode()
        return Answer(None, (tools[0]["function"]["name"], arguments), prompt, output, cached)
    return Answer(text, None, prompt, output, cached)


def _usage(answer: Answer) -> dict[str, Any]:
    total = answer.prompt_tokens + answer.completion_tokens
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": total,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _tool_call(answer: Answer, call_id: str) -> dict[str, Any]:
    assert answer.tool is not None
    name, arguments = answer.tool
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chat_completion(model: str, answer: Answer) -> dict[str, Any]:
    ident = next(_ids)
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool is not None:
        message["tool_calls"] = [_tool_call(answer, f"call_fake{ident}")]
    return {
        "id": f"chatcmpl-fake{ident}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _FILTER_RESULTS}],
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if answer.tool else "stop",
                "content_filter_results": _FILTER_RESULTS,
            }
        ],
        "usage": _usage(answer),
    }


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def chat_chunks(model: str, answer: Answer, include_usage: bool) -> list[dict[str, Any]]:
    """Every chunk of the streamed answer, Azure's annotation chunk first."""
    ident = next(_ids)
    head = {
        "id": f"chatcmpl-fake{ident}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], **extra}

    annotation = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
    annotation["prompt_filter_results"] = [
        {"prompt_index": 0, "content_filter_results": _FILTER_RESULTS}
    ]
    chunks = [annotation, chunk({"role": "assistant", "content": ""})]
    if answer.tool is not None:
        call = _tool_call(answer, f"call_fake{ident}")
        arguments = call["function"]["arguments"]
        call["function"] = {"name": call["function"]["name"], "arguments": ""}
        chunks.append(chunk({"tool_calls": [{"index": 0, **call}]}))
        for fragment in _split(arguments, 3):
            chunks.append(
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
            )
        chunks.append(chunk({}, "tool_calls"))
    else:
        for word in re.findall(r"\s*\S+", answer.text or ""):
            chunks.append(chunk({"content": word}))
        chunks.append(chunk({}, "stop"))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": _usage(answer)})
    return chunks


def embeddings(model: str, body: dict[str, Any]) -> dict[str, Any]:
    value = body["input"]
    items = [value] if isinstance(value, str) or _is_tokens(value) else value
    chars = sum(len(item) for item in items if isinstance(item, str))
    ids = sum(len(item) for item in items if isinstance(item, list))
    vector: Any = _VECTOR
    if body.get("encoding_format") == "base64":
        vector = base64.b64encode(struct.pack("<8f", *_VECTOR)).decode()
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(len(items))]
    tokens = conversation.prompt_tokens(chars) + ids
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}
