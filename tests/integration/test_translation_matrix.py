"""The translation matrix: every provider and hosting, end to end through the real gateway.

One `gandalf run` (supervisor, embedded Redis, SQLite, two workers) is started for the whole
module with every provider configured against its strict fake upstream: OpenAI, Anthropic
(direct, Vertex AI, Bedrock), Gemini (direct, Vertex AI), Ollama and Azure OpenAI (deployments
and v1 URL styles). The client is the official `openai` SDK, so what is checked is what an
OpenAI client sees: the fakes' shared conversation script (see `tests/fakes/upstreams/*`)
must come back through each translation, plain and streamed, with tool calls, images,
embeddings, errors, and the usage the gateway recorded and billed.

Each test is parametrized over the providers (ids name the provider), so a failure reads
`test_streamed_tool_call[gemini-vertex]`. A cell a vendor cannot serve is skipped with the
reason; the fake OpenAI upstream has no conversation script (it answers fixed tokens), so its
cells check the pass-through instead.

The gateway also has application default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, from
a second token endpoint): the Vertex AI providers must use their configured
`auth.credentials_file` instead, which SQLite never holds and each worker reads from its own
file (`test_vertex_uses_the_configured_credentials_file`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageFunctionToolCall,
)

from tests.fakes.gcp_token import make_service_account
from tests.fakes.sigv4 import FAKE_AWS_ACCESS_KEY, FAKE_AWS_SECRET_KEY
from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.harness import ADMIN_KEY, TEST_KEY, Gateway, admin_call

pytestmark = pytest.mark.e2e

OPENAI_KEY = "sk-matrix-openai-0000"
US_KEY = "sk-matrix-openai-us-1111"
EU_KEY = "sk-matrix-openai-eu-2222"
ANTHROPIC_KEY = "sk-ant-matrix-3333"
GEMINI_KEY = "gemini-matrix-4444"
AZURE_KEY = "azure-matrix-5555"
AZURE_VERSION = "2024-10-21"

PRICE = {"input": 100, "cached_input": 10, "output": 1000}
"""USD per million tokens: in nano-USD per token 100_000 input, 10_000 cached, 1_000_000 out."""

SYSTEM = {"role": "system", "content": "Be brief"}
HELLO = {"role": "user", "content": "Say hello"}
HELLO_TEXT = "Hello! You said: Say hello [system: Be brief]"
QUESTION = {"role": "user", "content": "What is the weather"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a thing up",
            "parameters": {
                "type": "object",
                "properties": {"echo": {"type": "string"}},
                "required": ["echo"],
            },
        },
    }
]
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()
FIXED_TOKENS = "".join(f"tok{i} " for i in range(20))
"""What the fake OpenAI upstream always answers (it has no conversation script)."""


@dataclass(frozen=True)
class Hosted:
    """One provider instance of the matrix: its name (also the pytest id) and how to reach it."""

    name: str
    fake: str
    """Which fake serves it: openai, anthropic, gemini, ollama or azure."""
    model: str
    """The upstream model (the deployment on Azure)."""
    config: dict[str, Any]
    """The provider entry of the gateway config, without `name` and `base_url`."""
    base_path: str = ""
    """Appended to the fake's origin to make `base_url` (Vertex AI and Bedrock: none)."""
    embedding_model: str = ""
    """Empty: the vendor (or this hosting of it) has no embeddings the gateway translates."""
    no_embeddings: str = ""
    caches: bool = True
    """The vendor reports prompt-cache reads (the fakes report 2 with a system prompt)."""
    behaviour_message: str = "message"
    """The name of the error message field in the fake's behaviour control."""

    @property
    def alias(self) -> str:
        return f"m-{self.name}"

    @property
    def usage_alias(self) -> str:
        """Used by the usage test only, so its rows are exactly that test's."""
        return f"u-{self.name}"

    @property
    def embedding_alias(self) -> str:
        return f"e-{self.name}"

    @property
    def scripted(self) -> bool:
        return self.fake != "openai"


