"""`gandalf run`: supervisor + embedded Redis + SQLite file + Granian workers, end to end."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import signal
import time

import httpx
import msgspec
import openai
import pytest
import redis

from app.keyspace import Keyspace
from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.conftest import OTHER_ORG_ADMIN, control_plane_config, separate_planes
from tests.integration.harness import (
    ADMIN_KEY,
    MESSAGES,
    TEST_KEY,
    Gateway,
    admin_call,
    chat_status,
)

pytestmark = pytest.mark.e2e


def test_a_created_key_works_then_blocking_and_deleting_reach_every_worker(stack: Gateway) -> None:
    created = admin_call(stack, "POST", "/keys", {"role": "member", "name": "ci"})
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("gnd_") and len(body["key"]) == 47
    assert created.headers["location"] == f"/admin/v1/keys/{body['id']}"
    assert "key_hash" not in body
    client = openai.OpenAI(base_url=stack.url, api_key=body["key"], max_retries=0)
    assert client.chat.completions.create(model="chat", messages=MESSAGES).choices  # type: ignore[arg-type]
    for _ in range(10):  # warm every worker's key cache
        assert chat_status(stack, body["key"]) == 200

    assert admin_call(stack, "PUT", f"/keys/{body['id']}", {"blocked": True}).status_code == 200
    blocked_at = time.monotonic()
    statuses = [chat_status(stack, body["key"]) for _ in range(20)]
    assert time.monotonic() - blocked_at < 5
    assert set(statuses) == {403}, statuses

    assert admin_call(stack, "DELETE", f"/keys/{body['id']}").status_code == 204
    assert {chat_status(stack, body["key"]) for _ in range(20)} == {401}
    assert admin_call(stack, "GET", f"/keys/{body['id']}").status_code == 404


def test_listing_keys_never_shows_hashes_and_paginates(stack: Gateway) -> None:
    page = admin_call(stack, "GET", "/keys?limit=1&offset=0").json()
    assert page["pagination"]["limit"] == 1
    assert page["pagination"]["total"] >= 2
    assert len(page["data"]) == 1
    assert "key_hash" not in page["data"][0] and "key" not in page["data"][0]
    assert admin_call(stack, "GET", "/keys?limit=1000").json()["pagination"]["limit"] == 50


@pytest.mark.parametrize("key", [TEST_KEY, TEST_KEY + "-viewer"])
def test_members_and_viewers_cannot_write(stack: Gateway, key: str) -> None:
    for method, path, body in [
        ("POST", "/keys", {"role": "member"}),
        ("POST", "/routes", {"model_alias": "x", "targets": []}),
        ("POST", "/providers", {"name": "openai"}),
        ("POST", "/cache/purge", None),
        ("GET", "/keys", None),
    ]:
        response = admin_call(stack, method, path, body, key=key)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["message"] == "insufficient permissions"


def test_admin_auth_errors(stack: Gateway) -> None:
    assert admin_call(stack, "GET", "/keys", key="gnd_nope").status_code == 401
    response = httpx.get(f"{stack.base}/admin/v1/keys")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_cross_org_access_is_refused(stack: Gateway) -> None:
    mine = admin_call(stack, "GET", "/keys").json()["data"][0]["id"]
    assert admin_call(stack, "GET", "/keys?org_id=default", key=OTHER_ORG_ADMIN).status_code == 403
    outside = admin_call(stack, "POST", "/keys", {"org_id": "default"}, key=OTHER_ORG_ADMIN)
    assert outside.status_code == 403
    assert "outside your organization" in outside.json()["error"]["message"]
    for method in ("GET", "DELETE"):
        assert admin_call(stack, method, f"/keys/{mine}", key=OTHER_ORG_ADMIN).status_code == 404
    assert (
        admin_call(
            stack, "PUT", f"/keys/{mine}", {"blocked": True}, key=OTHER_ORG_ADMIN
        ).status_code
        == 404
    )


def test_bad_admin_bodies(stack: Gateway) -> None:
    assert admin_call(stack, "POST", "/keys", {"role": "overlord"}).status_code == 400
    assert admin_call(stack, "POST", "/keys", {"expires_at": "tomorrow"}).status_code == 400
    big = httpx.post(
        f"{stack.base}/admin/v1/routes",
        content=b'{"model_alias":"' + b"x" * (1024 * 1024 + 10) + b'"}',
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    assert big.status_code == 400
    assert admin_call(stack, "POST", "/routes", {"targets": []}).status_code == 400
    duplicate = admin_call(stack, "POST", "/routes", {"model_alias": "chat", "targets": []})
    assert duplicate.status_code == 409


def test_a_route_created_through_the_admin_api_serves_without_restart(
    stack: Gateway, upstream: FakeUpstream
) -> None:
    assert chat_status(stack, TEST_KEY, model="fresh-alias") == 404
    created = admin_call(
        stack,
        "POST",
        "/routes",
        {"model_alias": "fresh-alias", "targets": [{"provider_id": "fake", "model": "up-fresh"}]},
    )
    assert created.status_code == 201
    deadline = time.monotonic() + 2
    while chat_status(stack, TEST_KEY, model="fresh-alias") != 200:
        assert time.monotonic() < deadline, "route not served within 2 s"
        time.sleep(0.05)
    assert "up-fresh" in upstream.stats()["last_body"]
    route_id = created.json()["id"]
    assert admin_call(stack, "DELETE", f"/routes/{route_id}").status_code == 204
    deadline = time.monotonic() + 2
    while chat_status(stack, TEST_KEY, model="fresh-alias") != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_provider_created_through_the_admin_api_serves_without_restart(
    stack: Gateway, backup_upstream: FakeUpstream
) -> None:
    # The secret stays in each process's environment: the provider names the variable.
    created = admin_call(
        stack,
        "POST",
        "/providers",
        {
            "name": "second",
            "type": "openai",
            "base_url": backup_upstream.url,
            "models": ["second-model"],
            "api_key_env": "GANDALF_TEST_SECOND_KEY",
        },
    )
    assert created.status_code == 201, created.text
    assert "api_key" not in created.json()
    deadline = time.monotonic() + 2
    while (status := chat_status(stack, TEST_KEY, model="second-model")) != 200:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert (
        backup_upstream.stats()["last_headers"]["second-model"]["authorization"] == "Bearer sk-fake"
    )
    assert admin_call(stack, "GET", "/providers/second").json()["base_url"] == backup_upstream.url


def test_supervisor_probes(stack: Gateway) -> None:
    assert httpx.get(f"{stack.admin}/readyz").text == "ok"
    assert httpx.get(f"{stack.base}/readyz").text == "ok"


def test_keys_and_routes_survive_a_restart(upstream: FakeUpstream, tmp_path: pathlib.Path) -> None:
    config = control_plane_config(upstream, tmp_path / "gandalf.db")
    env = {"GANDALF_ADMIN_KEY": ADMIN_KEY}
    with Gateway(config, tmp_path, command="run", env=env) as first:
        key = admin_call(first, "POST", "/keys", {"role": "member"}).json()["key"]
        route = {"model_alias": "kept", "targets": [{"provider_id": "fake", "model": "up-kept"}]}
        assert admin_call(first, "POST", "/routes", route).status_code == 201
    with Gateway(config, tmp_path, command="run", env=env) as second:
        assert chat_status(second, key, model="kept") == 200
        aliases = [r["model_alias"] for r in admin_call(second, "GET", "/routes").json()["data"]]
        assert aliases == ["chat", "kept"]


def _children(pid: int) -> set[int]:
    try:
        return {
            int(p) for p in pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        }
    except FileNotFoundError:
        return set()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for an init that may not reap it in a container."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_kill_9_of_the_supervisor_takes_the_whole_gateway_down(
    upstream: FakeUpstream, tmp_path: pathlib.Path
) -> None:
    gateway = Gateway(
        control_plane_config(upstream, tmp_path / "gandalf.db"), tmp_path, command="run"
    )
    with gateway:
        assert gateway.process is not None
        supervisor = gateway.process.pid
        children = _children(supervisor)
        descendants = children | {c for child in children for c in _children(child)}
        assert len(descendants) >= 4  # redis, granian main, two workers
        os.kill(supervisor, signal.SIGKILL)
        gateway.process.wait(5)
        deadline = time.monotonic() + 15
        try:
            while alive := [pid for pid in descendants if _alive(pid)]:
                assert time.monotonic() < deadline, f"{alive} outlived the supervisor"
                time.sleep(0.1)
        finally:
            for pid in descendants:  # never leave strays behind for the next tests
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{gateway.base}/healthz", timeout=1)
        assert "Shutting down granian" in gateway.logs()


def _embedded_redis(gateway: Gateway) -> redis.Redis:
    for line in gateway.logs().splitlines():
        if "embedded redis started" in line:
            return redis.Redis(unix_socket_path=msgspec.json.decode(line)["socket"])
    raise AssertionError("no embedded redis in the logs")


def test_redis_losing_everything_is_repaired_from_sqlite(stack: Gateway) -> None:
    client = _embedded_redis(stack)
    keyspace = Keyspace()
    try:
        assert client.hlen(keyspace.key_index) >= 3
        fresh = admin_call(stack, "POST", "/keys", {"role": "member"}).json()["key"]
        client.flushall()
        deadline = time.monotonic() + 3
        while not client.exists(keyspace.snapshot):
            assert time.monotonic() < deadline, "the supervisor did not republish"
            time.sleep(0.05)
        assert client.hexists(keyspace.key_index, hashlib.sha256(fresh.encode()).hexdigest())
        # nothing secret was published: no plaintext key, no provider key
        dump = b"".join(client.hvals(keyspace.key_index)) + client.get(keyspace.snapshot)
        assert fresh.encode() not in dump and b"sk-fake" not in dump
        assert {chat_status(stack, fresh) for _ in range(6)} == {200}
    finally:
        client.close()


def test_a_killed_embedded_redis_is_restarted_and_traffic_recovers(stack: Gateway) -> None:
    assert stack.process is not None
    (server,) = [
        pid
        for pid in _children(stack.process.pid)
        if b"valkey" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    os.kill(server, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while chat_status(stack, TEST_KEY) != 200:
        assert time.monotonic() < deadline, "traffic did not recover"
        time.sleep(0.1)
    assert "embedded redis exited; restarting it" in stack.logs()
    assert httpx.get(f"{stack.admin}/readyz").text == "ok"


def test_control_plane_and_data_plane_as_separate_processes(
    upstream: FakeUpstream, tmp_path: pathlib.Path
) -> None:
    with separate_planes(upstream, tmp_path) as (_, control, (data,)):
        key = admin_call(data, "POST", "/keys", {"role": "member"}).json()["key"]
        assert chat_status(data, key) == 200
        assert control.process is not None
        os.kill(control.process.pid, signal.SIGKILL)
        control.process.wait(5)
        # the data plane keeps serving what was published; only the admin API is gone
        assert {chat_status(data, key) for _ in range(4)} == {200}
        gone = admin_call(data, "GET", "/keys")
        assert gone.status_code == 503
        assert "control plane does not answer" in gone.json()["error"]["message"]


def test_a_redis_outage_keeps_known_keys_working_and_loses_no_change(
    upstream: FakeUpstream, tmp_path: pathlib.Path
) -> None:
    with separate_planes(upstream, tmp_path) as (shared, _, (data,)):
        for _ in range(8):  # every worker caches the member key
            assert chat_status(data, TEST_KEY) == 200
        shared.stop()
        assert {chat_status(data, TEST_KEY) for _ in range(8)} == {200}
        assert chat_status(data, TEST_KEY + "-viewer") == 503  # never seen: cannot be checked
        assert httpx.get(f"{data.base}/readyz").status_code == 503
        created = admin_call(data, "POST", "/keys", {"role": "member"})
        assert created.status_code == 201  # SQLite has it; Redis gets it when it returns
        shared.start()
        deadline = time.monotonic() + 10
        while chat_status(data, created.json()["key"]) != 200:
            assert time.monotonic() < deadline, "the change made during the outage was lost"
            time.sleep(0.1)
        assert httpx.get(f"{data.base}/readyz").status_code == 200
