"""Usage recorded end to end: workers → Redis stream → the supervisor's recorder → SQLite."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.conftest import control_plane_config
from tests.integration.harness import ADMIN_KEY, TEST_KEY, Gateway, admin_call

pytestmark = pytest.mark.e2e

# 1000 USD per million output tokens, 100 per million input: the fake answers with 20 tokens
PRICE = {"input": 100, "output": 1000}
BUDGETED_KEY = "gnd_usage-budgeted-key-000000000000000000000000"


def _cost(usage: Any) -> int:
    """Nano-USD of an answer at PRICE."""
    return int(usage.prompt_tokens * 100_000 + usage.completion_tokens * 1_000_000)


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("usage")
    config = control_plane_config(upstream, workdir / "gandalf.db")
    config["routes"].append(
        {"model_alias": "priced", "targets": [{"provider": "fake", "model": "up-priced"}]}
    )
    config["pricing"] = {"models": {"up-priced": PRICE}}
    config["keys"].append({"name": "budgeted", "key": BUDGETED_KEY, "max_budget": 2.5})
    with Gateway(config, workdir, command="run", env={"GANDALF_ADMIN_KEY": ADMIN_KEY}) as gw:
        yield gw


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


def test_streamed_and_plain_requests_record_the_same_tokens_and_cost(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key=TEST_KEY, max_retries=0)
    messages = [{"role": "user", "content": "count the same for both"}]
    plain = client.chat.completions.create(model="priced", messages=messages)  # type: ignore[arg-type]
    stream = client.chat.completions.create(model="priced", messages=messages, stream=True)  # type: ignore[arg-type]
    assert all(chunk.choices for chunk in stream)  # usage was asked for, and not shown
    rows = _rows(gateway, 2, model="priced")
    assert plain.usage is not None
    for row in rows:
        assert row["prompt_tokens"] == plain.usage.prompt_tokens
        assert row["completion_tokens"] == plain.usage.completion_tokens
        assert row["usage_source"] == "provider"
        assert row["upstream_model"] == "up-priced" and row["provider_id"] == "fake"
    expected = _cost(plain.usage)
    assert [row["cost_nano"] for row in rows] == [expected, expected]
    assert sum(row.get("ttft_ms") is not None for row in rows) == 1  # the stream's


def test_a_reused_request_id_is_still_two_calls(gateway: Gateway) -> None:
    headers = {"authorization": f"Bearer {TEST_KEY}", "x-request-id": "client-retry-1"}
    body = {"model": "chat", "messages": [{"role": "user", "content": "retry me"}]}
    for _ in range(2):
        answer = httpx.post(f"{gateway.url}/chat/completions", json=body, headers=headers)
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == "client-retry-1"
    rows = _rows(gateway, 2, model="chat")
    assert len({row["request_id"] for row in rows}) == 2


def test_refusals_are_not_usage_but_upstream_failures_are(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    body = {"model": "m1", "messages": [{"role": "user", "content": "x"}]}
    auth = {"authorization": f"Bearer {TEST_KEY}"}
    assert httpx.post(f"{gateway.url}/chat/completions", json=body).status_code == 401
    unknown = {**body, "model": "nope"}
    assert (
        httpx.post(f"{gateway.url}/chat/completions", json=unknown, headers=auth).status_code == 404
    )
    upstream.set_behaviour(model="m1", status=500, times=1)
    failed = httpx.post(f"{gateway.url}/chat/completions", json=body, headers=auth)
    assert failed.status_code == 502
    (row,) = _rows(gateway, 1, model="m1")
    assert (row["status_code"], row.get("cost_nano", 0), row["total_tokens"]) == (502, 0, 0)
    assert _rows(gateway, 0, model="nope") == []


def test_the_summary_adds_up_the_rows(gateway: Gateway) -> None:
    rows = admin_call(gateway, "GET", "/usage?limit=100").json()["data"]
    deadline = time.monotonic() + 5
    while True:
        summary = admin_call(gateway, "GET", "/usage/summary?period=hourly").json()["data"]
        if sum(r["request_count"] for r in summary) == len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sum(r["request_count"] for r in summary) == len(rows)
    assert sum(r["cost_nano"] for r in summary) == sum(r.get("cost_nano", 0) for r in rows)
    assert sum(r["total_tokens"] for r in summary) == sum(r["total_tokens"] for r in rows)


def _own_usage(gateway: Gateway, key: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}/usage", headers={"authorization": f"Bearer {key}"})


def test_a_key_sees_its_own_spend_budget_and_period(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key=BUDGETED_KEY, max_retries=0)
    messages = [{"role": "user", "content": "what do I owe"}]
    answers = [client.chat.completions.create(model="priced", messages=messages) for _ in range(2)]  # type: ignore[arg-type]
    spent = sum(_cost(answer.usage) for answer in answers)
    deadline = time.monotonic() + 5
    while (report := _own_usage(gateway, BUDGETED_KEY).json())["total_cost_nano_usd"] != spent:
        assert time.monotonic() < deadline, report  # settlements land within milliseconds
        time.sleep(0.05)
    today = time.gmtime()
    next_month = (today.tm_year + today.tm_mon // 12, today.tm_mon % 12 + 1)
    assert report["period_start"] == f"{today.tm_year}-{today.tm_mon:02d}-01T00:00:00Z"
    assert report["period_end"] == f"{next_month[0]}-{next_month[1]:02d}-01T00:00:00Z"
    assert report["budget_period"] == "monthly"
    assert report["budget_usd"] == 2.5
    assert report["total_cost_usd"] == spent / 1e9
    assert report["remaining_usd"] == 2.5 - spent / 1e9
    assert report["budget_used_pct"] == round(100 * spent / 1e9 / 2.5, 6)
    assert report["reserved_usd"] == 0
    assert report["tenant_id"] == report["org_id"] == "default"


def test_own_usage_without_a_budget_and_its_refusals(gateway: Gateway) -> None:
    unbudgeted = _own_usage(gateway, TEST_KEY)
    assert unbudgeted.status_code == 200
    report = unbudgeted.json()
    assert (report["budget_usd"], report["remaining_usd"], report["budget_used_pct"]) == (
        None,
        None,
        None,
    )
    anonymous = httpx.get(f"{gateway.url}/usage")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    posted = httpx.post(f"{gateway.url}/usage", headers={"authorization": f"Bearer {TEST_KEY}"})
    assert posted.status_code == 405


def test_x_gateway_metadata_only_when_asked(gateway: Gateway) -> None:
    body = {"model": "priced", "messages": [{"role": "user", "content": "meta please"}]}
    auth = {"authorization": f"Bearer {TEST_KEY}"}
    plain = httpx.post(f"{gateway.url}/chat/completions", json=body, headers=auth)
    assert plain.status_code == 200
    assert "x_gateway" not in plain.json()

    asked = httpx.post(
        f"{gateway.url}/chat/completions",
        json=body,
        headers={**auth, "x-gateway-metadata": "true"},
    )
    answer = asked.json()
    meta = answer.pop("x_gateway")
    assert set(answer) == set(plain.json())  # the rest of the body is untouched
    assert meta["provider"] == "fake"
    assert meta["cache_hit"] is False
    assert meta["request_id"] == asked.headers["x-request-id"]
    usage = openai.types.CompletionUsage(**answer["usage"])
    assert meta["cost_usd"] == _cost(usage) / 1e9
    assert isinstance(meta["latency_ms"], int) and meta["latency_ms"] >= 0


def test_x_gateway_ends_a_stream_as_a_comment_the_sdk_ignores(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key=TEST_KEY, max_retries=0)
    messages = [{"role": "user", "content": "meta stream"}]
    plain = client.chat.completions.create(model="priced", messages=messages)  # type: ignore[arg-type]
    chunks = list(
        client.chat.completions.create(
            model="priced",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            extra_headers={"x-gateway-metadata": "true"},
        )
    )
    assert all(chunk.choices for chunk in chunks)  # nothing extra reached the SDK's iterator
    raw = httpx.post(
        f"{gateway.url}/chat/completions",
        json={"model": "priced", "messages": messages, "stream": True},
        headers={"authorization": f"Bearer {TEST_KEY}", "x-gateway-metadata": "1"},
    )
    events = raw.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    comment = events[-3]
    assert comment.startswith(": x_gateway ")
    meta = json.loads(comment.removeprefix(": x_gateway "))
    assert meta["provider"] == "fake" and meta["request_id"] == raw.headers["x-request-id"]
    assert meta["cost_usd"] == _cost(plain.usage) / 1e9  # the same exchange costs the same
