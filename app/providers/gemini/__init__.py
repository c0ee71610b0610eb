"""Gemini upstream (Google AI Studio and Vertex AI), translated from and to OpenAI's shapes.

Chat goes to `generateContent` and `streamGenerateContent?alt=sse`, embeddings to
`batchEmbedContents` (direct) or `:predict` (Vertex AI's text-embedding models). Every answer
leaves in OpenAI's shapes, errors included. The pure parts - `request` (`build_chat_body`),
`answer` (`translate_response`, `openai_error_body`) and `stream` (`GeminiStream`) - do no
I/O; `wire` holds Gemini's own bodies and answers, and `adapter` the small I/O class.
"""

from app.providers.gemini.adapter import HOSTINGS, GeminiAdapter, model_path
from app.providers.gemini.answer import (
    FINISH_REASONS,
    finish_reason,
    openai_error_body,
    translate_embeddings,
    translate_response,
    usage_of,
)
from app.providers.gemini.request import (
    IMAGE_TYPES,
    REFUSED_SCHEMA_KEYS,
    build_chat_body,
    build_embedding_body,
    clean_schema,
)
from app.providers.gemini.stream import GeminiStream, translate_stream

__all__ = [
    "FINISH_REASONS",
    "HOSTINGS",
    "IMAGE_TYPES",
    "REFUSED_SCHEMA_KEYS",
    "GeminiAdapter",
    "GeminiStream",
    "build_chat_body",
    "build_embedding_body",
    "clean_schema",
    "finish_reason",
    "model_path",
    "openai_error_body",
    "translate_embeddings",
    "translate_response",
    "translate_stream",
    "usage_of",
]
