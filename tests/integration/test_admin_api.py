"""The admin API through the data plane's port: payloads, statuses, permissions, pagination."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.conftest import OTHER_ORG_ADMIN
from tests.integration.harness import TEST_KEY, Gateway, admin_call, chat_status

pytestmark = pytest.mark.e2e

VIEWER = TEST_KEY + "-viewer"


def _until(check: object, expected: object, seconds: float = 2.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + seconds
    while (got := check()) != expected:
        assert time.monotonic() < deadline, f"still {got!r}, wanted {expected!r}"
        time.sleep(0.05)


def test_provider_lifecycle(stack: Gateway, backup_upstream: FakeUpstream) -> None:
    body = {
        "name": "lifecycle",
        "type": "openai",
        "base_url": backup_upstream.url,
        "api_key_env": "GANDALF_TEST_SECOND_KEY",
    }
    created = admin_call(stack, "POST", "/providers", body)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/admin/v1/providers/lifecycle"
    assert created.json()["id"] == "lifecycle"  # id defaults to the name
    assert admin_call(stack, "POST", "/providers", body).status_code == 409

    replaced = admin_call(
        stack, "PUT", "/providers/lifecycle", {**body, "models": ["lc-model"], "priority": 5}
    )
    assert replaced.status_code == 200
    assert replaced.json()["models"] == ["lc-model"] and replaced.json()["priority"] == 5
    _until(lambda: chat_status(stack, TEST_KEY, model="lc-model"), 200)

    assert admin_call(stack, "DELETE", "/providers/lifecycle").status_code == 204
    assert admin_call(stack, "GET", "/providers/lifecycle").status_code == 404
    assert admin_call(stack, "DELETE", "/providers/lifecycle").status_code == 404
    assert admin_call(stack, "PUT", "/providers/lifecycle", body).status_code == 404
    _until(lambda: chat_status(stack, TEST_KEY, model="lc-model"), 404)


def test_provider_bodies_are_checked(stack: Gateway) -> None:
    no_name = admin_call(stack, "POST", "/providers", {"base_url": "http://x"})
    assert no_name.status_code == 400
    assert no_name.json()["error"]["message"] == "name is required"
    unknown = admin_call(stack, "POST", "/providers", {"name": "acme"})  # type defaults to name
    assert unknown.status_code == 400
    assert "unknown provider type 'acme'" in unknown.json()["error"]["message"]
    # a secret has no field: the request is refused rather than the key silently dropped
    secret = admin_call(stack, "POST", "/providers", {"name": "openai", "api_key": "sk-live-1"})
    assert secret.status_code == 400
    assert "sk-live-1" not in secret.text
    assert admin_call(stack, "GET", "/providers/openai").status_code == 404


def test_provider_and_route_lists(stack: Gateway) -> None:
    everything = admin_call(stack, "GET", "/providers").json()
    assert [p["id"] for p in everything["data"]] == ["fake"]
    assert everything["pagination"] == {"offset": 0, "limit": 1, "total": 1}
    assert all("api_key" not in p for p in everything["data"])
    for alias in ("list-a", "list-b"):
        route = {"model_alias": alias, "targets": [{"provider_id": "fake", "model": "m"}]}
        assert admin_call(stack, "POST", "/routes", route).status_code == 201
    paged = admin_call(stack, "GET", "/routes?limit=1&offset=1").json()
    assert paged["pagination"]["limit"] == 1 and paged["pagination"]["offset"] == 1
    total = paged["pagination"]["total"]
    assert total >= 3 and len(paged["data"]) == 1
    aliases = [r["model_alias"] for r in admin_call(stack, "GET", "/routes").json()["data"]]
    assert aliases == sorted(aliases) and len(aliases) == total


def test_route_replace_and_errors(stack: Gateway) -> None:
    route = {"model_alias": "replace-me", "targets": [{"provider_id": "fake", "model": "one"}]}
    route_id = admin_call(stack, "POST", "/routes", route).json()["id"]
    assert len(route_id) == 36  # a UUID
    changed = {**route, "targets": [{"provider_id": "fake", "model": "two"}], "cache_ttl_s": 30}
    replaced = admin_call(stack, "PUT", f"/routes/{route_id}", changed).json()
    assert replaced["targets"][0]["model"] == "two" and replaced["cache_ttl_s"] == 30
    assert admin_call(stack, "GET", f"/routes/{route_id}").json() == replaced
    assert admin_call(stack, "GET", "/routes/no-such-route").status_code == 404
    assert admin_call(stack, "PUT", "/routes/no-such-route", route).status_code == 404
    for bad in (
        {**route, "strategy": "random"},
        {**route, "cache_ttl_s": -1},
        {**route, "targets": [{"provider_id": "", "model": "x"}]},
        {**route, "targets": "fake"},
    ):
        response = admin_call(stack, "PUT", f"/routes/{route_id}", bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["type"] == "invalid_request_error"
    taken = admin_call(stack, "PUT", f"/routes/{route_id}", {**route, "model_alias": "chat"})
    assert taken.status_code == 409


def test_not_json_and_wrong_methods(stack: Gateway) -> None:
    response = httpx.post(
        f"{stack.base}/admin/v1/keys",
        content=b"{not json",
        headers={"authorization": "Bearer gnd_admin-bootstrap-key-000000000000000000000000"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "invalid request body"
    assert admin_call(stack, "PATCH", "/keys").status_code == 405
    assert admin_call(stack, "GET", "/nothing-here").status_code == 404


def test_key_changes_reach_the_data_plane(stack: Gateway) -> None:
    created = admin_call(stack, "POST", "/keys", {"role": "viewer", "allowed_models": ["m1"]})
    key, key_id = created.json()["key"], created.json()["id"]
    assert created.json()["allowed_models"] == ["m1"]
    assert chat_status(stack, key) == 403  # a viewer may not use models; nor may chat be used
    assert admin_call(stack, "PUT", f"/keys/{key_id}", {"role": "member"}).status_code == 200
    assert chat_status(stack, key) == 403  # `chat` is still outside the allowlist
    assert admin_call(stack, "PUT", f"/keys/{key_id}", {"allowed_models": None}).status_code == 200
    assert chat_status(stack, key) == 200
    past = {"expires_at": "2020-01-01T00:00:00Z"}
    assert (
        admin_call(stack, "PUT", f"/keys/{key_id}", past)
        .json()["expires_at"]
        .startswith("2020-01-01")
    )
    with httpx.Client() as fresh:
        expired = fresh.post(
            f"{stack.url}/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {key}"},
        )
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "api key expired"
    assert admin_call(stack, "PUT", f"/keys/{key_id}", {"role": "root"}).status_code == 400
    assert admin_call(stack, "PUT", "/keys/no-such-key", {"blocked": True}).status_code == 404


def test_usage_endpoints(stack: Gateway) -> None:
    listing = admin_call(stack, "GET", "/usage?limit=1", key=VIEWER)
    assert listing.status_code == 200
    page = listing.json()
    assert page["pagination"]["offset"] == 0 and page["pagination"]["limit"] == 1
    assert len(page["data"]) == min(1, page["pagination"]["total"])
    summary = admin_call(stack, "GET", "/usage/summary?period=daily", key=VIEWER)
    assert summary.status_code == 200 and set(summary.json()) == {"data"}

    bad_since = admin_call(stack, "GET", "/usage?since=yesterday")
    assert bad_since.status_code == 400
    assert bad_since.json()["error"]["message"] == "invalid since format, use RFC3339"
    assert admin_call(stack, "GET", "/usage/summary?until=soon").status_code == 400
    assert admin_call(stack, "GET", "/usage/summary?period=weekly").status_code == 400
    assert admin_call(stack, "GET", "/usage", key=TEST_KEY).status_code == 403
    outside = admin_call(stack, "GET", "/usage?org_id=default", key=OTHER_ORG_ADMIN)
    assert outside.status_code == 403
    assert admin_call(stack, "GET", "/usage", key=OTHER_ORG_ADMIN).status_code == 200


def test_viewer_reads_usage_but_nothing_else(stack: Gateway) -> None:
    for path in ("/keys", "/providers", "/routes"):
        assert admin_call(stack, "GET", path, key=VIEWER).status_code == 403, path