VERTEX = {"hosting": "vertex", "region": "us-east5", "project": "fake-project"}
PROVIDERS = [
    Hosted(
        "openai",
        "openai",
        "gpt-4o-matrix",
        {"type": "openai", "api_key": OPENAI_KEY},
        base_path="/v1",
        embedding_model="text-embedding-3-small",
        caches=False,
        behaviour_message="error_message",
    ),
    Hosted(
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5",
        {"type": "anthropic", "api_key": ANTHROPIC_KEY},
        base_path="/v1",
        no_embeddings="Anthropic has no embeddings API",
        behaviour_message="error_message",
    ),
    Hosted(
        "anthropic-vertex",
        "anthropic",
        "claude-sonnet-4-5@20250929",
        {"type": "anthropic", **VERTEX},
        no_embeddings="Anthropic has no embeddings API (on Vertex AI neither)",
        behaviour_message="error_message",
    ),
    Hosted(
        "anthropic-bedrock",
        "anthropic",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        {"type": "anthropic", "hosting": "bedrock", "region": "us-east-1"},
        no_embeddings="Anthropic has no embeddings API (on Bedrock neither)",
        behaviour_message="error_message",
    ),
    Hosted(
        "gemini",
        "gemini",
        "gemini-2.0-flash",
        {"type": "gemini", "api_key": GEMINI_KEY},
        base_path="/v1beta",
        embedding_model="text-embedding-004",
    ),
    Hosted(
        "gemini-vertex",
        "gemini",
        "gemini-2.0-flash",
        {"type": "gemini", **VERTEX, "region": "us-central1"},
        embedding_model="text-embedding-005",  # Vertex AI's `:predict`, with token counts
    ),
    Hosted(
        "ollama",
        "ollama",
        "llama3.2",
        {"type": "ollama"},
        embedding_model="nomic-embed-text",
        caches=False,
    ),
    Hosted(
        "azure-deployments",
        "azure",
        "gpt-4o-deploy",
        {"type": "openai", "hosting": "azure", "api_key": AZURE_KEY, "api_version": AZURE_VERSION},
        embedding_model="embed-deploy",
    ),
    Hosted(
        "azure-v1",
        "azure",
        "gpt-4o-deploy",
        {"type": "openai", "hosting": "azure", "api_key": AZURE_KEY},
        embedding_model="embed-deploy",
    ),
]
IDS = [hosted.name for hosted in PROVIDERS]
FAKE_KEYS = {
    "openai": OPENAI_KEY,
    "openai-us": US_KEY,
    "openai-eu": EU_KEY,
    "anthropic": ANTHROPIC_KEY,
    "gemini": GEMINI_KEY,
    "ollama": "",
    "azure": AZURE_KEY,
    "gcp_token": "",
    "gcp_token-adc": "",
}


# --- the stack ------------------------------------------------------------------------------


@dataclass
class Stack:
    gateway: Gateway
    fakes: dict[str, FakeUpstream]
    client: openai.OpenAI

    def fake(self, hosted: Hosted) -> FakeUpstream:
        return self.fakes[hosted.fake]


def _start_fakes(running: contextlib.ExitStack) -> dict[str, FakeUpstream]:
    """Every fake upstream, started in parallel (each is a process that takes ~0.5 s)."""

    def start(name: str) -> FakeUpstream:
        kind = name.partition("-")[0]
        module = kind if kind == "gcp_token" else f"upstreams.{kind}"
        return FakeUpstream.start(module=f"tests.fakes.{module}", api_key=FAKE_KEYS[name])

    with ThreadPoolExecutor(len(FAKE_KEYS)) as pool:
        futures = {name: pool.submit(start, name) for name in FAKE_KEYS}
    fakes = {}
    for name, future in futures.items():  # every one registered, so a failure stops them all
        with contextlib.suppress(Exception):
            fakes[name] = running.enter_context(future.result())
    for future in futures.values():
        future.result()  # re-raise the first failure
    return fakes


