"""GeminiAdapter over a real Transport against the fake Gemini upstream, direct and on Vertex AI.

The fake runs as a process and refuses what Google refuses (unknown fields, schema keys,
function responses that answer no call, wrong credentials), so a wrong translation fails here.
Vertex AI requests carry a bearer token from the fake Google token endpoint.
"""

from __future__ import annotations

import base64
import importlib.util
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from app.domain import Operation, Payload, StreamBroken, UpstreamStatus, Usage
from app.providers.gemini import GeminiAdapter
from app.providers.transport import Transport
from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.vendor_fakes import (  # noqa: F401 - the fixtures, by their pytest names
    HELLO,
    PNG,
    SYSTEM,
    service_account_fixture,
    token_dir_fixture,
)

KEY = "gemini-fake-integration-key"
MODEL = "gemini-2.0-flash"
VERTEX_BASE = "/v1/projects/fake-project/locations/us-central1/publishers/google"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a thing up",
            "parameters": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"echo": {"type": "string"}},
                "required": ["echo"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
]


HAS_GCP_TOKEN = (
    importlib.util.find_spec("tests.fakes.gcp_token") is not None
    and importlib.util.find_spec("app.providers.auth") is not None
)


@pytest.fixture(scope="module")
def fake(token_dir: Path) -> Iterator[FakeUpstream]:
    with FakeUpstream.start(module="tests.fakes.upstreams.gemini", api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.reset()


def _transport(fake: FakeUpstream, hosting: str, request: pytest.FixtureRequest) -> Transport:
    if hosting == "vertex":
        from app.providers.auth import GoogleAuth  # noqa: PLC0415 - written by another engineer

        credentials = request.getfixturevalue("service_account")
        auth = GoogleAuth(str(credentials))
        base = fake.base + VERTEX_BASE
        return Transport("vertex", base, {}, auth=auth, connect_timeout=2, read_timeout=10)
    headers = {"x-goog-api-key": KEY}
    return Transport("gemini", f"{fake.base}/v1beta", headers, connect_timeout=2, read_timeout=10)


@pytest.fixture(params=["", "vertex"], ids=["direct", "vertex"])
async def gemini(
    request: pytest.FixtureRequest, fake: FakeUpstream
) -> AsyncIterator[GeminiAdapter]:
    hosting: str = request.param
    adapter = GeminiAdapter(
        hosting or "gemini", _transport(fake, hosting, request), hosting=hosting
    )
    yield adapter
    await adapter.aclose()


@pytest.fixture
async def direct(fake: FakeUpstream) -> AsyncIterator[GeminiAdapter]:
    transport = Transport(
        "gemini", f"{fake.base}/v1beta", {"x-goog-api-key": KEY}, connect_timeout=2, read_timeout=10
    )
    adapter = GeminiAdapter("gemini", transport)
    yield adapter
    await adapter.aclose()


def payload(body: dict[str, Any], operation: Operation = Operation.CHAT) -> Payload:
    fields = msgspec.json.decode(msgspec.json.encode(body), type=dict[str, msgspec.Raw])
    stream = bool(body.get("stream"))
    return Payload(operation=operation, fields=fields, model="alias", stream=stream, input_tokens=3)


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "alias", "messages": list(messages), **fields}


