"""`OllamaAdapter`: Ollama's native API (`/api/chat`, `/api/generate`, `/api/embed`).

The native API instead of Ollama's `/v1` compatibility layer (what the Go original used)
because it reports the token counts the bill is settled on for streams too, and takes images,
tools and JSON schemas in one documented shape. Base URL without `/v1`, e.g.
`http://localhost:11434`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import msgspec

from app.domain import (
    InvalidRequest,
    Operation,
    Payload,
    Reply,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from app.providers.ollama.answer import (
    openai_error_body,
    translate_chat,
    translate_embed,
    translate_generate,
)
from app.providers.ollama.request import build_chat_body, build_embed_body, build_generate_body
from app.providers.ollama.stream import OllamaStream, translate_stream
from app.providers.openai_shapes.adapter import TranslatingAdapter
from app.providers.transport import Transport

LIST_TIMEOUT = 10.0
"""Seconds for `GET /api/tags` (model listing, not a request path)."""


class _Tags(msgspec.Struct):
    class _Model(msgspec.Struct):
        name: str

    models: list[_Model] = []


_decode_tags = msgspec.json.Decoder(_Tags).decode


class OllamaAdapter(TranslatingAdapter):
    """`domain.Provider` over Ollama's native API.

    `skipped` counts answer pieces the OpenAI shape cannot hold (thinking), by kind.
    """

    def __init__(self, name: str, transport: Transport) -> None:
        super().__init__(name, transport, openai_error_body)

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        operation = payload.operation
        if operation is Operation.EMBEDDINGS:
            body, base64_vectors = build_embed_body(payload, upstream_model)
            answer = await self._post("/api/embed", body)
            translated, usage = translate_embed(
                self._name, answer, upstream_model, base64_vectors=base64_vectors
            )
        elif operation is Operation.COMPLETIONS:
            answer = await self._post("/api/generate", build_generate_body(payload, upstream_model))
            translated, usage = translate_generate(self._name, answer, upstream_model)
        else:
            answer = await self._post("/api/chat", build_chat_body(payload, upstream_model))
            translated, usage = translate_chat(self._name, answer, upstream_model)
        return Reply(body=translated, usage=usage)

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: Payload, upstream_model: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        chat = payload.operation is not Operation.COMPLETIONS
        if payload.operation is Operation.EMBEDDINGS:
            raise InvalidRequest("embeddings do not stream", param="stream")
        if chat:
            path, body = "/api/chat", build_chat_body(payload, upstream_model)
        else:
            path, body = "/api/generate", build_generate_body(payload, upstream_model)
        async with contextlib.AsyncExitStack() as stack:
            pieces = await self._post_stream(stack, path, body)
            yield translate_stream(pieces, OllamaStream(upstream_model, self.skipped, chat=chat))

    async def list_models(self) -> list[str]:
        """The names of the models Ollama has pulled (`GET /api/tags`).

        A plain `httpx.AsyncClient` (Transport only POSTs): listing is no hot path.
        """
        async with httpx.AsyncClient(
            base_url=self._transport.base_url, timeout=LIST_TIMEOUT
        ) as client:
            try:
                response = await client.get("/api/tags")
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout(self._name) from exc
            except httpx.TransportError as exc:
                raise UpstreamUnreachable(self._name, type(exc).__name__) from exc
        if response.status_code >= 300:
            raise self._status(response.status_code, response.content)
        try:
            tags = _decode_tags(response.content)
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(self._name, f"invalid /api/tags answer: {exc}") from exc
        return [model.name for model in tags.models]
