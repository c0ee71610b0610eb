"""What the control plane publishes, read from SQLite: identities and the config snapshot."""

from __future__ import annotations

import apsw

from app.domain import ConfigSnapshot, Identity, ProviderSettings, RouteSettings, TargetSettings
from app.server.auth import epoch
from storage import keys
from storage.db import config_version
from storage.providers import all_providers
from storage.records import KeyRecord
from storage.routes import all_routes


def identity_of(record: KeyRecord) -> Identity:
    return Identity(
        key_id=record.id,
        key_prefix=record.key_prefix,
        org_id=record.org_id,
        team_id=record.team_id or "",
        user_id=record.user_id or "",
        role=record.role,
        allowed_models=frozenset(record.allowed_models or ()),
        rpm_limit=record.rpm_limit,
        tpm_limit=record.tpm_limit,
        max_budget=record.max_budget,
        budget_period=record.budget_period,
        expires_at=epoch(record.expires_at),
        blocked=record.blocked,
    )


def load_identities(conn: apsw.Connection) -> list[tuple[str, Identity]]:
    return [(key_hash, identity_of(record)) for key_hash, record in keys.all_keys(conn)]


def load_snapshot(conn: apsw.Connection) -> ConfigSnapshot:
    providers = tuple(
        ProviderSettings(
            name=p.id,
            type=p.type,
            base_url=p.base_url,
            models=tuple(p.models),
            priority=p.priority,
            weight=p.weight,
            enabled=p.enabled,
            timeout_ms=p.timeout_ms,
            hosting=p.hosting,
            region=p.region,
            project=p.project,
            api_version=p.api_version,
            api_key_env=p.api_key_env,
        )
        for p in all_providers(conn)
    )
    routes = tuple(
        RouteSettings(
            model_alias=r.model_alias,
            targets=tuple(
                TargetSettings(
                    provider=t.provider_id, model=t.model, priority=t.priority, weight=t.weight
                )
                for t in r.targets
            ),
            cache_ttl_s=r.cache_ttl_s,
        )
        for r in all_routes(conn)
    )
    return ConfigSnapshot(version=config_version(conn), providers=providers, routes=routes)
