"""Which providers can answer a native request (`serves`, `speaks`), and the call to make (`plan`).

The upstream URL is always the provider's configured base URL (its `Transport`, with the
provider's credentials, never the client's) plus a path built here from the target's configured
model. The body is the client's but for `model`, and but for what a cloud hosting of Anthropic
needs (Vertex AI and Bedrock: no `model`, their `anthropic_version`, the model in the path).
"""

from __future__ import annotations

from typing import Final, NamedTuple
from urllib.parse import quote

import msgspec

from app.domain import InvalidRequest, Provider
from app.providers.anthropic import BEDROCK_VERSION, VERTEX_VERSION, AnthropicAdapter
from app.providers.azure import AzureOpenAIAdapter
from app.providers.gemini import GeminiAdapter, model_path
from app.providers.native.parse import VERTEX_GEMINI_ACTIONS
from app.providers.native.request import Framing, NativeRequest, Vendor
from app.providers.ollama import OllamaAdapter
from app.providers.openai import OpenAIAdapter
from app.providers.transport import Transport

_encode = msgspec.json.encode


def _anthropic_hosting(adapter: AnthropicAdapter) -> str:
    return adapter._hosting  # the adapter keeps no public accessor for it


def _transport(
    adapter: AnthropicAdapter | GeminiAdapter | OpenAIAdapter | OllamaAdapter,
) -> Transport:
    """The adapter's pool to its base URL, with the provider's credentials (never the client's)."""
    return adapter._transport


def serves(provider: Provider, vendor: Vendor) -> bool:
    """Whether `provider` speaks the wire format of `vendor`'s native API at all."""
    if vendor is Vendor.ANTHROPIC:
        return isinstance(provider, AnthropicAdapter)
    if vendor is Vendor.GEMINI:
        return isinstance(provider, GeminiAdapter)
    if vendor is Vendor.AZURE:
        return isinstance(provider, AzureOpenAIAdapter)
    return isinstance(provider, OllamaAdapter)


def speaks(provider: Provider, request: NativeRequest) -> bool:
    """Whether `provider` can answer `request` (token counting: not on every hosting)."""
    if not serves(provider, request.vendor):
        return False
    if isinstance(provider, AnthropicAdapter):
        return request.action == "messages" or _anthropic_hosting(provider) == ""
    if isinstance(provider, GeminiAdapter):
        return provider.hosting == "" or request.action in VERTEX_GEMINI_ACTIONS
    return True


class Plan(NamedTuple):
    """One upstream call: where, what, and how to read the answer."""

    transport: Transport
    path: str
    body: bytes
    headers: dict[str, str]
    framing: Framing
    reshape_errors: bool = False
    """The upstream's error bodies are not in the client's vendor shape (Vertex, Bedrock)."""


def _json(value: object) -> msgspec.Raw:
    return msgspec.Raw(_encode(value))


_INCLUDE_USAGE: Final = msgspec.Raw(b'{"include_usage":true}')


def plan(provider: Provider, request: NativeRequest, upstream_model: str) -> Plan:
    """The upstream call for `request` on one target (a provider that `speaks` it)."""
    if isinstance(provider, AnthropicAdapter):
        return _anthropic_plan(provider, request, upstream_model)
    if isinstance(provider, GeminiAdapter):
        return _gemini_plan(provider, request, upstream_model)
    if isinstance(provider, AzureOpenAIAdapter):
        return _azure_plan(provider, request, upstream_model)
    if isinstance(provider, OllamaAdapter):
        fields = {**request.fields, "model": _json(upstream_model)}
        framing = Framing.NDJSON if request.stream else Framing.JSON
        transport = _transport(provider)
        return Plan(transport, f"/api/{request.action}", _encode(fields), {}, framing)
    raise TypeError(f"provider {provider.name} does not speak {request.vendor.value}")


def _anthropic_plan(adapter: AnthropicAdapter, request: NativeRequest, model: str) -> Plan:
    """Direct: `model` replaced; Vertex/Bedrock: no `model`, their version, model in the path."""
    hosting = _anthropic_hosting(adapter)
    transport = _transport(adapter)
    fields = dict(request.fields)
    headers = dict(request.headers)
    if request.action == "count_tokens":  # direct only (see `speaks`)
        fields["model"] = _json(model)
        return Plan(transport, "/messages/count_tokens", _encode(fields), headers, Framing.JSON)
    stream = request.stream
    path = adapter.path(model, stream=stream)
    framing = Framing.SSE if stream else Framing.JSON
    if not hosting:
        fields["model"] = _json(model)
        return Plan(transport, path, _encode(fields), headers, framing)
    del headers["anthropic-version"]  # the version goes in the body
    fields.pop("model", None)
    if hosting == "vertex":
        fields["anthropic_version"] = _json(VERTEX_VERSION)
    else:  # Bedrock: the path says whether to stream, and it takes betas in the body
        fields.pop("stream", None)
        fields["anthropic_version"] = _json(BEDROCK_VERSION)
        beta = headers.pop("anthropic-beta", "")
        if beta:
            fields["anthropic_beta"] = _json([name.strip() for name in beta.split(",")])
        framing = Framing.BEDROCK if stream else Framing.JSON
    return Plan(transport, path, _encode(fields), headers, framing, reshape_errors=True)


def _gemini_plan(adapter: GeminiAdapter, request: NativeRequest, model: str) -> Plan:
    path = model_path(model, request.action)
    if request.stream and request.sse:
        path += "?alt=sse"
    name = "models/" + model.removeprefix("models/")
    fields = request.fields
    body = request.body
    if "model" in fields or request.action == "batchEmbedContents":
        fields = dict(fields)
        if adapter.hosting:
            fields.pop("model", None)
        elif "model" in fields:
            fields["model"] = _json(name)
        if request.action == "batchEmbedContents":
            fields["requests"] = _batch_with_model(fields.get("requests"), name)
        body = _encode(fields)
    framing = request.framing
    transport = _transport(adapter)
    return Plan(transport, path, body, {}, framing, reshape_errors=False)


_decode_batch = msgspec.json.Decoder(list[dict[str, msgspec.Raw]]).decode


def _batch_with_model(raw: msgspec.Raw | None, name: str) -> msgspec.Raw:
    """`batchEmbedContents` requests, each naming the upstream model (Google requires it)."""
    if raw is None:
        raise InvalidRequest("requests: field required", param="requests")
    try:
        requests = _decode_batch(raw)
    except msgspec.DecodeError:
        raise InvalidRequest("requests: invalid type", param="requests") from None
    model = _json(name)
    return _json([{**request, "model": model} for request in requests])


def _azure_plan(adapter: AzureOpenAIAdapter, request: NativeRequest, model: str) -> Plan:
    """Deployments: the client's `api-version` (else the provider's); v1: model in the body."""
    fields = dict(request.fields)
    if adapter.api_version:
        version = quote(request.api_version or adapter.api_version, safe="")
        path = f"/deployments/{quote(model, safe='')}/{request.action}?api-version={version}"
        if "model" in fields:
            fields["model"] = _json(model)
    else:
        path = f"/{request.action}"
        fields["model"] = _json(model)
    if request.stream and "stream_options" not in fields:
        fields["stream_options"] = _INCLUDE_USAGE  # to settle on; removed for the client
    framing = Framing.SSE if request.stream else Framing.JSON
    transport = _transport(adapter)
    return Plan(transport, path, _encode(fields), {}, framing)
