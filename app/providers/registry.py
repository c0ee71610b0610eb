"""Build the provider adapters of one worker (called from the lifespan, never per request)."""

from __future__ import annotations

import structlog

from app.domain import Provider, ProviderSettings
from app.providers.openai import OpenAIAdapter
from app.providers.transport import Transport

log = structlog.get_logger("gandalf.providers")

SUPPORTED_TYPES = frozenset({"openai", "ollama"})


def build_provider(settings: ProviderSettings, api_key: str) -> Provider | None:
    """The adapter for a provider, or None (logged) when its type/hosting is not served yet."""
    kind = settings.type
    if kind not in SUPPORTED_TYPES or settings.hosting:
        log.warning(
            "provider skipped: not supported by this version",
            provider=settings.name,
            type=kind,
            hosting=settings.hosting,
        )
        return None
    headers: dict[str, str] = {}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    base_url = settings.base_url
    if kind == "ollama":
        base_url += "/v1"  # Ollama's OpenAI-compatible API
    transport = Transport(
        settings.name,
        base_url,
        headers,
        connect_timeout=settings.connect_timeout_ms / 1000,
        read_timeout=settings.timeout_ms / 1000,
    )
    return OpenAIAdapter(settings.name, transport)
