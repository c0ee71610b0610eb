"""Usage of native (untranslated) Messages traffic, for the `/v1/messages` passthrough.

The bodies and events pass to the client unchanged; only what can carry usage is decoded,
and what cannot be read is ignored, since the answer is the client's to judge, not ours.
"""

from __future__ import annotations

import msgspec

from app.domain import Usage
from app.providers.anthropic.answer import AnthropicUsage, Tally
from app.providers.openai_shapes.stream import sse_data


class _UsageEnvelope(msgspec.Struct):
    usage: AnthropicUsage | None = None


class _MeterEvent(msgspec.Struct):
    type: str = ""
    message: _UsageEnvelope | None = None
    usage: AnthropicUsage | None = None


_decode_usage_envelope = msgspec.json.Decoder(_UsageEnvelope).decode
_decode_meter_event = msgspec.json.Decoder(_MeterEvent).decode


def messages_usage(body: bytes) -> Usage | None:
    """Usage of a native, non-streamed Messages answer, in OpenAI's shape (None: none given)."""
    try:
        usage = _decode_usage_envelope(body).usage
    except msgspec.DecodeError:
        return None
    if usage is None:
        return None
    tally = Tally()
    tally.update(usage)
    return tally.usage()


class MessagesStreamMeter:
    """Reads the usage of a native Messages stream as its events pass by, unchanged.

    Only events that can carry usage (`message_start`, `message_delta`) are decoded; unreadable
    ones are ignored, since the stream is the client's to judge, not ours.
    """

    __slots__ = ("_tally", "complete", "started")

    def __init__(self) -> None:
        self._tally = Tally()
        self.started = False
        self.complete = False

    def see(self, frames: bytes) -> None:
        """Record the usage in `frames` (complete SSE events)."""
        if b"message_" not in frames:
            return
        for data in sse_data(frames):
            if b'"usage"' not in data and b"message_stop" not in data:
                continue
            try:
                event = _decode_meter_event(data)
            except msgspec.DecodeError:
                continue
            if event.type == "message_start" and event.message is not None:
                self.started = True
                self._tally.update(event.message.usage)
            elif event.type == "message_delta":
                self._tally.update(event.usage)
            elif event.type == "message_stop":
                self.complete = True

    @property
    def usage(self) -> Usage | None:
        """The usage so far; None until `message_start` came."""
        return self._tally.usage() if self.started else None
