"""`GeminiAdapter`: Gemini's REST API, direct (Google AI Studio) or on Vertex AI.

Both hostings take the same relative paths and bodies; only the base URL and the credential
(set by the caller on the `Transport`) differ, so one adapter serves both.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import quote

from app.domain import InvalidRequest, Operation, Payload, Reply
from app.providers.gemini.answer import (
    openai_error_body,
    translate_embeddings,
    translate_predictions,
    translate_response,
)
from app.providers.gemini.request import build_chat_body, build_embedding_body, build_predict_body
from app.providers.gemini.stream import GeminiStream, translate_stream
from app.providers.openai_shapes.adapter import TranslatingAdapter
from app.providers.transport import Transport

HOSTINGS = frozenset({"", "vertex"})


def model_path(model: str, action: str) -> str:
    """`/models/{model}:{action}`, the path under both hostings' base URLs."""
    return f"/models/{quote(model.removeprefix('models/'), safe='')}:{action}"


class GeminiAdapter(TranslatingAdapter):
    """`domain.Provider` over Gemini's REST API, direct (`hosting=""`) or on Vertex AI.

    `skipped` counts answer parts the OpenAI shape cannot hold (thoughts, code, media), by kind.
    """

    def __init__(self, name: str, transport: Transport, *, hosting: str = "") -> None:
        if hosting not in HOSTINGS:
            raise ValueError(f"unknown Gemini hosting {hosting!r}: use '' or 'vertex'")
        super().__init__(name, transport, openai_error_body)
        self.hosting = hosting

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        if payload.operation is Operation.EMBEDDINGS:
            return await self._embed(payload, upstream_model)
        _check_chat(payload)
        path = model_path(upstream_model, "generateContent")
        body = await self._post(path, build_chat_body(payload))
        answer, usage = translate_response(self._name, body, upstream_model, self.skipped)
        return Reply(body=answer, usage=usage)

    async def _embed(self, payload: Payload, upstream_model: str) -> Reply:
        if self.hosting == "vertex":  # Vertex AI's text-embedding models answer `:predict`
            body, base64_vectors = build_predict_body(payload)
            answer = await self._post(model_path(upstream_model, "predict"), body)
            listing, usage = translate_predictions(
                self._name, answer, upstream_model, base64_vectors=base64_vectors
            )
            return Reply(body=listing, usage=usage)
        body, base64_vectors = build_embedding_body(payload, upstream_model)
        answer = await self._post(model_path(upstream_model, "batchEmbedContents"), body)
        translated = translate_embeddings(
            self._name,
            answer,
            upstream_model,
            base64_vectors=base64_vectors,
            input_tokens=payload.input_tokens,
        )
        return Reply(body=translated, usage=None)

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: Payload, upstream_model: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        _check_chat(payload)
        body = build_chat_body(payload)
        path = model_path(upstream_model, "streamGenerateContent") + "?alt=sse"
        async with contextlib.AsyncExitStack() as stack:
            pieces = await self._post_stream(stack, path, body)
            yield translate_stream(pieces, GeminiStream(upstream_model, self.skipped))


def _check_chat(payload: Payload) -> None:
    if payload.operation is not Operation.CHAT:
        raise InvalidRequest(
            "Gemini serves chat completions and embeddings; legacy completions are not "
            "supported: use /v1/chat/completions"
        )
