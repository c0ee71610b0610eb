"""AnthropicAdapter over a real Transport against the fake Anthropic upstream, per hosting.

The fake runs as a process; the adapter speaks to it the way it speaks to api.anthropic.com,
Vertex AI (bearer token from the fake Google token endpoint) and Bedrock (SigV4 checked by
the fake), so a translation the real APIs would refuse fails here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from app.domain import (
    Operation,
    Payload,
    PromptTokensDetails,
    StreamBroken,
    UpstreamStatus,
    Usage,
)
from app.providers.anthropic import AnthropicAdapter
from app.providers.transport import Transport
from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.vendor_fakes import (  # noqa: F401 - the fixtures, by their pytest names
    HELLO,
    PNG,
    SYSTEM,
    TOOLS,
    service_account_fixture,
    token_dir_fixture,
)

KEY = "sk-ant-fake-integration"
MODELS = {
    "": "claude-sonnet-4-5",
    "vertex": "claude-sonnet-4-5@20250929",
    "bedrock": "anthropic.claude-sonnet-4-5-20250929-v1:0",
}
HAS_SIGV4 = (
    importlib.util.find_spec("tests.fakes.sigv4") is not None
    and importlib.util.find_spec("app.providers.auth") is not None
)


@pytest.fixture(scope="module")
def fake(token_dir: Path) -> Iterator[FakeUpstream]:
    with FakeUpstream.start(module="tests.fakes.upstreams.anthropic", api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.reset()


@dataclass
class Hosted:
    adapter: AnthropicAdapter
    hosting: str
    model: str
    path: str
    """The fake's path for a non-streamed request (its stats are keyed by path)."""


def _transport(fake: FakeUpstream, hosting: str, request: pytest.FixtureRequest) -> Transport:
    if hosting == "vertex":
        from app.providers.auth import GoogleAuth  # noqa: PLC0415

        credentials = request.getfixturevalue("service_account")
        base = (
            f"{fake.base}/v1/projects/fake-project/locations/us-east5/publishers/anthropic/models"
        )
        auth: httpx.Auth = GoogleAuth(str(credentials))
        return Transport("vertex", base, {}, auth=auth, connect_timeout=2, read_timeout=10)
    if hosting == "bedrock":
        if not HAS_SIGV4:
            pytest.skip("tests/fakes/sigv4.py or app/providers/auth.py is not there")
        from app.providers.auth import AwsSigV4Auth  # noqa: PLC0415
        from tests.fakes.sigv4 import FAKE_AWS_ACCESS_KEY, FAKE_AWS_SECRET_KEY  # noqa: PLC0415

        auth = AwsSigV4Auth(
            region="us-east-1", access_key=FAKE_AWS_ACCESS_KEY, secret_key=FAKE_AWS_SECRET_KEY
        )
        return Transport("bedrock", fake.base, {}, auth=auth, connect_timeout=2, read_timeout=10)
    headers = {"anthropic-version": "2023-06-01", "x-api-key": KEY}
    return Transport("anthropic", f"{fake.base}/v1", headers, connect_timeout=2, read_timeout=10)


def _fake_path(hosting: str, model: str) -> str:
    if hosting == "vertex":
        return (
            "/v1/projects/fake-project/locations/us-east5/publishers/anthropic/models/"
            f"{model}:rawPredict"
        )
    if hosting == "bedrock":
        return f"/model/{model}/invoke"
    return "/v1/messages"


@pytest.fixture(params=["", "vertex", "bedrock"], ids=["direct", "vertex", "bedrock"])
async def hosted(fake: FakeUpstream, request: pytest.FixtureRequest) -> AsyncIterator[Hosted]:
    hosting: str = request.param
    transport = _transport(fake, hosting, request)
    adapter = AnthropicAdapter(hosting or "anthropic", transport, hosting=hosting)
    model = MODELS[hosting]
    yield Hosted(adapter, hosting, model, _fake_path(hosting, model))
    await adapter.aclose()


