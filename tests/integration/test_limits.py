"""Limits, budgets and the response cache across workers and processes sharing one Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import openai
import pytest
import redis

from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.conftest import control_plane_config, separate_planes
from tests.integration.harness import ADMIN_KEY, Gateway, admin_call

pytestmark = pytest.mark.e2e

RPM_KEY = "gnd_limits-rpm-key-00000000000000000000000000000"
TPM_KEY = "gnd_limits-tpm-key-00000000000000000000000000000"
BUDGET_KEY = "gnd_limits-budget-key-0000000000000000000000000"
CACHE_KEY = "gnd_limits-cache-key-00000000000000000000000000"
OTHER_CACHE_KEY = "gnd_limits-cache-key-2-000000000000000000000000"
TRIPS_KEY = "gnd_limits-trips-key-0000000000000000000000000"
STREAM_KEY = "gnd_limits-stream-key-000000000000000000000000"
CUT_KEY = "gnd_limits-cut-key-00000000000000000000000000000"
FAILING_KEY = "gnd_limits-failing-key-0000000000000000000000000"
FLUSH_KEY = "gnd_limits-flush-key-00000000000000000000000000"
# `[{"role":"user","content":"hello"}]` is 35 bytes: ceil(35 / 4) + 4 per message + 3 = 16
# tokens estimated. The fake answers "hello" with 5 // 4 + 1 = 2 prompt tokens; told to send
# 14 completion tokens it uses exactly the 16 estimated, so nothing is refunded or charged
# after the fact and the counts below are exact.
HELLO = b'{"model":"%s","messages":[{"role":"user","content":"hello"}]%s}'
ESTIMATE = 16
TPM_REQUESTS = 10
BUDGET_REQUESTS = 5
PRICE_PER_OUTPUT_TOKEN = 0.001  # USD: 1000 USD per million output tokens, input free


def _limits_config(config: dict[str, Any]) -> None:
    config["server"]["workers"] = 4
    config["providers"][0]["models"] = ["m1", "up-tpm", "up-budget"]
    config["routes"] += [
        {"model_alias": "streamy", "targets": [{"provider": "fake", "model": "up-streamy"}]},
        {"model_alias": "failing", "targets": [{"provider": "fake", "model": "up-failing"}]},
        {"model_alias": "tpm", "targets": [{"provider": "fake", "model": "up-tpm"}]},
        {"model_alias": "budget", "targets": [{"provider": "fake", "model": "up-budget"}]},
        {"model_alias": "cached", "targets": [{"provider": "fake", "model": "up-cached"}]},
    ]
    price = {"input": 0, "output": 1000}
    config["pricing"] = {"models": {"up-budget": price, "up-failing": price}}
    budget = round(BUDGET_REQUESTS * 14 * PRICE_PER_OUTPUT_TOKEN, 6)
    config["keys"] += [
        {"name": "rpm", "key": RPM_KEY, "rpm_limit": 50},
        {"name": "tpm", "key": TPM_KEY, "tpm_limit": TPM_REQUESTS * ESTIMATE},
        {"name": "budget", "key": BUDGET_KEY, "max_budget": budget},
        {"name": "cache", "key": CACHE_KEY},
        {"name": "cache-2", "key": OTHER_CACHE_KEY},
        {"name": "trips", "key": TRIPS_KEY, "rpm_limit": 100_000, "tpm_limit": 10_000_000},
        {"name": "stream", "key": STREAM_KEY, "tpm_limit": 600},
        {"name": "cut", "key": CUT_KEY, "tpm_limit": 600},
        {"name": "failing", "key": FAILING_KEY, "max_budget": round(2 * 14 * 0.001, 6)},
        {"name": "flush", "key": FLUSH_KEY, "max_budget": round(4 * 14 * 0.001, 6)},
    ]


@pytest.fixture(scope="module")
def limited(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("limits")
    config = control_plane_config(upstream, workdir / "gandalf.db")
    _limits_config(config)
    with Gateway(config, workdir, command="run", env={"GANDALF_ADMIN_KEY": ADMIN_KEY}) as gw:
        yield gw


async def _burst(
    bases: list[str], key: str, body: bytes, count: int
) -> tuple[list[httpx.Response], float]:
    """`count` requests at once, spread over `bases`; returns the answers and the seconds."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(
                client.post(
                    f"{bases[i % len(bases)]}/v1/chat/completions",
                    content=body,
                    headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
                )
                for i in range(count)
            )
        )
        return list(answers), time.monotonic() - started


