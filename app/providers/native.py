"""Native passthrough: each vendor's own API through the gateway, the client's body untouched.

`/v1/messages` (Anthropic), `/v1beta/models/{model}:{action}` (Gemini), `/openai/deployments/
{deployment}/…` (Azure OpenAI) and `/api/…` (Ollama) reach only providers of that wire format,
chosen by the same routes as the universal API. The body goes upstream as the client sent it,
but for `model` (the target's upstream model instead of the alias) and what a cloud hosting of
Anthropic needs (Vertex AI and Bedrock: no `model`, their `anthropic_version`, the model in the
path); the answer comes back as the upstream sent it, except that Bedrock's binary event stream
becomes the Anthropic SSE stream a client of `/v1/messages` expects.

This module is the pure part, no I/O: what a native request asks for (`parse`), which providers
can answer it (`speaks`), the upstream path, body and headers for one target (`plan`), the usage
of an answer (`answer_usage`) or of a stream as it passes (`meter`), a stream's client frames
(`client_frames`), and each vendor's error shapes. The handlers are `app.server.native_api`.

No path or header lets a client reach another host: the upstream URL is always the provider's
configured base URL plus a path built here from the target's configured model and from client
parts that match strict patterns (`NAME`: no `/`, `%`, `@`, `:` or `..`); client headers are not
forwarded, except `anthropic-version` and `anthropic-beta`, each checked against its pattern.
Unlike the Go original (which forwarded every non-auth header and the raw query string, and
refused Bedrock), limits, budgets, usage and failover apply as on the universal routes.

Over the ~400-line guide because the task fixed one file for the four vendors; its sections
are the seams of a `native/{parse,plan,meters,errors}.py` package.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Final, NamedTuple, TypeVar
from urllib.parse import parse_qs, quote

import msgspec

from app.domain import (
    GatewayError,
    InvalidRequest,
    Operation,
    Payload,
    PromptTokensDetails,
    Provider,
    StreamBroken,
    Usage,
)
from app.metering import StreamMeter
from app.providers.anthropic import (
    BEDROCK_VERSION,
    VERTEX_VERSION,
    AnthropicAdapter,
    MessagesStreamMeter,
    messages_usage,
    translate_error,
)
from app.providers.azure import AzureOpenAIAdapter
from app.providers.eventstream import bedrock_payloads
from app.providers.gemini import GeminiAdapter, model_path
from app.providers.ollama import OllamaAdapter
from app.providers.openai import OpenAIAdapter
from app.providers.sse import DONE_FRAME, FrameSplitter
from app.providers.transport import Transport

ANTHROPIC_VERSION: Final = "2023-06-01"
"""`anthropic-version` sent to api.anthropic.com when the client sends none."""
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A model or deployment name taken from a URL path (Gandalf's pattern, no leading dot)."""
_API_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ANTHROPIC_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_BETA = re.compile(r"[A-Za-z0-9._-]{1,128}(?: *, *[A-Za-z0-9._-]{1,128}){0,31}")
_EVENT_TYPE = re.compile(rb"[A-Za-z0-9_.-]{1,64}")
_GEMINI_PATH = re.compile(r"/models/([^/:]+):([A-Za-z]+)")
_AZURE_PATH = re.compile(r"/deployments/([^/]+)/(chat/completions|completions|embeddings)")
MAX_ARRAY_STREAM = 16 * 1024 * 1024
"""Bytes of a Gemini JSON-array stream kept to read its usage at the end; beyond, unmetered."""

ALLOWED_HEADERS: Final = ("anthropic-version", "anthropic-beta")
"""The only client headers that reach an upstream (Anthropic's, on `/v1/messages`)."""

_encode = msgspec.json.encode
T = TypeVar("T")


class Vendor(enum.Enum):
    """A native API the gateway serves, by the wire format its providers speak."""

    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    AZURE = "azure"
    OLLAMA = "ollama"


