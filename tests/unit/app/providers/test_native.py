"""The pure parts of the native passthrough: parsing, targets, upstream calls, usage, frames."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from app.domain import InvalidRequest, Operation, PromptTokensDetails, StreamBroken, Usage
from app.providers import native
from app.providers.anthropic import AnthropicAdapter
from app.providers.azure import AzureOpenAIAdapter
from app.providers.eventstream import encode_message
from app.providers.gemini import GeminiAdapter
from app.providers.native import Framing, NativeRequest, PathNotFound, Vendor
from app.providers.ollama import OllamaAdapter
from app.providers.openai import OpenAIAdapter
from app.providers.transport import Transport

decode = msgspec.json.decode
encode = msgspec.json.encode
MESSAGES = b'{"model":"claude","max_tokens":50, "messages":[{"role":"user","content":"hi"}]}'


def _transport(name: str = "p") -> Transport:
    return Transport(name, "http://127.0.0.1:9/base", {}, connect_timeout=1, read_timeout=1)


@pytest.fixture
def adapters() -> Iterator[dict[str, Any]]:
    yield {
        "anthropic": AnthropicAdapter("anthropic", _transport()),
        "vertex": AnthropicAdapter("vertex", _transport(), hosting="vertex"),
        "bedrock": AnthropicAdapter("bedrock", _transport(), hosting="bedrock"),
        "gemini": GeminiAdapter("gemini", _transport()),
        "gemini-vertex": GeminiAdapter("gemini-vertex", _transport(), hosting="vertex"),
        "azure": AzureOpenAIAdapter("azure", _transport(), api_version="2024-10-21"),
        "azure-v1": AzureOpenAIAdapter("azure-v1", _transport(), api_version="v1"),
        "ollama": OllamaAdapter("ollama", _transport()),
        "openai": OpenAIAdapter("openai", _transport()),
    }


def anthropic_request(
    body: bytes = MESSAGES, rest: str = "", headers: dict[str, str] | None = None
) -> NativeRequest:
    return native.parse(Vendor.ANTHROPIC, rest, b"", body, headers or {})


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gemini-2.5-flash", "gpt-4o", "a", "llama3.2", "x_y", "A" * 128])
def test_safe_path_names(name: str) -> None:
    assert native.path_name(name, "model") == name


@pytest.mark.parametrize(
    "name",
    ["", "..", ".x", "a..b", "a/b", "a%2Fb", "m@evil.example", "a:b", "a b", "é", "A" * 129],
)
def test_unsafe_path_names(name: str) -> None:
    with pytest.raises(InvalidRequest):
        native.path_name(name, "model")


def test_anthropic_messages() -> None:
    request = anthropic_request()
    assert (request.action, request.model, request.stream, request.metered) == (
        "messages",
        "claude",
        False,
        True,
    )
    assert request.max_output_tokens == 50
    assert request.headers == (("anthropic-version", "2023-06-01"),)
    assert request.framing is Framing.JSON
    payload = request.payload()
    assert payload.model == "claude"
    assert payload.operation is Operation.CHAT
    assert payload.input_tokens == (len(MESSAGES) + 3) // 4
    assert payload.max_output_tokens == 50
    assert payload.fields == {}


def test_anthropic_stream_headers_and_count_tokens() -> None:
    body = b'{"model":"claude","stream":true,"max_tokens":5,"messages":[]}'
    headers = {"anthropic-version": "2026-10-21", "anthropic-beta": "a-1, b-2"}
    request = anthropic_request(body, "/", headers)
    assert request.stream and request.framing is Framing.SSE
    assert dict(request.headers) == headers
    counting = anthropic_request(b'{"model":"claude","messages":[]}', "/count_tokens")
    assert counting.action == "count_tokens"
    assert not counting.metered and not counting.stream
    assert counting.payload().input_tokens == 0


@pytest.mark.parametrize("rest", ["/x", "X", "/count_tokens/x", "/../count_tokens"])
def test_anthropic_unknown_paths(rest: str) -> None:
    with pytest.raises(PathNotFound):
        anthropic_request(rest=rest)


@pytest.mark.parametrize(
    ("body", "headers", "param"),
    [
        (b'{"max_tokens":5}', {}, "model"),
        (b'{"model":""}', {}, "model"),
        (b'{"model":7}', {}, "model"),
        (b'{"model":"c","stream":"yes"}', {}, "stream"),
        (MESSAGES, {"anthropic-version": "2023-06-01\r\nHost: evil"}, "anthropic-version"),
        (MESSAGES, {"anthropic-beta": "a\r\nx-api-key: k"}, "anthropic-beta"),
        (MESSAGES, {"anthropic-beta": "béta"}, "anthropic-beta"),
    ],
)
def test_anthropic_refusals(body: bytes, headers: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        anthropic_request(body, "", headers)
    assert caught.value.param == param


@pytest.mark.parametrize("body", [b"[]", b"not json", b'"x"', b""])
def test_a_body_must_be_a_json_object(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        native.parse(Vendor.OLLAMA, "/chat", b"", body, {})


def test_gemini_paths_and_actions() -> None:
    body = b'{"contents":[],"generationConfig":{"maxOutputTokens":64,"temperature":0.5}}'
    streamed = native.parse(
        Vendor.GEMINI, "/models/gemini-flash:streamGenerateContent", b"alt=sse&key=k", body, {}
    )
    assert (streamed.model, streamed.action, streamed.stream, streamed.sse) == (
        "gemini-flash",
        "streamGenerateContent",
        True,
        True,
    )
    assert streamed.max_output_tokens == 64
    assert streamed.framing is Framing.SSE
    array = native.parse(Vendor.GEMINI, "/models/g:streamGenerateContent", b"", b"{}", {})
    assert array.framing is Framing.JSON_ARRAY
    counting = native.parse(Vendor.GEMINI, "/models/g:countTokens", b"", b"{}", {})
    assert not counting.metered and not counting.stream
    embedding = native.parse(Vendor.GEMINI, "/models/g:batchEmbedContents", b"", b"{}", {})
    assert embedding.embeddings and embedding.payload().operation is Operation.EMBEDDINGS


@pytest.mark.parametrize(
    ("rest", "error"),
    [
        ("/models/..%2F..:generateContent", InvalidRequest),
        ("/models/g%40evil.example:generateContent", InvalidRequest),
        ("/models/../x:generateContent", PathNotFound),
        ("/models/g:generateContent/x", PathNotFound),
        ("/models/g:deleteEverything", PathNotFound),
        ("/models/g", PathNotFound),
        ("/tunedModels/g:generateContent", PathNotFound),
        ("/models/http:%2F%2Fevil:generateContent", PathNotFound),
    ],
)
def test_gemini_refusals(rest: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        native.parse(Vendor.GEMINI, rest, b"", b"{}", {})


def test_azure_deployments() -> None:
    body = b'{"messages":[],"stream":true,"max_completion_tokens":9,"max_tokens":3}'
    request = native.parse(
        Vendor.AZURE, "/deployments/gpt-4o/chat/completions", b"api-version=2024-10-21", body, {}
    )
    assert (request.model, request.action, request.api_version) == (
        "gpt-4o",
        "chat/completions",
        "2024-10-21",
    )
    assert request.stream and request.max_output_tokens == 9
    embeddings = native.parse(
        Vendor.AZURE, "/deployments/e/embeddings", b"", b'{"input":"x","stream":true}', {}
    )
    assert embeddings.embeddings and not embeddings.stream and embeddings.api_version == ""


@pytest.mark.parametrize(
    ("rest", "query", "error"),
    [
        ("/deployments/..%2Fx/chat/completions", b"", InvalidRequest),
        ("/deployments/a/b/chat/completions", b"", PathNotFound),
        ("/deployments/a/files", b"", PathNotFound),
        ("/deployments/a/chat/completions", b"api-version=..%2F..%2Fx", InvalidRequest),
        ("/deployments/a/chat/completions", b"api-version=1%0d%0aHost:x", InvalidRequest),
    ],
)
def test_azure_refusals(rest: str, query: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        native.parse(Vendor.AZURE, rest, query, b"{}", {})


def test_ollama_streams_unless_told_not_to() -> None:
    chat = native.parse(Vendor.OLLAMA, "/chat", b"", b'{"model":"llama"}', {})
    assert chat.stream and chat.framing is Framing.NDJSON
    plain = native.parse(
        Vendor.OLLAMA,
        "/generate",
        b"",
        b'{"model":"llama","stream":false,"options":{"num_predict":12}}',
        {},
    )
    assert not plain.stream and plain.max_output_tokens == 12
    embed = native.parse(Vendor.OLLAMA, "/embed", b"", b'{"model":"e","input":"x"}', {})
    assert embed.embeddings and not embed.stream
    unbounded = native.parse(
        Vendor.OLLAMA, "/chat", b"", b'{"model":"m","options":{"num_predict":-1}}', {}
    )
    assert unbounded.max_output_tokens is None
    for rest in ("/tags", "/chat/x", "/pull", "//chat", "/chat/"):
        with pytest.raises(PathNotFound):
            native.parse(Vendor.OLLAMA, rest, b"", b'{"model":"m"}', {})


# --- targets ----------------------------------------------------------------------------------


def test_which_providers_speak_which_request(adapters: dict[str, Any]) -> None:
    messages = anthropic_request()
    counting = anthropic_request(b'{"model":"c"}', "/count_tokens")
    embed = native.parse(Vendor.GEMINI, "/models/g:embedContent", b"", b"{}", {})
    azure = native.parse(Vendor.AZURE, "/deployments/d/chat/completions", b"", b"{}", {})
    ollama = native.parse(Vendor.OLLAMA, "/chat", b"", b'{"model":"m"}', {})
    speaking = {
        "messages": {"anthropic", "vertex", "bedrock"},
        "counting": {"anthropic"},
        "embed": {"gemini"},
        "azure": {"azure", "azure-v1"},
        "ollama": {"ollama"},
    }
    requests = {
        "messages": messages,
        "counting": counting,
        "embed": embed,
        "azure": azure,
        "ollama": ollama,
    }
    for what, request in requests.items():
        found = {name for name, adapter in adapters.items() if native.speaks(adapter, request)}
        assert found == speaking[what], what
    assert native.serves(adapters["gemini-vertex"], Vendor.GEMINI)
    assert not native.serves(adapters["openai"], Vendor.AZURE)


# --- upstream calls ---------------------------------------------------------------------------


def test_direct_anthropic_keeps_the_body_but_the_model(adapters: dict[str, Any]) -> None:
    body = b'{"model":"claude","max_tokens":50,"x_unknown":{"a": [1, 2]},"stream":true}'
    request = anthropic_request(body, headers={"anthropic-beta": "b-1"})
    plan = native.plan(adapters["anthropic"], request, "claude-sonnet-4-5")
    assert plan.path == "/messages"
    assert plan.body == (
        b'{"model":"claude-sonnet-4-5","max_tokens":50,"x_unknown":{"a": [1, 2]},"stream":true}'
    )
    assert plan.headers == {"anthropic-version": "2023-06-01", "anthropic-beta": "b-1"}
    assert plan.framing is Framing.SSE
    assert not plan.reshape_errors
    counting = anthropic_request(b'{"model":"claude","messages":[]}', "/count_tokens")
    plan = native.plan(adapters["anthropic"], counting, "up")
    assert (plan.path, decode(plan.body)["model"]) == ("/messages/count_tokens", "up")


def test_vertex_anthropic(adapters: dict[str, Any]) -> None:
    body = b'{"model":"claude","max_tokens":5,"stream":true,"anthropic_version":"x"}'
    plan = native.plan(
        adapters["vertex"], anthropic_request(body, headers={"anthropic-beta": "b"}), "c@2025"
    )
    assert plan.path == "/c@2025:streamRawPredict"
    assert decode(plan.body) == {
        "max_tokens": 5,
        "stream": True,
        "anthropic_version": "vertex-2023-10-16",
    }
    assert plan.headers == {"anthropic-beta": "b"}
    assert plan.framing is Framing.SSE and plan.reshape_errors
    plain = native.plan(adapters["vertex"], anthropic_request(), "c@2025")
    assert plain.path == "/c@2025:rawPredict" and plain.framing is Framing.JSON


def test_bedrock_anthropic(adapters: dict[str, Any]) -> None:
    body = b'{"model":"claude","max_tokens":5,"stream":true}'
    request = anthropic_request(body, headers={"anthropic-beta": "one, two"})
    plan = native.plan(adapters["bedrock"], request, "anthropic.claude-v1:0")
    assert plan.path == "/model/anthropic.claude-v1%3A0/invoke-with-response-stream"
    assert decode(plan.body) == {
        "max_tokens": 5,
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["one", "two"],
    }
    assert plan.headers == {}
    assert plan.framing is Framing.BEDROCK
    plain = native.plan(adapters["bedrock"], anthropic_request(), "m")
    assert plain.path == "/model/m/invoke" and plain.framing is Framing.JSON


def test_gemini_calls(adapters: dict[str, Any]) -> None:
    body = b'{"contents": [{"parts":[{"text":"x"}]}]}'
    streamed = native.parse(Vendor.GEMINI, "/models/g:streamGenerateContent", b"alt=sse", body, {})
    plan = native.plan(adapters["gemini"], streamed, "gemini-2.5-flash")
    assert plan.path == "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert plan.body == body  # untouched, byte for byte
    assert plan.headers == {} and plan.framing is Framing.SSE
    array = native.parse(Vendor.GEMINI, "/models/g:streamGenerateContent", b"key=k", body, {})
    plan = native.plan(adapters["gemini"], array, "m")
    assert plan.path == "/models/m:streamGenerateContent"  # the client's key= never goes up
    assert plan.framing is Framing.JSON_ARRAY
    named = native.parse(Vendor.GEMINI, "/models/g:embedContent", b"", b'{"model":"g"}', {})
    assert decode(native.plan(adapters["gemini"], named, "e").body) == {"model": "models/e"}
    on_vertex = native.parse(Vendor.GEMINI, "/models/g:countTokens", b"", b'{"model":"g"}', {})
    assert decode(native.plan(adapters["gemini-vertex"], on_vertex, "m").body) == {}


def test_gemini_batch_embeddings_name_the_upstream_model(adapters: dict[str, Any]) -> None:
    body = encode({"requests": [{"model": "models/g", "content": {"parts": [{"text": "a"}]}}]})
    request = native.parse(Vendor.GEMINI, "/models/g:batchEmbedContents", b"", body, {})
    plan = native.plan(adapters["gemini"], request, "text-embedding-004")
    assert decode(plan.body)["requests"] == [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}}
    ]
    missing = native.parse(Vendor.GEMINI, "/models/g:batchEmbedContents", b"", b"{}", {})
    with pytest.raises(InvalidRequest):
        native.plan(adapters["gemini"], missing, "m")


def test_azure_calls(adapters: dict[str, Any]) -> None:
    body = b'{"model":"alias","messages":[],"stream":true}'
    request = native.parse(
        Vendor.AZURE, "/deployments/alias/chat/completions", b"api-version=2025-01-01", body, {}
    )
    plan = native.plan(adapters["azure"], request, "gpt 4o/deploy")
    assert plan.path == ("/deployments/gpt%204o%2Fdeploy/chat/completions?api-version=2025-01-01")
    assert decode(plan.body) == {
        "model": "gpt 4o/deploy",
        "messages": [],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    own_version = native.parse(Vendor.AZURE, "/deployments/a/embeddings", b"", b"{}", {})
    plan = native.plan(adapters["azure"], own_version, "e")
    assert plan.path == "/deployments/e/embeddings?api-version=2024-10-21"
    assert decode(plan.body) == {}  # no `model` added where the deployment names it
    v1 = native.plan(adapters["azure-v1"], own_version, "e")
    assert (v1.path, decode(v1.body)) == ("/embeddings", {"model": "e"})


def test_ollama_calls(adapters: dict[str, Any]) -> None:
    request = native.parse(Vendor.OLLAMA, "/chat", b"", b'{"model":"llama","messages":[]}', {})
    plan = native.plan(adapters["ollama"], request, "llama3.2")
    assert (plan.path, plan.body, plan.framing) == (
        "/api/chat",
        b'{"model":"llama3.2","messages":[]}',
        Framing.NDJSON,
    )


# --- usage ------------------------------------------------------------------------------------


def test_answer_usage_per_vendor() -> None:
    anthropic = b'{"usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":2}}'
    assert native.answer_usage(Vendor.ANTHROPIC, anthropic) == Usage(
        prompt_tokens=5,
        completion_tokens=4,
        total_tokens=9,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=2),
    )
    gemini = (
        b'{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":3,'
        b'"thoughtsTokenCount":1,"cachedContentTokenCount":2,"totalTokenCount":9}}'
    )
    assert native.answer_usage(Vendor.GEMINI, gemini) == Usage(
        prompt_tokens=5,
        completion_tokens=4,
        total_tokens=9,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=2),
    )
    azure = b'{"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}'
    assert native.answer_usage(Vendor.AZURE, azure) == Usage(
        prompt_tokens=2, completion_tokens=1, total_tokens=3
    )
    ollama = b'{"done":true,"prompt_eval_count":7,"eval_count":2}'
    assert native.answer_usage(Vendor.OLLAMA, ollama) == Usage(
        prompt_tokens=7, completion_tokens=2, total_tokens=9
    )
    for vendor in Vendor:
        assert native.answer_usage(vendor, b"{}") is None
        assert native.answer_usage(vendor, b"not json") is None


def _sse(*events: dict[str, Any], named: bool = True) -> bytes:
    out = b""
    for event in events:
        head = b"event: " + event["type"].encode() + b"\n" if named else b""
        out += head + b"data: " + encode(event) + b"\n\n"
    return out


START = {
    "type": "message_start",
    "message": {"id": "m", "usage": {"input_tokens": 3, "output_tokens": 1}},
}
DELTA = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}}
END = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}


def _state(meter: native.NativeMeter) -> tuple[bool, bool]:
    """(complete, failed), read through a call so that mypy does not narrow them for good."""
    return meter.complete, meter.failed


def _usage(meter: native.NativeMeter) -> Usage | None:
    return meter.usage


def test_anthropic_stream_meter() -> None:
    meter = native.meter(anthropic_request(b'{"model":"c","stream":true}'))
    frames = _sse(START, DELTA, DELTA)
    assert meter.see(frames) == frames  # passed on unchanged
    assert meter.first_at is not None
    assert meter.usage == Usage(prompt_tokens=3, completion_tokens=1, total_tokens=4)
    assert _state(meter) == (False, False)
    meter.see(_sse(END, {"type": "message_stop"}))
    assert _state(meter) == (True, False)
    assert meter.used(99) == Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    broken = native.meter(anthropic_request(b'{"model":"c","stream":true}'))
    broken.see(_sse({"type": "error", "error": {"type": "overloaded_error", "message": "x"}}))
    assert _state(broken) == (False, True)
    assert broken.used(10) is None  # nothing reported, nothing shown: nothing to charge


def test_gemini_sse_meter() -> None:
    request = native.parse(Vendor.GEMINI, "/models/g:streamGenerateContent", b"alt=sse", b"{}", {})
    meter = native.meter(request)
    text = {"candidates": [{"content": {"parts": [{"text": "a"}]}}]}
    last = {
        "candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2},
    }
    meter.see(b"data: " + encode(text) + b"\n\n")
    assert meter.usage is None
    assert _state(meter) == (False, False)
    assert meter.used(5) == Usage(prompt_tokens=5, completion_tokens=1, total_tokens=6)
    meter.see(b"data: " + encode(last) + b"\n\n")
    assert _state(meter) == (True, False)
    assert _usage(meter) == Usage(prompt_tokens=4, completion_tokens=2, total_tokens=6)
    failed = native.meter(request)
    failed.see(b'data: {"error":{"code":500,"message":"x","status":"INTERNAL"}}\n\n')
    assert _state(failed) == (False, True)


def test_gemini_array_meter_reads_the_array_at_its_end() -> None:
    request = native.parse(Vendor.GEMINI, "/models/g:streamGenerateContent", b"", b"{}", {})
    meter = native.meter(request)
    first = b'[{"candidates":[{"content":{"parts":[{"text":"] a"}]}}]}'
    last = (
        b',\r\n{"candidates":[{"finishReason":"STOP"}],'
        b'"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2}}'
    )
    for piece in (first, last, b"]"):
        assert meter.see(piece) == piece
    assert meter.complete
    assert meter.usage == Usage(prompt_tokens=4, completion_tokens=2, total_tokens=6)


def test_ollama_meter() -> None:
    meter = native.meter(native.parse(Vendor.OLLAMA, "/chat", b"", b'{"model":"m"}', {}))
    lines = (
        b'{"message":{"content":"a"},"done":false}\n'
        b'{"message":{"content":""},"done":true,"prompt_eval_count":7,"eval_count":2}\n'
    )
    assert meter.see(lines) == lines
    assert meter.complete
    assert meter.usage == Usage(prompt_tokens=7, completion_tokens=2, total_tokens=9)
    failed = native.meter(native.parse(Vendor.OLLAMA, "/chat", b"", b'{"model":"m"}', {}))
    failed.see(b'{"error":"model crashed"}\n')
    assert failed.failed and not failed.complete


def test_azure_meter_hides_the_usage_chunk_it_asked_for() -> None:
    body = b'{"messages":[],"stream":true}'
    request = native.parse(Vendor.AZURE, "/deployments/d/chat/completions", b"", body, {})
    meter = native.meter(request)
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}\n\n'
    assert meter.see(chunk + usage + b"data: [DONE]\n\n") == chunk + b"data: [DONE]\n\n"
    assert meter.complete
    assert meter.usage == Usage(prompt_tokens=2, completion_tokens=1)
    asked = b'{"messages":[],"stream":true,"stream_options":{"include_usage":true}}'
    request = native.parse(Vendor.AZURE, "/deployments/d/chat/completions", b"", asked, {})
    assert native.meter(request).see(usage) == usage


# --- frames -----------------------------------------------------------------------------------


async def _pieces(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def _collect(frames: AsyncIterator[bytes]) -> list[bytes]:
    return [run async for run in frames]


async def test_sse_frames_are_whole_events() -> None:
    frames = native.client_frames(
        _pieces(b"event: a\ndata: {}\n\nevent: b\nda", b"ta: {}\r\n\r\nevent: c\n"), Framing.SSE
    )
    assert await _collect(frames) == [
        b"event: a\ndata: {}\n\n",
        b"event: b\ndata: {}\n\n",
    ]  # the event cut by the end is dropped


async def test_ndjson_frames_are_whole_lines() -> None:
    frames = native.client_frames(_pieces(b'{"a":1}\n{"b"', b':2}\n{"c":3}'), Framing.NDJSON)
    assert await _collect(frames) == [b'{"a":1}\n', b'{"b":2}\n', b'{"c":3}\n']


async def test_json_array_pieces_pass_as_they_come() -> None:
    frames = native.client_frames(_pieces(b"[{", b"}]"), Framing.JSON_ARRAY)
    assert await _collect(frames) == [b"[{", b"}]"]


def _bedrock_chunk(event: dict[str, Any] | bytes) -> bytes:
    data = event if isinstance(event, bytes) else encode(event)
    payload = encode({"bytes": base64.b64encode(data).decode()})
    headers = {
        ":message-type": "event",
        ":event-type": "chunk",
        ":content-type": "application/json",
    }
    return encode_message(headers, payload)


async def test_bedrock_stream_becomes_anthropic_sse() -> None:
    stream = b"".join(_bedrock_chunk(event) for event in (START, DELTA))
    pretty = b'{\n  "type": "message_stop"\n}'
    frames = native.client_frames(
        _pieces(stream[:7], stream[7:], _bedrock_chunk(pretty)), Framing.BEDROCK
    )
    assert b"".join(await _collect(frames)) == (
        _sse(START, DELTA) + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


@pytest.mark.parametrize("data", [b"not json", b'{"type":"a\\nb"}', b'{"x":1}'])
def test_unusable_bedrock_events_break_the_stream(data: bytes) -> None:
    with pytest.raises(StreamBroken):
        native.anthropic_event(data)


# --- errors and lists -------------------------------------------------------------------------


def test_error_shapes() -> None:
    assert decode(native.error_body(Vendor.ANTHROPIC, 429, "rate limit exceeded") or b"") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "rate limit exceeded"},
    }
    assert decode(native.anthropic_error(502, "x")) == {
        "type": "error",
        "error": {"type": "api_error", "message": "x"},
    }
    assert decode(native.error_body(Vendor.GEMINI, 404, "nope") or b"") == {
        "error": {"code": 404, "message": "nope", "status": "NOT_FOUND"}
    }
    assert decode(native.error_body(Vendor.OLLAMA, 401, "unauthorized") or b"") == {
        "error": "unauthorized"
    }
    assert native.error_body(Vendor.AZURE, 401, "unauthorized") is None


def test_cloud_errors_come_back_in_anthropic_shape(adapters: dict[str, Any]) -> None:
    bedrock = native.plan(adapters["bedrock"], anthropic_request(), "m")
    body, kind = native.upstream_error(
        bedrock, 400, b'{"message":"max_tokens: too large"}', "application/json"
    )
    assert kind == "application/json"
    assert decode(body) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: too large"},
    }
    direct = native.plan(adapters["anthropic"], anthropic_request(), "m")
    original = b'{"type":"error","error":{"type":"invalid_request_error","message":"x"}}'
    assert native.upstream_error(direct, 400, original, "application/json") == (
        original,
        "application/json",
    )


def test_stream_errors_in_each_vendors_way() -> None:
    anthropic = native.stream_error(Vendor.ANTHROPIC, Framing.SSE)
    name, data = anthropic.rstrip(b"\n").split(b"\n")
    assert name == b"event: error"
    assert decode(data.removeprefix(b"data: "))["error"]["type"] == "api_error"
    gemini = native.stream_error(Vendor.GEMINI, Framing.SSE)
    assert decode(gemini.removeprefix(b"data: "))["error"]["status"] == "UNAVAILABLE"
    assert native.stream_error(Vendor.GEMINI, Framing.JSON_ARRAY) == b""
    assert decode(native.stream_error(Vendor.OLLAMA, Framing.NDJSON)) == {
        "error": "upstream stream error"
    }
    azure = native.stream_error(Vendor.AZURE, Framing.SSE)
    assert azure.startswith(b"event: error\ndata: ") and azure.endswith(b"data: [DONE]\n\n")


def test_model_lists() -> None:
    tags = decode(native.ollama_tags(["a", "b"], "2026-01-01T00:00:00Z"))
    assert [m["name"] for m in tags["models"]] == ["a", "b"]
    assert tags["models"][0]["model"] == "a"
    assert tags["models"][0]["modified_at"] == "2026-01-01T00:00:00Z"
    models = decode(native.gemini_models(["g"]))
    assert models["models"][0]["name"] == "models/g"
    assert "generateContent" in models["models"][0]["supportedGenerationMethods"]


async def test_the_clients_anthropic_version_replaces_the_providers_on_the_wire() -> None:
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        heads.append(head)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fixed = {"anthropic-version": "2023-06-01", "x-api-key": "sk-provider"}
    transport = Transport(
        "a", f"http://127.0.0.1:{port}/v1", fixed, connect_timeout=1, read_timeout=5
    )
    adapter = AnthropicAdapter("a", transport)
    try:
        for version in ("2026-10-21", None):
            headers = {"anthropic-version": version} if version else {}
            plan = native.plan(adapter, anthropic_request(headers=headers), "claude")
            assert await plan.transport.post(plan.path, plan.body, plan.headers) == (
                200,
                b"{}",
                "application/json",
            )
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
    for head, expected in zip(heads, (b"2026-10-21", b"2023-06-01"), strict=True):
        lines = head.lower().split(b"\r\n")
        assert [line for line in lines if line.startswith(b"anthropic-version")] == [
            b"anthropic-version: " + expected
        ]
        assert b"x-api-key: sk-provider" in lines