def _refilled(limit: int, seconds: float) -> int:
    """Whole tokens a bucket of `limit` per minute gains in `seconds` (the burst's duration)."""
    return int(seconds * limit / 60)


def _check_rpm_burst(answers: list[httpx.Response], seconds: float) -> None:
    ok = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(ok) + len(refused) == len(answers), {a.status_code for a in answers}
    assert 50 <= len(ok) <= 50 + _refilled(50, seconds), (len(ok), seconds)
    for answer in refused:
        assert answer.json()["error"]["message"] == "rate limit exceeded"
        assert answer.headers["x-ratelimit-limit-requests"] == "50"
        assert answer.headers["x-ratelimit-remaining-requests"] == "0"
        assert int(answer.headers["retry-after"]) >= 1
    assert all(a.headers["x-ratelimit-limit-requests"] == "50" for a in ok)


def test_rpm_is_exact_across_four_workers(limited: Gateway) -> None:
    answers, seconds = asyncio.run(_burst([limited.base], RPM_KEY, HELLO % (b"chat", b""), 200))
    _check_rpm_burst(answers, seconds)


def test_rpm_is_exact_across_two_data_planes(upstream: FakeUpstream, tmp_path: Any) -> None:
    with separate_planes(upstream, tmp_path, data_planes=2, change=_limits_config) as (
        _,
        _,
        planes,
    ):
        answers, seconds = asyncio.run(
            _burst([p.base for p in planes], RPM_KEY, HELLO % (b"chat", b""), 200)
        )
    _check_rpm_burst(answers, seconds)


def test_tpm_is_exact(limited: Gateway, upstream: FakeUpstream) -> None:
    upstream.set_behaviour(model="up-tpm", chunks=14)
    answers, seconds = asyncio.run(_burst([limited.base], TPM_KEY, HELLO % (b"tpm", b""), 200))
    ok = [a for a in answers if a.status_code == 200]
    allowed = TPM_REQUESTS + _refilled(TPM_REQUESTS * ESTIMATE, seconds) // ESTIMATE
    assert TPM_REQUESTS <= len(ok) <= allowed, (len(ok), seconds)
    assert {a.json()["usage"]["total_tokens"] for a in ok} == {ESTIMATE}
    refused = [a for a in answers if a.status_code == 429]
    assert len(ok) + len(refused) == 200
    for answer in refused:
        assert answer.headers["x-ratelimit-limit-tokens"] == str(TPM_REQUESTS * ESTIMATE)
        assert int(answer.headers["x-ratelimit-remaining-tokens"]) < ESTIMATE
        assert int(answer.headers["retry-after"]) >= 1


def test_a_budget_is_never_overspent(limited: Gateway, upstream: FakeUpstream) -> None:
    upstream.set_behaviour(model="up-budget", chunks=14)
    body = HELLO % (b"budget", b',"max_tokens":14')
    answers, _ = asyncio.run(_burst([limited.base], BUDGET_KEY, body, 40))
    ok = [a for a in answers if a.status_code == 200]
    assert len(ok) == BUDGET_REQUESTS
    for answer in answers:
        if answer.status_code != 200:
            assert answer.status_code == 429
            assert answer.json()["error"]["message"] == "quota exceeded"
            assert "retry-after" not in answer.headers
    # settled at the real price, the budget is spent to the cent: one more is refused too
    again = httpx.post(
        f"{limited.url}/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {BUDGET_KEY}", "content-type": "application/json"},
    )
    assert again.status_code == 429


def _chat(client: openai.OpenAI, content: str, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="cached",
        messages=[{"role": "user", "content": content}],
        temperature=0,
        **extra,
    )


def _stored(client: openai.OpenAI, content: str) -> None:
    """Wait until the answer to `content` is in the cache: it is stored right after the
    answer is sent (with the settlement), so the very next request may still miss."""
    deadline = time.monotonic() + 2
    while _chat(client, content).headers["x-cache"] != "HIT":
        assert time.monotonic() < deadline, "the answer was never cached"
        time.sleep(0.01)


