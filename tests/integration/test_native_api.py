"""The native passthrough routes end to end: vendor SDKs → the real gateway → strict vendor fakes.

One `gandalf run` (limits and usage on) serves Anthropic (direct, Vertex AI with tokens from
the fake Google endpoint, Bedrock with SigV4), Gemini, Azure OpenAI and Ollama providers, each a
fake process that checks requests like the real API. The clients are the official `anthropic`
and `openai` (AzureOpenAI) SDKs where they exist, httpx otherwise.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.gcp_token import make_service_account
from tests.fakes.sigv4 import FAKE_AWS_ACCESS_KEY, FAKE_AWS_SECRET_KEY
from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.harness import ADMIN_KEY, TEST_KEY, Gateway, admin_call

pytestmark = pytest.mark.e2e

ANTHROPIC_KEY = "sk-ant-native-provider-key"
GEMINI_KEY = "gemini-native-provider-key"
AZURE_KEY = "azure-native-provider-key"
RPM_KEY = "gnd_native-rpm-key-0000000000000000000000000000"
OTHER_KEY = "gnd_native-other-key-00000000000000000000000000"
"""A key of its own for the usage matrix, so its rows are the only ones for its aliases."""
AZURE_VERSION = "2024-10-21"
CLAUDE = "claude-sonnet-4-5"
VERTEX_MODEL = "claude-sonnet-4-5@20250929"
BEDROCK_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
PRICE = {"input": 100, "output": 1000}
"""USD per million tokens, for every priced upstream model."""
SYSTEM = "Be brief"
HELLO: Any = [{"role": "user", "content": "Say hello"}]
TOOLS: Any = [
    {
        "name": "lookup",
        "description": "Look a thing up",
        "input_schema": {"type": "object", "properties": {"echo": {"type": "string"}}},
    }
]


@pytest.fixture(scope="module")
def token_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the fake token endpoint and the fakes checking its tokens share them."""
    path = tmp_path_factory.mktemp("gcp-tokens")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GCP_FAKE_TOKEN_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def claude(token_dir: Path) -> Iterator[FakeUpstream]:
    with FakeUpstream.start(module="tests.fakes.upstreams.anthropic", api_key=ANTHROPIC_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeUpstream]:
    with FakeUpstream.start(module="tests.fakes.upstreams.gemini", api_key=GEMINI_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def azure() -> Iterator[FakeUpstream]:
    with FakeUpstream.start(module="tests.fakes.upstreams.azure", api_key=AZURE_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeUpstream]:
    with FakeUpstream.start(module="tests.fakes.upstreams.ollama") as fake:
        yield fake


@pytest.fixture(scope="module")
def service_account(token_dir: Path) -> Iterator[Path]:
    with FakeUpstream.start(module="tests.fakes.gcp_token") as tokens:
        path = token_dir / "service-account.json"
        make_service_account(path, f"{tokens.base}/token")
        yield path


@pytest.fixture(autouse=True)
def _reset(
    claude: FakeUpstream, gemini: FakeUpstream, azure: FakeUpstream, ollama: FakeUpstream
) -> None:
    for fake in (claude, gemini, azure, ollama):
        fake.reset()


def _route(alias: str, *targets: tuple[str, str]) -> dict[str, Any]:
    return {
        "model_alias": alias,
        "targets": [
            {"provider": provider, "model": model, "priority": n}
            for n, (provider, model) in enumerate(targets, 1)
        ],
    }


@pytest.fixture(scope="module")
def gateway(
    *,
    claude: FakeUpstream,
    gemini: FakeUpstream,
    azure: FakeUpstream,
    ollama: FakeUpstream,
    service_account: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("native")
    providers = [
        {"name": "anthropic", "type": "anthropic", "base_url": f"{claude.base}/v1"}
        | {"api_key": ANTHROPIC_KEY},
        {"name": "vertex", "type": "anthropic", "hosting": "vertex", "base_url": claude.base}
        | {"region": "us-east5", "project": "fake-project"}
        | {"auth": {"credentials_file": str(service_account)}},
        {"name": "bedrock", "type": "anthropic", "hosting": "bedrock", "base_url": claude.base}
        | {"region": "us-east-1"},
        {"name": "gemini", "type": "gemini", "base_url": f"{gemini.base}/v1beta"}
        | {"api_key": GEMINI_KEY},
        {"name": "azure", "type": "openai", "hosting": "azure", "base_url": azure.base}
        | {"api_key": AZURE_KEY, "api_version": AZURE_VERSION},
        {"name": "ollama", "type": "ollama", "base_url": ollama.base},
    ]
    routes = [
        _route("claude", ("anthropic", CLAUDE)),
        _route("claude-count", ("anthropic", CLAUDE)),
        _route("claude-cut", ("anthropic", CLAUDE)),
        _route("claude-failover", ("anthropic", "claude-primary"), ("anthropic", "claude-backup")),
        _route("claude-vertex", ("vertex", VERTEX_MODEL)),
        _route("claude-bedrock", ("bedrock", BEDROCK_MODEL)),
        _route("claude-mixed", ("ollama", "llama3.2"), ("anthropic", CLAUDE)),
        _route("gemini-flash", ("gemini", "gemini-2.5-flash")),
        _route("gemini-refusals", ("gemini", "gemini-2.5-flash")),
        _route("gpt-azure", ("azure", "gpt-4o-deploy")),
        _route("llama", ("ollama", "llama3.2")),
        _route("priced-anthropic", ("anthropic", "claude-priced")),
        _route("priced-bedrock", ("bedrock", "anthropic.claude-priced-v1:0")),
        _route("priced-gemini", ("gemini", "gemini-priced")),
        _route("priced-azure", ("azure", "gpt-priced")),
        _route("priced-ollama", ("ollama", "llama-priced")),
    ]
    priced = ("claude-priced", "anthropic.claude-priced-v1:0", "gemini-priced", "gpt-priced")
    config = {
        "server": {"workers": 2, "keepalive_interval": "300ms"},
        "database": {"dsn": str(workdir / "gandalf.db")},
        "rate_limits": {"default_rpm": 0, "default_tpm": 0},
        "providers": providers,
        "routes": routes,
        "pricing": {"models": {model: PRICE for model in (*priced, "llama-priced")}},
        "keys": [
            {"name": "member", "key": TEST_KEY, "role": "member"},
            {"name": "rpm", "key": RPM_KEY, "role": "member", "rpm_limit": 2},
            {"name": "other", "key": OTHER_KEY, "role": "member"},
        ],
    }
    env = {
        "GANDALF_ADMIN_KEY": ADMIN_KEY,
        "AWS_ACCESS_KEY_ID": FAKE_AWS_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_AWS_SECRET_KEY,
    }
    with Gateway(config, workdir, command="run", env=env) as gw:
        yield gw


def _text(message: anthropic.types.Message) -> str:
    block = message.content[0]
    assert block.type == "text"
    return block.text


def _error(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    return body


_OPEN: list[anthropic.Anthropic | openai.AzureOpenAI] = []
"""SDK clients made here, closed when the module ends (each holds a connection pool)."""


class Anthropic(anthropic.Anthropic):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        _OPEN.append(self)


class AzureOpenAI(openai.AzureOpenAI):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        _OPEN.append(self)


@pytest.fixture(autouse=True, scope="module")
def _close_clients() -> Iterator[None]:
    yield
    for client in _OPEN:
        client.close()
    _OPEN.clear()


def _anthropic(gateway: Gateway, key: str = TEST_KEY) -> Anthropic:
    return Anthropic(base_url=gateway.base, api_key=key, max_retries=0)


def _rows(gateway: Gateway, expected: int, **filters: str) -> list[dict[str, Any]]:
    """The usage rows matching `filters`, once the recorder has stored `expected` of them."""
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    deadline = time.monotonic() + 10
    while True:
        page = admin_call(gateway, "GET", f"/usage?limit=100&{query}").json()
        if page["pagination"]["total"] >= expected or time.monotonic() > deadline:
            assert page["pagination"]["total"] == expected, page
            return list(page["data"])
        time.sleep(0.1)


def _totals(*fakes: FakeUpstream) -> list[int]:
    return [fake.stats()["total"] for fake in fakes]


# --- Anthropic /v1/messages --------------------------------------------------------------------


def test_messages_through_the_sdk_plain_and_streamed(
    gateway: Gateway, claude: FakeUpstream
) -> None:
    client = _anthropic(gateway)
    message = client.messages.create(
        model="claude",
        max_tokens=50,
        system=SYSTEM,
        messages=HELLO,
    )
    assert message.content[0].type == "text"
    assert _text(message) == "Hello! You said: Say hello [system: Be brief]"
    assert message.stop_reason == "end_turn"
    prompt = (len(SYSTEM) + len("Say hello")) // 4 + 1
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == prompt
    assert message.usage.cache_read_input_tokens == 2

    with client.messages.stream(
        model="claude",
        max_tokens=50,
        system=SYSTEM,
        messages=HELLO,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == _text(message)
    assert final.usage.output_tokens == message.usage.output_tokens
    assert final.usage.input_tokens == message.usage.input_tokens

    sent = claude.stats()
    assert sent["requests"]["POST /v1/messages"] == 2
    headers = sent["last_headers"]["/v1/messages"]
    assert headers["x-api-key"] == ANTHROPIC_KEY  # the provider's key, never the client's
    assert "authorization" not in headers
    assert TEST_KEY not in json.dumps(headers)
    assert headers["anthropic-version"] == client.default_headers["anthropic-version"]  # its own
    assert sent["last_body"]["/v1/messages"]["model"] == CLAUDE


@pytest.mark.parametrize("how", ["auth_token", "authorization", "x-api-key"])
def test_the_key_as_a_bearer_token_or_x_api_key(
    gateway: Gateway, claude: FakeUpstream, how: str
) -> None:
    """This SDK sends `api_key` as a bearer token too; `x-api-key` wins over a stray bearer."""
    if how == "auth_token":
        client = Anthropic(base_url=gateway.base, auth_token=TEST_KEY, max_retries=0)
    else:
        value = TEST_KEY if how == "x-api-key" else f"Bearer {TEST_KEY}"
        client = Anthropic(
            base_url=gateway.base,
            api_key="not-the-key",
            default_headers={how: value},
            max_retries=0,
        )
    message = client.messages.create(model="claude", max_tokens=20, messages=HELLO)
    assert _text(message) == "Hello! You said: Say hello"
    headers = claude.stats()["last_headers"]["/v1/messages"]
    assert headers["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in headers


def test_client_headers_are_allow_listed(gateway: Gateway, claude: FakeUpstream) -> None:
    answer = httpx.post(
        f"{gateway.base}/v1/messages",
        json={"model": "claude", "max_tokens": 5, "messages": HELLO},
        headers={
            "x-api-key": TEST_KEY,
            "anthropic-beta": "prompt-caching-2024-07-31",
            "x-forwarded-host": "evil.example",
            "cookie": "session=1",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"]
    headers = claude.stats()["last_headers"]["/v1/messages"]
    assert headers["anthropic-version"] == "2023-06-01"  # the default when the client sent none
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "x-forwarded-host" not in headers and "cookie" not in headers
    assert headers["host"] == f"127.0.0.1:{claude.port}"


def test_count_tokens_is_forwarded_and_not_recorded(gateway: Gateway, claude: FakeUpstream) -> None:
    client = _anthropic(gateway)
    counted = client.messages.count_tokens(model="claude-count", system=SYSTEM, messages=HELLO)
    assert counted.input_tokens == (len(SYSTEM) + len("Say hello")) // 4 + 1
    assert claude.stats()["last_body"]["/v1/messages/count_tokens"]["model"] == CLAUDE
    client.messages.create(model="claude-count", max_tokens=5, messages=HELLO)
    (row,) = _rows(gateway, 1, model="claude-count")  # the message, not the count
    assert row["completion_tokens"] > 0


def test_tool_use_round_trip(gateway: Gateway) -> None:
    client = _anthropic(gateway)
    asked = client.messages.create(
        model="claude",
        max_tokens=50,
        messages=HELLO,
        tools=TOOLS,
    )
    assert asked.stop_reason == "tool_use"
    (call,) = [block for block in asked.content if block.type == "tool_use"]
    assert call.name == "lookup" and call.input == {"echo": "Say hello"}
    with client.messages.stream(
        model="claude",
        max_tokens=50,
        messages=HELLO,
        tools=TOOLS,
    ) as stream:
        streamed = stream.get_final_message()
    (streamed_call,) = [block for block in streamed.content if block.type == "tool_use"]
    assert streamed_call.input == {"echo": "Say hello"}
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}
    conversation: Any = [
        *HELLO,
        {"role": "assistant", "content": [call.model_dump()]},
        {"role": "user", "content": [result]},
    ]
    answered = client.messages.create(
        model="claude", max_tokens=50, tools=TOOLS, messages=conversation
    )
    assert _text(answered) == "Tool said: 18 C"


@pytest.mark.parametrize(
    ("alias", "path"),
    [
        (
            "claude-vertex",
            f"/v1/projects/fake-project/locations/us-east5/publishers/anthropic/models/{VERTEX_MODEL}",
        ),
        ("claude-bedrock", f"/model/{BEDROCK_MODEL}"),
    ],
    ids=["vertex", "bedrock"],
)
def test_cloud_hosted_anthropic(
    gateway: Gateway, claude: FakeUpstream, alias: str, path: str
) -> None:
    client = _anthropic(gateway)
    message = client.messages.create(
        model=alias,
        max_tokens=50,
        system=SYSTEM,
        messages=HELLO,
    )
    assert _text(message) == "Hello! You said: Say hello [system: Be brief]"
    with client.messages.stream(
        model=alias,
        max_tokens=50,
        system=SYSTEM,
        messages=HELLO,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == _text(message)
    assert final.usage.output_tokens == message.usage.output_tokens
    stats = claude.stats()
    vertex = alias == "claude-vertex"
    plain = path + (":rawPredict" if vertex else "/invoke")
    streamed = path + (":streamRawPredict" if vertex else "/invoke-with-response-stream")
    assert stats["requests"] == {f"POST {plain}": 1, f"POST {streamed}": 1}
    body = stats["last_body"][plain]
    assert "model" not in body
    assert body["anthropic_version"] == ("vertex-2023-10-16" if vertex else "bedrock-2023-05-31")
    assert TEST_KEY not in json.dumps(stats["last_headers"])


def test_a_bedrock_stream_is_anthropic_sse(gateway: Gateway) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.base}/v1/messages",
        json={"model": "claude-bedrock", "max_tokens": 20, "messages": HELLO, "stream": True},
        headers={"x-api-key": TEST_KEY},
    ) as answer:
        assert answer.headers["content-type"] == "text/event-stream"
        raw = answer.read().decode()
    events = [event for event in raw.split("\n\n") if event and not event.startswith(":")]
    names = [event.split("\n")[0] for event in events]
    assert names[0] == "event: message_start"
    assert names[-1] == "event: message_stop"
    for event in events:
        name, data = event.split("\n")
        assert json.loads(data.removeprefix("data: "))["type"] == name.removeprefix("event: ")


# --- Gemini, Azure, Ollama ---------------------------------------------------------------------


def _gemini_body(text: str = "Say hello") -> dict[str, Any]:
    return {
        "systemInstruction": {"parts": [{"text": SYSTEM}]},
        "contents": [{"role": "user", "parts": [{"text": text}]}],
    }


def test_gemini_generate_and_stream(gateway: Gateway, gemini: FakeUpstream) -> None:
    headers = {"x-goog-api-key": TEST_KEY}
    base = f"{gateway.base}/v1beta/models/gemini-flash"
    plain = httpx.post(f"{base}:generateContent", json=_gemini_body(), headers=headers)
    assert plain.status_code == 200, plain.text
    answer = plain.json()
    text = answer["candidates"][0]["content"]["parts"][0]["text"]
    assert text == "Hello! You said: Say hello [system: Be brief]"
    streamed = httpx.post(
        f"{base}:streamGenerateContent?alt=sse&key=ignored", json=_gemini_body(), headers=headers
    )
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"] == "text/event-stream"
    chunks = [
        json.loads(event.removeprefix("data: "))
        for event in streamed.text.split("\n\n")
        if event.startswith("data: ")
    ]
    parts = "".join(c["candidates"][0]["content"]["parts"][0].get("text", "") for c in chunks)
    assert parts == text
    assert chunks[-1]["usageMetadata"] == answer["usageMetadata"]
    stats = gemini.stats()
    stream_path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert stats["requests"] == {
        "POST /v1beta/models/gemini-2.5-flash:generateContent": 1,
        f"POST {stream_path}": 1,
    }
    assert stats["last_query"][stream_path] == "alt=sse"  # the client's key= stays here
    by_query = httpx.post(f"{base}:generateContent?key={TEST_KEY}", json=_gemini_body())
    assert by_query.status_code == 200


def test_azure_deployments_through_the_openai_sdk(gateway: Gateway, azure: FakeUpstream) -> None:
    client = AzureOpenAI(
        api_key=TEST_KEY, azure_endpoint=gateway.base, api_version=AZURE_VERSION, max_retries=0
    )
    messages: Any = [{"role": "user", "content": "Say hello"}]
    answer = client.chat.completions.create(model="gpt-azure", messages=messages)
    assert answer.choices[0].message.content == "Hello! You said: Say hello"
    stream = client.chat.completions.create(model="gpt-azure", messages=messages, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello! You said: Say hello"
    )
    assert all(chunk.usage is None for chunk in chunks)  # not asked for: not shown
    stats = azure.stats()
    path = "/openai/deployments/gpt-4o-deploy/chat/completions"
    assert stats["paths"] == [f"{path}?api-version={AZURE_VERSION}"] * 2
    assert stats["last_headers"][path]["api-key"] == AZURE_KEY
    assert TEST_KEY not in json.dumps(stats["last_headers"])


def test_ollama_chat_stream_and_tags(gateway: Gateway, ollama: FakeUpstream) -> None:
    auth = {"authorization": f"Bearer {TEST_KEY}"}
    body = {"model": "llama", "messages": HELLO}
    with httpx.stream("POST", f"{gateway.base}/api/chat", json=body, headers=auth) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in answer.iter_lines() if line]
    assert "".join(line["message"]["content"] for line in lines) == "Hello! You said: Say hello"
    assert lines[-1]["done"] is True
    plain = httpx.post(f"{gateway.base}/api/chat", json={**body, "stream": False}, headers=auth)
    assert plain.json()["eval_count"] == lines[-1]["eval_count"]
    assert ollama.stats()["last_body"]["/api/chat"]["model"] == "llama3.2"

    tags = httpx.get(f"{gateway.base}/api/tags", headers=auth)
    assert tags.status_code == 200
    names = {model["name"] for model in tags.json()["models"]}
    assert {"llama", "claude-mixed", "priced-ollama"} <= names
    assert "claude" not in names and "gemini-flash" not in names
    assert ollama.stats()["requests"].get("GET /api/tags") is None  # answered from the routes


def test_a_route_uses_only_targets_of_the_wire_format(
    gateway: Gateway, claude: FakeUpstream, ollama: FakeUpstream
) -> None:
    message = _anthropic(gateway).messages.create(
        model="claude-mixed",
        max_tokens=5,
        messages=HELLO,
    )
    assert _text(message) == "Hello! You said: Say hello"
    assert ollama.stats()["total"] == 0
    assert claude.stats()["last_body"]["/v1/messages"]["model"] == CLAUDE
    answer = httpx.post(
        f"{gateway.base}/api/chat",
        json={"model": "claude", "messages": HELLO, "stream": False},
        headers={"authorization": f"Bearer {TEST_KEY}"},
    )
    assert answer.status_code == 404
    assert "claude" in answer.json()["error"]


# --- usage, limits, refusals -------------------------------------------------------------------


def _call_anthropic(gateway: Gateway, alias: str, stream: bool) -> None:
    client = _anthropic(gateway, OTHER_KEY)
    if stream:
        with client.messages.stream(
            model=alias,
            max_tokens=50,
            system=SYSTEM,
            messages=HELLO,
        ) as events:
            events.until_done()
    else:
        client.messages.create(model=alias, max_tokens=50, system=SYSTEM, messages=HELLO)


def _call_gemini(gateway: Gateway, alias: str, stream: bool) -> None:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    url = f"{gateway.base}/v1beta/models/{alias}:{action}"
    answer = httpx.post(url, json=_gemini_body(), headers={"x-goog-api-key": OTHER_KEY})
    assert answer.status_code == 200, answer.text


def _call_azure(gateway: Gateway, alias: str, stream: bool) -> None:
    client = AzureOpenAI(
        api_key=OTHER_KEY, azure_endpoint=gateway.base, api_version=AZURE_VERSION, max_retries=0
    )
    messages: Any = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Say hello"},
    ]
    answer = client.chat.completions.create(model=alias, messages=messages, stream=stream)
    if stream:
        list(answer)


def _call_ollama(gateway: Gateway, alias: str, stream: bool) -> None:
    body = {"model": alias, "messages": [{"role": "system", "content": SYSTEM}, *HELLO]}
    answer = httpx.post(
        f"{gateway.base}/api/chat",
        json={**body, "stream": stream},
        headers={"authorization": f"Bearer {OTHER_KEY}"},
    )
    assert answer.status_code == 200, answer.text


CALLS = {
    "priced-anthropic": _call_anthropic,
    "priced-bedrock": _call_anthropic,
    "priced-gemini": _call_gemini,
    "priced-azure": _call_azure,
    "priced-ollama": _call_ollama,
}


@pytest.mark.parametrize("alias", list(CALLS))
def test_streamed_and_plain_calls_record_the_same_usage(gateway: Gateway, alias: str) -> None:
    CALLS[alias](gateway, alias, False)
    CALLS[alias](gateway, alias, True)
    plain, streamed = sorted(_rows(gateway, 2, model=alias), key=lambda row: "ttft_ms" in row)
    assert streamed.get("ttft_ms") is not None and plain.get("ttft_ms") is None
    for row in (plain, streamed):
        assert row["status_code"] == 200
        assert row["usage_source"] == "provider"
        assert row["prompt_tokens"] == (len(SYSTEM) + len("Say hello")) // 4 + 1
        assert row["completion_tokens"] > 0
    fields = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_nano", "upstream_model")
    assert {k: plain.get(k) for k in fields} == {k: streamed.get(k) for k in fields}
    expected = plain["prompt_tokens"] * 100_000 + plain["completion_tokens"] * 1_000_000
    if alias != "priced-ollama":  # Ollama reports no cached tokens; the others 2, priced alike
        assert plain["cached_tokens"] == 2
    assert plain["cost_nano"] == expected


def test_rpm_applies_to_native_calls_in_anthropic_shape(gateway: Gateway) -> None:
    body = {"model": "claude", "max_tokens": 5, "messages": HELLO}
    answers = [
        httpx.post(f"{gateway.base}/v1/messages", json=body, headers={"x-api-key": RPM_KEY})
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "rate limit exceeded"},
    }
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(refused.headers["retry-after"]) >= 1
    assert answers[0].headers["x-ratelimit-limit-requests"] == "2"
    with pytest.raises(anthropic.RateLimitError):  # the SDK reads it as Anthropic's own
        _anthropic(gateway, RPM_KEY).messages.create(**body)


def test_a_bad_key_is_refused_in_each_vendor_shape(
    gateway: Gateway, claude: FakeUpstream, gemini: FakeUpstream
) -> None:
    bad = "gnd_not-a-key-000000000000000000000000000000000"
    with pytest.raises(anthropic.AuthenticationError) as caught:
        _anthropic(gateway, bad).messages.create(model="claude", max_tokens=5, messages=HELLO)
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "unauthorized"},
    }
    url = f"{gateway.base}/v1beta/models/gemini-refusals:generateContent"
    refused = httpx.post(url, json=_gemini_body(), headers={"x-goog-api-key": bad})
    assert refused.status_code == 401
    assert refused.json() == {
        "error": {"code": 401, "message": "unauthorized", "status": "UNAUTHENTICATED"}
    }
    with pytest.raises(openai.AuthenticationError):
        AzureOpenAI(
            api_key=bad, azure_endpoint=gateway.base, api_version=AZURE_VERSION, max_retries=0
        ).chat.completions.create(model="gpt-azure", messages=HELLO)
    ollama = httpx.post(f"{gateway.base}/api/chat", json={"model": "llama", "messages": HELLO})
    assert (ollama.status_code, ollama.json()) == (401, {"error": "unauthorized"})
    assert _totals(claude, gemini) == [0, 0]
    accepted = httpx.post(url, json=_gemini_body(), headers={"x-goog-api-key": TEST_KEY})
    assert accepted.status_code == 200
    (row,) = _rows(gateway, 1, model="gemini-refusals")  # the refusal left no row
    assert row["status_code"] == 200


