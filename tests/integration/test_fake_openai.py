"""The fake OpenAI upstream itself, over real HTTP: wire format, strictness and behaviours."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import openai
import pytest

from tests.fakes.upstreams.harness import FakeUpstream

KEY = "sk-fake-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
CHAT = {"model": "gpt-x", "messages": MESSAGES}
PROMPT_TOKENS = (9 + 9) // 4 + 1  # characters of the message contents // 4 + 1
ANSWER = "".join(f"tok{i} " for i in range(20))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream.start(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.reset()


@pytest.fixture
def http(fake: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers=AUTH, timeout=10) as client:
        yield client


def _events(text: str) -> list[Any]:
    """The `data:` payloads of an SSE body, decoded; `[DONE]` stays a string."""
    assert text.endswith("\n\n")
    frames = text.split("\n\n")[:-1]
    assert all(frame.startswith("data: ") for frame in frames)
    return [
        frame[6:] if frame == "data: [DONE]" else msgspec.json.decode(frame[6:]) for frame in frames
    ]


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert response.headers["content-type"] == "application/json"
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


# --- the API --------------------------------------------------------------------------------


def test_chat_completion(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"].startswith("chatcmpl-fake")
    assert isinstance(body["created"], int)
    assert body == {
        "id": body["id"],
        "object": "chat.completion",
        "created": body["created"],
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": 20,
            "total_tokens": PROMPT_TOKENS + 20,
        },
        "system_fingerprint": "fp_fake",
        "service_tier": "default",
    }
    assert http.post("/chat/completions", json=CHAT).json()["id"] != body["id"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream(http: httpx.Client, include_usage: bool) -> None:
    body: dict[str, Any] = {**CHAT, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    response = http.post("/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert {c["model"] for c in chunks} == {"gpt-x"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tokens = chunks[1:21]
    assert [c["choices"][0]["delta"] for c in tokens] == [
        {"content": f"tok{i} "} for i in range(20)
    ]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:21])
    finish = chunks[21]["choices"][0]
    assert finish["delta"] == {}
    assert finish["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:22])
    assert (
        text
        == ANSWER
        == http.post("/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
    )
    if include_usage:
        assert len(chunks) == 23
        assert chunks[22]["choices"] == []
        assert chunks[22]["usage"] == {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": 20,
            "total_tokens": PROMPT_TOKENS + 20,
        }
        assert all(c["usage"] is None for c in chunks[:22])
    else:
        assert len(chunks) == 22
        assert all("usage" not in c for c in chunks)


def test_chunks_sets_the_answer_both_ways(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.set_behaviour(model="gpt-x", chunks=3)
    plain = http.post("/chat/completions", json=CHAT).json()
    assert plain["choices"][0]["message"]["content"] == "tok0 tok1 tok2 "
    assert plain["usage"]["completion_tokens"] == 3
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    events = _events(http.post("/chat/completions", json=body).text)
    assert len(events) == 1 + 3 + 1 + 1 + 1  # role, tokens, finish, usage, [DONE]
    assert events[-2]["usage"]["completion_tokens"] == 3


def test_legacy_completions(http: httpx.Client) -> None:
    body = {"model": "gpt-instruct", "prompt": "Once upon a time"}
    plain = http.post("/completions", json=body).json()
    assert plain["object"] == "text_completion"
    assert plain["id"].startswith("cmpl-fake")
    assert plain["choices"] == [
        {"text": ANSWER, "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert plain["usage"] == {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25}
    response = http.post("/completions", json={**body, "stream": True})
    assert response.headers["content-type"] == "text/event-stream"
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    assert {e["object"] for e in events[:-1]} == {"text_completion"}
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == ANSWER
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_embeddings(http: httpx.Client) -> None:
    body = http.post("/embeddings", json={"model": "emb", "input": ["a", "bb"]}).json()
    assert body["object"] == "list"
    assert body["model"] == "emb"
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", 0), ("embedding", 1)]
    vector = body["data"][0]["embedding"]
    assert len(vector) == 8
    assert all(isinstance(v, float) for v in vector)
    assert body["usage"] == {"prompt_tokens": 1, "total_tokens": 1}
    packed = http.post(
        "/embeddings", json={"model": "emb", "input": "a", "encoding_format": "base64"}
    ).json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(struct.unpack("<8f", raw)) == vector
    tokens = http.post("/embeddings", json={"model": "emb", "input": [1, 2, 3]}).json()
    assert len(tokens["data"]) == 1
    assert tokens["usage"]["prompt_tokens"] == 4


def test_models(http: httpx.Client) -> None:
    body = http.get("/models").json()
    assert body["object"] == "list"
    assert {"id": "gpt-4o-mini", "object": "model", "created": 1700000000, "owned_by": "fake"} in (
        body["data"]
    )


def test_the_openai_sdk_understands_it(fake: FakeUpstream) -> None:
    client = openai.OpenAI(base_url=fake.url, api_key=KEY, max_retries=0, timeout=10)
    completion = client.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == ANSWER
    stream = client.chat.completions.create(
        model="gpt-x",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20
    embedding = client.embeddings.create(model="emb", input="hello")  # base64 on the wire
    assert embedding.data[0].embedding == [0.125 * (i + 1) for i in range(8)]
    assert fake.stats()["last_body"]["emb"]["encoding_format"] == "base64"
    assert "gpt-4o-mini" in [m.id for m in client.models.list()]
    client.close()


# --- strictness -----------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer sk-wrong", f"bearer {KEY}", KEY])
def test_wrong_or_missing_key_is_401(fake: FakeUpstream, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    response = httpx.post(f"{fake.url}/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert httpx.get(f"{fake.url}/models", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/chat/completions", b"{", None),
        ("/chat/completions", b"", None),
        ("/chat/completions", b"[1]", None),
        ("/chat/completions", {"messages": MESSAGES}, "model"),
        ("/chat/completions", {"model": 3, "messages": MESSAGES}, "model"),
        ("/chat/completions", {"model": "m"}, "messages"),
        ("/chat/completions", {"model": "m", "messages": []}, "messages"),
        ("/chat/completions", {"model": "m", "messages": "hi"}, "messages"),
        ("/chat/completions", {"model": "m", "messages": ["hi"]}, "messages[0]"),
        ("/chat/completions", {"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ("/chat/completions", {"model": "m", "messages": [{"role": 1}]}, "messages[0].role"),
        ("/chat/completions", {"model": "m", "messages": [{"role": "x"}]}, "messages[0].role"),
        ("/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
        (
            "/chat/completions",
            {**CHAT, "stream_options": {"include_usage": True}},
            "stream_options",
        ),
        ("/completions", {"model": "m"}, "prompt"),
        ("/completions", {"model": "m", "prompt": {"a": 1}}, "prompt"),
        ("/embeddings", {"model": "m"}, "input"),
        ("/embeddings", {"model": "m", "input": ""}, "input"),
        ("/embeddings", {"model": "m", "input": [1.5]}, "input"),
        ("/embeddings", {"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format"),
    ],
)
def test_invalid_requests_are_400(
    http: httpx.Client, path: str, body: bytes | dict[str, Any], param: str | None
) -> None:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    response = http.post(path, content=content)
    assert response.status_code == 400
    error = _error(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] is None
    assert error["message"]


def test_unknown_paths_are_404(http: httpx.Client) -> None:
    for method, path in [("POST", "/nope"), ("GET", "/chat/completions"), ("POST", "/models")]:
        response = http.request(method, path, json=CHAT)
        assert response.status_code == 404
        assert _error(response)["message"] == f"Invalid URL ({method} /v1{path})"


def test_unknown_fields_and_headers_are_recorded(fake: FakeUpstream, http: httpx.Client) -> None:
    body = {**CHAT, "temperature": 0.5, "x_vendor_thing": {"nested": [1, 2]}}
    assert http.post("/chat/completions", json=body, headers={"X-Trace": "abc"}).status_code == 200
    stats = fake.stats()
    assert stats["last_body"]["gpt-x"] == body
    headers = stats["last_headers"]["gpt-x"]
    assert headers["x-trace"] == "abc"
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["content-type"] == "application/json"


# --- behaviours -----------------------------------------------------------------------------


def test_status_answers_an_openai_error(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.set_behaviour(model="gpt-x", status=503, error_message="overloaded")
    response = http.post("/chat/completions", json=CHAT)
    assert response.status_code == 503
    assert _error(response) == {
        "message": "overloaded",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    streamed = http.post("/chat/completions", json={**CHAT, "stream": True})
    assert streamed.status_code == 503  # before any frame
    assert _error(streamed)["message"] == "overloaded"
    fake.set_behaviour(model="gpt-x", status=429)
    limited = http.post("/chat/completions", json=CHAT)
    assert limited.status_code == 429
    assert _error(limited)["code"] == "rate_limit_exceeded"
    assert http.post("/chat/completions", json={**CHAT, "model": "other"}).status_code == 200


def test_times_and_precedence(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.set_behaviour(model="*", status=500)
    fake.set_behaviour(model="gpt-x", status=418, times=2)
    statuses = [http.post("/chat/completions", json=CHAT).status_code for _ in range(3)]
    assert statuses == [418, 418, 500]  # then the '*' behaviour again
    assert http.post("/embeddings", json={"model": "e", "input": "x"}).status_code == 500
    fake.clear_behaviours()
    assert http.post("/chat/completions", json=CHAT).status_code == 200


def test_bad_behaviour_is_refused(fake: FakeUpstream) -> None:
    with pytest.raises(RuntimeError, match="400"):
        fake.set_behaviour(delay_ms=-1)
    with pytest.raises(RuntimeError, match="400"):
        fake.set_behaviour(delay=5)  # unknown field
    response = httpx.post(f"{fake.base}/_fake/behaviour", json={"status": 500})
    assert response.status_code == 400  # model is required


def test_delay_ms_holds_the_response(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.set_behaviour(model="gpt-x", delay_ms=300)
    started = time.monotonic()
    assert http.post("/chat/completions", json=CHAT).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert http.post("/chat/completions", json={**CHAT, "model": "fast"}).status_code == 200
    assert time.monotonic() - started < 0.3


def test_first_token_delay_comes_after_the_head(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.set_behaviour(model="gpt-x", first_token_delay_ms=400)
    started = time.monotonic()
    with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response:
        head = time.monotonic() - started
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("data: {")
        first = time.monotonic() - started
        rest = [line for line in lines if line]
    assert head < 0.3
    assert first >= 0.4
    assert rest[-1] == "data: [DONE]"
    assert fake.stats()["completed_streams"] == 1


def test_chunk_delay_paces_the_frames(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.set_behaviour(model="gpt-x", chunk_delay_ms=50, chunks=4)
    started = time.monotonic()
    events = _events(http.post("/chat/completions", json={**CHAT, "stream": True}).text)
    assert len(events) == 1 + 4 + 1 + 1
    assert time.monotonic() - started >= 5 * 0.05  # between the 6 frames


@pytest.mark.parametrize("cut", [0, 3, 22])
def test_cut_stream_is_a_protocol_error(fake: FakeUpstream, http: httpx.Client, cut: int) -> None:
    fake.set_behaviour(model="gpt-x", cut_after_chunks=cut)
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response,
    ):
        assert response.status_code == 200
        received.extend(line for line in response.iter_lines() if line)
    assert len(received) == cut
    assert "data: [DONE]" not in received
    stats = fake.stats()
    assert (stats["cut_streams"], stats["completed_streams"], stats["disconnects"]) == (1, 0, 0)
    assert http.post("/chat/completions", json=CHAT).status_code == 200  # the server lives on


def test_cut_stream_raises_in_the_sdk(fake: FakeUpstream) -> None:
    fake.set_behaviour(model="gpt-x", cut_after_chunks=2)
    client = openai.OpenAI(base_url=fake.url, api_key=KEY, max_retries=0, timeout=10)
    stream = client.chat.completions.create(model="gpt-x", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIConnectionError) as caught:
        list(stream)
    assert "incomplete chunked read" in str(caught.value.__cause__)
    client.close()


def _wait_for_disconnect(fake: FakeUpstream) -> dict[str, Any]:
    started = time.monotonic()
    stats = fake.wait_for(lambda s: s["disconnects"] > 0, timeout=3)
    assert stats["disconnects"] == 1
    assert time.monotonic() - started < 1  # prompt
    assert stats["completed_streams"] == 0
    return stats


def test_disconnect_during_delay_is_counted(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.set_behaviour(model="gpt-x", delay_ms=5000)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json=CHAT, timeout=0.3)
    _wait_for_disconnect(fake)


def test_disconnect_before_the_first_token_is_counted(
    fake: FakeUpstream, http: httpx.Client
) -> None:
    fake.set_behaviour(model="gpt-x", first_token_delay_ms=5000)
    with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response:
        assert response.status_code == 200  # the head came at once; leave before any frame
    _wait_for_disconnect(fake)


def test_disconnect_mid_stream_is_counted(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.set_behaviour(model="gpt-x", chunk_delay_ms=100)
    with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: {")
    _wait_for_disconnect(fake)


def test_stats_count_requests_and_reset(fake: FakeUpstream, http: httpx.Client) -> None:
    http.post("/chat/completions", json=CHAT)
    http.post("/chat/completions", json=CHAT)
    http.post("/chat/completions", json={**CHAT, "stream": True})
    http.post("/embeddings", json={"model": "emb", "input": "x"})
    http.get("/models")
    http.post("/chat/completions", json={"model": "gpt-x"})  # 400, still counted
    httpx.post(f"{fake.url}/chat/completions", json=CHAT)  # 401, still counted
    stats = fake.stats()
    assert stats["total"] == 7
    assert stats["requests"] == {
        "POST /v1/chat/completions gpt-x": 5,
        "POST /v1/embeddings emb": 1,
        "GET /v1/models": 1,
    }
    assert stats["completed_streams"] == 1
    assert stats["disconnects"] == 0
    assert set(stats["last_body"]) == {"gpt-x", "emb"}
    fake.set_behaviour(status=500)
    fake.reset()
    assert fake.stats() == {
        "total": 0,
        "requests": {},
        "disconnects": 0,
        "completed_streams": 0,
        "cut_streams": 0,
        "last_body": {},
        "last_headers": {},
    }
    assert http.post("/chat/completions", json=CHAT).status_code == 200


def test_several_workers_serve() -> None:
    with FakeUpstream.start(workers=2) as server:
        for _ in range(10):
            response = httpx.post(f"{server.url}/chat/completions", json=CHAT, headers=AUTH)
            assert response.status_code == 401  # the default key, sk-fake
        response = httpx.get(f"{server.url}/models", headers={"authorization": "Bearer sk-fake"})
        assert response.status_code == 200


def test_a_busy_port_is_refused(fake: FakeUpstream) -> None:
    with pytest.raises(RuntimeError, match="already in use"):
        FakeUpstream.start(port=fake.port)  # Granian's SO_REUSEPORT would share it silently
