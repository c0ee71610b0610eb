"""Configuration: Gandalf's YAML schema, `${VAR}` expansion, and validation.

Validation reports every problem at once, each with its file, field path and reason.

The only module that reads the environment. Over 400 lines because the schema, its defaults
and its documentation (attribute docstrings) belong together.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec
import yaml

CONFIG_ENV_VAR = "GANDALF_CONFIG"
REDIS_URL_ENV_VAR = "GANDALF_REDIS_URL"
CONTROL_URL_ENV_VAR = "GANDALF_CONTROL_URL"
ADMIN_KEY_ENV_VAR = "GANDALF_ADMIN_KEY"
PROVIDER_TYPES = ("anthropic", "gemini", "ollama", "openai")
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
    "ollama": "http://localhost:11434",
}


class ConfigProblem(msgspec.Struct, frozen=True):
    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.reason}"


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go duration string → seconds: `300ms`, `30s`, `5m`, `1h30m`, `1.5s`, `0`."""
    text = text.strip()
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"invalid duration '{text}'")
    return total


class Duration(float):
    """Seconds, written in YAML as a Go duration string (`30s`)."""


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every configuration section."""


class ServerConfig(_Section, frozen=True):
    addr: str = ":8080"
    """Listen address, Go style `host:port`; an empty host listens on every interface."""
    read_timeout: Duration = Duration(30)
    """Kept for compatibility with Gandalf."""
    write_timeout: Duration = Duration(120)
    """Kept for compatibility with Gandalf; streams are never cut by it."""
    shutdown_timeout: Duration = Duration(30)
    """How long SIGTERM waits for in-flight requests before the workers are stopped."""
    workers: int = 0
    """Data-plane worker processes; 0 = one per CPU."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body accepted (400 above it)."""
    keepalive_interval: Duration = Duration(15)
    """SSE `: keep-alive` comment after this much silence, also before the first token."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """auto = console on a terminal, JSON lines otherwise."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    admin_addr: str = "127.0.0.1:8081"
    """Where the supervisor serves the admin API (the data plane forwards /admin/v1 to it)."""
    control_url: str = ""
    """URL of the supervisor's admin API as seen by the data plane; empty = from admin_addr."""

    @property
    def host(self) -> str:
        return _split_addr(self.addr)[0]

    @property
    def port(self) -> int:
        return _split_addr(self.addr)[1]

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return (host or "0.0.0.0"), int(port)  # noqa: S104 - Go's ":8080" means every interface


class RedisConfig(_Section, frozen=True):
    url: str = ""
    """redis://, rediss:// or unix://; empty = `gandalf run` starts an embedded server."""
    key_prefix: str = "gandalf"


class DatabaseConfig(_Section, frozen=True):
    dsn: str = "gandalf.db"
    """SQLite file of the control plane (`:memory:` for tests)."""


class AuthConfig(_Section, frozen=True):
    admin_key: str = ""
    """Kept for compatibility (unused, as in Gandalf); use GANDALF_ADMIN_KEY or `keys:`."""


class RateLimitConfig(_Section, frozen=True):
    default_rpm: int = 60
    """Requests per minute for keys without their own limit; 0 = unlimited."""
    default_tpm: int = 100_000
    """Tokens per minute for keys without their own limit; 0 = unlimited."""


class CacheConfig(_Section, frozen=True):
    enabled: bool = True
    max_size: int = 10_000
    default_ttl: Duration = Duration(300)


class CircuitBreakerConfig(_Section, frozen=True):
    enabled: bool = False
    error_threshold: float = 0.30
    min_samples: int = 10
    window_seconds: int = 60
    open_timeout: Duration = Duration(30)


class MetricsConfig(_Section, frozen=True):
    enabled: bool = False


class TracingConfig(_Section, frozen=True):
    enabled: bool = False
    endpoint: str = "localhost:4317"
    sample_rate: float = 0.1


class TelemetryConfig(_Section, frozen=True):
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()


class ProviderAuthConfig(_Section, frozen=True):
    type: Literal["", "api_key", "gcp_oauth", "aws_sigv4"] = ""
    api_key: str = ""
    credentials_file: str = ""