class Framing(enum.Enum):
    """How an upstream answer is cut into what the client gets."""

    JSON = "json"
    """One answer, passed on whole."""
    SSE = "sse"
    BEDROCK = "bedrock"
    """AWS's binary event stream, turned into Anthropic SSE."""
    NDJSON = "ndjson"
    JSON_ARRAY = "json-array"
    """Gemini's stream without `alt=sse`: one JSON array, element by element."""


CONTENT_TYPES: Final = {
    Framing.SSE: b"text/event-stream",
    Framing.BEDROCK: b"text/event-stream",
    Framing.NDJSON: b"application/x-ndjson",
    Framing.JSON_ARRAY: b"application/json; charset=UTF-8",
}
"""The client's content type of a stream, by framing."""


class PathNotFound(GatewayError):
    """A native path the gateway does not serve."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"

    def __init__(self) -> None:
        super().__init__("not found: no such native route")


class NativeRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A native request, checked: what it asks of which model, and its body one level deep."""

    vendor: Vendor
    action: str
    """`messages` / `count_tokens`; a Gemini method; an Azure operation path; an Ollama API."""
    model: str
    """The alias the request is routed by."""
    body: bytes
    fields: dict[str, msgspec.Raw]
    stream: bool = False
    metered: bool = True
    """False for token counting: not admitted, billed or recorded."""
    embeddings: bool = False
    max_output_tokens: int | None = None
    sse: bool = False
    """Gemini: the client asked for `alt=sse`."""
    api_version: str = ""
    """Azure: the client's `api-version`."""
    headers: tuple[tuple[str, str], ...] = ()
    """The allow-listed client headers, checked."""

    def payload(self) -> Payload:
        """What admission and routing need: the alias, a ~4 characters a token estimate."""
        return Payload(
            operation=Operation.EMBEDDINGS if self.embeddings else Operation.CHAT,
            fields={},
            model=self.model,
            stream=self.stream,
            input_tokens=(len(self.body) + 3) // 4 if self.metered else 0,
            max_output_tokens=self.max_output_tokens,
        )

    @property
    def framing(self) -> Framing:
        """The framing the client gets (Bedrock's is converted to SSE before it)."""
        if not self.stream:
            return Framing.JSON
        if self.vendor is Vendor.OLLAMA:
            return Framing.NDJSON
        if self.vendor is Vendor.GEMINI and not self.sse:
            return Framing.JSON_ARRAY
        return Framing.SSE


# --- parsing ----------------------------------------------------------------------------------


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
        vendor=Vendor.ANTHROPIC,
        action=action,
        model=model,
        body=body,
        fields=fields,
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
        vendor=Vendor.GEMINI,
        action=action,
        model=model,
        body=body,
        fields=fields,
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
        vendor=Vendor.AZURE,
        action=action,
        model=deployment,
        body=body,
        fields=fields,
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
        vendor=Vendor.OLLAMA,
        action=action,
        model=model,
        body=body,
        fields=fields,
        stream=not embeddings and stream is not False,  # Ollama streams unless told not to
        embeddings=embeddings,
        max_output_tokens=_positive(options.num_predict) if options else None,
    )


# --- which providers, and what to send them ----------------------------------------------------


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


# --- usage ------------------------------------------------------------------------------------


class _GeminiUsage(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    cached_content_token_count: int | None = None

    def usage(self) -> Usage:
        """OpenAI's usage: the prompt counts cached tokens too; thinking is completion."""
        prompt = self.prompt_token_count
        completion = self.candidates_token_count + self.thoughts_token_count
        cached = self.cached_content_token_count
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=None
            if cached is None
            else PromptTokensDetails(cached_tokens=cached),
        )


class _GeminiCandidate(msgspec.Struct, rename="camel"):
    finish_reason: str | None = None


class _GeminiChunk(msgspec.Struct, rename="camel"):
    usage_metadata: _GeminiUsage | None = None
    candidates: list[_GeminiCandidate] = []
    error: msgspec.Raw = msgspec.Raw()
    """Empty when there is none."""


