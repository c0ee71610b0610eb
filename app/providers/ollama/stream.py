"""Ollama's NDJSON stream → OpenAI chunk frames. Pure.

Ollama streams one JSON object a line, the last with `"done": true` and the token counts.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import msgspec

from app.domain import StreamBroken, Usage
from app.providers.ollama.answer import (
    InMessage,
    arguments_json,
    call_id,
    decode_answer,
    finish_reason,
    usage_of,
)
from app.providers.openai_shapes.answer import TextChoice, encode
from app.providers.openai_shapes.stream import ROLE_DELTA, ChunkFrames, Delta, call_rest, call_start


class OllamaStream:
    """State machine: Ollama's NDJSON lines → OpenAI chunk frames.

    `feed` takes body pieces as they arrive and returns complete frames; after the `done` line
    (finish chunk and usage chunk) `done` is True. A line with `error` raises `StreamBroken`,
    and so does `close` when the body ended before `done`. With `chat=False` it translates
    `/api/generate` into `text_completion` chunks.
    """

    def __init__(
        self, model: str, skipped: Counter[str], *, chat: bool = True, created: int | None = None
    ) -> None:
        self._chat = chat
        self._skipped = skipped
        created = int(time.time()) if created is None else created
        prefix, kind = (
            ("chatcmpl", "chat.completion.chunk") if chat else ("cmpl", "text_completion")
        )
        self._frames = ChunkFrames(f"{prefix}-{uuid.uuid4().hex}", model, created, kind)
        self._pending = b""
        self._calls = 0
        self.done = False
        self.usage: Usage | None = None

    def _text(self, text: str, finish: str | None = None) -> bytes:
        return self._frames.frame(b"[%s]" % encode(TextChoice(text=text, finish_reason=finish)))

    def start(self) -> bytes:
        """The role chunk that opens a chat stream (nothing for completions)."""
        return self._frames.chunk(ROLE_DELTA) if self._chat else b""

    def feed(self, piece: bytes) -> bytes:
        data = self._pending + piece if self._pending else piece
        lines = data.split(b"\n")
        self._pending = lines.pop()
        out = [self._line(line) for line in lines if line.strip() and not self.done]
        return b"".join(out)

    def _line(self, line: bytes) -> bytes:
        try:
            answer = decode_answer(line)
        except msgspec.DecodeError as exc:
            raise StreamBroken(f"unreadable Ollama stream line: {exc}") from exc
        if answer.error is not None:
            raise StreamBroken(f"Ollama stream error: {answer.error}")
        out = []
        if not self._chat:
            if answer.response:
                out.append(self._text(answer.response))
        elif answer.message is not None:
            out.extend(self._message(answer.message))
        if answer.done:
            self.done = True
            reason = finish_reason(answer.done_reason, called=self._calls > 0)
            out.append(
                self._frames.chunk(Delta(), reason) if self._chat else self._text("", reason)
            )
            wire, self.usage = usage_of(answer)
            out.append(self._frames.usage(wire))
        return b"".join(out)

    def _message(self, message: InMessage) -> Iterator[bytes]:
        if message.thinking:
            self._skipped["thinking"] += 1
        if message.content:
            yield self._frames.chunk(Delta(content=message.content))
        for call in message.tool_calls or ():
            n = self._calls
            self._calls += 1
            yield self._frames.chunk(call_start(n, call_id(call, n), call.function.name))
            yield self._frames.chunk(call_rest(n, arguments_json(call)))

    def close(self) -> bytes:
        """At EOF: the last line when it had no newline; `StreamBroken` without `done`."""
        out = self._line(self._pending) if self._pending.strip() and not self.done else b""
        self._pending = b""
        if not self.done:
            raise StreamBroken("Ollama stream ended before its done line")
        return out


async def translate_stream(
    pieces: AsyncIterator[bytes], translator: OllamaStream
) -> AsyncIterator[bytes]:
    """Ollama's NDJSON body as OpenAI chunk frames, ending at the `done` line."""
    first = translator.start()
    if first:
        yield first
    async for piece in pieces:
        frames = translator.feed(piece)
        if frames:
            yield frames
        if translator.done:
            return
    frames = translator.close()
    if frames:
        yield frames
