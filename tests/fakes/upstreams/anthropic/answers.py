"""What the fake answers: the shared conversation script, then a message or its stream events.

Kept apart from the service so the answer's shape can be read without the HTTP plumbing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from app.providers.eventstream import encode_message
from tests.fakes.upstreams import script as conversation
from tests.fakes.upstreams.anthropic.wire import (
    _WORDS,
    _encode,
)

# --- the script -------------------------------------------------------------------------------


class Answer(msgspec.Struct, kw_only=True):
    """What the script answers: text, or one tool call; and the usage."""

    text: str = ""
    tool_name: str = ""
    tool_input: bytes = b""
    stop_reason: str = "end_turn"
    input_tokens: int
    cache_read: int
    output_tokens: int


def _texts(content: Any) -> Iterator[str]:
    """The text of a message's content (or a tool result's), block by block."""
    if isinstance(content, str):
        yield content
        return
    for block in content or ():
        if block.get("type") == "text":
            yield block["text"]
        elif block.get("type") == "tool_result":
            yield from _texts(block.get("content", ""))


def _images(content: Any) -> Iterator[str]:
    """`<media type>` or `url` per image of a content, tool results included."""
    for block in content if isinstance(content, list) else ():
        if block.get("type") == "image":
            source = block["source"]
            yield "url" if source["type"] == "url" else source["media_type"]
        elif block.get("type") == "tool_result":
            yield from _images(block.get("content"))


def _system_texts(system: Any) -> list[str]:
    if isinstance(system, str):
        return [system] if system else []
    return [block["text"] for block in system or ()]


def input_tokens(body: dict[str, Any]) -> int:
    """The script's input tokens: characters of all text // 4 + 1, plus 10 per image."""
    chars = sum(len(text) for text in _system_texts(body.get("system")))
    images = 0
    for message in body["messages"]:
        chars += sum(len(text) for text in _texts(message["content"]))
        images += sum(1 for _ in _images(message["content"]))
    return conversation.prompt_tokens(chars, images)


def plan(body: dict[str, Any]) -> Answer:
    """The shared script (`tests.fakes.upstreams.script`) answering a valid Messages body."""
    messages = body["messages"]
    users = [m for m in messages if m["role"] == "user"]
    last_user = users[-1]["content"] if users else ""
    if isinstance(last_user, str):
        user_text = last_user
    else:
        user_text = " ".join(_texts([b for b in last_user if b.get("type") == "text"]))
    total = input_tokens(body)
    system = _system_texts(body.get("system"))
    cache = min(conversation.CACHED_TOKENS, total) if system else 0
    last = messages[-1]
    results = [
        " ".join(_texts(b.get("content", "")))
        for b in (last["content"] if isinstance(last["content"], list) else ())
        if b.get("type") == "tool_result"
    ]
    user_last = last["role"] == "user"
    text = conversation.reply(
        tool_result=" | ".join(results) if user_last and results else None,
        call=user_last and bool(body.get("tools")),
        said=user_text,
        images=_images(last_user),
        system=system,
    )
    output = conversation.output_tokens(text)
    if text is None:
        return Answer(
            tool_name=body["tools"][0]["name"],
            tool_input=_encode({"echo": user_text}),
            stop_reason="tool_use",
            input_tokens=total - cache,
            cache_read=cache,
            output_tokens=output,
        )
    return Answer(text=text, input_tokens=total - cache, cache_read=cache, output_tokens=output)


def _usage_json(answer: Answer, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": answer.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": answer.cache_read,
        "output_tokens": output_tokens,
    }


_THINKING: Final = {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"}
_UNKNOWN_BLOCK: Final = {"type": "fake_unknown_block", "data": "skip me"}
_THINKING_EVENTS: Final[list[dict[str, Any]]] = [
    {"type": "content_block_start", "index": 0, "content_block": _THINKING | {"thinking": ""}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Hm"},
    },
    {"type": "fake_unknown_event", "detail": "skip me"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "x"},
    },
    {"type": "content_block_stop", "index": 0},
]


def message_json(answer: Answer, model: str, ident: str, *, unknown: bool) -> bytes:
    """The non-streamed Messages answer."""
    content: list[Any] = [_THINKING] if unknown else []
    if answer.tool_name:
        tool_input = msgspec.Raw(answer.tool_input)
        content.append({"type": "tool_use", "id": f"toolu_{ident}", "name": answer.tool_name})
        content[-1]["input"] = tool_input
    else:
        content.append({"type": "text", "text": answer.text})
    if unknown:
        content.append(_UNKNOWN_BLOCK)
    return _encode(
        {
            "id": f"msg_{ident}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": answer.stop_reason,
            "stop_sequence": None,
            "usage": _usage_json(answer, answer.output_tokens),
        }
    )


def _fragments(text: bytes) -> list[str]:
    """Three pieces (the first empty, as Anthropic starts), cut inside the JSON."""
    cut = max(1, len(text) // 2)
    return ["", text[:cut].decode(), text[cut:].decode()]


def stream_events(answer: Answer, model: str, ident: str, *, unknown: bool) -> list[dict[str, Any]]:
    """The events of the streamed answer, in order."""
    start: dict[str, Any] = {"id": f"msg_{ident}", "type": "message", "role": "assistant"}
    start |= {"model": model, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = _usage_json(answer, 1)
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    index = 0
    if unknown:
        events += _THINKING_EVENTS
        index = 1
    block: dict[str, Any]
    deltas: list[dict[str, Any]]
    if answer.tool_name:
        block = {"type": "tool_use", "id": f"toolu_{ident}", "name": answer.tool_name, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": part}
            for part in _fragments(answer.tool_input)
        ]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": word} for word in _WORDS.findall(answer.text)]
        if unknown:
            deltas.insert(1, {"type": "citations_delta", "citation": {"type": "char_location"}})
    events.append({"type": "content_block_start", "index": index, "content_block": block})
    events.append({"type": "ping"})
    events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    events.append({"type": "content_block_stop", "index": index})
    if unknown:
        events += [
            {"type": "content_block_start", "index": index + 1, "content_block": _UNKNOWN_BLOCK},
            {"type": "content_block_delta", "index": index + 1, "delta": {"type": "fake_delta"}},
            {"type": "content_block_stop", "index": index + 1},
        ]
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": answer.output_tokens},
        }
    )
    events.append({"type": "message_stop"})
    return events


def sse_frame(event: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), _encode(event))


_CHUNK_HEADERS: Final = {
    ":message-type": "event",
    ":event-type": "chunk",
    ":content-type": "application/json",
}


def bedrock_frame(event: dict[str, Any]) -> bytes:
    """One Bedrock `chunk` event wrapping the Anthropic event's JSON in base64."""
    payload = b'{"bytes":"%s"}' % base64.b64encode(_encode(event))
    return encode_message(_CHUNK_HEADERS, payload)