def test_a_cached_answer_is_served_by_any_worker_plain_and_streamed(
    limited: Gateway, upstream: FakeUpstream
) -> None:
    client = openai.OpenAI(base_url=limited.url, api_key=CACHE_KEY, max_retries=0)
    first = _chat(client, "what is cached?")
    assert first.headers["x-cache"] == "MISS"
    text = first.parse().choices[0].message.content
    _stored(client, "what is cached?")
    seen = upstream.stats()["requests"].get("POST /v1/chat/completions up-cached", 0)
    for _ in range(6):  # new connections: several workers answer
        fresh = openai.OpenAI(base_url=limited.url, api_key=CACHE_KEY, max_retries=0)
        again = _chat(fresh, "what is cached?")
        assert again.headers["x-cache"] == "HIT"
        assert again.parse().choices[0].message.content == text
    streamed = _chat(client, "what is cached?", stream=True)
    assert streamed.headers["x-cache"] == "HIT"
    pieces = [c.choices[0].delta.content or "" for c in streamed.parse() if c.choices]
    assert "".join(pieces) == text
    assert upstream.stats()["requests"].get("POST /v1/chat/completions up-cached", 0) == seen

    # another key does not see this key's answers (the default scope is the key)
    other = openai.OpenAI(base_url=limited.url, api_key=OTHER_CACHE_KEY, max_retries=0)
    assert _chat(other, "what is cached?").headers["x-cache"] == "MISS"


def test_a_streamed_answer_is_cached_for_plain_requests(limited: Gateway) -> None:
    client = openai.OpenAI(base_url=limited.url, api_key=CACHE_KEY, max_retries=0)
    streamed = _chat(client, "stream me once", stream=True)
    assert streamed.headers["x-cache"] == "MISS"
    chunks = list(streamed.parse())
    assert all(c.choices for c in chunks)  # the usage chunk the gateway asked for is removed
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    _stored(client, "stream me once")
    plain = _chat(client, "stream me once")
    assert plain.headers["x-cache"] == "HIT"
    assert plain.parse().choices[0].message.content == text


def test_no_cache_bypasses_and_purge_empties(limited: Gateway, upstream: FakeUpstream) -> None:
    client = openai.OpenAI(base_url=limited.url, api_key=CACHE_KEY, max_retries=0)
    _chat(client, "purge me")
    _stored(client, "purge me")
    bypass = _chat(client, "purge me", extra_headers={"cache-control": "no-cache"})
    assert bypass.headers["x-cache"] == "MISS"
    _stored(client, "purge me")  # the bypass refreshed the entry

    assert admin_call(limited, "POST", "/cache/purge?model=other-model").status_code == 204
    assert _chat(client, "purge me").headers["x-cache"] == "HIT"
    assert admin_call(limited, "POST", "/cache/purge", {"model": "cached"}).status_code == 204
    assert _chat(client, "purge me").headers["x-cache"] == "MISS"
    _stored(client, "purge me")  # stored again by that miss, before the next purge
    assert admin_call(limited, "POST", "/cache/purge").status_code == 204
    assert _chat(client, "purge me").headers["x-cache"] == "MISS"
    bad = admin_call(limited, "POST", "/cache/purge", {"models": ["x"]})
    assert bad.status_code == 400


def test_not_cacheable_requests_say_nothing(limited: Gateway) -> None:
    client = openai.OpenAI(base_url=limited.url, api_key=CACHE_KEY, max_retries=0)
    hot = client.chat.completions.with_raw_response.create(
        model="cached", messages=[{"role": "user", "content": "hi"}], temperature=0.9
    )
    assert "x-cache" not in hot.headers


def _policy(policy: str) -> Any:
    def change(config: dict[str, Any]) -> None:
        _limits_config(config)
        config["server"]["workers"] = 2
        config["rate_limits"]["redis_failure"] = policy
        config["keys"].append({"name": "policy", "key": POLICY_KEY, "rpm_limit": 20})

    return change


POLICY_KEY = "gnd_limits-policy-key-0000000000000000000000000"


def _status(gateway: Gateway, key: str) -> httpx.Response:
    with httpx.Client() as fresh:
        return fresh.post(
            f"{gateway.url}/chat/completions",
            content=HELLO % (b"chat", b""),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            timeout=10,
        )