class _OllamaCounts(msgspec.Struct):
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    done: bool = False
    error: msgspec.Raw = msgspec.Raw()
    """Empty when there is none."""

    def usage(self) -> Usage | None:
        if self.prompt_eval_count is None and self.eval_count is None:
            return None
        prompt, completion = self.prompt_eval_count or 0, self.eval_count or 0
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


class _OpenAIAnswer(msgspec.Struct):
    usage: Usage | None = None


_decode_gemini = msgspec.json.Decoder(_GeminiChunk).decode
_decode_gemini_array = msgspec.json.Decoder(list[_GeminiChunk]).decode
_decode_ollama = msgspec.json.Decoder(_OllamaCounts).decode
_decode_openai = msgspec.json.Decoder(_OpenAIAnswer).decode


def answer_usage(vendor: Vendor, body: bytes) -> Usage | None:
    """The usage a whole native answer reports, as OpenAI's `Usage`; None when it has none."""
    if vendor is Vendor.ANTHROPIC:
        return messages_usage(body)
    try:
        if vendor is Vendor.GEMINI:
            meta = _decode_gemini(body).usage_metadata
            return None if meta is None else meta.usage()
        if vendor is Vendor.AZURE:
            return _decode_openai(body).usage
        return _decode_ollama(body).usage()
    except msgspec.DecodeError:
        return None


class NativeMeter:
    """Watches a native stream on its way to the client: usage, whole or not, first byte.

    `see` returns what the client gets (the frames unchanged, but for Azure's usage chunk when
    the client did not ask for it). `complete`: the vendor's terminal event came; `failed`: the
    upstream sent its own error event (the client has it already).
    """

    __slots__ = ("chunks", "complete", "failed", "first_at")

    def __init__(self) -> None:
        self.chunks = 0
        self.complete = False
        self.failed = False
        self.first_at: float | None = None
        """Wall-clock time of the first frame (for time to first token)."""

    def see(self, frames: bytes) -> bytes:
        if self.first_at is None:
            self.first_at = time.time()
        return self._see(frames)

    def _see(self, frames: bytes) -> bytes:
        raise NotImplementedError

    @property
    def usage(self) -> Usage | None:
        """What the upstream reported so far; None before it reported anything."""
        raise NotImplementedError

    def used(self, input_estimate: int) -> Usage | None:
        """The upstream's usage; else the estimate and a token per chunk; None for nothing."""
        usage = self.usage
        if usage is not None or not self.chunks:
            return usage
        return Usage(
            prompt_tokens=input_estimate,
            completion_tokens=self.chunks,
            total_tokens=input_estimate + self.chunks,
        )


class _AnthropicMeter(NativeMeter):
    __slots__ = ("_messages",)

    def __init__(self) -> None:
        super().__init__()
        self._messages = MessagesStreamMeter()

    def _see(self, frames: bytes) -> bytes:
        self._messages.see(frames)
        self.chunks += frames.count(b'"type":"content_block_delta"')
        self.complete = self._messages.complete
        if b'"type":"error"' in frames:  # a quote inside a JSON string is escaped: no false hit
            self.failed = True
        return frames

    @property
    def usage(self) -> Usage | None:
        return self._messages.usage


def sse_data(event: bytes) -> bytes:
    """The data of one SSE event (its `data:` lines joined); b"" for none."""
    lines = [
        line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
    ]
    return b"\n".join(lines)