async def send(adapter: GeminiAdapter, body: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
    reply = await adapter.send(payload(body), MODEL)
    assert reply.usage is not None
    answer: dict[str, Any] = msgspec.json.decode(reply.body)
    return answer, reply.usage


async def stream(adapter: GeminiAdapter, body: dict[str, Any]) -> list[dict[str, Any]]:
    frames = b""
    async with adapter.stream(payload({**body, "stream": True}), MODEL) as pieces:
        async for piece in pieces:
            assert piece.endswith(b"\n\n")
            frames += piece
    return [msgspec.json.decode(event[6:]) for event in frames.split(b"\n\n")[:-1]]


def last_body(fake: FakeUpstream) -> Any:
    """The body the fake received last (each test uses one path)."""
    (body,) = fake.stats()["last_body"].values()
    return body


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def streamed_calls(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls assembled from deltas the way OpenAI clients assemble them."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for delta in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            call = calls.setdefault(
                delta["index"], {"id": delta.get("id"), "name": "", "arguments": ""}
            )
            call["name"] += delta["function"].get("name", "")
            call["arguments"] += delta["function"]["arguments"]
    return [calls[i] for i in sorted(calls)]


def finish(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1:]


async def test_chat(gemini: GeminiAdapter) -> None:
    answer, usage = await send(gemini, chat(SYSTEM, HELLO))
    message = answer["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "Hello! You said: Say hello [system: Be brief]",
    }
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["model"] == MODEL
    assert usage.prompt_tokens == len("Be briefSay hello") // 4 + 1
    assert usage.completion_tokens == 8
    assert usage.cached_tokens == 2
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}


async def test_stream_matches_the_whole_answer(gemini: GeminiAdapter) -> None:
    answer, usage = await send(gemini, chat(SYSTEM, HELLO))
    chunks = await stream(gemini, chat(SYSTEM, HELLO))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 2
    assert streamed_text(chunks) == answer["choices"][0]["message"]["content"]
    assert finish(chunks) == ["stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == answer["usage"]
    assert Usage(**{**chunks[-1]["usage"], "prompt_tokens_details": None}).total_tokens == (
        usage.total_tokens
    )
    assert len({c["id"] for c in chunks}) == 1


async def test_tool_call_round_trip(gemini: GeminiAdapter, fake: FakeUpstream) -> None:
    first, usage = await send(gemini, chat(HELLO, tools=TOOLS, tool_choice="auto"))
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "lookup", "arguments": '{"echo":"Say hello"}'}
    assert call["id"] == "call_0_lookup"
    assert usage.completion_tokens == 5
    result = {"role": "tool", "tool_call_id": call["id"], "content": "42 apples"}
    second, _ = await send(gemini, chat(HELLO, choice["message"], result, tools=TOOLS))
    assert second["choices"][0]["message"]["content"] == "Tool said: 42 apples"
    sent = last_body(fake)
    assert sent["contents"][-1] == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "name": "lookup",
                    "response": {"content": "42 apples"},
                    "id": "call_0_lookup",
                }
            }
        ],
    }


async def test_streamed_tool_call_then_its_result(gemini: GeminiAdapter) -> None:
    chunks = await stream(gemini, chat(HELLO, tools=TOOLS))
    first_delta = next(
        c for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    )
    assert first_delta["choices"][0]["delta"]["tool_calls"] == [
        {
            "index": 0,
            "id": "call_0_lookup",
            "type": "function",
            "function": {"name": "lookup", "arguments": ""},
        }
    ]
    calls = streamed_calls(chunks)
    assert calls == [{"id": "call_0_lookup", "name": "lookup", "arguments": '{"echo":"Say hello"}'}]
    assert finish(chunks) == ["tool_calls"]
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": calls[0]["id"],
                "type": "function",
                "function": {"name": calls[0]["name"], "arguments": calls[0]["arguments"]},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"apples": 42}'}
    chunks = await stream(gemini, chat(HELLO, assistant, result, tools=TOOLS))
    assert streamed_text(chunks) == 'Tool said: {"apples":42}'


@pytest.mark.parametrize(
    ("url", "suffix"),
    [
        (f"data:image/png;base64,{PNG}", "[image image/png]"),
        ("https://x.test/cat.jpg", "[image url]"),
    ],
)
async def test_image_input(gemini: GeminiAdapter, url: str, suffix: str) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    answer, usage = await send(gemini, chat({"role": "user", "content": content}))
    assert answer["choices"][0]["message"]["content"] == f"Hello! You said: What is this? {suffix}"
    assert usage.prompt_tokens == len("What is this?") // 4 + 1 + 10


