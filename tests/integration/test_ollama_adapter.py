"""OllamaAdapter over a real Transport against the fake Ollama native API (a process).

The fake refuses unknown fields and wrong types, so a translation that real Ollama would
silently ignore (an OpenAI field leaking through, a missing `stream: false`) fails here.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest

from app.domain import InvalidRequest, Operation, Payload, StreamBroken, UpstreamStatus, Usage
from app.providers.ollama import OllamaAdapter
from app.providers.transport import Transport
from tests.fakes.upstreams.harness import FakeUpstream, free_port
from tests.integration.vendor_fakes import HELLO, PNG, SYSTEM, TOOLS

MODEL = "llama3.2"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream.start(module="tests.fakes.upstreams.ollama") as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.reset()


@pytest.fixture
async def ollama(fake: FakeUpstream) -> AsyncIterator[OllamaAdapter]:
    adapter = OllamaAdapter(
        "ollama", Transport("ollama", fake.base, {}, connect_timeout=2, read_timeout=10)
    )
    yield adapter
    await adapter.aclose()


def payload(body: dict[str, Any], operation: Operation = Operation.CHAT) -> Payload:
    fields = msgspec.json.decode(msgspec.json.encode(body), type=dict[str, msgspec.Raw])
    return Payload(
        operation=operation, fields=fields, model="alias", stream=bool(body.get("stream"))
    )


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "alias", "messages": list(messages), **fields}


async def send(adapter: OllamaAdapter, body: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
    reply = await adapter.send(payload(body), MODEL)
    assert reply.usage is not None
    answer: dict[str, Any] = msgspec.json.decode(reply.body)
    return answer, reply.usage


async def stream(
    adapter: OllamaAdapter, body: dict[str, Any], operation: Operation = Operation.CHAT
) -> list[dict[str, Any]]:
    frames = b""
    async with adapter.stream(payload({**body, "stream": True}, operation), MODEL) as pieces:
        async for piece in pieces:
            assert piece.endswith(b"\n\n")
            frames += piece
    return [msgspec.json.decode(event[6:]) for event in frames.split(b"\n\n")[:-1]]


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def last_body(fake: FakeUpstream, path: str = "/api/chat") -> Any:
    return fake.stats()["last_body"][path]


async def test_chat(ollama: OllamaAdapter, fake: FakeUpstream) -> None:
    answer, usage = await send(ollama, chat(SYSTEM, HELLO, max_tokens=50, stop="END"))
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello! You said: Say hello [system: Be brief]",
    }
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert usage == Usage(
        prompt_tokens=len("Be briefSay hello") // 4 + 1, completion_tokens=8, total_tokens=13
    )
    sent = last_body(fake)
    assert sent["stream"] is False
    assert sent["options"] == {"num_predict": 50, "stop": ["END"]}


async def test_stream_matches_the_whole_answer(ollama: OllamaAdapter, fake: FakeUpstream) -> None:
    answer, _ = await send(ollama, chat(SYSTEM, HELLO))
    chunks = await stream(ollama, chat(SYSTEM, HELLO))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert streamed_text(chunks) == answer["choices"][0]["message"]["content"]
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 2
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == answer["usage"]
    assert last_body(fake)["stream"] is True
    assert fake.stats()["completed_streams"] == 1


async def test_tool_call_round_trip(ollama: OllamaAdapter, fake: FakeUpstream) -> None:
    first, usage = await send(ollama, chat(HELLO, tools=TOOLS))
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call == {
        "id": "call_0",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"echo":"Say hello"}'},
    }
    assert usage.completion_tokens == 5
    result = {"role": "tool", "tool_call_id": call["id"], "content": "42 apples"}
    second, _ = await send(ollama, chat(HELLO, choice["message"], result, tools=TOOLS))
    assert second["choices"][0]["message"]["content"] == "Tool said: 42 apples"
    assert last_body(fake)["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "lookup", "arguments": {"echo": "Say hello"}}}],
        },
        {"role": "tool", "content": "42 apples", "tool_name": "lookup"},
    ]


async def test_streamed_tool_call(ollama: OllamaAdapter) -> None:
    chunks = await stream(ollama, chat(HELLO, tools=TOOLS))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1]["tool_calls"] == [
        {
            "index": 0,
            "id": "call_0",
            "type": "function",
            "function": {"name": "lookup", "arguments": ""},
        }
    ]
    assert deltas[2]["tool_calls"] == [
        {"index": 0, "function": {"arguments": '{"echo":"Say hello"}'}}
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 5


async def test_image_input(ollama: OllamaAdapter) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    answer, usage = await send(ollama, chat({"role": "user", "content": content}))
    assert answer["choices"][0]["message"]["content"] == (
        "Hello! You said: What is this? [image image/png]"
    )
    assert usage.prompt_tokens == len("What is this?") // 4 + 1 + 10
    url_image = [{"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}]
    with pytest.raises(InvalidRequest, match="data URLs"):
        await send(ollama, chat({"role": "user", "content": url_image}))


async def test_json_format(ollama: OllamaAdapter, fake: FakeUpstream) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    await send(ollama, chat(HELLO, response_format=response_format, seed=1, temperature=0))
    sent = last_body(fake)
    assert sent["format"] == schema
    assert sent["options"] == {"seed": 1, "temperature": 0.0}


async def test_embeddings_batch(ollama: OllamaAdapter, fake: FakeUpstream) -> None:
    body = {"model": "e", "input": ["first", "second"], "dimensions": 4}
    reply = await ollama.send(payload(body, Operation.EMBEDDINGS), "nomic-embed-text")
    answer = msgspec.json.decode(reply.body)
    assert [(d["index"], len(d["embedding"])) for d in answer["data"]] == [(0, 4), (1, 4)]
    assert reply.usage == Usage(prompt_tokens=3, total_tokens=3)
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert last_body(fake, "/api/embed") == {
        "model": "nomic-embed-text",
        "input": ["first", "second"],
        "dimensions": 4,
    }
    one = {"input": "x", "encoding_format": "base64"}
    reply = await ollama.send(payload(one, Operation.EMBEDDINGS), "nomic-embed-text")
    vector = msgspec.json.decode(reply.body)["data"][0]["embedding"]
    assert len(struct.unpack("<8f", base64.b64decode(vector))) == 8


async def test_legacy_completions(ollama: OllamaAdapter, fake: FakeUpstream) -> None:
    body = {"model": "alias", "prompt": "Once upon", "max_tokens": 9}
    reply = await ollama.send(payload(body, Operation.COMPLETIONS), MODEL)
    answer = msgspec.json.decode(reply.body)
    assert answer["object"] == "text_completion"
    assert answer["choices"][0]["text"] == "Hello! You said: Once upon"
    assert last_body(fake, "/api/generate") == {
        "model": MODEL,
        "prompt": "Once upon",
        "stream": False,
        "options": {"num_predict": 9},
    }
    chunks = await stream(ollama, body, Operation.COMPLETIONS)
    assert (
        "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
        == (answer["choices"][0]["text"])
    )
    assert chunks[-1]["usage"] == answer["usage"]


async def test_list_models(ollama: OllamaAdapter, fake: FakeUpstream) -> None:
    assert await ollama.list_models() == [
        "llama3.2:latest",
        "qwen2.5:7b",
        "nomic-embed-text:latest",
    ]
    assert fake.stats()["requests"] == {"GET /api/tags": 1}


async def test_cut_stream_is_broken(ollama: OllamaAdapter, fake: FakeUpstream) -> None:
    fake.set_behaviour(cut_after_events=2)
    with pytest.raises(StreamBroken):
        await stream(ollama, chat(HELLO))
    assert fake.stats()["cut_streams"] == 1


async def test_400_is_an_openai_shaped_upstream_status(
    ollama: OllamaAdapter, fake: FakeUpstream
) -> None:
    fake.set_behaviour(status=400, message="invalid options: num_ctx")
    with pytest.raises(UpstreamStatus) as caught:
        await send(ollama, chat(HELLO))
    assert caught.value.upstream_status == 400
    assert caught.value.passes_through
    assert msgspec.json.decode(caught.value.body) == {
        "error": {
            "message": "invalid options: num_ctx",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    fake.set_behaviour(status=404, message='model "llama3.2" not found, try pulling it first')
    with pytest.raises(UpstreamStatus) as caught:
        await stream(ollama, chat(HELLO))
    assert caught.value.upstream_status == 404
    assert "try pulling it first" in msgspec.json.decode(caught.value.body)["error"]["message"]


async def test_unreachable_upstream_lists_nothing() -> None:
    transport = Transport(
        "gone", f"http://127.0.0.1:{free_port()}", {}, connect_timeout=1, read_timeout=1
    )
    adapter = OllamaAdapter("gone", transport)
    with pytest.raises(Exception, match="unreachable"):
        await adapter.list_models()
    await adapter.aclose()


# --- the fake's own strictness --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": []}, "model is required"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "unmarshal",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
            "tool_call_id",
        ),
        ({"model": "m", "messages": [], "max_tokens": 5}, "max_tokens"),
        ({"model": "m", "messages": [], "options": {"max_tokens": 5}}, "max_tokens"),
        ({"model": "m", "messages": [], "options": {"stop": "x"}}, "Options.stop"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x", "images": ["%%%"]}]},
            "base64",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
                    }
                ],
            },
            "arguments",
        ),
    ],
)
def test_fake_refuses_wrong_translations(
    fake: FakeUpstream, body: dict[str, Any], fragment: str
) -> None:
    response = httpx.post(f"{fake.base}/api/chat", json=body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_fake_streams_ndjson_by_default(fake: FakeUpstream) -> None:
    response = httpx.post(f"{fake.base}/api/chat", json={"model": "m", "messages": [HELLO]})
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [msgspec.json.decode(line) for line in response.content.splitlines()]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[-1]["eval_count"] == len(lines) - 1