def payload(*messages: dict[str, Any], stream: bool = False, **body: Any) -> Payload:
    fields = msgspec.json.decode(
        msgspec.json.encode({"model": "alias", "messages": list(messages), **body}),
        type=dict[str, msgspec.Raw],
    )
    return Payload(operation=Operation.CHAT, fields=fields, model="alias", stream=stream)


async def send(hosted: Hosted, request: Payload) -> tuple[dict[str, Any], Usage | None]:
    reply = await hosted.adapter.send(request, hosted.model)
    return msgspec.json.decode(reply.body), reply.usage


async def stream(hosted: Hosted, request: Payload) -> list[dict[str, Any]]:
    """The OpenAI chunks of a streamed answer; each piece is whole `data:` events."""
    received = b""
    async with hosted.adapter.stream(request, hosted.model) as frames:
        async for piece in frames:
            assert piece.endswith(b"\n\n")
            received += piece
    events = received[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events)
    return [msgspec.json.decode(event[6:]) for event in events]


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def streamed_usage(chunks: list[dict[str, Any]]) -> Usage:
    assert chunks[-1]["choices"] == []
    return msgspec.convert(chunks[-1]["usage"], Usage)


# --- every hosting --------------------------------------------------------------------------


async def test_text_answer_and_what_reached_the_upstream(
    hosted: Hosted, fake: FakeUpstream
) -> None:
    body, usage = await send(hosted, payload(SYSTEM, HELLO, max_tokens=50, user="u-1"))
    message = body["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "Hello! You said: Say hello [system: Be brief]",
        "refusal": None,
    }
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["finish_reason"] == "stop"
    prompt = (len("Be brief") + len("Say hello")) // 4 + 1
    assert usage == Usage(
        prompt_tokens=prompt,
        completion_tokens=8,  # words of the answer
        total_tokens=prompt + 8,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=2),
    )
    assert body["usage"] == msgspec.to_builtins(usage)
    sent = fake.stats()["last_body"][hosted.path]
    expected: dict[str, Any] = {
        "max_tokens": 50,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "system": [{"type": "text", "text": "Be brief"}],
        "metadata": {"user_id": "u-1"},
    }
    if hosted.hosting == "":
        expected["model"] = hosted.model
    else:
        expected["anthropic_version"] = (
            "vertex-2023-10-16" if hosted.hosting == "vertex" else "bedrock-2023-05-31"
        )
    assert sent == expected


async def test_streamed_and_plain_answers_agree_on_text_and_usage(hosted: Hosted) -> None:
    request = payload(SYSTEM, HELLO)
    plain, usage = await send(hosted, request)
    chunks = await stream(hosted, payload(SYSTEM, HELLO, stream=True))
    assert streamed_text(chunks) == plain["choices"][0]["message"]["content"]
    assert streamed_usage(chunks) == usage
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 3
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    ident = chunks[0]["id"]
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == ident
        assert isinstance(chunk["created"], int)
        assert chunk["model"] == hosted.model


async def test_tool_call_round_trip(hosted: Hosted) -> None:
    ask = payload(HELLO, tools=TOOLS, tool_choice="auto", parallel_tool_calls=False)
    body, usage = await send(hosted, ask)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {"name": "lookup", "arguments": '{"echo":"Say hello"}'}
    assert usage is not None
    assert usage.completion_tokens == 5

    chunks = await stream(hosted, payload(HELLO, tools=TOOLS, tool_choice="required", stream=True))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-2]]
    assert calls[0]["index"] == 0
    assert calls[0]["function"] == {"name": "lookup", "arguments": ""}
    assert calls[0]["id"].startswith("toolu_")
    assert len(calls) >= 3  # the first delta, then the arguments in two or more fragments
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    assert "".join(c["function"]["arguments"] for c in calls) == '{"echo":"Say hello"}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert streamed_usage(chunks) == usage

    answer = payload(
        HELLO,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"},
        tools=TOOLS,
    )
    body, _ = await send(hosted, answer)
    assert body["choices"][0]["message"]["content"] == "Tool said: 18 degrees"
    chunks = await stream(hosted, payload(*answer_messages(call), tools=TOOLS, stream=True))
    assert streamed_text(chunks) == "Tool said: 18 degrees"


