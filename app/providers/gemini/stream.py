"""Gemini's SSE stream (`streamGenerateContent?alt=sse`) → OpenAI chunk frames. Pure.

Gemini sends no `[DONE]`: its stream ends at EOF, so `close` decides whether it was whole.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator

import msgspec

from app.domain import StreamBroken, Usage
from app.providers.gemini.answer import (
    CallIds,
    arguments_json,
    chunk_id,
    finish_reason,
    signature_extra,
    skip_part,
    usage_of,
)
from app.providers.gemini.wire import Candidate, UsageMetadata, decode_response
from app.providers.openai_shapes.stream import (
    ROLE_DELTA,
    ChunkFrames,
    Delta,
    call_rest,
    call_start,
    sse_runs,
)


class GeminiStream:
    """State machine: Gemini stream answers (each a `GenerateContentResponse`) → OpenAI chunks.

    `feed` takes one event's JSON and returns complete SSE frames; `close` (at EOF) returns the
    remaining frames with the usage chunk, or raises `StreamBroken` when no candidate finished.
    Gemini sends each function call whole: it becomes a first delta with id, type, name and
    empty arguments, then one with the arguments, as OpenAI streams them.
    """

    def __init__(self, model: str, skipped: Counter[str], created: int | None = None) -> None:
        self._model = model
        self._created = int(time.time()) if created is None else created
        self._skipped = skipped
        self._frames = ChunkFrames("", model, self._created)
        self._named = False  # the stream's id comes with its first event
        self._ids = CallIds()
        self._calls: dict[int, int] = {}  # choice → tool calls so far
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._usage: UsageMetadata | None = None

    def _chunk(self, index: int, delta: Delta, finish: str | None = None) -> bytes:
        return self._frames.chunk(delta, finish, index)

    def _start(self, index: int, out: list[bytes]) -> None:
        if index not in self._started:
            self._started.add(index)
            self._calls[index] = 0
            out.append(self._chunk(index, ROLE_DELTA))

    def feed(self, data: bytes) -> bytes:
        try:
            event = decode_response(data)
        except msgspec.DecodeError as exc:
            raise StreamBroken(f"unreadable Gemini stream event: {exc}") from exc
        if event.error is not None:
            raise StreamBroken(f"Gemini stream error: {event.error.message}")
        if not self._named:
            self._frames = ChunkFrames(chunk_id(event.response_id), self._model, self._created)
            self._named = True
        out: list[bytes] = []
        for candidate in event.candidates:
            self._candidate(candidate, out)
        feedback = event.prompt_feedback
        if not event.candidates and feedback is not None and feedback.block_reason:
            self._start(0, out)
            self._finished.add(0)
            out.append(self._chunk(0, Delta(), "content_filter"))
        if event.usage_metadata is not None:
            self._usage = event.usage_metadata
        return b"".join(out)

    def _candidate(self, candidate: Candidate, out: list[bytes]) -> None:
        index = candidate.index
        self._start(index, out)
        for part in candidate.content.parts if candidate.content else ():
            if skip_part(part, self._skipped):
                continue
            call = part.function_call
            if call is None:
                if part.text:
                    out.append(self._chunk(index, Delta(content=part.text)))
                continue
            position = self._calls[index]
            self._calls[index] = position + 1
            extra = signature_extra(part.thought_signature)
            first = call_start(position, self._ids.take(call), call.name, extra)
            out.append(self._chunk(index, first))
            out.append(self._chunk(index, call_rest(position, arguments_json(call))))
        if candidate.finish_reason and index not in self._finished:
            self._finished.add(index)
            reason = finish_reason(candidate.finish_reason, called=self._calls[index] > 0)
            out.append(self._chunk(index, Delta(), reason))

    @property
    def usage(self) -> Usage | None:
        return None if self._usage is None else usage_of(self._usage)[1]

    def close(self) -> bytes:
        """The frames that end the stream: finishes still owed, then the usage chunk."""
        if not self._finished:
            raise StreamBroken("Gemini stream ended without a finishReason")
        out = [
            self._chunk(index, Delta(), "stop") for index in sorted(self._started - self._finished)
        ]
        if self._usage is not None:
            wire, _ = usage_of(self._usage)
            out.append(self._frames.usage(wire))
        return b"".join(out)


async def translate_stream(
    pieces: AsyncIterator[bytes], translator: GeminiStream
) -> AsyncIterator[bytes]:
    """Gemini's SSE body (no `[DONE]`: it ends at EOF) as OpenAI chunk frames."""
    async for run in sse_runs(pieces):
        joined = b"".join([translator.feed(data) for data in run if data])
        if joined:
            yield joined
    yield translator.close()
