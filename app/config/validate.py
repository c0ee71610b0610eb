"""Cross-field validation of parsed YAML into a `Config`, reporting every problem at once."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec

from app.config.convert import _Checker
from app.config.environment import CONTROL_URL_ENV_VAR, REDIS_URL_ENV_VAR
from app.config.errors import ConfigError, ConfigProblem
from app.config.expand import _Expander
from app.config.schema import (
    _LISTS,
    _SECTIONS,
    KEY_PREFIX,
    PROVIDER_TYPES,
    Config,
    DatabaseConfig,
    KeyConfig,
    PricingConfig,
    ProviderConfig,
    RedisConfig,
    RouteConfig,
    RouteTarget,
    ServerConfig,
    _split_addr,
)
from app.pricing import Price, check_model_pattern


def _secret_unset(expander: _Expander, path: str, *fields: str) -> str | None:
    """The unset variable behind one of the secret `fields` of the item at `path`, if any."""
    for field in fields:
        names = expander.unset.get(f"{path}.{field}")
        if names:
            return names[0]
    return None


def _name_of(item: Any, fallback: str) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) and name else fallback


class _Providers:
    """Providers in three sets: usable, skipped on purpose (name → why), and every name written.

    Every name written, valid or not, so a route naming a broken provider isn't reported twice.
    """

    def __init__(self) -> None:
        self.usable: list[ProviderConfig] = []
        self.skipped: dict[str, str] = {}
        self.written: set[str] = set()


def _providers(check: _Checker, items: list[Any]) -> _Providers:
    found = _Providers()
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"providers[{i}]"
        name = _name_of(item, path)
        found.written.add(name)
        disabled = isinstance(item, dict) and item.get("enabled") in (False, "false")
        var = _secret_unset(check.expander, path, "api_key", "auth.api_key")
        if disabled:
            found.skipped[name] = "disabled"
        elif var is not None:
            check.warnings.append(f"provider '{name}' skipped: {var} is not set")
            found.skipped[name] = "skipped"
        else:
            check.report_unset(path)
        provider = check.convert(item, ProviderConfig, path)
        if provider is None:
            continue
        if not provider.name:
            check.problem(f"{path}.name", "must not be empty")
            continue
        if provider.name in seen:
            check.problem(
                f"{path}.name",
                f"duplicate provider name '{provider.name}' "
                f"(also providers[{seen[provider.name]}])",
            )
            continue
        seen[provider.name] = i
        if _check_provider(check, provider, path, usable=name not in found.skipped):
            found.usable.append(provider)
    return found


def _check_provider(check: _Checker, provider: ProviderConfig, path: str, *, usable: bool) -> bool:
    """Report what is wrong with one provider; True when it is usable and has no problem."""
    before = len(check.problems)
    kind = provider.resolved_type
    if kind not in PROVIDER_TYPES:
        check.problem(
            f"{path}.type",
            f"unknown provider type '{kind}' (expected one of: {', '.join(PROVIDER_TYPES)})",
        )
    if not usable:  # skipped: its settings may lean on the variables that are missing
        return False
    if kind in PROVIDER_TYPES and not _is_http_url(provider.resolved_base_url):
        check.problem(f"{path}.base_url", "must be an http:// or https:// URL")
    if provider.hosting == "azure" and not provider.base_url:
        check.problem(f"{path}.base_url", "required for hosting 'azure'")
    if provider.hosting == "vertex":
        for field in ("project", "region"):
            if not getattr(provider, field):
                check.problem(f"{path}.{field}", "required for hosting 'vertex'")
    if provider.hosting == "bedrock" and not provider.region:
        check.problem(f"{path}.region", "required for hosting 'bedrock'")
    if provider.connect_timeout <= 0:
        check.problem(f"{path}.connect_timeout", "must be positive")
    return len(check.problems) == before


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError:
        return ""


def _routes(check: _Checker, items: list[Any], providers: _Providers) -> list[RouteConfig]:
    routes: list[RouteConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"routes[{i}]"
        check.report_unset(path)
        raw_targets = item.get("targets") if isinstance(item, dict) else None
        if isinstance(raw_targets, list):
            route = check.convert({**item, "targets": []}, RouteConfig, path)
            if not raw_targets:
                check.problem(f"{path}.targets", "must name at least one target")
        else:  # conversion reports the missing or misshapen `targets`
            route = check.convert(item, RouteConfig, path)
            raw_targets = []
        alias = route.model_alias if route is not None else path
        targets = _targets(check, raw_targets, path, providers, alias)
        if route is None:
            continue
        if not route.model_alias:
            check.problem(f"{path}.model_alias", "must not be empty")
        elif route.model_alias in seen:
            check.problem(
                f"{path}.model_alias",
                f"duplicate alias '{route.model_alias}' (also routes[{seen[route.model_alias]}])",
            )
        elif targets:
            seen[route.model_alias] = i
            routes.append(msgspec.structs.replace(route, targets=tuple(targets)))
        else:
            seen[route.model_alias] = i
            check.warnings.append(f"route '{route.model_alias}' dropped: no usable target")
    return routes


def _targets(
    check: _Checker, items: list[Any], path: str, providers: _Providers, alias: str
) -> list[RouteTarget]:
    """A route's usable targets; each bad one is reported with its own index."""
    usable = {p.name for p in providers.usable}
    targets: list[RouteTarget] = []
    for j, item in enumerate(items):
        where = f"{path}.targets[{j}]"
        target = check.convert(item, RouteTarget, where)
        if target is None:
            continue
        if not target.model:
            check.problem(f"{where}.model", "must not be empty")
        if target.provider in usable:
            targets.append(target)
        elif target.provider in providers.skipped:
            check.warnings.append(
                f"route '{alias}': target '{target.provider}' dropped "
                f"(provider {providers.skipped[target.provider]})"
            )
        elif target.provider not in providers.written:
            check.problem(f"{where}.provider", f"unknown provider '{target.provider}'")
    return targets


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _keys(check: _Checker, items: list[Any]) -> list[KeyConfig]:
    keys: list[KeyConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"keys[{i}]"
        name = _name_of(item, path)
        var = _secret_unset(check.expander, path, "key")
        if var is not None:
            check.warnings.append(f"key '{name}' skipped: {var} is not set")
        else:
            check.report_unset(path)
        key = check.convert(item, KeyConfig, path)
        if key is None or var is not None:
            continue
        if not key.key:
            check.warnings.append(f"key '{name}' skipped: the key is empty")
            continue
        if not key.key.startswith(KEY_PREFIX):
            check.problem(f"{path}.key", f"must start with '{KEY_PREFIX}'")
        elif key.key in seen:
            check.problem(f"{path}.key", f"duplicate key (also keys[{seen[key.key]}])")
        seen.setdefault(key.key, i)
        if key.expires_at is not None and not _is_rfc3339(key.expires_at):
            check.problem(f"{path}.expires_at", "must be an RFC3339 time (2027-01-01T00:00:00Z)")
        keys.append(key)
    return keys


def _is_rfc3339(text: str) -> bool:
    if not _RFC3339.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _check_server(check: _Checker, server: ServerConfig) -> None:
    for field in ("addr", "admin_addr"):
        try:
            _split_addr(getattr(server, field))
        except ValueError:
            check.problem(f"server.{field}", "must be host:port with a port from 1 to 65535")
    if server.control_url and not _is_http_url(server.control_url):
        check.problem("server.control_url", "must be an http:// or https:// URL")
    if server.keepalive_interval <= 0:
        check.problem("server.keepalive_interval", "must be positive")


def _check_redis(check: _Checker, redis: RedisConfig) -> None:
    if redis.url and _scheme(redis.url) not in ("redis", "rediss", "unix"):
        check.problem("redis.url", "must be a redis://, rediss:// or unix:// URL")
    if not redis.key_prefix or any(c in redis.key_prefix for c in "{} "):
        check.problem("redis.key_prefix", "must be non-empty, without spaces or braces")


def _check_database(check: _Checker, database: DatabaseConfig) -> None:
    if not database.dsn:
        check.problem("database.dsn", "must not be empty")


def _check_pricing(check: _Checker, pricing: PricingConfig) -> None:
    if not pricing.version:
        check.problem("pricing.version", "must not be empty")


_SECTION_CHECKS: dict[str, Callable[[_Checker, Any], None]] = {
    "server": _check_server,
    "redis": _check_redis,
    "database": _check_database,
    "pricing": _check_pricing,
}


def _pricing(check: _Checker, value: Any) -> PricingConfig | None:
    """The pricing section, each model's prices converted on its own.

    msgspec locates a problem inside a mapping value as `models[...]`, dropping the model's
    name; converting entry by entry keeps it: `pricing.models.gpt-4o.input`.
    """
    models = value.get("models") if isinstance(value, dict) else None
    if not isinstance(models, dict | None):
        return check.convert(value, PricingConfig, "pricing")  # reports a misshapen `models`
    section = check.convert({**value, "models": {}}, PricingConfig, "pricing")
    prices: dict[str, Price] = {}
    for name, item in (models or {}).items():
        where = f"pricing.models.{name}"
        reason = check_model_pattern(name) if isinstance(name, str) else "must be a model name"
        if reason is not None:
            check.problem(where, reason)
        price = check.convert(item, Price, where)
        if price is not None and reason is None:
            prices[name] = price
    return None if section is None else msgspec.structs.replace(section, models=prices)


def _sections(check: _Checker, data: dict[Any, Any]) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name in _SECTIONS:
            check.report_unset(name)
            given = {} if value is None else value
            section: msgspec.Struct | None = (
                _pricing(check, given)
                if name == "pricing"
                else check.convert(given, _SECTIONS[name], name)
            )
            if section is not None:
                if name in _SECTION_CHECKS:
                    _SECTION_CHECKS[name](check, section)
                sections[name] = section
        elif name not in _LISTS:
            expected = ", ".join([*_SECTIONS, *_LISTS])
            check.problem(str(name), f"unknown section (expected one of: {expected})")
    return sections


def _scrub(text: str, secrets: set[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _secrets(data: dict[Any, Any]) -> set[str]:
    """Every provider and key secret in the file, to keep them out of every message."""
    auth = data.get("auth")
    admin_key = auth.get("admin_key") if isinstance(auth, dict) else None
    found = {admin_key} if isinstance(admin_key, str) and len(admin_key) >= 8 else set()
    for section, fields in (("providers", ("api_key", "auth")), ("keys", ("key",))):
        items = data.get(section)
        for item in items if isinstance(items, list) else []:
            for field in fields:
                value = item.get(field) if isinstance(item, dict) else None
                if isinstance(value, dict):
                    value = value.get("api_key")
                if isinstance(value, str) and len(value) >= 8:
                    found.add(value)
    return found


def build_config(
    data: Any,
    file: str,
    environ: Mapping[str, str],
    problems: list[ConfigProblem] | None = None,
) -> tuple[Config, list[str]]:
    """Validate parsed YAML (`None` = an empty file); returns (config, warnings).

    Raises:
        ConfigError: listing every problem found, with `problems` (from parsing) first.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        found = ConfigProblem(file, "", "the top level must be a mapping of sections")
        raise ConfigError([*(problems or []), found])
    expander = _Expander(environ)
    data = expander.expand(data, "")
    check = _Checker(file, expander)
    check.problems.extend(problems or [])
    for path in expander.malformed:
        check.problem(path, "malformed variable reference (write ${NAME} or ${NAME:-default})")
    sections = _sections(check, data)
    lists: dict[str, list[Any]] = {}
    for name in _LISTS:
        value = data.get(name)
        if value is not None and not isinstance(value, list):
            check.problem(name, "must be a list")
        lists[name] = value if isinstance(value, list) else []
    providers = _providers(check, lists["providers"])
    routes = _routes(check, lists["routes"], providers)
    keys = _keys(check, lists["keys"])
    secrets = _secrets(data)
    if check.problems:
        raise ConfigError(
            [msgspec.structs.replace(p, reason=_scrub(p.reason, secrets)) for p in check.problems]
        )
    config = Config(
        **sections, providers=tuple(providers.usable), routes=tuple(routes), keys=tuple(keys)
    )
    warnings = [_scrub(w, secrets) for w in check.warnings]
    return _environment_overrides(config, environ), warnings


def _environment_overrides(config: Config, environ: Mapping[str, str]) -> Config:
    """Settings the supervisor hands to the data plane it starts."""
    redis_url = environ.get(REDIS_URL_ENV_VAR)
    control_url = environ.get(CONTROL_URL_ENV_VAR)
    if redis_url:
        config = msgspec.structs.replace(
            config, redis=msgspec.structs.replace(config.redis, url=redis_url)
        )
    if control_url:
        config = msgspec.structs.replace(
            config, server=msgspec.structs.replace(config.server, control_url=control_url)
        )
    return config