class ProviderConfig(_Section, frozen=True):
    name: str
    """Instance name (`openai-us`): what route targets refer to."""
    type: str = ""
    """Wire format: openai, anthropic, gemini, ollama; defaults to `name`."""
    base_url: str = ""
    """Defaults to the provider's public API."""
    api_key: str = ""
    models: tuple[str, ...] = ()
    """Models that route to this provider directly when no route names them."""
    priority: int = 0
    weight: int = 1
    max_rps: int = 0
    timeout_ms: int = 120_000
    """Longest wait for the upstream's next bytes (response head or stream chunk); never a cap
    on a whole stream."""
    connect_timeout: Duration = Duration(5)
    enabled: bool = True
    hosting: Literal["", "azure", "vertex", "bedrock"] = ""
    region: str = ""
    project: str = ""
    api_version: str = ""
    """Azure OpenAI `api-version`."""
    auth: ProviderAuthConfig | None = None

    @property
    def resolved_type(self) -> str:
        return self.type or self.name

    @property
    def resolved_base_url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URLS.get(self.resolved_type, "")).rstrip("/")

    @property
    def resolved_api_key(self) -> str:
        return (self.auth.api_key if self.auth and self.auth.api_key else "") or self.api_key

    @property
    def auth_type(self) -> str:
        if self.auth and self.auth.type:
            return self.auth.type
        return {"vertex": "gcp_oauth", "bedrock": "aws_sigv4"}.get(self.hosting, "api_key")


class RouteTarget(_Section, frozen=True):
    provider: str
    model: str
    priority: int = 0
    """Lower is tried first."""
    weight: int = 1
    """Share of traffic among targets of equal priority."""


class RouteConfig(_Section, frozen=True):
    model_alias: str
    targets: tuple[RouteTarget, ...]
    strategy: Literal["priority"] = "priority"
    cache_ttl_s: int = 0


class KeyConfig(_Section, frozen=True):
    name: str = ""
    key: str = ""
    """Plaintext `gnd_…` key, usually `${VAR}`; stored only as its SHA-256 hash."""
    org_id: str = "default"
    team_id: str = ""
    user_id: str = ""
    role: Literal["admin", "member", "viewer", "service_account"] = "member"
    allowed_models: tuple[str, ...] = ()
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget: float | None = None
    expires_at: str | None = None
    """RFC3339."""


class Config(_Section, frozen=True):
    server: ServerConfig = ServerConfig()
    redis: RedisConfig = RedisConfig()
    database: DatabaseConfig = DatabaseConfig()
    auth: AuthConfig = AuthConfig()
    rate_limits: RateLimitConfig = RateLimitConfig()
    cache: CacheConfig = CacheConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    providers: tuple[ProviderConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    keys: tuple[KeyConfig, ...] = ()


_SECTIONS: dict[str, type[_Section]] = {
    "server": ServerConfig,
    "redis": RedisConfig,
    "database": DatabaseConfig,
    "auth": AuthConfig,
    "rate_limits": RateLimitConfig,
    "cache": CacheConfig,
    "circuit_breaker": CircuitBreakerConfig,
    "telemetry": TelemetryConfig,
}
_LISTS: dict[str, type[_Section]] = {
    "providers": ProviderConfig,
    "routes": RouteConfig,
    "keys": KeyConfig,
}
S = TypeVar("S", bound=_Section)


class _Unset(str):
    """A string that was an unset `${VAR}`; `name` is the variable."""

    name: str


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, environ) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    expanded = _VAR.sub(substitute, value)
    if missing:
        unset = _Unset(expanded)
        unset.name = missing[0]
        return unset
    return expanded


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Duration:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Duration(value)
        if isinstance(value, str):
            return Duration(parse_duration(value))
        raise ValueError(f"invalid duration {value!r}")
    raise NotImplementedError


