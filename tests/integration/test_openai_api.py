"""The universal OpenAI API through real Granian workers, driven by the official openai SDK."""

from __future__ import annotations

import base64
import os
import pathlib
import re
import signal
import struct
import time

import httpx
import msgspec
import openai
import pytest

from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.conftest import base_config
from tests.integration.harness import TEST_KEY, Gateway

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=TEST_KEY, max_retries=0, timeout=20)


def _post(
    gateway: Gateway,
    path: str,
    body: bytes | dict[str, object],
    key: str = TEST_KEY,
    **headers: str,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return httpx.post(
        f"{gateway.base}{path}",
        content=content,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json", **headers},
        timeout=20,
    )


def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_chat_completion(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(model="chat", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    stats = upstream.stats()
    assert stats["last_body"]["up-chat"]["model"] == "up-chat"  # the alias was replaced


def test_chat_stream_arrives_in_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 20
    assert text.startswith("tok")
    assert chunks[-1].choices[-1].finish_reason == "stop"


def test_stream_ends_with_exactly_one_done(gateway: Gateway) -> None:
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    response = _post(gateway, "/v1/chat/completions", body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.count("data: [DONE]") == 1
    assert response.text.endswith("data: [DONE]\n\n")


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="embed", input=["a", "b"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8


def test_embeddings_float_format_is_forwarded(gateway: Gateway) -> None:
    response = _post(
        gateway, "/v1/embeddings", {"model": "embed", "input": "x", "encoding_format": "base64"}
    )
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    assert len(struct.unpack(f"<{len(raw) // 4}f", raw)) == 8


def test_legacy_completions(client: openai.OpenAI) -> None:
    result = client.completions.create(model="chat", prompt="Once upon a time")
    assert result.choices[0].text
    assert result.usage is not None


def test_model_list_comes_from_configuration(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    before = upstream.stats()["total"]
    ids = {m.id for m in client.models.list()}
    assert ids == {"chat", "embed", "dead", "direct-model"}
    assert client.models.retrieve("chat").id == "chat"
    assert upstream.stats()["total"] == before  # no upstream call


def test_model_list_honours_the_key_allowlist(gateway: Gateway) -> None:
    limited = openai.OpenAI(base_url=gateway.url, api_key=TEST_KEY + "-limited", max_retries=0)
    assert [m.id for m in limited.models.list()] == ["embed"]
    with pytest.raises(openai.NotFoundError):
        limited.models.retrieve("chat")


def test_provider_models_route_directly(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="direct-model", messages=MESSAGES)  # type: ignore[arg-type]
    assert "direct-model" in upstream.stats()["last_body"]


def test_unknown_fields_reach_the_upstream_untouched(
    client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    extra = {"brand_new_param": {"nested": [1, 2.5, "x"], "flag": None}, "logprobs": True}
    client.chat.completions.create(
        model="chat",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_completion_tokens=33,
        extra_body=extra,
    )
    seen = upstream.stats()["last_body"]["up-chat"]
    assert seen["brand_new_param"] == extra["brand_new_param"]
    assert seen["logprobs"] is True
    assert seen["max_completion_tokens"] == 33


def test_unknown_response_fields_reach_the_client(gateway: Gateway) -> None:
    body = _post(gateway, "/v1/chat/completions", {"model": "chat", "messages": MESSAGES}).json()
    assert body["system_fingerprint"] == "fp_fake"
    assert body["service_tier"] == "default"
    assert body["choices"][0]["logprobs"] is None


def test_failover_to_the_next_priority(
    client: openai.OpenAI, upstream: FakeUpstream, backup_upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(model="up-chat", status=503, error_message="overloaded")
    completion = client.chat.completions.create(model="chat", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content
    assert "up-chat-backup" in backup_upstream.stats()["last_body"]
    stream = client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert len(list(stream)) >= 20
    assert backup_upstream.stats()["requests"]


def test_upstream_4xx_is_passed_through_without_failover(
    gateway: Gateway, upstream: FakeUpstream, backup_upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(model="up-chat", status=422, error_message="bad temperature")
    response = _post(gateway, "/v1/chat/completions", {"model": "chat", "messages": MESSAGES})
    assert response.status_code == 422
    assert _error(response)["message"] == "bad temperature"
    assert backup_upstream.stats()["total"] == 0


def test_upstream_credential_errors_fail_over_and_never_leak(
    gateway: Gateway, upstream: FakeUpstream, backup_upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(
        model="up-chat", status=401, error_message="Incorrect API key sk-fa...ke"
    )
    backup_upstream.set_behaviour(
        model="up-chat-backup", status=401, error_message="Incorrect key sk-x"
    )
    response = _post(gateway, "/v1/chat/completions", {"model": "chat", "messages": MESSAGES})
    assert response.status_code == 502
    assert "sk-" not in response.text
    assert "rejected the gateway's credentials" in str(_error(response)["message"])


def test_every_target_unreachable_is_502(gateway: Gateway) -> None:
    for stream in (False, True):
        response = _post(
            gateway,
            "/v1/chat/completions",
            {"model": "dead", "messages": MESSAGES, "stream": stream},
        )
        assert response.status_code == 502
        error = _error(response)
        assert error["type"] == "upstream_error"
        assert "dead" in str(error["message"])


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b'{"messages":[{"role":"user","content":"x"}]}', 400, "model"),
        (b'{"model":"chat"}', 400, "messages"),
        (b'{"model":"chat","messages":"hello"}', 400, "messages"),
        (b'{"model":"chat","messages":[{"role":"user"}],"max_tokens":"ten"}', 400, "max_tokens"),
        (b'{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}', 404, "model"),
    ],
)
def test_bad_requests(
    gateway: Gateway, upstream: FakeUpstream, body: bytes, status: int, param: str | None
) -> None:
    response = _post(gateway, "/v1/chat/completions", body)
    assert response.status_code == status
    error = _error(response)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert upstream.stats()["total"] == 0


def test_body_over_4_mib_is_refused(gateway: Gateway, upstream: FakeUpstream) -> None:
    big = (
        b'{"model":"chat","messages":[{"role":"user","content":"'
        + b"x" * (4 * 1024 * 1024)
        + b'"}]}'
    )
    response = _post(gateway, "/v1/chat/completions", big)
    assert response.status_code == 400
    assert "larger than" in str(_error(response)["message"])
    assert upstream.stats()["total"] == 0


def test_sdk_sees_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found"
    bad = openai.OpenAI(base_url=client.base_url, api_key="gnd_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="chat", messages=MESSAGES)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("authorization", "status", "message"),
    [
        (None, 401, "unauthorized"),
        ("Basic abc", 401, "unauthorized"),
        ("Bearer sk-not-a-gandalf-key", 401, "unauthorized"),
        ("Bearer gnd_unknown", 401, "unauthorized"),
    ],
)
def test_bad_keys(
    gateway: Gateway, upstream: FakeUpstream, authorization: str | None, status: int, message: str
) -> None:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    response = httpx.post(
        f"{gateway.url}/chat/completions",
        content=msgspec.json.encode({"model": "chat", "messages": MESSAGES}),
        headers=headers,
    )
    assert response.status_code == status
    assert _error(response)["message"] == message
    assert upstream.stats()["total"] == 0


def test_roles_and_allowlists(gateway: Gateway, upstream: FakeUpstream) -> None:
    viewer = _post(
        gateway,
        "/v1/chat/completions",
        {"model": "chat", "messages": MESSAGES},
        key=TEST_KEY + "-viewer",
    )
    assert viewer.status_code == 403
    assert _error(viewer)["message"] == "insufficient permissions"
    limited = _post(
        gateway,
        "/v1/chat/completions",
        {"model": "chat", "messages": MESSAGES},
        key=TEST_KEY + "-limited",
    )
    assert limited.status_code == 403
    assert _error(limited)["message"] == "model not allowed"
    assert upstream.stats()["total"] == 0


def test_wrong_method_and_unknown_path(gateway: Gateway) -> None:
    wrong = httpx.get(
        f"{gateway.url}/chat/completions", headers={"authorization": f"Bearer {TEST_KEY}"}
    )
    assert wrong.status_code == 405
    _error(wrong)
    unknown = httpx.post(
        f"{gateway.url}/nothing-here", headers={"authorization": f"Bearer {TEST_KEY}"}
    )
    assert unknown.status_code == 404
    _error(unknown)


def test_request_id_is_reused_when_sane_else_uuid7(gateway: Gateway) -> None:
    body = {"model": "chat", "messages": MESSAGES}
    kept = _post(gateway, "/v1/chat/completions", body, **{"x-request-id": "client-id.1_2-3"})
    assert kept.headers["x-request-id"] == "client-id.1_2-3"
    replaced = _post(
        gateway, "/v1/chat/completions", body, **{"x-request-id": "bad id with spaces"}
    )
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        replaced.headers["x-request-id"],
    )
    error = _post(gateway, "/v1/chat/completions", b"{", **{"x-request-id": "err-1"})
    assert error.headers["x-request-id"] == "err-1"


def test_keep_alive_while_the_first_token_is_slow(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.set_behaviour(model="up-chat", first_token_delay_ms=1200, chunks=2)
    body = msgspec.json.encode({"model": "chat", "messages": MESSAGES, "stream": True})
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {TEST_KEY}", "content-type": "application/json"},
        timeout=10,
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    assert lines[:first_data].count(": keep-alive") >= 2  # interval is 300 ms in this config
    assert lines[-1] == "data: [DONE]"


def test_client_disconnect_cancels_the_upstream_request(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(model="up-chat", first_token_delay_ms=5000)
    body = msgspec.json.encode({"model": "chat", "messages": MESSAGES, "stream": True})
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {TEST_KEY}", "content-type": "application/json"},
        timeout=10,
    ) as response:
        assert response.status_code == 200
        next(response.iter_lines())  # the keep-alive proves the upstream call is under way
    deadline = time.monotonic() + 3
    while upstream.stats()["disconnects"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = upstream.stats()
    assert stats["disconnects"] == 1
    assert stats["completed_streams"] == 0


def test_stream_cut_midway_ends_with_error_frame_and_done(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(model="up-chat", cut_after_chunks=3)
    response = _post(
        gateway, "/v1/chat/completions", {"model": "chat", "messages": MESSAGES, "stream": True}
    )
    assert response.status_code == 200
    frames = [f for f in response.text.split("\n\n") if f]
    assert (
        frames[-2]
        == 'event: error\ndata: {"error":{"message":"upstream stream error","type":"stream_error"}}'
    )
    assert frames[-1] == "data: [DONE]"
    assert sum(f.startswith("data: {") for f in frames) == 3


def test_sdk_raises_on_a_cut_stream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.set_behaviour(model="up-chat", cut_after_chunks=2)
    stream = client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError, match="upstream stream error"):
        list(stream)


def _workers(gateway: Gateway) -> set[int]:
    assert gateway.process is not None
    children = pathlib.Path(f"/proc/{gateway.process.pid}/task/{gateway.process.pid}/children")
    return {int(pid) for pid in children.read_text().split()}


def test_runs_several_workers_and_survives_a_killed_one(
    gateway: Gateway, client: openai.OpenAI
) -> None:
    workers = _workers(gateway)
    assert len(workers) == 2
    started = gateway.logs().count("] Started worker-")
    os.kill(min(workers), signal.SIGKILL)
    deadline = time.monotonic() + 10
    # the respawned worker has started (a worker signalled while starting would linger)
    while gateway.logs().count("] Started worker-") == started:
        assert time.monotonic() < deadline, "no worker was respawned"
        time.sleep(0.1)
    current = _workers(gateway)
    assert len(current) == 2 and min(workers) not in current
    gateway.wait_ready()
    for _ in range(10):
        assert client.chat.completions.create(model="chat", messages=MESSAGES).choices  # type: ignore[arg-type]


def _running(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"  # a zombie has exited


def test_workers_stop_when_the_server_process_is_killed(
    upstream: FakeUpstream, tmp_path: pathlib.Path
) -> None:
    """No worker serves on, orphaned, after `gandalf serve` itself died (kill -9)."""
    with Gateway(base_config(upstream), tmp_path) as gw:
        workers = _workers(gw)
        assert gw.process is not None
        gw.process.kill()
        gw.process.wait()
        deadline = time.monotonic() + 20
        while any(_running(pid) for pid in workers):
            assert time.monotonic() < deadline, [pid for pid in workers if _running(pid)]
            time.sleep(0.1)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{gw.base}/healthz", timeout=1)
