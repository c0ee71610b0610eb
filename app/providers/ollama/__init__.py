"""Ollama's native API upstream, translated from and to OpenAI's shapes.

Chat goes to `/api/chat`, legacy completions to `/api/generate`, embeddings to `/api/embed`.
The pure parts - `request` (the `build_*_body` functions), `answer` (`translate_*`,
`openai_error_body`) and `stream` (`OllamaStream`) - do no I/O; `adapter` is the small I/O
class.
"""

from app.providers.ollama.adapter import LIST_TIMEOUT, OllamaAdapter
from app.providers.ollama.answer import (
    finish_reason,
    openai_error_body,
    translate_chat,
    translate_embed,
    translate_generate,
)
from app.providers.ollama.request import build_chat_body, build_embed_body, build_generate_body
from app.providers.ollama.stream import OllamaStream, translate_stream

__all__ = [
    "LIST_TIMEOUT",
    "OllamaAdapter",
    "OllamaStream",
    "build_chat_body",
    "build_embed_body",
    "build_generate_body",
    "finish_reason",
    "openai_error_body",
    "translate_chat",
    "translate_embed",
    "translate_generate",
    "translate_stream",
]
