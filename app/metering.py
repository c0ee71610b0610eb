"""What a streamed answer used: the upstream's usage chunk, or failing that a count of chunks.

OpenAI reports a stream's usage in a last chunk with `"choices": []` when the request asks
for it (`stream_options.include_usage`); the adapter asks for it whenever the client did not
say, so every stream can be settled on real numbers. A client that did not ask must not see
that chunk (code like `chunk.choices[0]` breaks on it), so the meter removes it then.
A stream the client abandons has no usage chunk: it is settled on the chunks that reached
the client, one token each, which is how OpenAI streams text.
"""

from __future__ import annotations

import time

import msgspec

from app.cache.replay import StreamAssembler
from app.domain import Usage


class _UsageChunk(msgspec.Struct):
    choices: list[msgspec.Raw] | None = None
    usage: Usage | None = None


_decode_usage_chunk = msgspec.json.Decoder(_UsageChunk).decode


class StreamMeter:
    """Watches the frames going to the client: usage, chunk count, and the cache copy."""

    __slots__ = ("assembler", "chunks", "first_at", "strip_usage", "usage")

    def __init__(self, *, strip_usage: bool, assemble: bool) -> None:
        self.strip_usage = strip_usage
        self.usage: Usage | None = None
        self.chunks = 0
        self.first_at: float | None = None
        """Wall-clock time of the first frame (for time to first token)."""
        self.assembler = StreamAssembler() if assemble else None

    def see(self, frames: bytes) -> bytes:
        """Record what `frames` hold; return what the client should get."""
        if self.first_at is None:
            self.first_at = time.time()
        # events start at the frames' start or after a blank line; JSON text never holds a
        # raw newline, so "data:" inside a chunk's content is not counted
        self.chunks += frames.count(b"\n\ndata:") + frames.startswith(b"data:")
        if self.assembler is not None:
            self.assembler.feed(frames)
        if b'"usage"' not in frames:
            return frames
        kept = []
        for event in frames.split(b"\n\n"):
            if not event:
                continue
            data = event.partition(b"data:")[2].strip()
            if b'"usage"' in data:
                try:
                    chunk = _decode_usage_chunk(data)
                except msgspec.DecodeError:
                    chunk = _UsageChunk()
                if chunk.usage is not None:
                    self.usage = chunk.usage
                    if self.strip_usage and not chunk.choices:
                        continue
            kept.append(event + b"\n\n")
        return b"".join(kept)

    def ttft_ms(self, started: float) -> int | None:
        """Milliseconds from `started` (wall clock) to the first frame; None if none came."""
        return None if self.first_at is None else int((self.first_at - started) * 1000)

    def used(self, input_estimate: int) -> Usage:
        """The upstream's usage, or the estimate for a stream that ended without one."""
        if self.usage is not None:
            return self.usage
        return Usage(
            prompt_tokens=input_estimate,
            completion_tokens=self.chunks,
            total_tokens=input_estimate + self.chunks,
        )
