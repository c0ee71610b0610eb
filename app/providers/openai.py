"""OpenAI wire format upstream (OpenAI itself, and any OpenAI-compatible server).

The client's body goes upstream as the client sent it, with only `model` swapped for the
target's model name: fields the gateway does not know reach the upstream byte for byte, and
the upstream's answer reaches the client the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec

from app.domain import (
    Operation,
    Payload,
    Reply,
    StreamBroken,
    UpstreamProtocolError,
    UpstreamStatus,
    Usage,
)
from app.providers.sse import FrameSplitter, split_done
from app.providers.transport import Transport


class _UsageEnvelope(msgspec.Struct):
    usage: Usage | None = None


_decode_usage = msgspec.json.Decoder(_UsageEnvelope).decode
_encode = msgspec.json.encode


_INCLUDE_USAGE = msgspec.Raw(b'{"include_usage":true}')


def encode_body(payload: Payload, upstream_model: str) -> bytes:
    """The client's body with `model` replaced; every other field exactly as it came.

    A stream whose client did not set `stream_options` also asks for the usage chunk (as
    Gandalf does), so the gateway can settle on real numbers; `metering` removes the chunk
    again before it reaches that client.
    """
    fields = dict(payload.fields)
    fields["model"] = msgspec.Raw(_encode(upstream_model))
    if (
        payload.stream
        and "stream_options" not in fields
        and payload.operation is not (Operation.EMBEDDINGS)
    ):
        fields["stream_options"] = _INCLUDE_USAGE
    return _encode(fields)


def read_usage(provider: str, body: bytes) -> Usage | None:
    """Usage of a non-streaming answer; an answer that is not JSON is an upstream fault."""
    try:
        return _decode_usage(body).usage
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, "invalid JSON body") from exc


class OpenAIAdapter:
    """`domain.Provider` over an OpenAI-compatible HTTP API."""

    def __init__(self, name: str, transport: Transport) -> None:
        self._name = name
        self._transport = transport

    @property
    def name(self) -> str:
        return self._name

    def path(self, operation: Operation, upstream_model: str) -> str:
        """The upstream path of an operation, relative to the base URL (hostings override)."""
        return operation.value

    def body(self, payload: Payload, upstream_model: str) -> bytes:
        """The upstream body (hostings override)."""
        return encode_body(payload, upstream_model)

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        status, body, content_type = await self._transport.post(
            self.path(payload.operation, upstream_model), self.body(payload, upstream_model)
        )
        if status >= 300:
            raise UpstreamStatus(self._name, status, body, content_type)
        return Reply(body=body, usage=read_usage(self._name, body))

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: Payload, upstream_model: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._transport.post_stream(
            self.path(payload.operation, upstream_model), self.body(payload, upstream_model)
        ) as pieces:
            yield _events(pieces)

    async def aclose(self) -> None:
        await self._transport.aclose()


async def _events(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Complete SSE events up to the upstream's `[DONE]`; a stream that ends without it broke."""
    splitter = FrameSplitter()
    async for piece in pieces:
        frames, done = split_done(splitter.feed(piece))
        if frames:
            yield frames
        if done:
            return
    raise StreamBroken("upstream closed the stream before [DONE]")
