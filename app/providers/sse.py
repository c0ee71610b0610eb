"""Server-sent events framing: cut a byte stream into complete events, and the frames we write."""

from __future__ import annotations

DONE_FRAME = b"data: [DONE]\n\n"
KEEPALIVE_FRAME = b": keep-alive\n\n"
ERROR_FRAME = (
    b'event: error\ndata: {"error":{"message":"upstream stream error","type":"stream_error"}}\n\n'
)


class FrameSplitter:
    """Buffers pieces of an SSE stream and releases only complete events.

    Forwarding whole events (never a half) means a stream that breaks mid-event still ends
    with a well-formed error frame. All complete events of one piece are released together:
    they arrived together, so writing them in one send adds no delay.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, piece: bytes) -> bytes:
        """Add a piece; return every event it completed (possibly several, possibly none)."""
        data = self._pending + piece if self._pending else piece
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b""
        self._pending = data[end + 2 :]
        return data[: end + 2]

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet complete."""
        return self._pending


def split_done(frames: bytes) -> tuple[bytes, bool]:
    """Return the frames before a `data: [DONE]` event, and whether that event was there.

    Only an event that starts with `data: [DONE]` counts; the text inside a JSON string
    never does, because events are matched at their start.
    """
    for marker in (b"data: [DONE]", b"data:[DONE]"):
        if frames.startswith(marker):
            return b"", True
        at = frames.find(b"\n\n" + marker)
        if at >= 0:
            return frames[: at + 2], True
    return frames, False
