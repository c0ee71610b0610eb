"""`AnthropicAdapter`: the Messages API of api.anthropic.com, Vertex AI or Bedrock.

The three hostings share the body and the events; they differ in the path, in where the model
goes (body or path), in the `anthropic_version` body field, and for Bedrock streams in the
framing (AWS's binary event stream instead of SSE). Credentials come with the `Transport`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import quote

import msgspec

from app.domain import InvalidRequest, Operation, Payload, Reply, UpstreamProtocolError
from app.providers.anthropic.answer import encode, translate_error, translate_response
from app.providers.anthropic.request import translate_request
from app.providers.anthropic.stream import StreamTranslator, bedrock_runs, openai_frames
from app.providers.openai_shapes.adapter import TranslatingAdapter
from app.providers.openai_shapes.stream import sse_runs
from app.providers.transport import Transport

VERTEX_VERSION: Final = "vertex-2023-10-16"
BEDROCK_VERSION: Final = "bedrock-2023-05-31"
HOSTINGS: Final = frozenset({"", "vertex", "bedrock"})
"""`""` is api.anthropic.com (`anthropic-version` and `x-api-key` headers come with the
transport); `vertex` and `bedrock` name the cloud hostings."""


class AnthropicAdapter(TranslatingAdapter):
    """`domain.Provider` over the Messages API of Anthropic, Vertex AI or Bedrock.

    `skipped` counts what streams and answers held that OpenAI cannot show (thinking blocks,
    unknown blocks and events), by `block:<type>`, `delta:<type>` or `event:<type>`.
    """

    def __init__(self, name: str, transport: Transport, *, hosting: str = "") -> None:
        if hosting not in HOSTINGS:
            raise ValueError(f"unknown Anthropic hosting: {hosting!r}")
        super().__init__(name, transport, translate_error)
        self._hosting = hosting

    def path(self, upstream_model: str, *, stream: bool) -> str:
        """The upstream path, relative to the base URL the caller configured."""
        if self._hosting == "vertex":
            action = "streamRawPredict" if stream else "rawPredict"
            return f"/{quote(upstream_model, safe='@')}:{action}"
        if self._hosting == "bedrock":
            action = "invoke-with-response-stream" if stream else "invoke"
            return f"/model/{quote(upstream_model, safe='')}/{action}"
        return "/messages"

    def body(self, payload: Payload, upstream_model: str, *, stream: bool) -> bytes:
        """The upstream body; raises `InvalidRequest` for what Anthropic cannot answer."""
        if payload.operation is not Operation.CHAT:
            what = "embeddings" if payload.operation is Operation.EMBEDDINGS else "completions"
            raise InvalidRequest(f"model '{payload.model}' does not support {what}", param="model")
        request = translate_request(payload.fields)
        if self._hosting == "":
            request.model = upstream_model
            request.stream = stream
        elif self._hosting == "vertex":
            request.anthropic_version = VERTEX_VERSION
            request.stream = stream
        else:  # Bedrock: the path says whether to stream, and a `stream` key is refused
            request.anthropic_version = BEDROCK_VERSION
        return encode(request)

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        body = self.body(payload, upstream_model, stream=False)
        answer = await self._post(self.path(upstream_model, stream=False), body)
        try:
            translated, usage = translate_response(answer, upstream_model, self.skipped)
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(self._name, "not a Messages answer") from exc
        return Reply(body=translated, usage=usage)

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: Payload, upstream_model: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        body = self.body(payload, upstream_model, stream=True)
        path = self.path(upstream_model, stream=True)
        async with contextlib.AsyncExitStack() as stack:
            pieces = await self._post_stream(stack, path, body)
            runs = bedrock_runs(pieces) if self._hosting == "bedrock" else sse_runs(pieces)
            yield openai_frames(runs, StreamTranslator(upstream_model, self.skipped))