def test_fail_open_serves_without_limits_while_redis_is_down(
    upstream: FakeUpstream, tmp_path: Any
) -> None:
    with separate_planes(upstream, tmp_path, change=_policy("fail_open")) as (redis, _, (data,)):
        for _ in range(16):  # every worker knows the key (each new connection may land on
            # either of the two; 16 of the key's 20 requests are used)
            assert _status(data, POLICY_KEY).status_code == 200
        _wait_for_rows(data, 16)  # in SQLite before Redis (and its stream) goes
        redis.stop()
        assert {_status(data, POLICY_KEY).status_code for _ in range(25)} == {200}
        redis.start()
        statuses = []
        deadline = time.monotonic() + 10
        while 429 not in statuses:  # limits are back: a fresh bucket of 20, then refusals
            assert time.monotonic() < deadline, statuses
            statuses.append(_status(data, POLICY_KEY).status_code)
        assert statuses.count(200) >= 20 - 2  # a request or two may have hit Redis starting
        # what was served while Redis was down was kept and recorded once it returned
        _wait_for_rows(data, 16 + 25 + statuses.count(200))


def _wait_for_rows(gateway: Gateway, rows: int) -> None:
    deadline = time.monotonic() + 15
    while (total := _usage_rows(gateway)) != rows:
        assert total < rows, f"{total} usage rows, {rows} requests served"
        assert time.monotonic() < deadline, f"{total} usage rows, {rows} requests served"
        time.sleep(0.1)


def _usage_rows(gateway: Gateway) -> int:
    page = admin_call(gateway, "GET", "/usage?limit=1").json()
    return int(page["pagination"]["total"])


def test_fail_closed_refuses_while_redis_is_down(upstream: FakeUpstream, tmp_path: Any) -> None:
    with separate_planes(upstream, tmp_path, change=_policy("fail_closed")) as (
        redis,
        _,
        (data,),
    ):
        for _ in range(8):
            assert _status(data, POLICY_KEY).status_code == 200
        redis.stop()
        down = _status(data, POLICY_KEY)
        assert down.status_code == 503
        assert down.json()["error"]["message"] == "rate limiting is unavailable; try again shortly"
        redis.start()
        deadline = time.monotonic() + 10
        while (status := _status(data, POLICY_KEY).status_code) != 200:
            assert time.monotonic() < deadline, status
            time.sleep(0.1)


def test_error_bodies_of_refusals_are_openai_shaped(limited: Gateway) -> None:
    answers, _ = asyncio.run(_burst([limited.base], RPM_KEY, HELLO % (b"chat", b""), 60))
    refused = next(a for a in answers if a.status_code == 429)
    error = msgspec.json.decode(refused.content)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "rate_limit_exceeded"


def _redis(gateway: Gateway) -> redis.Redis:
    """A client of the gateway's embedded Redis (its socket is in the supervisor's log)."""
    socket = next(
        msgspec.json.decode(line)["socket"]
        for line in gateway.logs().splitlines()
        if "embedded redis started" in line
    )
    return redis.Redis(unix_socket_path=socket)


def test_each_request_runs_one_admission_and_one_settlement(limited: Gateway) -> None:
    """Counted on the Redis side: per request, the two script calls, never reloaded."""
    client = _redis(limited)
    try:
        for _ in range(8):  # every worker has the key cached
            assert _status(limited, TRIPS_KEY).status_code == 200
        client.config_resetstat()
        for _ in range(10):
            assert _status(limited, TRIPS_KEY).status_code == 200
        stats = client.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 20
        # (commandstats also counts the commands the scripts run, so only the script calls
        # themselves are telling; tests/unit/app/test_accounting.py counts round trips)
        assert "cmdstat_eval" not in stats and "cmdstat_script|load" not in stats
    finally:
        client.close()


def _remaining_tokens(gateway: Gateway, key: str) -> int:
    """Remaining TPM after one more 16-token request (after the settlements have landed)."""
    time.sleep(0.1)  # settlements leave in batches every 2 ms
    answer = _status(gateway, key)
    assert answer.status_code == 200
    return int(answer.headers["x-ratelimit-remaining-tokens"])