class _Checker:
    """Collects problems while converting and cross-checking the sections."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ConfigProblem] = []
        self.warnings: list[str] = []

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(ConfigProblem(self.file, path, reason))

    def convert(self, data: Any, kind: type[S], path: str) -> S | None:
        """Convert one section or list item, reporting every bad field, not just the first."""
        self._unset_problems(data, path)
        failed = False
        for _ in range(50):
            try:
                result = msgspec.convert(data, kind, dec_hook=_dec_hook, str_keys=True)
            except msgspec.ValidationError as exc:
                failed = True
                field_path, reason = _locate(path, str(exc))
                self.problem(field_path, reason)
                field = field_path[len(path) :].lstrip(".").split(".")[0].split("[")[0]
                if not isinstance(data, dict) or field not in data:
                    return None
                data = {k: v for k, v in data.items() if k != field}  # look past this field
            else:
                return None if failed else result
        return None

    def _unset_problems(self, data: Any, path: str) -> None:
        if isinstance(data, _Unset):
            self.problem(path, f"environment variable {data.name} is not set")
        elif isinstance(data, dict):
            for key, value in data.items():
                self._unset_problems(value, f"{path}.{key}")
        elif isinstance(data, list):
            for i, value in enumerate(data):
                self._unset_problems(value, f"{path}[{i}]")


def _locate(path: str, detail: str) -> tuple[str, str]:
    """Turn msgspec's `... - at `$.a[0].b`` into a field path and a reason."""
    reason, _, where = detail.partition(" - at `$")
    where = where.rstrip("`")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
    if unknown:
        return f"{path}{where}.{unknown.group(1)}", "unknown field"
    missing = re.match(r"Object missing required field `([^`]+)`", reason)
    if missing:
        return f"{path}{where}.{missing.group(1)}", "required field is missing"
    return f"{path}{where}", reason.replace("`", "'")


def _unset_secret(item: Any, *fields: str) -> str | None:
    """Name of the unset variable of a secret field of `item`, if any."""
    if not isinstance(item, dict):
        return None
    for field in fields:
        holder: Any = item
        for part in field.split("."):
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, _Unset):
            return holder.name
    return None


def _providers(check: _Checker, items: list[Any]) -> tuple[list[ProviderConfig], set[str]]:
    """Valid, usable providers, and the names of those skipped on purpose."""
    providers: list[ProviderConfig] = []
    skipped: set[str] = set()
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"providers[{i}]"
        var = _unset_secret(item, "api_key", "auth.api_key")
        if var is not None:
            name = item.get("name", f"#{i}")
            check.warnings.append(f"provider '{name}' skipped: {var} is not set")
            skipped.add(str(name))
            continue
        provider = check.convert(item, ProviderConfig, path)
        if provider is None:
            continue
        if not provider.name:
            check.problem(f"{path}.name", "must not be empty")
        elif provider.name in seen:
            check.problem(
                f"{path}.name",
                f"duplicate provider name '{provider.name}' "
                f"(also providers[{seen[provider.name]}])",
            )
            continue
        seen[provider.name] = i
        _check_provider(check, provider, path)
        if not provider.enabled:
            skipped.add(provider.name)
        providers.append(provider)
    return providers, skipped


def _check_provider(check: _Checker, provider: ProviderConfig, path: str) -> None:
    if provider.resolved_type not in PROVIDER_TYPES:
        check.problem(
            f"{path}.type",
            f"unknown provider type '{provider.resolved_type}' "
            f"(expected one of: {', '.join(PROVIDER_TYPES)})",
        )
    url = provider.resolved_base_url
    if provider.resolved_type in PROVIDER_TYPES and not re.match(r"https?://[^/]+", url):
        check.problem(f"{path}.base_url", f"must be an http(s) URL, got '{url}'")
    if provider.hosting == "vertex":
        for field in ("project", "region"):
            if not getattr(provider, field):
                check.problem(f"{path}.{field}", "required for hosting 'vertex'")
    if provider.hosting == "bedrock" and not provider.region:
        check.problem(f"{path}.region", "required for hosting 'bedrock'")
    if provider.timeout_ms <= 0:
        check.problem(f"{path}.timeout_ms", "must be positive")