class _GeminiMeter(NativeMeter):
    """Gemini's SSE events, or its JSON array (read whole at its end, up to a bound)."""

    __slots__ = ("_array", "_usage")

    def __init__(self, *, array: bool) -> None:
        super().__init__()
        self._usage: Usage | None = None
        self._array: bytearray | None = bytearray() if array else None

    def _see(self, frames: bytes) -> bytes:
        if self._array is not None:
            self._see_array(frames)
            return frames
        for event in frames.split(b"\n\n"):
            data = sse_data(event)
            if data:
                self.chunks += 1
                self._chunk(data)
        return frames

    def _chunk(self, data: bytes) -> None:
        if b"usageMetadata" not in data and b"finishReason" not in data and b'"error"' not in data:
            return
        try:
            chunk = _decode_gemini(data)
        except msgspec.DecodeError:
            return
        self._read(chunk)

    def _read(self, chunk: _GeminiChunk) -> None:
        if chunk.usage_metadata is not None:
            self._usage = chunk.usage_metadata.usage()
        if any(candidate.finish_reason for candidate in chunk.candidates):
            self.complete = True
        if chunk.error:
            self.failed = True

    def _see_array(self, piece: bytes) -> None:
        array = self._array
        assert array is not None  # noqa: S101 - only called in array mode
        self.chunks += piece.count(b'"candidates"')
        if len(array) + len(piece) > MAX_ARRAY_STREAM:
            self._array = None  # too long to keep: the stream goes on, unmetered
            return
        array += piece
        if not array.rstrip().endswith(b"]"):
            return
        try:
            chunks = _decode_gemini_array(array)
        except msgspec.DecodeError:
            return  # a `]` inside the array, not its end
        for chunk in chunks:
            self._read(chunk)

    @property
    def usage(self) -> Usage | None:
        return self._usage


class _OllamaMeter(NativeMeter):
    """NDJSON lines; the `done` line carries the counts."""

    __slots__ = ("_usage",)

    def __init__(self) -> None:
        super().__init__()
        self._usage: Usage | None = None

    def _see(self, frames: bytes) -> bytes:
        for line in frames.split(b"\n"):
            if not line.strip():
                continue
            self.chunks += 1
            if (
                b'"done":true' not in line
                and b'"done": true' not in line
                and b'"error"' not in line
            ):
                continue
            try:
                counts = _decode_ollama(line)
            except msgspec.DecodeError:
                continue
            if counts.error:
                self.failed = True
            elif counts.done:
                self.complete = True
                self._usage = counts.usage()
        return frames

    @property
    def usage(self) -> Usage | None:
        return self._usage


class _AzureMeter(NativeMeter):
    """OpenAI chunks: the usage chunk (asked for by the gateway) and `[DONE]`."""

    __slots__ = ("_openai",)

    def __init__(self, *, strip_usage: bool) -> None:
        super().__init__()
        self._openai = StreamMeter(strip_usage=strip_usage, assemble=False)

    def _see(self, frames: bytes) -> bytes:
        forward = self._openai.see(frames)
        self.chunks = self._openai.chunks
        if frames.startswith(b"data: [DONE]") or b"\n\ndata: [DONE]" in frames:
            self.complete = True
        if frames.startswith(b"event: error") or b"\n\nevent: error" in frames:
            self.failed = True
        return forward

    @property
    def usage(self) -> Usage | None:
        return self._openai.usage


def meter(request: NativeRequest) -> NativeMeter:
    """The meter for a streamed `request`."""
    if request.vendor is Vendor.ANTHROPIC:
        return _AnthropicMeter()
    if request.vendor is Vendor.GEMINI:
        return _GeminiMeter(array=not request.sse)
    if request.vendor is Vendor.OLLAMA:
        return _OllamaMeter()
    return _AzureMeter(strip_usage="stream_options" not in request.fields)


# --- streams ----------------------------------------------------------------------------------


class _Tag(msgspec.Struct):
    type: str = ""


_decode_tag = msgspec.json.Decoder(_Tag).decode
_decode_any = msgspec.json.Decoder().decode


def anthropic_event(data: bytes) -> bytes:
    """One Anthropic event's JSON as the SSE event api.anthropic.com would send.

    Raises:
        StreamBroken: the JSON cannot be read or names no usable event type.
    """
    try:
        kind = _decode_tag(data).type.encode()
    except msgspec.DecodeError:
        raise StreamBroken("unreadable event from bedrock") from None
    if not _EVENT_TYPE.fullmatch(kind):
        raise StreamBroken("bedrock event without a type")
    if b"\n" in data or b"\r" in data:  # one `data:` line: newlines can only be whitespace
        data = _encode(_decode_any(data))
    return b"event: " + kind + b"\ndata: " + data + b"\n\n"