def test_a_stream_is_settled_on_its_usage(limited: Gateway, upstream: FakeUpstream) -> None:
    upstream.set_behaviour(model="up-streamy", chunks=200)
    client = openai.OpenAI(base_url=limited.url, api_key=STREAM_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="streamy", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    chunks = list(stream)
    assert all(c.choices for c in chunks)  # the usage chunk the client did not ask for is gone
    # 600 - (2 prompt + 200 completion) - 16 for the next request, plus a few refilled
    assert 382 <= _remaining_tokens(limited, STREAM_KEY) <= 382 + 20


def test_a_stream_the_client_abandons_is_settled_on_what_it_received(
    limited: Gateway, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(model="up-streamy", chunks=400, chunk_delay_ms=5)
    body = HELLO % (b"streamy", b',"stream":true')
    headers = {"authorization": f"Bearer {CUT_KEY}", "content-type": "application/json"}
    received = 0
    with httpx.stream(
        "POST", f"{limited.url}/chat/completions", content=body, headers=headers, timeout=10
    ) as response:
        for line in response.iter_lines():
            received += line.startswith("data:")
            if received == 40:
                break
    remaining = _remaining_tokens(limited, CUT_KEY)
    # estimate only (the gateway charging nothing more) would leave 600 - 16 - 16 = 568;
    # the 40+ chunks sent are charged on top, and a few seconds refill 10 tokens a second
    assert remaining <= 568 - 40 + 20, remaining
    assert remaining >= 600 - 16 - 400 - 16, remaining  # never the whole unsent stream


def test_failed_requests_give_their_budget_back(limited: Gateway, upstream: FakeUpstream) -> None:
    upstream.set_behaviour(model="up-failing", status=500, times=5)
    body = HELLO % (b"failing", b',"max_tokens":14')
    headers = {"authorization": f"Bearer {FAILING_KEY}", "content-type": "application/json"}
    failed = [
        httpx.post(f"{limited.url}/chat/completions", content=body, headers=headers)
        for _ in range(5)
    ]
    assert {f.status_code for f in failed} == {502}
    upstream.set_behaviour(model="up-failing", chunks=14)
    statuses = []
    for _ in range(3):
        time.sleep(0.05)  # the previous settlement has landed
        statuses.append(
            httpx.post(f"{limited.url}/chat/completions", content=body, headers=headers).status_code
        )
    assert statuses == [200, 200, 429]  # the budget of two requests was all still there


def test_a_budget_still_holds_after_redis_forgets_everything(
    limited: Gateway, upstream: FakeUpstream
) -> None:
    """FLUSHALL: the spend counter is rebuilt from SQLite; the budget is not handed out again.

    (Last in this module: it wipes the limiter state the other tests use.)
    """
    upstream.set_behaviour(model="up-budget", chunks=14)
    body = HELLO % (b"budget", b',"max_tokens":14')
    headers = {"authorization": f"Bearer {FLUSH_KEY}", "content-type": "application/json"}

    def post() -> int:
        return httpx.post(
            f"{limited.url}/chat/completions", content=body, headers=headers, timeout=10
        ).status_code

    before = _recorded(limited, "budget")
    assert [post() for _ in range(3)] == [200, 200, 200]  # 3 of the 4 requests' budget spent
    deadline = time.monotonic() + 10
    while _recorded(limited, "budget") < before + 3:  # in SQLite, where the rebuild reads
        assert time.monotonic() < deadline, "the usage was not recorded"
        time.sleep(0.1)
    client = _redis(limited)
    try:
        client.flushall()
        deadline = time.monotonic() + 15
        while not client.exists("gandalf:quota:synced"):  # the recorder noticed and rebuilt
            assert time.monotonic() < deadline, "the spend counters were not rebuilt"
            time.sleep(0.1)

        def admitted_or_refused() -> int:
            """Until the keys are published again a worker may answer 401 or 503: those
            come before admission and spend nothing, so they are retried."""
            while (status := post()) not in (200, 429):
                assert time.monotonic() < deadline, f"the keys were not published again: {status}"
                time.sleep(0.1)
            return status

        assert [admitted_or_refused() for _ in range(3)] == [200, 429, 429]
    finally:
        client.close()


def _recorded(gateway: Gateway, model: str) -> int:
    page = admin_call(gateway, "GET", f"/usage?model={model}&limit=1").json()
    return int(page["pagination"]["total"])
