"""Build the provider adapters of one worker (called from the lifespan, never per request).

One place decides, from a provider's `type` (its wire format) and `hosting` (who runs the
model), which adapter speaks to it, at which base URL, with which credentials:

  type       hosting  adapter             default base URL                                 auth
  openai     -        OpenAIAdapter       https://api.openai.com/v1                        Bearer
  openai     azure    AzureOpenAIAdapter  (required) https://RES.openai.azure.com          api-key
  anthropic  -        AnthropicAdapter    https://api.anthropic.com/v1                     x-api-key
  anthropic  vertex   AnthropicAdapter    https://REGION-aiplatform.googleapis.com         OAuth
  anthropic  bedrock  AnthropicAdapter    https://bedrock-runtime.REGION.amazonaws.com     SigV4
  gemini     -        GeminiAdapter       https://generativelanguage.googleapis.com/v1beta goog-key
  gemini     vertex   GeminiAdapter       https://REGION-aiplatform.googleapis.com         OAuth
  ollama     -        OllamaAdapter       http://localhost:11434                           (none)

For Vertex AI the project and region path (`/v1/projects/P/locations/R/publishers/…`) is added
to the base URL here, so `base_url` only ever names the origin (a proxy, or a test server).
Credentials are `httpx.Auth` objects (`app.providers.auth`); no adapter sees a secret.
(goog-key: the `x-goog-api-key` header.)
"""

from __future__ import annotations

import httpx
import structlog

from app.domain import Provider, ProviderSettings
from app.providers.anthropic import AnthropicAdapter
from app.providers.auth import ApiKeyAuth, AwsSigV4Auth, GoogleAuth
from app.providers.azure import V1 as AZURE_V1
from app.providers.azure import AzureOpenAIAdapter
from app.providers.gemini import GeminiAdapter
from app.providers.ollama import OllamaAdapter
from app.providers.openai import OpenAIAdapter
from app.providers.transport import Transport

log = structlog.get_logger("gandalf.providers")

SUPPORTED = frozenset(
    {
        ("openai", ""),
        ("openai", "azure"),
        ("anthropic", ""),
        ("anthropic", "vertex"),
        ("anthropic", "bedrock"),
        ("gemini", ""),
        ("gemini", "vertex"),
        ("ollama", ""),
    }
)
"""(type, hosting) pairs this version serves."""
ANTHROPIC_VERSION = "2023-06-01"


def build_provider(settings: ProviderSettings, api_key: str) -> Provider | None:
    """The adapter for a provider, or None (logged) when it cannot be served."""
    kind, hosting = settings.type, settings.hosting
    if (kind, hosting) not in SUPPORTED:
        log.warning(
            "provider skipped: this type and hosting are not supported",
            provider=settings.name,
            type=kind,
            hosting=hosting,
        )
        return None
    try:
        return _build(settings, api_key)
    except ValueError as exc:  # credentials that cannot be found (AWS variables unset)
        log.warning("provider skipped", provider=settings.name, reason=str(exc))
        return None


def _build(settings: ProviderSettings, api_key: str) -> Provider:
    kind, hosting, name = settings.type, settings.hosting, settings.name
    auth = _auth(settings, api_key)
    if kind == "openai" and hosting == "azure":
        base = _azure_base(settings.base_url, settings.api_version)
        return AzureOpenAIAdapter(
            name, _transport(settings, base, auth), api_version=settings.api_version
        )
    if kind == "openai":
        return OpenAIAdapter(name, _transport(settings, settings.base_url, auth))
    if kind == "anthropic":
        headers = {"anthropic-version": ANTHROPIC_VERSION} if not hosting else {}
        base = settings.base_url
        if hosting == "vertex":
            base = _vertex_base(settings, "anthropic") + "/models"
        transport = _transport(settings, base, auth, headers)
        return AnthropicAdapter(name, transport, hosting=hosting)
    if kind == "gemini":
        base = _vertex_base(settings, "google") if hosting == "vertex" else settings.base_url
        return GeminiAdapter(name, _transport(settings, base, auth), hosting=hosting)
    return OllamaAdapter(name, _transport(settings, settings.base_url, auth))


def _auth(settings: ProviderSettings, api_key: str) -> httpx.Auth | None:
    method = settings.auth_type or {"vertex": "gcp_oauth", "bedrock": "aws_sigv4"}.get(
        settings.hosting, "api_key"
    )
    if method == "gcp_oauth":
        return GoogleAuth(settings.credentials_file)
    if method == "aws_sigv4":
        return AwsSigV4Auth.from_environment(settings.region)
    if not api_key:
        # an OpenAI-compatible server of one's own (vLLM, llama.cpp) or Ollama needs none; a
        # vendor that does answers 401, which fails over and names the provider
        if settings.type != "ollama" and (settings.type != "openai" or settings.hosting):
            log.warning("provider has no API key", provider=settings.name)
        return None
    header = {"anthropic": "x-api-key", "gemini": "x-goog-api-key"}.get(settings.type)
    if settings.hosting == "azure":
        header = "api-key"
    if header is None:
        return ApiKeyAuth("authorization", f"Bearer {api_key}")
    return ApiKeyAuth(header, api_key)


def _transport(
    settings: ProviderSettings,
    base_url: str,
    auth: httpx.Auth | None,
    headers: dict[str, str] | None = None,
) -> Transport:
    return Transport(
        settings.name,
        base_url,
        headers or {},
        connect_timeout=settings.connect_timeout_ms / 1000,
        read_timeout=settings.timeout_ms / 1000,
        auth=auth,
    )


def _vertex_base(settings: ProviderSettings, publisher: str) -> str:
    region, project = settings.region, settings.project
    return f"{settings.base_url}/v1/projects/{project}/locations/{region}/publishers/{publisher}"


def _azure_base(base_url: str, api_version: str) -> str:
    """`https://RES.openai.azure.com` → the URL style `api_version` picks; a full one is kept."""
    if "/openai" in base_url:
        return base_url
    return base_url + ("/openai/v1" if api_version in ("", AZURE_V1) else "/openai")
