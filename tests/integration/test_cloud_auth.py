"""Cloud credentials and Azure OpenAI against real loopback servers (no gateway process).

- GoogleAuth against the fake token endpoint (`python -m tests.fakes.gcp_token`), with a
  service-account file made by `make_service_account`, through `Transport` to a loopback server
  that accepts only tokens `token_is_valid` knows.
- AwsSigV4Auth through `Transport` to a loopback server that checks with `verify_sigv4`.
- AzureOpenAIAdapter against the Azure fake, in both URL styles.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import pytest
from google.oauth2 import service_account

from app.domain import Operation, Payload, StreamBroken, UpstreamStatus
from app.providers.auth import (
    ApiKeyAuth,
    AwsSigV4Auth,
    CredentialsUnavailable,
    GoogleAuth,
)
from app.providers.azure import AzureOpenAIAdapter
from app.providers.transport import Transport
from tests.fakes.gcp_token import make_service_account, token_is_valid
from tests.fakes.sigv4 import FAKE_AWS_ACCESS_KEY, FAKE_AWS_SECRET_KEY, verify_sigv4
from tests.fakes.upstreams.harness import FakeUpstream

TOKEN_TTL = 2
TOKEN_DELAY_MS = 250
MODEL_PATH = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"


class Received(NamedTuple):
    method: str
    raw_path: str
    query: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Received], tuple[int, bytes]]


@contextlib.asynccontextmanager
async def loopback(handler: Handler) -> AsyncIterator[str]:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 answering with `handler`; yields its URL."""

    connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections[writer] = task
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.split("\r\n")
                method, target, _ = request_line.split(" ")
                headers = {}
                for line in filter(None, lines):
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                raw_path, _, query = target.partition("?")
                status, answer = handler(Received(method, raw_path, query, headers, body))
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % (status, len(answer))
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in connections:  # the handlers see EOF and end (cancelling them logs errors)
            writer.close()
        await asyncio.gather(*connections.values())


def transport_for(base: str, auth: httpx.Auth, name: str = "upstream") -> Transport:
    return Transport(name, base, {}, connect_timeout=2, read_timeout=10, auth=auth)


# --- Google OAuth ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    """The token endpoint: 2-second tokens, answers after 250 ms, a directory of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GCP_FAKE_TOKEN_DIR", str(tmp_path_factory.mktemp("gcp-tokens")))
        patch.setenv("GCP_FAKE_TOKEN_TTL", str(TOKEN_TTL))
        patch.setenv("GCP_FAKE_TOKEN_DELAY_MS", str(TOKEN_DELAY_MS))
        with FakeUpstream.start(module="tests.fakes.gcp_token") as fake:
            yield fake


@pytest.fixture
def service_account_file(gcp: FakeUpstream, tmp_path: Path) -> str:
    path = tmp_path / "service-account.json"
    make_service_account(path, f"{gcp.base}/token")
    return str(path)


