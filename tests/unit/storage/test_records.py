"""storage/records.py: timestamps, model-list columns and the JSON the admin API sends."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from storage.errors import InvalidValue
from storage.records import (
    KeyRecord,
    Listing,
    Page,
    Pagination,
    ProviderRecord,
    RouteRecord,
    RouteTarget,
    UsageRecord,
    format_time,
    models_column,
    models_value,
    normalize_time,
    now,
    page,
)


def test_now_is_rfc3339_utc_with_milliseconds_and_z() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now())


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("2026-11-22T18:30:00Z", "2026-11-22T18:30:00.000Z"),
        ("2026-11-22T18:30:00.123456Z", "2026-11-22T18:30:00.123Z"),
        ("2026-11-22T20:30:00+02:00", "2026-11-22T18:30:00.000Z"),
        ("2026-11-22T18:30:00", "2026-11-22T18:30:00.000Z"),
        ("2026-11-22", "2026-11-22T00:00:00.000Z"),
    ],
)
def test_normalize_time(value: str, stored: str) -> None:
    assert normalize_time(value) == stored


def test_normalize_time_rejects_garbage() -> None:
    with pytest.raises(InvalidValue, match="RFC3339"):
        normalize_time("yesterday")


def test_format_time_converts_offsets() -> None:
    moment = datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert format_time(moment) == "2026-01-01T00:00:00.000Z"
    assert format_time(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("models", "column"), [(None, None), ([], None), (["a", "b"], '["a","b"]'), (("x",), '["x"]')]
)
def test_models_column_stores_empty_as_null(models: list[str] | None, column: str | None) -> None:
    assert models_column(models) == column


@pytest.mark.parametrize(("column", "models"), [(None, None), ("[]", None), ('["a"]', ["a"])])
def test_models_value(column: str | None, models: list[str] | None) -> None:
    assert models_value(column) == models


def _key(**changes: object) -> KeyRecord:
    base = KeyRecord(
        id="k1",
        key_prefix="gnd_AbCdEfGh",
        org_id="default",
        role="member",
        blocked=False,
        budget_period="monthly",
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )
    return msgspec.structs.replace(base, **changes)


def test_key_json_always_has_required_fields_and_omits_empty_ones() -> None:
    body = msgspec.json.decode(msgspec.json.encode(_key()))
    assert body == {
        "id": "k1",
        "key_prefix": "gnd_AbCdEfGh",
        "org_id": "default",
        "role": "member",
        "blocked": False,
        "budget_period": "monthly",
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
    }
    full = msgspec.json.decode(msgspec.json.encode(_key(allowed_models=["m"], rpm_limit=5)))
    assert full["allowed_models"] == ["m"]
    assert full["rpm_limit"] == 5


def test_key_record_has_no_hash_field() -> None:
    assert "key_hash" not in KeyRecord.__struct_fields__


def test_provider_json_always_has_the_routing_fields() -> None:
    record = ProviderRecord(
        id="p",
        name="p",
        type="openai",
        base_url="",
        models=[],
        priority=0,
        weight=1,
        enabled=True,
        max_rps=0,
        timeout_ms=1000,
    )
    body = msgspec.json.decode(msgspec.json.encode(record))
    assert set(body) == {
        "id", "name", "type", "base_url", "models", "priority", "weight", "enabled", "max_rps",
        "timeout_ms",
    }  # fmt: skip


def test_route_json_keeps_default_target_fields() -> None:
    route = RouteRecord(
        id="r", model_alias="chat", targets=[RouteTarget(provider_id="p", model="m")]
    )
    body = msgspec.json.decode(msgspec.json.encode(route))
    assert body["targets"] == [{"provider_id": "p", "model": "m", "priority": 0, "weight": 1}]
    assert body["strategy"] == "priority"
    assert body["cache_ttl_s"] == 0


def test_usage_json_omits_zero_cost_and_empty_user_and_team() -> None:
    record = UsageRecord(
        request_id="r1",
        key_id="k1",
        org_id="default",
        model="chat",
        prompt_tokens=0,
        completion_tokens=0,
        total_tokens=0,
        cached=False,
        latency_ms=1,
        status_code=200,
        usage_source="provider",
        created_at="2026-01-01T00:00:00.000Z",
    )
    body = msgspec.json.decode(msgspec.json.encode(record))
    assert "cost_usd" not in body
    assert "user_id" not in body
    assert "team_id" not in body
    assert body["prompt_tokens"] == 0


def test_list_envelopes() -> None:
    assert msgspec.json.decode(msgspec.json.encode(page(["a"], 0, 50, 1))) == {
        "data": ["a"],
        "pagination": {"offset": 0, "limit": 50, "total": 1},
    }
    assert page([1], 2, 3, 4) == Page([1], Pagination(2, 3, 4))
    assert msgspec.json.encode(Listing([1, 2])) == b'{"data":[1,2]}'
