"""Model lists in the vendors' shapes (`GET /api/tags`, `GET /v1beta/models`), from the routes."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

_encode = msgspec.json.encode


class _OllamaDetails(msgspec.Struct):
    format: str = ""
    family: str = ""
    parameter_size: str = ""
    quantization_level: str = ""


class _OllamaModel(msgspec.Struct):
    name: str
    model: str
    modified_at: str
    size: int = 0
    digest: str = ""
    details: _OllamaDetails = msgspec.field(default_factory=_OllamaDetails)


class _OllamaTags(msgspec.Struct):
    models: list[_OllamaModel]


class _GeminiModel(msgspec.Struct, rename="camel"):
    name: str
    display_name: str
    supported_generation_methods: tuple[str, ...]


class _GeminiModels(msgspec.Struct):
    models: list[_GeminiModel]


def ollama_tags(aliases: Iterable[str], modified_at: str) -> bytes:
    """`GET /api/tags` in Ollama's shape for the aliases a key may use."""
    return _encode(_OllamaTags([_OllamaModel(a, a, modified_at) for a in aliases]))


def gemini_models(aliases: Iterable[str]) -> bytes:
    """`GET /v1beta/models` in Gemini's shape for the aliases a key may use."""
    methods = ("generateContent", "streamGenerateContent", "countTokens")
    return _encode(_GeminiModels([_GeminiModel(f"models/{a}", a, methods) for a in aliases]))