async def test_generation_config_and_json_schema_pass_the_fake(
    gemini: GeminiAdapter, fake: FakeUpstream
) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "a",
            "schema": {
                "type": "object",
                "properties": {"x": {"type": ["string", "null"]}},
                "additionalProperties": False,
            },
        },
    }
    fields = {
        "temperature": 0.3,
        "top_p": 0.5,
        "max_completion_tokens": 20,
        "stop": "END",
        "seed": 3,
        "n": 2,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.1,
        "response_format": response_format,
    }
    answer, _ = await send(gemini, chat(HELLO, **fields))
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    sent = last_body(fake)
    assert sent["generationConfig"]["responseSchema"] == {
        "type": "object",
        "properties": {"x": {"type": "string", "nullable": True}},
    }


async def test_embeddings_batch(direct: GeminiAdapter, fake: FakeUpstream) -> None:
    body = {"model": "e", "input": ["first", "second"], "dimensions": 4}
    reply = await direct.send(payload(body, Operation.EMBEDDINGS), "text-embedding-004")
    answer = msgspec.json.decode(reply.body)
    assert [(d["index"], len(d["embedding"])) for d in answer["data"]] == [(0, 4), (1, 4)]
    assert reply.usage is None
    assert fake.stats()["requests"] == {
        "POST /v1beta/models/text-embedding-004:batchEmbedContents": 1
    }
    body = {"input": "one", "encoding_format": "base64"}
    reply = await direct.send(payload(body, Operation.EMBEDDINGS), "text-embedding-004")
    vector = msgspec.json.decode(reply.body)["data"][0]["embedding"]
    assert len(struct.unpack("<8f", base64.b64decode(vector))) == 8


