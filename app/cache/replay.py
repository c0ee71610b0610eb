"""Cached answers in both shapes: streams assembled for the cache, answers replayed as streams.

The cache stores one shape, the OpenAI `chat.completion` JSON body. A plain request gets it
as it is; a streamed request gets it as SSE chunks (`chat.completion.chunk`: the message,
then the finish reason, then usage if the client asked for it, then `[DONE]`). A streamed
answer is assembled into that body while it is forwarded, when the request is cacheable; an
answer with several choices or tool calls is not assembled (and so not cached).
"""

from __future__ import annotations

import msgspec

from app.providers.sse import DONE_FRAME

_encode = msgspec.json.encode
_ABSENT = msgspec.Raw(b"null")
"""`usage` kept as raw JSON (as the upstream wrote it); null when there was none."""


class _Message(msgspec.Struct):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, msgspec.Raw]] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    message: _Message = msgspec.field(default_factory=_Message)
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    id: str = ""
    created: int = 0
    model: str = ""
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: msgspec.Raw = _ABSENT
    system_fingerprint: str | None = None


class _Delta(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    tool_calls: list[msgspec.Raw] | None = None
    function_call: msgspec.Raw | None = None


class _ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    id: str = ""
    created: int = 0
    model: str = ""
    choices: list[_ChunkChoice] = msgspec.field(default_factory=list)
    usage: msgspec.Raw = _ABSENT
    system_fingerprint: str | None = None


_decode_completion = msgspec.json.Decoder(_Completion).decode
_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def _frame(value: object) -> bytes:
    return b"data: " + _encode(value) + b"\n\n"


def replay_as_sse(body: bytes, include_usage: bool) -> bytes | None:
    """A cached completion as the SSE stream a streamed request expects; None if unreadable."""
    try:
        done = _decode_completion(body)
    except msgspec.DecodeError:
        return None
    head = {"id": done.id, "object": "chat.completion.chunk", "created": done.created}
    head["model"] = done.model
    if done.system_fingerprint is not None:
        head["system_fingerprint"] = done.system_fingerprint
    frames = []
    for choice in done.choices:
        message = choice.message
        delta: dict[str, object] = {"role": message.role, "content": message.content or ""}
        if message.tool_calls:
            # a stream names each call's position; one delta may carry whole calls
            delta["tool_calls"] = [
                {"index": i, **call} for i, call in enumerate(message.tool_calls)
            ]
        frames.append(_frame({**head, "choices": [{"index": choice.index, "delta": delta}]}))
        frames.append(
            _frame(
                {
                    **head,
                    "choices": [
                        {"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason}
                    ],
                }
            )
        )
    if include_usage and done.usage != _ABSENT:
        frames.append(_frame({**head, "choices": [], "usage": done.usage}))
    return b"".join(frames) + DONE_FRAME


class StreamAssembler:
    """Collects a streamed chat answer into the `chat.completion` body the cache stores."""

    __slots__ = ("_chunk", "_content", "_finish", "_role", "_usage", "broken")

    def __init__(self) -> None:
        self._chunk: _Chunk | None = None
        self._content: list[str] = []
        self._role = "assistant"
        self._finish: str | None = None
        self._usage: msgspec.Raw | None = None
        self.broken = False
        """True once the stream holds something this cannot assemble."""

    def feed(self, frames: bytes) -> None:
        """Add complete SSE events (as the adapter yields them)."""
        if self.broken:
            return
        for event in frames.split(b"\n\n"):
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    self._add(line[5:].strip())

    def _add(self, data: bytes) -> None:
        try:
            chunk = _decode_chunk(data)
        except msgspec.DecodeError:
            self.broken = True
            return
        if self._chunk is None or (chunk.choices and not self._chunk.choices):
            # the first chunk that answers: Azure opens with a `prompt_filter_results` chunk
            # whose id and model are empty
            self._chunk = chunk
        if chunk.usage != _ABSENT:
            self._usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            if choice.index != 0 or delta.tool_calls or delta.function_call is not None:
                self.broken = True
                return
            if delta.role:
                self._role = delta.role
            if delta.content:
                self._content.append(delta.content)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason

    def body(self) -> bytes | None:
        """The assembled completion, or None when the stream cannot be cached."""
        first = self._chunk
        if self.broken or first is None or self._finish is None:
            return None
        completion: dict[str, object] = {
            "id": first.id,
            "object": "chat.completion",
            "created": first.created,
            "model": first.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": self._role, "content": "".join(self._content)},
                    "finish_reason": self._finish,
                }
            ],
        }
        if first.system_fingerprint is not None:
            completion["system_fingerprint"] = first.system_fingerprint
        if self._usage is not None:
            completion["usage"] = self._usage
        return _encode(completion)