def _config(fakes: dict[str, FakeUpstream], credentials: Path, db: Path) -> dict[str, Any]:
    providers: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for hosted in PROVIDERS:
        entry: dict[str, Any] = {"name": hosted.name}
        entry["base_url"] = fakes[hosted.fake].base + hosted.base_path
        entry |= hosted.config
        if entry.get("hosting") == "vertex":
            entry["auth"] = {"credentials_file": str(credentials)}
        providers.append(entry)
        target = [{"provider": hosted.name, "model": hosted.model}]
        routes += [
            {"model_alias": hosted.alias, "targets": target},
            {"model_alias": hosted.usage_alias, "targets": target},
        ]
        if hosted.embedding_model:
            embed = [{"provider": hosted.name, "model": hosted.embedding_model}]
            routes.append({"model_alias": hosted.embedding_alias, "targets": embed})
    for region, key in (("us", US_KEY), ("eu", EU_KEY)):
        name = f"openai-{region}"
        providers.append(
            {"name": name, "type": "openai", "base_url": fakes[name].url, "api_key": key}
        )
    routes.append(
        {
            "model_alias": "multi",
            "targets": [
                {"provider": "openai-us", "model": "gpt-us", "priority": 1},
                {"provider": "openai-eu", "model": "gpt-eu", "priority": 2},
            ],
        }
    )
    return {
        "server": {"workers": 2},
        "database": {"dsn": str(db)},
        "rate_limits": {"default_rpm": 0, "default_tpm": 0},
        "cache": {"enabled": False},
        "pricing": {"models": {hosted.model: PRICE for hosted in PROVIDERS}},
        "providers": providers,
        "routes": routes,
        "keys": [{"name": "member", "key": TEST_KEY, "role": "member"}],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("matrix")
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as running:
        # The token endpoint and the Vertex AI fakes share the tokens it issues through here.
        patch.setenv("GCP_FAKE_TOKEN_DIR", str(tmp_path_factory.mktemp("gcp-tokens")))
        fakes = _start_fakes(running)
        credentials = workdir / "service-account.json"
        make_service_account(credentials, f"{fakes['gcp_token'].base}/token")
        # Workaround (see test_vertex_uses_the_configured_credentials_file): under `gandalf run`
        # the workers never see `auth.credentials_file` and fall back to application default
        # credentials. These come from a second token endpoint (issuing tokens the fakes
        # accept), so the Vertex AI cells run and that test can tell which file was used.
        adc = workdir / "adc-service-account.json"
        make_service_account(adc, f"{fakes['gcp_token-adc'].base}/token")
        env = {
            "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
            "GANDALF_ADMIN_KEY": ADMIN_KEY,
            "AWS_ACCESS_KEY_ID": FAKE_AWS_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_AWS_SECRET_KEY,
        }
        gateway = Gateway(
            _config(fakes, credentials, workdir / "gandalf.db"), workdir, command="run", env=env
        )
        running.enter_context(gateway)
        client = openai.OpenAI(base_url=gateway.url, api_key=TEST_KEY, max_retries=0)
        running.callback(client.close)
        yield Stack(gateway, fakes, client)


@pytest.fixture(params=PROVIDERS, ids=IDS)
def hosted(request: pytest.FixtureRequest) -> Hosted:
    provider: Hosted = request.param
    return provider


# --- helpers --------------------------------------------------------------------------------


def _chat(stack: Stack, alias: str, messages: list[dict[str, Any]], **extra: Any) -> ChatCompletion:
    create: Callable[..., ChatCompletion] = stack.client.chat.completions.create
    return create(model=alias, messages=messages, **extra)


def _chunks(
    stack: Stack, alias: str, messages: list[dict[str, Any]], **extra: Any
) -> list[ChatCompletionChunk]:
    create: Callable[..., openai.Stream[ChatCompletionChunk]] = stack.client.chat.completions.create
    return list(create(model=alias, messages=messages, stream=True, **extra))


def _text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _cached(usage: CompletionUsage | None) -> int:
    assert usage is not None
    details = usage.prompt_tokens_details
    return (details.cached_tokens or 0) if details is not None else 0


def _words(text: str) -> int:
    return len(text.split())


def _prompt_tokens(*texts: str, images: int = 0) -> int:
    """The fakes' count: characters of all text // 4 + 1, plus 10 per image."""
    return sum(len(text) for text in texts) // 4 + 1 + 10 * images


def _cost(prompt: int, cached: int, completion: int) -> int:
    """Nano-USD at PRICE."""
    return (prompt - cached) * 100_000 + cached * 10_000 + completion * 1_000_000


def _usage_rows(stack: Stack, alias: str, expected: int) -> list[dict[str, Any]]:
    """The recorded usage rows of `alias`, once the recorder has stored `expected` of them."""
    deadline = time.monotonic() + 10
    while True:
        page = admin_call(stack.gateway, "GET", f"/usage?limit=100&model={alias}").json()
        if page["pagination"]["total"] >= expected or time.monotonic() > deadline:
            assert page["pagination"]["total"] == expected, page
            return list(page["data"])
        time.sleep(0.05)


def _image(url: str, text: str = "What is this?") -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": url}},
        ],
    }