class BearerLog:
    """The loopback handler for Google-authenticated calls: 200 only with a valid token."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def __call__(self, request: Received) -> tuple[int, bytes]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        self.tokens.append(token)
        if scheme != "Bearer" or not token_is_valid(token):
            return 401, b'{"error":{"code":401,"status":"UNAUTHENTICATED"}}'
        return 200, b"{}"


async def test_google_auth_token_and_refresh_after_expiry(
    gcp: FakeUpstream, service_account_file: str
) -> None:
    issued = gcp.stats()["issued"]
    log = BearerLog()
    auth = GoogleAuth(service_account_file, refresh_margin=0.5)
    async with loopback(log) as base:
        transport = transport_for(base, auth, "vertex")
        try:
            assert (await transport.post("/v1/m:rawPredict", b"{}"))[0] == 200
            assert (await transport.post("/v1/m:rawPredict", b"{}"))[0] == 200
            assert log.tokens[0] == log.tokens[1]
            assert gcp.stats()["issued"] == issued + 1
            await asyncio.sleep(TOKEN_TTL + 0.2)
            assert not token_is_valid(log.tokens[0])
            assert (await transport.post("/v1/m:rawPredict", b"{}"))[0] == 200
        finally:
            await transport.aclose()
    assert log.tokens[2] != log.tokens[0]
    assert token_is_valid(log.tokens[2])
    assert gcp.stats()["issued"] == issued + 2


async def test_google_refresh_runs_in_a_thread_and_the_loop_keeps_running(
    gcp: FakeUpstream, service_account_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    original = service_account.Credentials.refresh

    def refresh(self: service_account.Credentials, request: Any) -> None:
        threads.append(threading.get_ident())
        original(self, request)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(service_account.Credentials, "refresh", refresh)
    auth = GoogleAuth(service_account_file)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    async def fetch() -> str:
        try:
            return await auth.token()
        finally:
            done.set()

    async with asyncio.TaskGroup() as group:
        group.create_task(ticker())
        token = group.create_task(fetch())
    assert token_is_valid(token.result())
    assert threads
    assert threading.get_ident() not in threads
    # The endpoint takes 250 ms to answer: a blocked loop would not have ticked at all.
    assert ticks >= 10


async def test_concurrent_requests_share_one_refresh(
    gcp: FakeUpstream, service_account_file: str
) -> None:
    issued = gcp.stats()["issued"]
    log = BearerLog()
    async with loopback(log) as base:
        auth = GoogleAuth(service_account_file, refresh_margin=0.5)  # tokens live 2 s here
        transport = transport_for(base, auth, "vertex")
        try:
            answers = await asyncio.gather(*(transport.post("/x", b"{}") for _ in range(8)))
        finally:
            await transport.aclose()
    assert [status for status, _, _ in answers] == [200] * 8
    assert len(set(log.tokens)) == 1
    assert gcp.stats()["issued"] == issued + 1


async def test_key_the_endpoint_does_not_know_is_refused(
    gcp: FakeUpstream, service_account_file: str, tmp_path: Path
) -> None:
    other = tmp_path / "other.json"
    make_service_account(other, f"{gcp.base}/token")
    info = msgspec.json.decode(Path(service_account_file).read_bytes())
    info["private_key"] = msgspec.json.decode(other.read_bytes())["private_key"]
    Path(service_account_file).write_bytes(msgspec.json.encode(info))
    refused = gcp.stats()["refused"]
    transport = transport_for("http://127.0.0.1:9", GoogleAuth(service_account_file), "vertex")
    try:
        with pytest.raises(CredentialsUnavailable) as caught:
            await transport.post("/x", b"{}")
    finally:
        await transport.aclose()
    assert "Invalid JWT Signature" in caught.value.message
    assert "PRIVATE KEY" not in caught.value.message
    assert gcp.stats()["refused"] == refused + 1


# --- AWS SigV4 ------------------------------------------------------------------------------


def sigv4_checker(log: list[str | None]) -> Handler:
    def handle(request: Received) -> tuple[int, bytes]:
        reason = verify_sigv4(
            request.method, request.raw_path, request.query, request.headers, request.body
        )
        log.append(reason)
        if reason is not None:
            return 403, msgspec.json.encode({"message": reason})
        return 200, b'{"ok":true}'

    return handle


def bedrock_auth(**overrides: Any) -> AwsSigV4Auth:
    fields: dict[str, Any] = {
        "region": "us-east-1",
        "access_key": FAKE_AWS_ACCESS_KEY,
        "secret_key": FAKE_AWS_SECRET_KEY,
        "session_token": "IQoJb3JpZ2luX2VjEXAMPLE",
    }
    return AwsSigV4Auth(**(fields | overrides))


@pytest.mark.parametrize(
    ("prefix", "path"),
    [
        ("", MODEL_PATH),
        ("", "/model/anthropic.claude-v2:1/invoke-with-response-stream"),
        ("/bedrock", MODEL_PATH + "?b=2&a=%20x"),
    ],
)
async def test_sigv4_signed_post_through_transport_is_accepted(prefix: str, path: str) -> None:
    log: list[str | None] = []
    body = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[]}'
    async with loopback(sigv4_checker(log)) as base:
        transport = transport_for(base + prefix, bedrock_auth(), "bedrock")
        try:
            status, answer, _ = await transport.post(path, body)
            again, _, _ = await transport.post(path, body + b" ")  # a new body, a new signature
        finally:
            await transport.aclose()
    assert (status, answer, again) == (200, b'{"ok":true}', 200)
    assert log == [None, None]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"secret_key": "not-the-secret"}, "signature"),
        ({"service": "bedrock-runtime"}, "'bedrock'"),
    ],
)
async def test_sigv4_wrong_credentials_are_refused(overrides: dict[str, Any], reason: str) -> None:
    log: list[str | None] = []
    async with loopback(sigv4_checker(log)) as base:
        transport = transport_for(base, bedrock_auth(**overrides), "bedrock")
        try:
            status, answer, _ = await transport.post(MODEL_PATH, b"{}")
        finally:
            await transport.aclose()
    assert status == 403
    assert reason in msgspec.json.decode(answer)["message"]


# --- Azure OpenAI ---------------------------------------------------------------------------

AZURE_KEY = "azure-test-key-0123456789"
DEPLOYMENT = "gpt-4o-deploy"
STYLES = {"deployments": ("/openai", "2024-10-21"), "v1": ("/openai/v1", "")}


@pytest.fixture(scope="module")
def azure() -> Iterator[FakeUpstream]:
    with FakeUpstream.start(module="tests.fakes.upstreams.azure", api_key=AZURE_KEY) as fake:
        yield fake


@pytest.fixture(params=sorted(STYLES))
async def adapter(
    request: pytest.FixtureRequest, azure: FakeUpstream
) -> AsyncIterator[AzureOpenAIAdapter]:
    azure.reset()
    prefix, version = STYLES[request.param]
    auth = ApiKeyAuth("api-key", AZURE_KEY)
    adapter = AzureOpenAIAdapter(
        "azure", transport_for(azure.base + prefix, auth, "azure"), api_version=version
    )
    yield adapter
    await adapter.aclose()


def payload(operation: Operation = Operation.CHAT, *, stream: bool = False, **body: Any) -> Payload:
    body = {"model": "alias", **body}
    if stream:
        body["stream"] = True
    fields = {name: msgspec.Raw(msgspec.json.encode(value)) for name, value in body.items()}
    return Payload(operation=operation, fields=fields, model="alias", stream=stream)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


async def read_stream(adapter: AzureOpenAIAdapter, request: Payload) -> list[dict[str, Any]]:
    chunks = []
    async with adapter.stream(request, DEPLOYMENT) as events:
        async for frames in events:
            assert frames.endswith(b"\n\n")
            for frame in filter(None, frames.split(b"\n\n")):
                assert frame.startswith(b"data: ")
                chunks.append(msgspec.json.decode(frame[6:]))
    return chunks


async def test_azure_chat(adapter: AzureOpenAIAdapter, azure: FakeUpstream) -> None:
    reply = await adapter.send(payload(messages=[user("hi there")]), DEPLOYMENT)
    answer = msgspec.json.decode(reply.body)
    assert answer["choices"][0]["message"]["content"] == "Hello! You said: hi there"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 5)
    assert reply.usage.cached_tokens == 0
    stats = azure.stats()
    if adapter.api_version:
        path = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
    else:
        path = "/openai/v1/chat/completions"
    assert stats["paths"] == [path]
    assert stats["last_body"][path.partition("?")[0]]["model"] == DEPLOYMENT


async def test_azure_stream_matches_the_plain_answer(adapter: AzureOpenAIAdapter) -> None:
    messages = [{"role": "system", "content": "be brief"}, user("tell me")]
    reply = await adapter.send(payload(messages=messages), DEPLOYMENT)
    chunks = await read_stream(adapter, payload(messages=messages, stream=True))
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)  # no annotations
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    expected = msgspec.json.decode(reply.body)["choices"][0]["message"]["content"]
    assert text == expected == "Hello! You said: tell me [system: be brief]"
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert reply.usage is not None
    assert chunks[-1]["usage"] == msgspec.to_builtins(reply.usage) | {
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
    }
    assert reply.usage.cached_tokens == 2


async def test_azure_streamed_tool_call(adapter: AzureOpenAIAdapter) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    chunks = await read_stream(
        adapter, payload(messages=[user("find x")], tools=tools, stream=True)
    )
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-2]]
    assert calls[0] == {
        "index": 0,
        "id": calls[0]["id"],
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    fragments = [call["function"]["arguments"] for call in calls[1:]]
    assert len(fragments) >= 2
    assert msgspec.json.decode("".join(fragments)) == {"echo": "find x"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 5


async def test_azure_tool_result_round_trip(adapter: AzureOpenAIAdapter) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        user("use f"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    reply = await adapter.send(payload(messages=messages), DEPLOYMENT)
    assert msgspec.json.decode(reply.body)["choices"][0]["message"]["content"] == "Tool said: 42"


async def test_azure_embeddings(adapter: AzureOpenAIAdapter) -> None:
    reply = await adapter.send(payload(Operation.EMBEDDINGS, input=["one", "two"]), DEPLOYMENT)
    answer = msgspec.json.decode(reply.body)
    assert [item["index"] for item in answer["data"]] == [0, 1]
    assert len(answer["data"][0]["embedding"]) == 8
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 2


async def test_azure_invalid_request_keeps_openai_error(adapter: AzureOpenAIAdapter) -> None:
    stray = [user("x"), {"role": "tool", "tool_call_id": "nope", "content": "1"}]
    with pytest.raises(UpstreamStatus) as caught:
        await adapter.send(payload(messages=stray), DEPLOYMENT)
    assert caught.value.upstream_status == 400
    error = msgspec.json.decode(caught.value.body)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[1].role"


async def test_azure_wrong_key_is_an_openai_shaped_401(azure: FakeUpstream) -> None:
    auth = ApiKeyAuth("api-key", "wrong-key")
    adapter = AzureOpenAIAdapter(
        "azure", transport_for(azure.base + "/openai", auth, "azure"), api_version="2024-10-21"
    )
    try:
        with pytest.raises(UpstreamStatus) as plain:
            await adapter.send(payload(messages=[user("x")]), DEPLOYMENT)
        with pytest.raises(UpstreamStatus) as streamed:
            await read_stream(adapter, payload(messages=[user("x")], stream=True))
    finally:
        await adapter.aclose()
    for caught in (plain, streamed):
        assert caught.value.upstream_status == 401
        assert caught.value.content_type == "application/json"
        error = msgspec.json.decode(caught.value.body)["error"]
        assert error["code"] == "401"
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("Access denied")
        assert set(error) == {"message", "type", "param", "code"}
        assert "wrong-key" not in caught.value.message


async def test_azure_server_error_is_translated(
    adapter: AzureOpenAIAdapter, azure: FakeUpstream
) -> None:
    azure.set_behaviour(status=500, times=1)
    with pytest.raises(UpstreamStatus) as caught:
        await read_stream(adapter, payload(messages=[user("x")], stream=True))
    assert caught.value.upstream_status == 500
    assert caught.value.retryable
    error = msgspec.json.decode(caught.value.body)["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "InternalServerError"


async def test_azure_cut_stream_is_stream_broken(
    adapter: AzureOpenAIAdapter, azure: FakeUpstream
) -> None:
    azure.set_behaviour(cut_after_events=3, times=1)
    with pytest.raises(StreamBroken):
        await read_stream(adapter, payload(messages=[user("a b c d")], stream=True))
    assert azure.stats()["cut_streams"] == 1


def test_fake_refuses_deployment_urls_without_api_version(azure: FakeUpstream) -> None:
    url = f"{azure.base}/openai/deployments/{DEPLOYMENT}/chat/completions"
    body = {"messages": [user("x")]}
    headers = {"api-key": AZURE_KEY}
    missing = httpx.post(url, json=body, headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "404", "message": "Resource not found"}}
    assert httpx.post(url + "?api-version=latest", json=body, headers=headers).status_code == 404
    assert httpx.post(url + "?api-version=2024-10-21", json=body).status_code == 401
    ok = httpx.post(url + "?api-version=2024-10-21", json=body, headers=headers)
    assert ok.status_code == 200
    v1 = httpx.post(f"{azure.base}/openai/v1/chat/completions", json=body, headers=headers)
    assert v1.status_code == 400
    assert v1.json()["error"]["param"] == "model"
