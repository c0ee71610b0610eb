"""The configuration the data plane serves from, as a `ConfigSnapshot`.

Workers of `gandalf serve` without Redis build it from their YAML file; with a control plane
they read the one it publishes. Either way the rest of the worker sees one shape.
"""

from __future__ import annotations

from app.config import Config, ProviderConfig
from app.domain import ConfigSnapshot, ProviderSettings, RouteSettings, TargetSettings


def provider_settings(provider: ProviderConfig) -> ProviderSettings:
    return ProviderSettings(
        name=provider.name,
        type=provider.resolved_type,
        base_url=provider.resolved_base_url,
        models=tuple(provider.models),
        priority=provider.priority,
        weight=provider.weight,
        enabled=provider.enabled,
        timeout_ms=provider.timeout_ms,
        connect_timeout_ms=round(provider.connect_timeout * 1000),
        hosting=provider.hosting,
        region=provider.region,
        project=provider.project,
        api_version=provider.api_version,
        auth_type=provider.auth_type,
        credentials_file=provider.auth.credentials_file if provider.auth is not None else "",
    )


def snapshot_from_config(config: Config, version: int = 0) -> ConfigSnapshot:
    """Providers (enabled ones) and routes of a loaded configuration."""
    return ConfigSnapshot(
        version=version,
        providers=tuple(provider_settings(p) for p in config.providers if p.enabled),
        routes=tuple(
            RouteSettings(
                model_alias=route.model_alias,
                targets=tuple(
                    TargetSettings(
                        provider=t.provider, model=t.model, priority=t.priority, weight=t.weight
                    )
                    for t in route.targets
                ),
                cache_ttl_s=route.cache_ttl_s,
            )
            for route in config.routes
        ),
    )
