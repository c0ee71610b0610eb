"""app/providers/registry.py: which adapter, base URL and credentials each type and hosting get."""

from __future__ import annotations

import pytest

from app.domain import ProviderSettings
from app.providers.anthropic import AnthropicAdapter
from app.providers.azure import AzureOpenAIAdapter
from app.providers.gemini import GeminiAdapter
from app.providers.ollama import OllamaAdapter
from app.providers.openai import OpenAIAdapter
from app.providers.registry import build_provider


def _settings(**fields: object) -> ProviderSettings:
    return ProviderSettings(**{"name": "p", "type": "openai", "base_url": "http://up", **fields})  # type: ignore[arg-type]


def _base(adapter: object) -> str:
    return str(adapter._transport.base_url)  # type: ignore[attr-defined]


def test_an_openai_compatible_server_of_ones_own_needs_no_key() -> None:
    adapter = build_provider(_settings(), "")
    assert isinstance(adapter, OpenAIAdapter)
    assert adapter._transport._auth is None  # type: ignore[attr-defined]
    assert "authorization" not in {k.lower() for k in adapter._transport._fixed}  # type: ignore[attr-defined]


def test_vertex_adds_the_project_and_region_path() -> None:
    settings = _settings(
        type="anthropic", hosting="vertex", base_url="http://v", project="pr", region="eu-1"
    )
    claude = build_provider(settings, "")
    assert isinstance(claude, AnthropicAdapter)
    assert _base(claude) == "http://v/v1/projects/pr/locations/eu-1/publishers/anthropic/models"
    gemini = build_provider(
        _settings(type="gemini", hosting="vertex", base_url="http://v", project="pr", region="r"),
        "",
    )
    assert isinstance(gemini, GeminiAdapter)
    assert _base(gemini) == "http://v/v1/projects/pr/locations/r/publishers/google"


def test_bedrock_without_aws_credentials_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = _settings(type="anthropic", hosting="bedrock", region="us-east-1")
    assert build_provider(settings, "") is None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert isinstance(build_provider(settings, ""), AnthropicAdapter)


@pytest.mark.parametrize(
    ("api_version", "base"),
    [
        ("2024-10-21", "http://az/openai"),
        ("", "http://az/openai/v1"),
        ("v1", "http://az/openai/v1"),
    ],
)
def test_azure_picks_its_url_style(api_version: str, base: str) -> None:
    adapter = build_provider(
        _settings(hosting="azure", base_url="http://az", api_version=api_version), "k"
    )
    assert isinstance(adapter, AzureOpenAIAdapter)
    assert _base(adapter) == base


def test_ollama_and_the_unsupported() -> None:
    assert isinstance(build_provider(_settings(type="ollama"), ""), OllamaAdapter)
    assert build_provider(_settings(type="gemini", hosting="bedrock"), "k") is None
    assert build_provider(_settings(type="mistral"), "k") is None
