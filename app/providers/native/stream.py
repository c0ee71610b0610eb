"""A native stream on its way to the client: cut into whole frames, and metered as it passes.

`client_frames` cuts the upstream's body into whole events or lines (and turns Bedrock's binary
event stream into the Anthropic SSE a client of `/v1/messages` expects); `meter` reads the usage
and the end of the stream from those frames without holding them back.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Final

import msgspec

from app.domain import StreamBroken, Usage
from app.metering import StreamMeter
from app.providers.anthropic import MessagesStreamMeter
from app.providers.eventstream import bedrock_payloads
from app.providers.native.request import Framing, NativeRequest, Vendor
from app.providers.native.usage import (
    GeminiChunk,
    decode_gemini,
    decode_gemini_array,
    decode_ollama,
)
from app.providers.sse import FrameSplitter

MAX_ARRAY_STREAM: Final = 16 * 1024 * 1024
"""Bytes of a Gemini JSON-array stream kept to read its usage at the end; beyond, unmetered."""
_EVENT_TYPE = re.compile(rb"[A-Za-z0-9_.-]{1,64}")
_encode = msgspec.json.encode


class NativeMeter:
    """Watches a native stream on its way to the client: usage, whole or not, first byte.

    `see` returns what the client gets (the frames unchanged, but for Azure's usage chunk when
    the client did not ask for it). `complete`: the vendor's terminal event came; `failed`: the
    upstream sent its own error event (the client has it already).
    """

    __slots__ = ("chunks", "complete", "failed", "first_at", "usage")

    def __init__(self) -> None:
        self.chunks = 0
        self.complete = False
        self.failed = False
        self.first_at: float | None = None
        """Wall-clock time of the first frame (for time to first token)."""
        self.usage: Usage | None = None
        """What the upstream reported so far; None before it reported anything."""

    def see(self, frames: bytes) -> bytes:
        if self.first_at is None:
            self.first_at = time.time()
        return self._see(frames)

    def _see(self, frames: bytes) -> bytes:
        raise NotImplementedError

    def ttft_ms(self, started: float) -> int | None:
        """Milliseconds from `started` (wall clock) to the first frame; None before it."""
        return None if self.first_at is None else int((self.first_at - started) * 1000)

    def used(self, input_estimate: int) -> Usage | None:
        """The upstream's usage; else the estimate and a token per chunk; None for nothing."""
        usage = self.usage
        if usage is not None or not self.chunks:
            return usage
        return Usage(
            prompt_tokens=input_estimate,
            completion_tokens=self.chunks,
            total_tokens=input_estimate + self.chunks,
        )


class _AnthropicMeter(NativeMeter):
    __slots__ = ("_messages",)

    def __init__(self) -> None:
        super().__init__()
        self._messages = MessagesStreamMeter()

    def _see(self, frames: bytes) -> bytes:
        self._messages.see(frames)
        self.chunks += frames.count(b'"type":"content_block_delta"')
        self.complete = self._messages.complete
        self.usage = self._messages.usage
        if b'"type":"error"' in frames:  # a quote inside a JSON string is escaped: no false hit
            self.failed = True
        return frames


def sse_data(event: bytes) -> bytes:
    """The data of one SSE event (its `data:` lines joined); b"" for none."""
    lines = [
        line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
    ]
    return b"\n".join(lines)


class _GeminiMeter(NativeMeter):
    """Gemini's SSE events, or its JSON array (read whole at its end, up to a bound)."""

    __slots__ = ("_array",)

    def __init__(self, *, array: bool) -> None:
        super().__init__()
        self._array: bytearray | None = bytearray() if array else None

    def _see(self, frames: bytes) -> bytes:
        if self._array is not None:
            self._see_array(frames)
            return frames
        for event in frames.split(b"\n\n"):
            data = sse_data(event)
            if data:
                self.chunks += 1
                self._chunk(data)
        return frames

    def _chunk(self, data: bytes) -> None:
        if b"usageMetadata" not in data and b"finishReason" not in data and b'"error"' not in data:
            return
        try:
            chunk = decode_gemini(data)
        except msgspec.DecodeError:
            return
        self._read(chunk)

    def _read(self, chunk: GeminiChunk) -> None:
        if chunk.usage_metadata is not None:
            self.usage = chunk.usage_metadata.usage()
        if any(candidate.finish_reason for candidate in chunk.candidates):
            self.complete = True
        if chunk.error:
            self.failed = True

    def _see_array(self, piece: bytes) -> None:
        array = self._array
        assert array is not None  # noqa: S101 - only called in array mode
        self.chunks += piece.count(b'"candidates"')
        if len(array) + len(piece) > MAX_ARRAY_STREAM:
            self._array = None  # too long to keep: the stream goes on, unmetered
            return
        array += piece
        if not array.rstrip().endswith(b"]"):
            return
        try:
            chunks = decode_gemini_array(array)
        except msgspec.DecodeError:
            return  # a `]` inside the array, not its end
        for chunk in chunks:
            self._read(chunk)


