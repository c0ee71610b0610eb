"""SSE both ways: the `data` of upstream events in, OpenAI `chat.completion.chunk` frames out.

Every chunk of one stream repeats the same head (id, object, created, model), so `ChunkFrames`
encodes it once and each frame is the head, the choices and `}`: one small encode per chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from app.domain import Usage
from app.providers.openai_shapes.answer import UsageOut
from app.providers.sse import FrameSplitter

encode = msgspec.json.encode


class DeltaFunction(msgspec.Struct, kw_only=True):
    name: str | UnsetType = UNSET
    arguments: str


class DeltaToolCall(msgspec.Struct, kw_only=True):
    index: int
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    function: DeltaFunction
    extra_content: dict[str, Any] | UnsetType = UNSET


class Delta(msgspec.Struct, kw_only=True):
    role: str | UnsetType = UNSET
    content: str | UnsetType = UNSET
    tool_calls: list[DeltaToolCall] | UnsetType = UNSET


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: str | None = None


ROLE_DELTA = Delta(role="assistant", content="")
"""The delta of a stream's first chunk."""


def call_start(
    index: int, call_id: str, name: str, extra: dict[str, Any] | UnsetType = UNSET
) -> Delta:
    """The first delta of a streamed tool call: id, type and name, empty arguments."""
    function = DeltaFunction(name=name, arguments="")
    call = DeltaToolCall(
        index=index, id=call_id, type="function", function=function, extra_content=extra
    )
    return Delta(tool_calls=[call])


def call_rest(index: int, arguments: str) -> Delta:
    """A later delta of a streamed tool call: more of its arguments."""
    return Delta(
        tool_calls=[DeltaToolCall(index=index, function=DeltaFunction(arguments=arguments))]
    )


class ChunkFrames:
    """Writes the SSE frames of one OpenAI stream."""

    __slots__ = ("head",)

    def __init__(
        self, ident: str, model: str, created: int, kind: str = "chat.completion.chunk"
    ) -> None:
        self.head = b'data: {"id":%s,"object":%s,"created":%d,"model":%s,"choices":' % (
            encode(ident),
            encode(kind),
            created,
            encode(model),
        )

    def frame(self, choices: bytes) -> bytes:
        """A frame whose `choices` (and whatever follows them) are `choices`."""
        return b"%s%s}\n\n" % (self.head, choices)

    def chunk(self, delta: Delta, finish: str | None = None, index: int = 0) -> bytes:
        choice = ChunkChoice(index=index, delta=delta, finish_reason=finish)
        return self.frame(b"[%s]" % encode(choice))

    def usage(self, usage: UsageOut | Usage) -> bytes:
        """The last chunk, as with `stream_options.include_usage`: no choices, the usage."""
        return self.frame(b'[],"usage":%s' % encode(usage))


def sse_data(frames: bytes) -> Iterator[bytes]:
    """The `data` of each complete SSE event in `frames` (its `data:` lines joined).

    `event:` lines are not read: every vendor that streams SSE here names the type in the JSON.
    """
    for event in frames.split(b"\n\n"):
        lines = [
            line[6:] if line.startswith(b"data: ") else line[5:]
            for line in event.split(b"\n")
            if line.startswith(b"data:")
        ]
        if lines:
            yield lines[0] if len(lines) == 1 else b"\n".join(lines)


async def sse_runs(pieces: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The event data of an SSE body, in the runs that arrived together.

    An event without its closing blank line at EOF is incomplete: SSE drops it, and so do we.
    """
    splitter = FrameSplitter()
    async for piece in pieces:
        frames = splitter.feed(piece)
        if frames:
            yield list(sse_data(frames))
