"""Reading a native request (`parse`): its path, query, allow-listed headers and body, checked.

No path part or header reaches an upstream unless it matches a strict pattern here (`NAME`: no
`/`, `%`, `@`, `:` or `..`), so no client can point the gateway at another host or path. The
body is decoded one level deep only: what is not read here goes upstream byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final, TypeVar
from urllib.parse import parse_qs

import msgspec

from app.domain import InvalidRequest
from app.providers.native.request import NativeRequest, PathNotFound, Vendor

ANTHROPIC_VERSION: Final = "2023-06-01"
"""`anthropic-version` sent to api.anthropic.com when the client sends none."""
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A model or deployment name taken from a URL path (Gandalf's pattern, no leading dot)."""
_API_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ANTHROPIC_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_BETA = re.compile(r"[A-Za-z0-9._-]{1,128}(?: *, *[A-Za-z0-9._-]{1,128}){0,31}")
_GEMINI_PATH = re.compile(r"/models/([^/:]+):([A-Za-z]+)")
_AZURE_PATH = re.compile(r"/deployments/([^/]+)/(chat/completions|completions|embeddings)")
T = TypeVar("T")

_decode_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_decode_str = msgspec.json.Decoder(str).decode
_decode_bool = msgspec.json.Decoder(bool).decode
_decode_int = msgspec.json.Decoder(int).decode


class _GenerationConfig(msgspec.Struct, rename="camel"):
    max_output_tokens: int | None = None


class _OllamaOptions(msgspec.Struct):
    num_predict: int | None = None


_decode_generation_config = msgspec.json.Decoder(_GenerationConfig).decode
_decode_ollama_options = msgspec.json.Decoder(_OllamaOptions).decode


def path_name(value: str, what: str) -> str:
    """`value` when it is a safe name for an upstream path; else a 400."""
    if not NAME.fullmatch(value) or ".." in value:
        raise InvalidRequest("invalid path parameters", param=what)
    return value


def _fields(body: bytes) -> dict[str, msgspec.Raw]:
    try:
        return _decode_fields(body)
    except msgspec.DecodeError:
        raise InvalidRequest("invalid request body: a JSON object is required") from None


def _field(fields: Mapping[str, msgspec.Raw], name: str, decode: Callable[[bytes], T]) -> T | None:
    """A field checked for its type (a 400 naming it when wrong); None when absent or null."""
    raw = fields.get(name)
    if raw is None or bytes(raw) == b"null":
        return None
    try:
        return decode(raw)
    except msgspec.DecodeError:
        raise InvalidRequest(f"{name}: invalid type", param=name) from None


def _hint(fields: Mapping[str, msgspec.Raw], name: str, decode: Callable[[bytes], T]) -> T | None:
    """A field read for admission only: a wrong one is the upstream's to refuse."""
    try:
        return _field(fields, name, decode)
    except InvalidRequest:
        return None


def _model(fields: Mapping[str, msgspec.Raw]) -> str:
    model = _field(fields, "model", _decode_str)
    if not model:
        raise InvalidRequest("model: field required", param="model")
    return model


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None


def parse(
    vendor: Vendor, rest: str, query: bytes, body: bytes, headers: Mapping[str, str]
) -> NativeRequest:
    """The request a native route received, checked.

    `rest` is the raw (still percent-encoded) path after the route's prefix, `query` the raw
    query string, `headers` the `ALLOWED_HEADERS` the client sent (lower-case names).

    Raises:
        PathNotFound: not a path of that API.
        InvalidRequest: an unsafe path part or header, a body that is not a JSON object, a
            missing model.
    """
    if vendor is Vendor.ANTHROPIC:
        return _parse_anthropic(rest, body, headers)
    params = parse_qs(query.decode("latin-1"))
    if vendor is Vendor.GEMINI:
        return _parse_gemini(rest, params, body)
    if vendor is Vendor.AZURE:
        return _parse_azure(rest, params, body)
    return _parse_ollama(rest, body)


