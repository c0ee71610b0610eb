"""workers/snapshots.py: key records to identities; the snapshot read from a real SQLite file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.domain import ConfigSnapshot, Identity, ProviderSettings, RouteSettings, TargetSettings
from storage import keys, providers, routes
from storage.db import Database, config_version
from storage.records import KeyRecord, ProviderRecord, RouteRecord, RouteTarget
from workers.snapshots import identity_of, load_identities, load_snapshot


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open_sync(str(tmp_path / "g.db"))
    yield database
    database.close()


def _key(**fields: Any) -> KeyRecord:
    base: dict[str, Any] = {
        "id": "k1",
        "key_prefix": "gnd_AbCdEfGh",
        "org_id": "default",
        "role": "member",
        "blocked": False,
        "budget_period": "monthly",
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
    }
    return KeyRecord(**{**base, **fields})


def _provider(provider_id: str, **fields: Any) -> ProviderRecord:
    base: dict[str, Any] = {
        "id": provider_id,
        "name": provider_id,
        "type": "openai",
        "base_url": "https://api.openai.com/v1",
        "models": ["gpt-4o"],
        "priority": 0,
        "weight": 1,
        "enabled": True,
        "max_rps": 0,
        "timeout_ms": 30_000,
    }
    return ProviderRecord(**{**base, **fields})


def test_identity_of_maps_every_field() -> None:
    record = _key(
        id="key-1",
        key_prefix="gnd_12345678",
        org_id="acme",
        team_id="red",
        user_id="alice",
        role="admin",
        allowed_models=["gpt-4o", "claude"],
        rpm_limit=60,
        tpm_limit=10_000,
        max_budget=12.5,
        expires_at="2026-11-22T18:30:00.123Z",
        blocked=True,
        name="ignored: not part of an identity",
    )
    assert identity_of(record) == Identity(
        key_id="key-1",
        key_prefix="gnd_12345678",
        org_id="acme",
        team_id="red",
        user_id="alice",
        role="admin",
        allowed_models=frozenset({"gpt-4o", "claude"}),
        rpm_limit=60,
        tpm_limit=10_000,
        max_budget=12.5,
        expires_at=datetime(2026, 11, 22, 18, 30, 0, 123_000, tzinfo=UTC).timestamp(),
        blocked=True,
    )


def test_identity_of_fills_absent_optionals() -> None:
    identity = identity_of(_key())
    assert identity.team_id == ""
    assert identity.user_id == ""
    assert identity.allowed_models == frozenset()
    assert identity.may_use("any-model")
    assert (identity.rpm_limit, identity.tpm_limit, identity.max_budget) == (None, None, None)
    assert identity.expires_at is None
    assert identity.blocked is False


@pytest.mark.parametrize(
    ("expires_at", "epoch"),
    [
        ("2026-01-01T00:00:00.000Z", datetime(2026, 1, 1, tzinfo=UTC).timestamp()),
        ("2026-01-01T02:00:00+02:00", datetime(2026, 1, 1, tzinfo=UTC).timestamp()),
        ("1970-01-01T00:00:01Z", 1.0),
        (None, None),
        ("", None),
    ],
)
def test_identity_of_turns_expiry_into_epoch_seconds(
    expires_at: str | None, epoch: float | None
) -> None:
    assert identity_of(_key(expires_at=expires_at)).expires_at == epoch


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time zone set to UTC-10 (no DST), restored afterwards."""
    monkeypatch.setenv("TZ", "Pacific/Honolulu")
    time.tzset()
    assert time.timezone == 10 * 3600
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_identity_of_expiry_does_not_depend_on_the_local_time_zone() -> None:
    expires_at = identity_of(_key(expires_at="2026-01-01T00:00:00.000Z")).expires_at
    assert expires_at == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("allowed_models", "expected"),
    [(None, frozenset()), ([], frozenset()), (["a", "b", "a"], frozenset({"a", "b"}))],
)
def test_identity_of_allowed_models_become_a_frozenset(
    allowed_models: list[str] | None, expected: frozenset[str]
) -> None:
    assert identity_of(_key(allowed_models=allowed_models)).allowed_models == expected


def test_load_snapshot_of_an_empty_database(db: Database) -> None:
    snapshot = db.read_sync(load_snapshot)
    assert snapshot == ConfigSnapshot(version=db.read_sync(config_version))
    assert snapshot.version >= 1