# --- chat -----------------------------------------------------------------------------------


def test_chat(stack: Stack, hosted: Hosted) -> None:
    answer = _chat(stack, hosted.alias, [SYSTEM, HELLO])
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert answer.usage is not None
    usage = answer.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if not hosted.scripted:
        assert choice.message.content == FIXED_TOKENS
        assert usage.prompt_tokens == _prompt_tokens("Be brief", "Say hello")
        assert usage.completion_tokens == 20
        return
    assert choice.message.content == HELLO_TEXT
    assert usage.prompt_tokens == _prompt_tokens("Be brief", "Say hello")
    assert usage.completion_tokens == _words(HELLO_TEXT)
    assert _cached(usage) == (2 if hosted.caches else 0)


def test_streamed_chat(stack: Stack, hosted: Hosted) -> None:
    plain = _chat(stack, hosted.alias, [SYSTEM, HELLO])
    chunks = _chunks(stack, hosted.alias, [SYSTEM, HELLO], stream_options={"include_usage": True})
    assert chunks[0].choices[0].delta.role == "assistant"
    assert _text(chunks) == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert all(finish is None for finish in finishes[:-1])
    assert [bool(c.choices) for c in chunks][-1] is False  # the usage chunk comes last
    assert chunks[-1].usage == plain.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert len({(c.id, c.model, c.created) for c in chunks}) == 1
    head = chunks[0]
    assert head.id
    assert head.model
    assert head.created > 0
    assert all(c.object == "chat.completion.chunk" for c in chunks)

    without = _chunks(stack, hosted.alias, [SYSTEM, HELLO])
    assert all(chunk.choices for chunk in without)  # the gateway removed the usage chunk
    assert _text(without) == plain.choices[0].message.content


# --- tools ----------------------------------------------------------------------------------


def _tools_pass_through(stack: Stack, hosted: Hosted, *, stream: bool) -> None:
    """The fake OpenAI upstream has no conversation script (fixed tokens, never a tool call):
    what it must get is the client's tools and tool messages exactly as sent."""
    call: dict[str, Any] = {"id": "call_1", "type": "function"}
    call["function"] = {"name": "lookup", "arguments": '{"echo":"What is the weather"}'}
    messages: list[dict[str, Any]] = [
        QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    if stream:
        assert _text(_chunks(stack, hosted.alias, messages, tools=TOOLS)) == FIXED_TOKENS
    else:
        assert _chat(stack, hosted.alias, messages, tools=TOOLS).choices[0].message.content
    received = stack.fake(hosted).stats()["last_body"][hosted.model]
    assert (received["messages"], received["tools"]) == (messages, TOOLS)


@pytest.mark.parametrize("replayed", ["as-returned", "empty-content"])
def test_tool_call_round_trip(stack: Stack, hosted: Hosted, replayed: str) -> None:
    """The assistant turn goes back as the SDK returned it, or with `"content": ""` beside
    the calls (as many clients send it; Gemini refuses an empty text part)."""
    if not hosted.scripted:
        _tools_pass_through(stack, hosted, stream=False)
        return
    first = _chat(stack, hosted.alias, [QUESTION], tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.id
    assert call.type == "function"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"echo": QUESTION["content"]}
    assert first.usage is not None and first.usage.completion_tokens == 5

    assistant = choice.message.model_dump(exclude_none=True)
    if replayed == "empty-content":
        assistant["content"] = ""
    result = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    second = _chat(stack, hosted.alias, [QUESTION, assistant, result], tools=TOOLS)
    assert second.choices[0].message.content == "Tool said: sunny"
    assert second.choices[0].finish_reason == "stop"
    assert not second.choices[0].message.tool_calls


def test_streamed_tool_call(stack: Stack, hosted: Hosted) -> None:
    if not hosted.scripted:
        _tools_pass_through(stack, hosted, stream=True)
        return
    plain = _chat(stack, hosted.alias, [QUESTION], tools=TOOLS)
    assert plain.choices[0].message.tool_calls is not None
    call = plain.choices[0].message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    expected = call.function.arguments
    chunks = _chunks(
        stack, hosted.alias, [QUESTION], tools=TOOLS, stream_options={"include_usage": True}
    )
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert deltas
    head, *rest = deltas
    assert head.index == 0
    assert head.id
    assert head.type == "function"
    assert head.function is not None and head.function.name == "lookup"
    for later in rest:
        assert later.index == 0
        assert later.id is None and later.type is None
        assert later.function is not None and later.function.name is None
    arguments = "".join((d.function.arguments or "") if d.function else "" for d in deltas)
    assert json.loads(arguments) == json.loads(expected) == {"echo": QUESTION["content"]}
    assert arguments == expected
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1].usage == plain.usage