def test_an_unknown_model_is_a_404(gateway: Gateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        _anthropic(gateway).messages.create(model="nope", max_tokens=5, messages=HELLO)
    assert _error(caught.value)["error"]["type"] == "not_found_error"
    gemini = httpx.post(
        f"{gateway.base}/v1beta/models/nope:generateContent",
        json=_gemini_body(),
        headers={"x-goog-api-key": TEST_KEY},
    )
    assert (gemini.status_code, gemini.json()["error"]["status"]) == (404, "NOT_FOUND")
    with pytest.raises(openai.NotFoundError):
        AzureOpenAI(
            api_key=TEST_KEY, azure_endpoint=gateway.base, api_version=AZURE_VERSION, max_retries=0
        ).chat.completions.create(model="nope", messages=HELLO)
    # a model routed only to providers of another wire format is unknown here too
    with pytest.raises(anthropic.NotFoundError):
        _anthropic(gateway).messages.create(model="llama", max_tokens=5, messages=HELLO)


def _raw_post(gateway: Gateway, target: str, headers: dict[str, str]) -> int:
    """POST `target` exactly as written (no client-side path normalisation); the status."""
    body = b'{"contents":[{"role":"user","parts":[{"text":"x"}]}]}'
    lines = [f"POST {target} HTTP/1.1", f"Host: 127.0.0.1:{gateway.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode() + body)
        head = sock.recv(65536).split(b"\r\n", 1)[0]
    return int(head.split()[1])


def test_paths_and_models_that_try_to_escape_reach_no_upstream(
    gateway: Gateway,
    claude: FakeUpstream,
    gemini: FakeUpstream,
    azure: FakeUpstream,
    ollama: FakeUpstream,
) -> None:
    google = {"x-goog-api-key": TEST_KEY, "content-type": "application/json"}
    for target in (
        "/v1beta/models/..%2F..:x",
        "/v1beta/models/..%2F..%2Fv1%2Fmessages:generateContent",
        "/v1beta/models/gemini-flash%40evil.example:generateContent",
        "/v1beta/models/../../v1/messages:generateContent",
        "/v1beta/models/gemini-flash:generateContent/../../x",
        "/v1beta/models/http:%2F%2Fevil.example%2Fx:generateContent",
    ):
        assert _raw_post(gateway, target, google) in (400, 404), target
    azure_key = {"api-key": TEST_KEY, "content-type": "application/json"}
    for target in (
        f"/openai/deployments/..%2F..%2Fx/chat/completions?api-version={AZURE_VERSION}",
        "/openai/deployments/gpt-azure/chat/completions?api-version=..%2F..%2Fx",
        "/openai/deployments/gpt-azure/chat/completions?api-version=1%0d%0aHost:%20evil",
    ):
        assert _raw_post(gateway, target, azure_key) in (400, 404), target
    ollama_auth = {"authorization": f"Bearer {TEST_KEY}", "content-type": "application/json"}
    assert _raw_post(gateway, "/api/..%2Fapi%2Fchat", ollama_auth) in (400, 404)
    client = _anthropic(gateway)
    for model in ("claude/../x", "claude@evil.example", "http://evil.example/v1", "../claude"):
        with pytest.raises(anthropic.NotFoundError):
            client.messages.create(model=model, max_tokens=5, messages=HELLO)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="claude",
            max_tokens=5,
            messages=HELLO,
            extra_headers={"anthropic-beta": "x\u00e9"},
        )
    assert _totals(claude, gemini, azure, ollama) == [0, 0, 0, 0]


def test_failover_to_the_next_anthropic_target(gateway: Gateway, claude: FakeUpstream) -> None:
    claude.set_behaviour(model="claude-primary", status=500)
    client = _anthropic(gateway)
    message = client.messages.create(model="claude-failover", max_tokens=5, messages=HELLO)
    assert _text(message) == "Hello! You said: Say hello"
    with client.messages.stream(
        model="claude-failover",
        max_tokens=5,
        messages=HELLO,
    ) as stream:
        assert "".join(stream.text_stream) == "Hello! You said: Say hello"
    assert claude.stats()["requests"]["POST /v1/messages"] == 4  # each: 500, then the backup
    assert claude.stats()["last_body"]["/v1/messages"]["model"] == "claude-backup"
    claude.set_behaviour(model="*", status=400, error_message="prompt is too long")
    with pytest.raises(anthropic.BadRequestError) as caught:  # a 4xx is the client's, as sent
        client.messages.create(model="claude-failover", max_tokens=5, messages=HELLO)
    assert _error(caught.value)["error"]["message"] == "prompt is too long"
    assert claude.stats()["requests"]["POST /v1/messages"] == 6
    claude.set_behaviour(model="*", status=503)
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(model="claude-failover", max_tokens=5, messages=HELLO)
    assert failed.value.status_code == 502
    assert _error(failed.value)["type"] == "error"


def test_a_stream_cut_upstream_ends_with_an_anthropic_error_event(
    gateway: Gateway, claude: FakeUpstream
) -> None:
    claude.set_behaviour(cut_after_events=4)
    with (
        pytest.raises(anthropic.APIStatusError),
        _anthropic(gateway).messages.stream(
            model="claude-cut",
            max_tokens=20,
            messages=HELLO,
        ) as stream,
    ):
        stream.until_done()
    raw = httpx.post(
        f"{gateway.base}/v1/messages",
        json={"model": "claude-cut", "max_tokens": 20, "messages": HELLO, "stream": True},
        headers={"x-api-key": TEST_KEY},
    )
    *_, last = [event for event in raw.text.split("\n\n") if event]
    assert last.split("\n")[0] == "event: error"
    assert json.loads(last.split("\n")[1].removeprefix("data: "))["type"] == "error"
    rows = _rows(gateway, 2, model="claude-cut")
    assert [row["status_code"] for row in rows] == [502, 502]
    assert all(row["prompt_tokens"] > 0 for row in rows)  # settled on what the stream showed