def test_load_snapshot_reads_providers_and_routes(db: Database) -> None:
    db.write_sync(
        providers.create_provider,
        _provider(
            "azure-eu",
            name="Azure EU",
            models=["gpt-4o", "gpt-4o-mini"],
            priority=2,
            weight=5,
            enabled=False,
            timeout_ms=9_000,
            hosting="azure",
            region="westeurope",
            project="proj",
            api_version="2024-10-21",
            api_key_env="AZURE_KEY",
            max_rps=7,
        ),
    )
    db.write_sync(providers.create_provider, _provider("openai", models=[]))
    db.write_sync(
        routes.create_route,
        RouteRecord(
            id="r1",
            model_alias="smart",
            targets=[
                RouteTarget(provider_id="openai", model="gpt-4o", priority=0, weight=3),
                RouteTarget(provider_id="azure-eu", model="gpt-4o", priority=1),
            ],
            cache_ttl_s=60,
        ),
    )
    db.write_sync(
        routes.create_route,
        RouteRecord(
            id="r2", model_alias="cheap", targets=[RouteTarget(provider_id="o", model="m")]
        ),
    )

    snapshot = db.read_sync(load_snapshot)

    assert snapshot == ConfigSnapshot(
        version=db.read_sync(config_version),
        providers=(
            ProviderSettings(
                name="openai",
                type="openai",
                base_url="https://api.openai.com/v1",
                timeout_ms=30_000,
            ),
            ProviderSettings(
                # the id, not the display name: route targets refer to providers by id
                name="azure-eu",
                type="openai",
                base_url="https://api.openai.com/v1",
                models=("gpt-4o", "gpt-4o-mini"),
                priority=2,
                weight=5,
                enabled=False,
                timeout_ms=9_000,
                hosting="azure",
                region="westeurope",
                project="proj",
                api_version="2024-10-21",
                api_key_env="AZURE_KEY",
            ),
        ),
        routes=(
            RouteSettings(model_alias="cheap", targets=(TargetSettings(provider="o", model="m"),)),
            RouteSettings(
                model_alias="smart",
                targets=(
                    TargetSettings(provider="openai", model="gpt-4o", priority=0, weight=3),
                    TargetSettings(provider="azure-eu", model="gpt-4o", priority=1, weight=1),
                ),
                cache_ttl_s=60,
            ),
        ),
    )


def test_load_snapshot_carries_the_version_the_triggers_bump(db: Database) -> None:
    first = db.read_sync(load_snapshot).version
    db.write_sync(providers.create_provider, _provider("openai"))
    after_provider = db.read_sync(load_snapshot)
    assert after_provider.version > first

    route = db.write_sync(
        routes.create_route,
        RouteRecord(id="", model_alias="a", targets=[RouteTarget(provider_id="openai", model="m")]),
    )
    after_route = db.read_sync(load_snapshot).version
    assert after_route > after_provider.version

    db.write_sync(routes.update_route, RouteRecord(id=route.id, model_alias="b", targets=[]))
    after_update = db.read_sync(load_snapshot)
    assert after_update.version > after_route
    assert [r.model_alias for r in after_update.routes] == ["b"]

    db.write_sync(providers.delete_provider, "openai")
    after_delete = db.read_sync(load_snapshot)
    assert after_delete.version > after_update.version
    assert after_delete.providers == ()
    assert after_delete.version == db.read_sync(config_version)


def test_load_identities_pairs_each_hash_with_its_identity(db: Database) -> None:
    plaintext, key_hash, prefix = keys.generate_key()
    created = db.write_sync(
        keys.create_key,
        key_hash=key_hash,
        key_prefix=prefix,
        role="viewer",
        allowed_models=["gpt-4o"],
        expires_at="2030-01-01T00:00:00Z",
    )
    other = db.write_sync(keys.create_key, key_hash="f" * 64, key_prefix="gnd_other")

    identities = dict(db.read_sync(load_identities))

    assert identities == {
        key_hash: identity_of(created),
        "f" * 64: identity_of(other),
    }
    assert identities[key_hash].role == "viewer"
    assert identities[key_hash].allowed_models == frozenset({"gpt-4o"})
    assert identities[key_hash].expires_at == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert plaintext not in repr(identities)


def test_load_identities_of_no_keys(db: Database) -> None:
    assert db.read_sync(load_identities) == []