# --- images ---------------------------------------------------------------------------------


def test_image_data_url(stack: Stack, hosted: Hosted) -> None:
    message = _image(f"data:image/png;base64,{PNG}")
    answer = _chat(stack, hosted.alias, [message])
    assert answer.usage is not None
    if not hosted.scripted:
        assert answer.choices[0].message.content == FIXED_TOKENS
        received = stack.fake(hosted).stats()["last_body"][hosted.model]
        assert received["messages"] == [message]  # OpenAI: passed through as sent
        return
    assert answer.choices[0].message.content == "Hello! You said: What is this? [image image/png]"
    assert answer.usage.prompt_tokens == _prompt_tokens("What is this?", images=1)


def test_image_http_url(stack: Stack, hosted: Hosted) -> None:
    message = _image("https://example.com/cat.png")
    if hosted.fake == "ollama":
        # Ollama takes images inline only: the gateway refuses rather than fetch the URL.
        with pytest.raises(openai.BadRequestError) as refused:
            _chat(stack, hosted.alias, [message])
        assert "data URL" in refused.value.message
        return
    answer = _chat(stack, hosted.alias, [message])
    if not hosted.scripted:
        assert answer.choices[0].message.content == FIXED_TOKENS
        received = stack.fake(hosted).stats()["last_body"][hosted.model]
        assert received["messages"] == [message]
        return
    assert answer.choices[0].message.content == "Hello! You said: What is this? [image url]"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == _prompt_tokens("What is this?", images=1)


# --- embeddings -----------------------------------------------------------------------------


def _vector(fake: str, text: str) -> list[float]:
    """The fakes' embeddings: a fixed vector (OpenAI, Azure), or one seeded by the text."""
    if fake in ("openai", "azure"):
        return [0.125 * (i + 1) for i in range(8)]
    seed = sum(text.encode()) % 97
    return [round((seed + i) / 100, 4) for i in range(8)]