async def test_vertex_embeddings_go_to_predict_with_token_counts(
    fake: FakeUpstream, request: pytest.FixtureRequest
) -> None:
    adapter = GeminiAdapter("v", _transport(fake, "vertex", request), hosting="vertex")
    try:
        body = {"model": "e", "input": ["first", "second"], "dimensions": 4}
        reply = await adapter.send(payload(body, Operation.EMBEDDINGS), "text-embedding-005")
    finally:
        await adapter.aclose()
    answer = msgspec.json.decode(reply.body)
    assert [(d["index"], len(d["embedding"])) for d in answer["data"]] == [(0, 4), (1, 4)]
    tokens = len("first") // 4 + 1 + len("second") // 4 + 1  # the fake's token_count
    assert reply.usage is not None and reply.usage.prompt_tokens == tokens
    assert answer["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert fake.stats()["requests"] == {f"POST {VERTEX_BASE}/models/text-embedding-005:predict": 1}


async def test_cut_stream_is_broken(gemini: GeminiAdapter, fake: FakeUpstream) -> None:
    fake.set_behaviour(cut_after_events=2)
    with pytest.raises(StreamBroken):
        await stream(gemini, chat(HELLO))
    assert fake.stats()["cut_streams"] == 1


async def test_a_refused_request_is_an_openai_shaped_400(gemini: GeminiAdapter) -> None:
    with pytest.raises(UpstreamStatus) as caught:  # Google takes at most 5 stop sequences
        await send(gemini, chat(HELLO, stop=["a", "b", "c", "d", "e", "f"]))
    error = caught.value
    assert error.upstream_status == 400
    assert error.passes_through
    body = msgspec.json.decode(error.body)
    assert body["error"]["type"] == "invalid_request_error"
    assert "stop_sequences" in body["error"]["message"]
    assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_scripted_statuses_before_and_in_streams(
    gemini: GeminiAdapter, fake: FakeUpstream
) -> None:
    fake.set_behaviour(status=503, message="The model is overloaded.")
    with pytest.raises(UpstreamStatus) as caught:
        await send(gemini, chat(HELLO))
    assert caught.value.retryable
    fake.set_behaviour(status=429, message="Resource has been exhausted")
    with pytest.raises(UpstreamStatus) as caught:
        await stream(gemini, chat(HELLO))
    assert msgspec.json.decode(caught.value.body)["error"] == {
        "message": "Resource has been exhausted",
        "type": "rate_limit_error",
        "param": None,
        "code": None,
    }


async def test_safety_stop_and_blocked_prompt(gemini: GeminiAdapter, fake: FakeUpstream) -> None:
    fake.set_behaviour(finish_reason="SAFETY")
    answer, _ = await send(gemini, chat(HELLO))
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert finish(await stream(gemini, chat(HELLO))) == ["content_filter"]
    fake.set_behaviour(block_reason="PROHIBITED_CONTENT")
    answer, usage = await send(gemini, chat(HELLO))
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert usage.prompt_tokens > 0
    assert finish(await stream(gemini, chat(HELLO))) == ["content_filter"]


async def test_wrong_credentials(fake: FakeUpstream, request: pytest.FixtureRequest) -> None:
    transport = Transport(
        "gemini",
        f"{fake.base}/v1beta",
        {"x-goog-api-key": "wrong"},
        connect_timeout=2,
        read_timeout=5,
    )
    adapter = GeminiAdapter("gemini", transport)
    with pytest.raises(UpstreamStatus) as caught:
        await adapter.send(payload(chat(HELLO)), MODEL)
    await adapter.aclose()
    message = msgspec.json.decode(caught.value.body)["error"]["message"]
    assert message == "API key not valid. Please pass a valid API key."
    assert "wrong" not in str(caught.value)
    if HAS_GCP_TOKEN:
        headers = {"Authorization": "Bearer not-a-token"}
        vertex = Transport("v", fake.base + VERTEX_BASE, headers, connect_timeout=2, read_timeout=5)
        adapter = GeminiAdapter("v", vertex, hosting="vertex")
        with pytest.raises(UpstreamStatus) as caught:
            await adapter.send(payload(chat(HELLO)), MODEL)
        await adapter.aclose()
        assert caught.value.upstream_status == 401


# --- the fake's own strictness (a wrong translation must fail) ------------------------------

GOOD = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
DECLARED = {"functionDeclarations": [{"name": "f", "parameters": {"type": "object"}}]}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, "empty text"),
        ({**GOOD, "messages": []}, 'Unknown name "messages"'),
        ({**GOOD, "generationConfig": {"max_tokens": 5}}, 'Unknown name "max_tokens"'),
        ({**GOOD, "generationConfig": {"temperature": "hot"}}, "temperature"),
        ({**GOOD, "tools": [DECLARED]}, "non-empty for OBJECT"),
        (
            {
                **GOOD,
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {
                                    "type": "object",
                                    "properties": {"a": {"type": "string"}},
                                    "additionalProperties": False,
                                },
                            }
                        ]
                    }
                ],
            },
            'Unknown name "additionalProperties"',
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "x"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                    {
                        "role": "user",
                        "parts": [{"functionResponse": {"name": "call_0", "response": {}}}],
                    },
                ]
            },
            "answers no function call",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
                ]
            },
            "immediately after a function call turn",
        ),
        (
            {**GOOD, "systemInstruction": {"parts": [{"inlineData": {}}]}},
            'Unknown name "inlineData"',
        ),
    ],
)
def test_fake_refuses_what_google_refuses(
    fake: FakeUpstream, body: dict[str, Any], fragment: str
) -> None:
    response = httpx.post(
        f"{fake.base}/v1beta/models/{MODEL}:generateContent",
        json=body,
        headers={"x-goog-api-key": KEY},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert fragment in error["message"]


def test_fake_auth_and_model_list(fake: FakeUpstream) -> None:
    url = f"{fake.base}/v1beta/models"
    assert httpx.get(url).status_code == 403
    assert httpx.get(url, params={"key": KEY}).json()["models"][0]["name"].startswith("models/")
    vertex = f"{fake.base}{VERTEX_BASE}/models/{MODEL}:generateContent"
    assert httpx.post(vertex, json=GOOD).json()["error"]["status"] == "UNAUTHENTICATED"