def answer_messages(call: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        HELLO,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"},
    ]


async def test_images_by_data_url_and_by_http_url(hosted: Hosted) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    body, usage = await send(hosted, payload({"role": "user", "content": content}))
    assert body["choices"][0]["message"]["content"] == (
        "Hello! You said: What is this? [image image/png] [image url]"
    )
    assert usage is not None
    assert usage.prompt_tokens == len("What is this?") // 4 + 1 + 20
    chunks = await stream(hosted, payload({"role": "user", "content": content}, stream=True))
    assert streamed_usage(chunks) == usage


async def test_a_cut_stream_raises_stream_broken(hosted: Hosted, fake: FakeUpstream) -> None:
    fake.set_behaviour(cut_after_events=4)
    received = []
    with pytest.raises(StreamBroken):
        async with hosted.adapter.stream(payload(HELLO, stream=True), hosted.model) as frames:
            async for piece in frames:
                received.append(piece)
    assert b'"role":"assistant"' in b"".join(received)
    assert fake.stats()["cut_streams"] == 1


async def test_an_upstream_400_is_an_openai_shaped_upstream_status(
    hosted: Hosted, fake: FakeUpstream
) -> None:
    fake.set_behaviour(status=400, error_message="prompt is too long")
    expected = {
        "error": {
            "message": "prompt is too long",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    with pytest.raises(UpstreamStatus) as caught:
        await hosted.adapter.send(payload(HELLO), hosted.model)
    assert caught.value.upstream_status == 400
    assert not caught.value.retryable
    assert msgspec.json.decode(caught.value.body) == expected
    with pytest.raises(UpstreamStatus) as caught:
        async with hosted.adapter.stream(payload(HELLO, stream=True), hosted.model):
            pass
    assert caught.value.upstream_status == 400
    assert msgspec.json.decode(caught.value.body) == expected


async def test_a_request_the_api_refuses_comes_back_as_an_openai_error(hosted: Hosted) -> None:
    with pytest.raises(UpstreamStatus) as caught:
        await hosted.adapter.send(payload(HELLO, temperature=1.5), hosted.model)
    error = msgspec.json.decode(caught.value.body)["error"]
    assert caught.value.upstream_status == 400
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("temperature")


async def test_unknown_events_and_blocks_are_skipped(hosted: Hosted, fake: FakeUpstream) -> None:
    fake.set_behaviour(unknown_events=True)
    body, usage = await send(hosted, payload(HELLO))
    assert body["choices"][0]["message"]["content"] == "Hello! You said: Say hello"
    chunks = await stream(hosted, payload(HELLO, stream=True))
    assert streamed_text(chunks) == "Hello! You said: Say hello"
    assert streamed_usage(chunks) == usage
    skipped = hosted.adapter.skipped
    assert skipped["block:thinking"] == 2
    assert skipped["block:fake_unknown_block"] == 2
    assert skipped["event:fake_unknown_event"] == 1
    assert skipped["delta:citations_delta"] == 1


# --- credentials ----------------------------------------------------------------------------


async def test_a_wrong_api_key_is_a_retryable_401(fake: FakeUpstream) -> None:
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "sk-wrong"}
    transport = Transport(
        "anthropic", f"{fake.base}/v1", headers, connect_timeout=2, read_timeout=5
    )
    adapter = AnthropicAdapter("anthropic", transport)
    try:
        with pytest.raises(UpstreamStatus) as caught:
            await adapter.send(payload(HELLO), "claude")
    finally:
        await adapter.aclose()
    assert caught.value.upstream_status == 401
    assert caught.value.retryable
    assert "sk-wrong" not in caught.value.message
    assert msgspec.json.decode(caught.value.body)["error"]["type"] == "authentication_error"


@pytest.mark.skipif(not HAS_SIGV4, reason="tests/fakes/sigv4.py or app/providers/auth.py missing")
async def test_a_wrong_aws_secret_is_refused_by_signature(fake: FakeUpstream) -> None:
    from app.providers.auth import AwsSigV4Auth  # noqa: PLC0415
    from tests.fakes.sigv4 import FAKE_AWS_ACCESS_KEY  # noqa: PLC0415

    auth = AwsSigV4Auth(region="us-east-1", access_key=FAKE_AWS_ACCESS_KEY, secret_key="wrong")
    transport = Transport("bedrock", fake.base, {}, connect_timeout=2, read_timeout=5, auth=auth)
    adapter = AnthropicAdapter("bedrock", transport, hosting="bedrock")
    try:
        with pytest.raises(UpstreamStatus) as caught:
            await adapter.send(payload(HELLO), MODELS["bedrock"])
    finally:
        await adapter.aclose()
    assert caught.value.upstream_status == 403
    assert "signature" in msgspec.json.decode(caught.value.body)["error"]["message"]


# --- the fake's own strictness --------------------------------------------------------------


@pytest.fixture
def http(fake: FakeUpstream) -> Iterator[httpx.Client]:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=f"{fake.base}/v1", headers=headers, timeout=10) as client:
        yield client


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [_user("hi")]}, "max_tokens: Field required"),
        ({"max_tokens": 5, "messages": [{"role": "assistant", "content": "x"}]}, "first message"),
        ({"max_tokens": 5, "messages": [_user("a"), _user("b")]}, "must alternate"),
        ({"max_tokens": 5, "messages": [_user("a")], "n": 1}, "n: Extra inputs"),
        ({"max_tokens": 5, "messages": [_user("a")], "stop_sequences": "x"}, "stop_sequences"),
        ({"max_tokens": 5, "messages": [_user("")]}, "non-empty content"),
        ({"max_tokens": 5, "messages": [_user("a")], "tools": [{"name": "t"}]}, "input_schema"),
        ({"max_tokens": 5, "messages": [_user("a")], "tool_choice": {"type": "auto"}}, "tools"),
        (
            {
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}
                ],
            },
            "unexpected `tool_use_id`",
        ),
        (
            {
                "max_tokens": 5,
                "messages": [
                    _user("a"),
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                    },
                    _user("b"),
                ],
            },
            "without `tool_result`",
        ),
        (
            {
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}
                ],
            },
            "unexpected block type 'image_url'",
        ),
    ],
)
def test_fake_refuses_what_anthropic_refuses(
    http: httpx.Client, body: dict[str, Any], message: str
) -> None:
    response = http.post("/messages", json={"model": "claude", **body})
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_fake_checks_the_api_key_and_version_header(fake: FakeUpstream) -> None:
    body = {"model": "claude", "max_tokens": 5, "messages": [_user("a")]}
    response = httpx.post(f"{fake.base}/v1/messages", json=body, headers={"x-api-key": "nope"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    response = httpx.post(f"{fake.base}/v1/messages", json=body, headers={"x-api-key": KEY})
    assert response.status_code == 400
    assert "anthropic-version" in response.json()["error"]["message"]


def test_fake_counts_tokens(http: httpx.Client) -> None:
    body = {"model": "claude", "system": "Be brief", "messages": [_user("Say hello")]}
    response = http.post("/messages/count_tokens", json=body)
    assert response.status_code == 200
    assert response.json() == {"input_tokens": (8 + 9) // 4 + 1}


def test_fake_streams_event_and_data_lines_with_a_ping(http: httpx.Client) -> None:
    body = {"model": "claude", "max_tokens": 5, "messages": [_user("a b")], "stream": True}
    response = http.post("/messages", json=body)
    assert response.headers["content-type"] == "text/event-stream"
    events = response.text.split("\n\n")[:-1]
    names = [event.split("\n")[0] for event in events]
    assert names[:3] == ["event: message_start", "event: content_block_start", "event: ping"]
    assert names[-2:] == ["event: message_delta", "event: message_stop"]
    assert all(event.split("\n")[1].startswith("data: {") for event in events)
