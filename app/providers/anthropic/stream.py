"""Anthropic stream events → OpenAI `chat.completion.chunk` frames. Pure but for the framing.

Events are a tagged union decoded once; an event type this module does not know is counted
and skipped (peeked first), never a 500, so a new Anthropic event never breaks a stream.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Final

import msgspec

from app.domain import StreamBroken, Usage
from app.providers.anthropic.answer import AnthropicUsage, Tally, VendorError, finish_reason
from app.providers.eventstream import bedrock_payloads
from app.providers.openai_shapes.stream import ROLE_DELTA, ChunkFrames, Delta, call_rest, call_start


class _StartMessage(msgspec.Struct):
    id: str = ""
    model: str = ""
    usage: AnthropicUsage | None = None


class _StreamBlock(msgspec.Struct):
    type: str
    text: str = ""
    id: str = ""
    name: str = ""


class _StreamDelta(msgspec.Struct):
    type: str
    text: str = ""
    partial_json: str = ""


class _StopDelta(msgspec.Struct):
    stop_reason: str | None = None


class _Event(msgspec.Struct, tag_field="type"):
    """A stream event; `type` is the tag."""


class MessageStart(_Event, tag="message_start"):
    message: _StartMessage


class ContentBlockStart(_Event, tag="content_block_start"):
    index: int
    content_block: _StreamBlock


class ContentBlockDelta(_Event, tag="content_block_delta"):
    index: int
    delta: _StreamDelta


class ContentBlockStop(_Event, tag="content_block_stop"):
    index: int = 0


class MessageDelta(_Event, tag="message_delta"):
    delta: _StopDelta = msgspec.field(default_factory=_StopDelta)
    usage: AnthropicUsage | None = None


class MessageStop(_Event, tag="message_stop"):
    pass


class Ping(_Event, tag="ping"):
    pass


class ErrorEvent(_Event, tag="error"):
    error: VendorError = msgspec.field(default_factory=VendorError)


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | ErrorEvent
)
KNOWN_EVENTS: Final = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)


class _Tag(msgspec.Struct):
    type: str = ""


_decode_event = msgspec.json.Decoder(StreamEvent).decode
_peek = msgspec.json.Decoder(_Tag).decode


def decode_event(data: bytes) -> StreamEvent | str:
    """The event in one event's JSON, or the type name of an event this module does not know.

    Raises `StreamBroken` for JSON that is unreadable or a known event that is malformed.
    """
    try:
        event: StreamEvent = _decode_event(data)
    except msgspec.ValidationError:
        kind = _peek_type(data)
        if kind in KNOWN_EVENTS:
            raise StreamBroken(f"malformed {kind} event from upstream") from None
        return kind
    except msgspec.DecodeError:
        raise StreamBroken("unreadable event from upstream") from None
    return event


def _peek_type(data: bytes) -> str:
    try:
        return _peek(data).type
    except msgspec.DecodeError:
        raise StreamBroken("unreadable event from upstream") from None


class StreamTranslator:
    """Anthropic stream events in, complete OpenAI `chat.completion.chunk` SSE frames out.

    Text deltas become content deltas; each tool_use block becomes one tool call (numbered
    0, 1, ... in order, whatever its block index) whose first delta carries id and name.
    `message_stop` yields the finish chunk and the usage chunk and makes `complete` true.
    Thinking blocks and unknown blocks, deltas and events are skipped and counted.
    """

    __slots__ = (
        "_created",
        "_frames",
        "_model",
        "_skipped_blocks",
        "_stop_reason",
        "_tally",
        "_tools",
        "complete",
        "skipped",
        "started",
    )

    def __init__(
        self, model: str, skipped: Counter[str] | None = None, *, created: int | None = None
    ) -> None:
        self._model = model
        self._created = int(time.time()) if created is None else created
        self._frames = ChunkFrames("", model, self._created)
        self._tally = Tally()
        self._stop_reason: str | None = None
        self._tools: dict[int, int] = {}
        self._skipped_blocks: set[int] = set()
        self.skipped: Counter[str] = Counter() if skipped is None else skipped
        self.started = False
        """`message_start` came."""
        self.complete = False
        """`message_stop` came: the stream is whole."""

    @property
    def usage(self) -> Usage | None:
        """The usage so far; None before `message_start`."""
        return self._tally.usage() if self.started else None

    def feed(self, data: bytes) -> bytes:
        """Translate one event's JSON; the frames it produced (often one, maybe none)."""
        if self.complete:
            return b""
        event = decode_event(data)
        frames = b""
        if isinstance(event, ContentBlockDelta):
            frames = self._delta(event)
        elif isinstance(event, ContentBlockStart):
            frames = self._block_start(event)
        elif isinstance(event, MessageStart):
            frames = self._start(event)
        elif isinstance(event, MessageDelta):
            self._tally.update(event.usage)
            if event.delta.stop_reason is not None:
                self._stop_reason = event.delta.stop_reason
        elif isinstance(event, MessageStop):
            frames = self._stop()
        elif isinstance(event, ErrorEvent):
            error = event.error
            detail = (error.message or "")[:200]
            raise StreamBroken(f"upstream stream error: {error.type or 'error'}: {detail}")
        elif isinstance(event, str):
            self.skipped[f"event:{event}"] += 1
        return frames

    def _start(self, event: MessageStart) -> bytes:
        message = event.message
        if message.model:
            self._model = message.model
        self._frames = ChunkFrames(message.id, self._model, self._created)
        self._tally.update(message.usage)
        self.started = True
        return self._frames.chunk(ROLE_DELTA)

    def _block_start(self, event: ContentBlockStart) -> bytes:
        block = event.content_block
        if block.type == "text":
            return self._frames.chunk(Delta(content=block.text)) if block.text else b""
        if block.type == "tool_use":
            call = self._tools[event.index] = len(self._tools)
            return self._frames.chunk(call_start(call, block.id, block.name))
        self._skipped_blocks.add(event.index)
        self.skipped[f"block:{block.type}"] += 1
        return b""

    def _delta(self, event: ContentBlockDelta) -> bytes:
        delta = event.delta
        if event.index in self._skipped_blocks:
            return b""
        if delta.type == "text_delta":
            return self._frames.chunk(Delta(content=delta.text)) if delta.text else b""
        call = self._tools.get(event.index)
        if delta.type == "input_json_delta" and call is not None:
            if not delta.partial_json:
                return b""
            return self._frames.chunk(call_rest(call, delta.partial_json))
        self.skipped[f"delta:{delta.type}"] += 1
        return b""

    def _stop(self) -> bytes:
        self.complete = True
        if not self.started:
            raise StreamBroken("upstream stream ended without message_start")
        finish = self._frames.chunk(Delta(), finish_reason(self._stop_reason))
        return finish + self._frames.usage(self._tally.usage())


async def bedrock_runs(pieces: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The events of a Bedrock body (AWS's binary event stream), one run each."""
    async for payload in bedrock_payloads(pieces):
        yield [payload]


async def openai_frames(
    runs: AsyncIterator[list[bytes]], translator: StreamTranslator
) -> AsyncIterator[bytes]:
    async for run in runs:
        frames = b"".join([translator.feed(event) for event in run])
        if frames:
            yield frames
        if translator.complete:
            return
    raise StreamBroken("upstream closed the stream before message_stop")