def _parse_anthropic(rest: str, body: bytes, headers: Mapping[str, str]) -> NativeRequest:
    if rest in ("", "/"):
        action = "messages"
    elif rest in ("/count_tokens", "/count_tokens/"):
        action = "count_tokens"
    else:
        raise PathNotFound
    version = headers.get("anthropic-version") or ANTHROPIC_VERSION
    if not _ANTHROPIC_VERSION.fullmatch(version):
        raise InvalidRequest("anthropic-version: invalid value", param="anthropic-version")
    allowed = [("anthropic-version", version)]
    beta = headers.get("anthropic-beta")
    if beta:
        if not _BETA.fullmatch(beta):
            raise InvalidRequest("anthropic-beta: invalid value", param="anthropic-beta")
        allowed.append(("anthropic-beta", beta))
    fields = _fields(body)
    model = _model(fields)
    messages = action == "messages"
    return NativeRequest(
        Vendor.ANTHROPIC,
        action,
        model,
        body,
        fields,
        stream=messages and bool(_field(fields, "stream", _decode_bool)),
        metered=messages,
        max_output_tokens=_positive(_hint(fields, "max_tokens", _decode_int)),
        headers=tuple(allowed),
    )


GEMINI_ACTIONS: Final = frozenset(
    {"generateContent", "streamGenerateContent", "countTokens", "embedContent"}
    | {"batchEmbedContents"}
)
VERTEX_GEMINI_ACTIONS: Final = frozenset(
    {"generateContent", "streamGenerateContent", "countTokens"}
)
"""What Vertex AI serves at the same `/models/{model}:{action}` path (its embeddings differ)."""


def _parse_gemini(rest: str, params: Mapping[str, list[str]], body: bytes) -> NativeRequest:
    match = _GEMINI_PATH.fullmatch(rest)
    if match is None or match[2] not in GEMINI_ACTIONS:
        raise PathNotFound
    model, action = path_name(match[1], "model"), match[2]
    fields = _fields(body)
    config = _hint(fields, "generationConfig", _decode_generation_config)
    return NativeRequest(
        Vendor.GEMINI,
        action,
        model,
        body,
        fields,
        stream=action == "streamGenerateContent",
        metered=action != "countTokens",
        embeddings=action.endswith("EmbedContents") or action == "embedContent",
        max_output_tokens=_positive(config.max_output_tokens) if config else None,
        sse=params.get("alt", [""])[-1] == "sse",
    )


def _parse_azure(rest: str, params: Mapping[str, list[str]], body: bytes) -> NativeRequest:
    match = _AZURE_PATH.fullmatch(rest)
    if match is None:
        raise PathNotFound
    deployment, action = path_name(match[1], "deployment"), match[2]
    version = params.get("api-version", [""])[-1]
    if version and not _API_VERSION.fullmatch(version):
        raise InvalidRequest("api-version: invalid value", param="api-version")
    fields = _fields(body)
    embeddings = action == "embeddings"
    limit = _hint(fields, "max_completion_tokens", _decode_int)
    return NativeRequest(
        Vendor.AZURE,
        action,
        deployment,
        body,
        fields,
        stream=not embeddings and bool(_field(fields, "stream", _decode_bool)),
        embeddings=embeddings,
        max_output_tokens=_positive(limit or _hint(fields, "max_tokens", _decode_int)),
        api_version=version,
    )


OLLAMA_ACTIONS: Final = frozenset({"chat", "generate", "embed", "embeddings"})


def _parse_ollama(rest: str, body: bytes) -> NativeRequest:
    action = rest.strip("/")
    if action not in OLLAMA_ACTIONS or rest != f"/{action}":
        raise PathNotFound
    fields = _fields(body)
    model = _model(fields)
    embeddings = action.startswith("embed")
    stream = _field(fields, "stream", _decode_bool)
    options = _hint(fields, "options", _decode_ollama_options)
    return NativeRequest(
        Vendor.OLLAMA,
        action,
        model,
        body,
        fields,
        stream=not embeddings and stream is not False,  # Ollama streams unless told not to
        embeddings=embeddings,
        max_output_tokens=_positive(options.num_predict) if options else None,
    )