async def client_frames(pieces: AsyncIterator[bytes], framing: Framing) -> AsyncIterator[bytes]:
    """The upstream's body in runs the client can be sent: whole events, whole lines.

    Forwarding only whole events means a stream that breaks still ends well-formed, with the
    vendor's error event after the last whole one. An SSE event cut by the end of the stream
    is dropped (as SSE clients drop it); an NDJSON line without its newline gets one.
    """
    if framing is Framing.BEDROCK:
        async for payload in bedrock_payloads(pieces):
            yield anthropic_event(payload)
        return
    if framing is Framing.SSE:
        splitter = FrameSplitter()
        async for piece in pieces:
            frames = splitter.feed(piece)
            if frames:
                yield frames
        return
    if framing is Framing.NDJSON:
        pending = b""
        async for piece in pieces:
            data = pending + piece
            end = data.rfind(b"\n") + 1
            pending = data[end:]
            if end:
                yield data[:end]
        if pending.strip():
            yield pending + b"\n"
        return
    async for piece in pieces:
        yield piece


# --- errors -----------------------------------------------------------------------------------


ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
GOOGLE_STATUSES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class _AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class _AnthropicError(msgspec.Struct, tag_field="type", tag="error"):
    error: _AnthropicErrorDetail


class _GoogleErrorDetail(msgspec.Struct):
    code: int
    message: str
    status: str


class _GoogleError(msgspec.Struct):
    error: _GoogleErrorDetail


class _OllamaError(msgspec.Struct):
    error: str


def anthropic_error(status: int, message: str, kind: str | None = None) -> bytes:
    """`{"type": "error", "error": {"type", "message"}}`, the type from the status."""
    kind = kind or ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return _encode(_AnthropicError(_AnthropicErrorDetail(kind, message)))


def gemini_error(status: int, message: str) -> bytes:
    """Google's `{"error": {"code", "message", "status"}}`."""
    name = GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return _encode(_GoogleError(_GoogleErrorDetail(status, message, name)))


def ollama_error(message: str) -> bytes:
    """Ollama's `{"error": "..."}`."""
    return _encode(_OllamaError(message))


def error_body(vendor: Vendor, status: int, message: str) -> bytes | None:
    """A gateway error in `vendor`'s shape; None for Azure (OpenAI's shape, rendered as such)."""
    if vendor is Vendor.ANTHROPIC:
        return anthropic_error(status, message)
    if vendor is Vendor.GEMINI:
        return gemini_error(status, message)
    if vendor is Vendor.OLLAMA:
        return ollama_error(message)
    return None


class _OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str


class _OpenAIError(msgspec.Struct):
    error: _OpenAIErrorDetail


_decode_openai_error = msgspec.json.Decoder(_OpenAIError).decode


def upstream_error(plan: Plan, status: int, body: bytes, content_type: str) -> tuple[bytes, str]:
    """An upstream error body for the client: as it came, or Anthropic-shaped for a cloud."""
    if not plan.reshape_errors:
        return body, content_type
    error = _decode_openai_error(translate_error(status, body)).error
    return anthropic_error(status, error.message, error.type), "application/json"


_STREAM_ERROR = "upstream stream error"


def stream_error(vendor: Vendor, framing: Framing) -> bytes:
    """What ends a stream that broke after its head was sent, in the vendor's own way.

    Nothing for a Gemini JSON array: left open, it cannot be parsed, which says enough.
    """
    if framing is Framing.JSON_ARRAY:
        return b""
    if vendor is Vendor.ANTHROPIC:
        return b"event: error\ndata: " + anthropic_error(502, _STREAM_ERROR, "api_error") + b"\n\n"
    if vendor is Vendor.GEMINI:
        return b"data: " + gemini_error(502, _STREAM_ERROR) + b"\n\n"
    if vendor is Vendor.OLLAMA:
        return ollama_error(_STREAM_ERROR) + b"\n"
    detail = _OpenAIErrorDetail(_STREAM_ERROR, "stream_error")
    return b"event: error\ndata: " + _encode(_OpenAIError(detail)) + b"\n\n" + DONE_FRAME


# --- model lists ------------------------------------------------------------------------------


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