class _OllamaMeter(NativeMeter):
    """NDJSON lines; the `done` line carries the counts."""

    __slots__ = ()

    def _see(self, frames: bytes) -> bytes:
        for line in frames.split(b"\n"):
            if not line.strip():
                continue
            self.chunks += 1
            if (
                b'"done":true' not in line
                and b'"done": true' not in line
                and b'"error"' not in line
            ):
                continue
            try:
                counts = decode_ollama(line)
            except msgspec.DecodeError:
                continue
            if counts.error:
                self.failed = True
            elif counts.done:
                self.complete = True
                self.usage = counts.usage()
        return frames


class _AzureMeter(NativeMeter):
    """OpenAI chunks: the usage chunk (asked for by the gateway) and `[DONE]`."""

    __slots__ = ("_openai",)

    def __init__(self, *, strip_usage: bool) -> None:
        super().__init__()
        self._openai = StreamMeter(strip_usage=strip_usage, assemble=False)

    def _see(self, frames: bytes) -> bytes:
        forward = self._openai.see(frames)
        self.chunks = self._openai.chunks
        self.usage = self._openai.usage
        if frames.startswith(b"data: [DONE]") or b"\n\ndata: [DONE]" in frames:
            self.complete = True
        if frames.startswith(b"event: error") or b"\n\nevent: error" in frames:
            self.failed = True
        return forward


def meter(request: NativeRequest) -> NativeMeter:
    """The meter for a streamed `request`."""
    if request.vendor is Vendor.ANTHROPIC:
        return _AnthropicMeter()
    if request.vendor is Vendor.GEMINI:
        return _GeminiMeter(array=not request.sse)
    if request.vendor is Vendor.OLLAMA:
        return _OllamaMeter()
    return _AzureMeter(strip_usage="stream_options" not in request.fields)


class _Tag(msgspec.Struct):
    type: str = ""


_decode_tag = msgspec.json.Decoder(_Tag).decode
_decode_any = msgspec.json.Decoder().decode


def anthropic_event(data: bytes) -> bytes:
    """One Anthropic event's JSON as the SSE event api.anthropic.com would send.

    Raises:
        StreamBroken: the JSON cannot be read or names no usable event type.
    """
    try:
        kind = _decode_tag(data).type.encode()
    except msgspec.DecodeError:
        raise StreamBroken("unreadable event from bedrock") from None
    if not _EVENT_TYPE.fullmatch(kind):
        raise StreamBroken("bedrock event without a type")
    if b"\n" in data or b"\r" in data:  # one `data:` line: newlines can only be whitespace
        data = _encode(_decode_any(data))
    return b"event: " + kind + b"\ndata: " + data + b"\n\n"


async def client_frames(pieces: AsyncIterator[bytes], framing: Framing) -> AsyncIterator[bytes]:
    """The upstream's body in runs the client can be sent: whole events, whole lines.

    Forwarding only whole events means a stream that breaks still ends well-formed, with the
    vendor's error event after the last whole one. An SSE event cut by the end of the stream
    is dropped (as SSE clients drop it); an NDJSON line without its newline gets one.
    """
    if framing is Framing.BEDROCK:
        async for payload in bedrock_payloads(pieces):
            yield anthropic_event(payload)
        return
    if framing is Framing.SSE:
        splitter = FrameSplitter()
        async for piece in pieces:
            frames = splitter.feed(piece)
            if frames:
                yield frames
        return
    if framing is Framing.NDJSON:
        pending = b""
        async for piece in pieces:
            data = pending + piece
            end = data.rfind(b"\n") + 1
            pending = data[end:]
            if end:
                yield data[:end]
        if pending.strip():
            yield pending + b"\n"
        return
    async for piece in pieces:
        yield piece