@pytest.mark.parametrize("encoding", ["default", "float"], ids=["sdk-base64", "float"])
def test_embeddings(stack: Stack, hosted: Hosted, encoding: str) -> None:
    """The SDK asks for base64 unless told otherwise (and decodes it): both must work."""
    if not hosted.embedding_model:
        pytest.skip(hosted.no_embeddings)
    texts = ["first text", "second text"]
    options: dict[str, Any] = {} if encoding == "default" else {"encoding_format": "float"}
    answer = stack.client.embeddings.create(model=hosted.embedding_alias, input=texts, **options)
    assert answer.object == "list"
    assert [item.index for item in answer.data] == [0, 1]
    for item, text in zip(answer.data, texts, strict=True):
        assert item.object == "embedding"
        assert item.embedding == pytest.approx(_vector(hosted.fake, text), rel=1e-6)
    assert answer.usage.prompt_tokens > 0
    if hosted.name == "gemini-vertex":  # counted by Vertex: len // 4 + 1 per text in the fake
        assert answer.usage.prompt_tokens == sum(len(text) // 4 + 1 for text in texts)


# --- usage: answers and recorded rows -------------------------------------------------------


def test_streamed_and_plain_usage_are_equal_and_recorded_equal(
    stack: Stack, hosted: Hosted
) -> None:
    """One exchange three ways: plain, streamed with the usage chunk, streamed without it (the
    gateway still bills from the chunk it strips). Same tokens, same cost, in every row."""
    messages = [SYSTEM, HELLO]
    plain = _chat(stack, hosted.usage_alias, messages)
    chunks = _chunks(stack, hosted.usage_alias, messages, stream_options={"include_usage": True})
    assert all(chunk.choices for chunk in _chunks(stack, hosted.usage_alias, messages))
    assert plain.usage is not None
    assert chunks[-1].usage == plain.usage
    prompt, completion = plain.usage.prompt_tokens, plain.usage.completion_tokens
    cached = _cached(plain.usage)
    assert cached == (2 if hosted.caches else 0)

    rows = _usage_rows(stack, hosted.usage_alias, 3)
    for row in rows:
        assert row["provider_id"] == hosted.name
        assert row["upstream_model"] == hosted.model
        assert row["status_code"] == 200
        assert row["usage_source"] == "provider"
        assert row["prompt_tokens"] == prompt
        assert row["completion_tokens"] == completion
        assert row.get("cached_tokens", 0) == cached
        assert row.get("cost_nano", 0) == _cost(prompt, cached, completion) > 0
    assert sorted(row.get("ttft_ms") is not None for row in rows) == [False, True, True]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_provider_error_is_openai_shaped(stack: Stack, hosted: Hosted, stream: bool) -> None:
    fake = stack.fake(hosted)
    message = f"matrix says no to {hosted.name}"
    fake.set_behaviour(
        model=hosted.model, status=400, times=1, **{hosted.behaviour_message: message}
    )
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            if stream:
                _chunks(stack, hosted.alias, [HELLO])
            else:
                _chat(stack, hosted.alias, [HELLO])
    finally:
        fake.clear_behaviours()
    error = caught.value
    assert error.status_code == 400
    assert isinstance(error.body, dict)
    assert error.body["message"] == message
    assert error.body["type"] == "invalid_request_error"
    assert set(error.body) >= {"message", "type", "param", "code"}


# --- several instances of one provider type -------------------------------------------------


def test_two_openai_instances_each_with_its_own_key_and_failover(stack: Stack) -> None:
    us, eu = stack.fakes["openai-us"], stack.fakes["openai-eu"]
    us.reset()
    eu.reset()
    first = _chat(stack, "multi", [HELLO])
    assert first.choices[0].message.content == FIXED_TOKENS
    assert us.stats()["requests"] == {"POST /v1/chat/completions gpt-us": 1}
    assert eu.stats()["total"] == 0

    us.set_behaviour(status=500)
    try:
        second = _chat(stack, "multi", [HELLO])
        streamed = _chunks(stack, "multi", [HELLO])
    finally:
        us.clear_behaviours()
    assert second.choices[0].message.content == FIXED_TOKENS
    assert _text(streamed) == FIXED_TOKENS
    assert us.stats()["requests"] == {"POST /v1/chat/completions gpt-us": 3}
    assert eu.stats()["requests"] == {"POST /v1/chat/completions gpt-eu": 2}

    # Each fake answers 401 to any other key, and each saw only its own.
    for fake, model, key in ((us, "gpt-us", US_KEY), (eu, "gpt-eu", EU_KEY)):
        headers = fake.stats()["last_headers"]
        assert set(headers) == {model}
        assert headers[model]["authorization"] == f"Bearer {key}"


def test_vertex_uses_the_configured_credentials_file(stack: Stack) -> None:
    for alias in ("m-anthropic-vertex", "m-gemini-vertex"):
        _chat(stack, alias, [HELLO])
    assert stack.fakes["gcp_token"].stats()["issued"] > 0
    assert stack.fakes["gcp_token-adc"].stats()["issued"] == 0
