"""Seed the database from the configuration file: insert what is absent, never overwrite.

Runs at every start and is idempotent, as in Gandalf: providers are matched by name (= id),
routes by model alias, keys by hash; what the admin API changed since is left alone. Unlike
Gandalf it honours a key's `allowed_models`, and creates the organization or team a key names
when it does not exist yet instead of failing on the foreign key. Plaintext keys are hashed
here and never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import apsw
import msgspec

from storage import keys, orgs, providers, routes
from storage.errors import NotFound
from storage.records import ProviderRecord, RouteRecord, RouteTarget


class ProviderSeed(Protocol):
    """What seeding reads from a provider of the configuration (`app.config.ProviderConfig`)."""

    @property
    def name(self) -> str: ...
    @property
    def resolved_type(self) -> str: ...
    @property
    def resolved_base_url(self) -> str: ...
    @property
    def models(self) -> Sequence[str]: ...
    @property
    def priority(self) -> int: ...
    @property
    def weight(self) -> int: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def max_rps(self) -> int: ...
    @property
    def timeout_ms(self) -> int: ...
    @property
    def hosting(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def api_version(self) -> str: ...


class TargetSeed(Protocol):
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def weight(self) -> int: ...


class RouteSeed(Protocol):
    @property
    def model_alias(self) -> str: ...
    @property
    def targets(self) -> Sequence[TargetSeed]: ...
    @property
    def strategy(self) -> str: ...
    @property
    def cache_ttl_s(self) -> int: ...


class KeySeed(Protocol):
    """What seeding reads from a key of the configuration (`app.config.KeyConfig`)."""

    @property
    def name(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def org_id(self) -> str: ...
    @property
    def team_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def allowed_models(self) -> Sequence[str]: ...
    @property
    def rpm_limit(self) -> int | None: ...
    @property
    def tpm_limit(self) -> int | None: ...
    @property
    def max_budget(self) -> float | None: ...
    @property
    def budget_period(self) -> str: ...
    @property
    def expires_at(self) -> str | None: ...


class SeedReport(msgspec.Struct, kw_only=True):
    """How many rows seeding created, and how many it found already there."""

    providers: int = 0
    routes: int = 0
    keys: int = 0
    existing: int = 0
    skipped_keys: int = 0
    """Keys with an empty plaintext (an unset `${VAR}`)."""


def seed_from_config(
    conn: apsw.Connection,
    provider_seeds: Sequence[ProviderSeed],
    route_seeds: Sequence[RouteSeed],
    key_seeds: Sequence[KeySeed],
) -> SeedReport:
    """Insert the configured providers, routes and keys that are absent; run in one write."""
    report = SeedReport()
    for p in provider_seeds:
        if _provider_exists(conn, p.name):
            report.existing += 1
            continue
        providers.create_provider(conn, _provider(p))
        report.providers += 1
    for r in route_seeds:
        if routes.get_route_by_alias(conn, r.model_alias) is not None:
            report.existing += 1
            continue
        routes.create_route(conn, _route(r))
        report.routes += 1
    for k in key_seeds:
        if not k.key:
            report.skipped_keys += 1
        elif _seed_key(conn, k):
            report.keys += 1
        else:
            report.existing += 1
    return report


def seed_admin_key(conn: apsw.Connection, plaintext: str) -> bool:
    """The `GANDALF_ADMIN_KEY` bootstrap: an admin key in org `default`, once; True if created."""
    key_hash = keys.hash_key(plaintext)
    if keys.get_key_by_hash(conn, key_hash) is not None:
        return False
    keys.create_key(
        conn,
        key_hash=key_hash,
        key_prefix=keys.key_prefix(plaintext),
        org_id="default",
        role="admin",
        name="bootstrap-admin",
    )
    return True


def _provider_exists(conn: apsw.Connection, provider_id: str) -> bool:
    try:
        providers.get_provider(conn, provider_id)
    except NotFound:
        return False
    return True


def _provider(p: ProviderSeed) -> ProviderRecord:
    return ProviderRecord(
        id=p.name,
        name=p.name,
        type=p.resolved_type,
        base_url=p.resolved_base_url,
        models=list(p.models),
        priority=p.priority,
        weight=p.weight,
        enabled=p.enabled,
        max_rps=p.max_rps,
        timeout_ms=p.timeout_ms,
        hosting=p.hosting,
        region=p.region,
        project=p.project,
        api_version=p.api_version,
    )


def _route(r: RouteSeed) -> RouteRecord:
    return RouteRecord(
        id="",
        model_alias=r.model_alias,
        targets=[
            RouteTarget(provider_id=t.provider, model=t.model, priority=t.priority, weight=t.weight)
            for t in r.targets
        ],
        strategy=r.strategy,
        cache_ttl_s=r.cache_ttl_s,
    )


def _seed_key(conn: apsw.Connection, k: KeySeed) -> bool:
    key_hash = keys.hash_key(k.key)
    if keys.get_key_by_hash(conn, key_hash) is not None:
        return False
    orgs.ensure_org(conn, k.org_id)
    if k.team_id:
        orgs.ensure_team(conn, k.team_id, k.org_id)
    keys.create_key(
        conn,
        key_hash=key_hash,
        key_prefix=keys.key_prefix(k.key),
        org_id=k.org_id,
        role=k.role,
        name=k.name,
        user_id=k.user_id or None,
        team_id=k.team_id or None,
        allowed_models=list(k.allowed_models) or None,
        rpm_limit=k.rpm_limit,
        tpm_limit=k.tpm_limit,
        max_budget=k.max_budget,
        # A seed from before `budget_period` existed gets the column's default.
        budget_period=getattr(k, "budget_period", "monthly"),
        expires_at=k.expires_at,
    )
    return True