def _routes(
    check: _Checker, items: list[Any], known: set[str], skipped: set[str]
) -> list[RouteConfig]:
    routes: list[RouteConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"routes[{i}]"
        route = check.convert(item, RouteConfig, path)
        if route is None:
            continue
        if route.model_alias in seen:
            check.problem(
                f"{path}.model_alias",
                f"duplicate alias '{route.model_alias}' (also routes[{seen[route.model_alias]}])",
            )
            continue
        seen[route.model_alias] = i
        if not route.targets:
            check.problem(f"{path}.targets", "must name at least one target")
            continue
        targets = []
        for j, target in enumerate(route.targets):
            if target.provider in skipped:
                check.warnings.append(
                    f"route '{route.model_alias}': target '{target.provider}' dropped "
                    "(provider disabled or skipped)"
                )
            elif target.provider not in known:
                check.problem(
                    f"{path}.targets[{j}].provider", f"unknown provider '{target.provider}'"
                )
            else:
                targets.append(target)
        if not targets:
            check.warnings.append(f"route '{route.model_alias}' dropped: no usable target")
            continue
        routes.append(msgspec.structs.replace(route, targets=tuple(targets)))
    return routes


def _keys(check: _Checker, items: list[Any]) -> list[KeyConfig]:
    keys: list[KeyConfig] = []
    for i, item in enumerate(items):
        path = f"keys[{i}]"
        var = _unset_secret(item, "key")
        name = item.get("name", f"#{i}") if isinstance(item, dict) else f"#{i}"
        if var is not None:
            check.warnings.append(f"key '{name}' skipped: {var} is not set")
            continue
        key = check.convert(item, KeyConfig, path)
        if key is None:
            continue
        if not key.key:
            check.warnings.append(f"key '{name}' skipped: empty key")
            continue
        if not key.key.startswith("gnd_"):
            check.problem(f"{path}.key", "must start with 'gnd_'")
            continue
        if key.expires_at is not None:
            try:
                datetime.fromisoformat(key.expires_at.replace("Z", "+00:00"))
            except ValueError:
                check.problem(f"{path}.expires_at", "must be an RFC3339 time")
                continue
        keys.append(key)
    return keys


def _check_server(check: _Checker, server: ServerConfig) -> None:
    for field in ("addr", "admin_addr"):
        try:
            port = _split_addr(getattr(server, field))[1]
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            check.problem(
                f"server.{field}", f"invalid address '{getattr(server, field)}' (host:port)"
            )
    if server.workers < 0:
        check.problem("server.workers", "must be 0 (one per CPU) or more")


def build_config(data: Any, file: str, environ: Mapping[str, str]) -> tuple[Config, list[str]]:
    """Validate parsed YAML; raise `ConfigError` with every problem."""
    check = _Checker(file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(file, "$", "the top level must be a mapping")])
    data = _expand(data, environ)
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name in _SECTIONS:
            section = check.convert(value if value is not None else {}, _SECTIONS[name], name)
            if section is not None:
                sections[name] = section
        elif name not in _LISTS:
            check.problem(str(name), "unknown section")
    lists: dict[str, list[Any]] = {}
    for name in _LISTS:
        value = data.get(name) or []
        if not isinstance(value, list):
            check.problem(name, "must be a list")
            value = []
        lists[name] = value
    providers, skipped = _providers(check, lists["providers"])
    known = {p.name for p in providers} | skipped
    routes = _routes(check, lists["routes"], known, skipped)
    keys = _keys(check, lists["keys"])
    if "server" in sections:
        _check_server(check, sections["server"])
    if check.problems:
        raise ConfigError(check.problems)
    config = Config(
        **sections,
        providers=tuple(p for p in providers if p.enabled),
        routes=tuple(routes),
        keys=tuple(keys),
    )
    return _environment_overrides(config, environ), check.warnings


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


def default_config_path() -> Path:
    """The embedded default: package data when installed, else the source tree's copy."""
    packaged = Path(__file__).with_name("default.yaml")
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Config, list[str]]:
    """Load, expand `${VAR}` and validate a YAML file; returns (config, warnings).

    Raises:
        ConfigError: listing every problem found.
    """
    file = Path(path) if path is not None else default_config_path()
    env = os.environ if environ is None else environ
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(file), "$", f"cannot read: {exc.strerror}")]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "$"
        raise ConfigError([ConfigProblem(str(file), where, f"invalid YAML: {exc}")]) from exc
    return build_config(data, str(file), env)


def config_from_environment() -> tuple[Config, list[str]]:
    """For the worker factory: the file named by GANDALF_CONFIG, else the embedded default."""
    return load_config(os.environ.get(CONFIG_ENV_VAR) or None)


def secret_from_environment(name: str) -> str:
    """A provider secret named by the control plane (`api_key_env`); empty when unset."""
    return os.environ.get(name, "") if name else ""


def admin_key_from_environment() -> str:
    return os.environ.get(ADMIN_KEY_ENV_VAR, "")


def set_worker_environment(
    env: dict[str, str], config_path: Path | None, redis_url: str, control_url: str
) -> dict[str, str]:
    """The environment of a data plane started by the supervisor."""
    env = dict(env)
    if config_path is not None:
        env[CONFIG_ENV_VAR] = str(config_path.resolve())
    env[REDIS_URL_ENV_VAR] = redis_url
    env[CONTROL_URL_ENV_VAR] = control_url
    return env
