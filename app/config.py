"""Configuration: Gandalf's YAML schema, `${VAR}` expansion, and validation.

The file is parsed first and `${VAR}` is expanded inside string values afterwards, so a
variable can never inject YAML. Validation reports every problem at once, each with its file,
field path and reason; secrets never appear in a problem or a warning.

The only module that reads the environment. About 1,000 lines, over the 400 guideline: the
schema with its attribute docstrings is a third of it, and the loader that turns msgspec's
first-error-only reports into a full list with paths another third. Split along that line
(`app/config/{schema,load}.py`) if it grows further.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec
import yaml

CONFIG_ENV_VAR = "GANDALF_CONFIG"
REDIS_URL_ENV_VAR = "GANDALF_REDIS_URL"
CONTROL_URL_ENV_VAR = "GANDALF_CONTROL_URL"
ADMIN_KEY_ENV_VAR = "GANDALF_ADMIN_KEY"
KEY_PREFIX = "gnd_"
PROVIDER_TYPES = ("anthropic", "gemini", "ollama", "openai")
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
    "ollama": "http://localhost:11434",
}


class ConfigProblem(msgspec.Struct, frozen=True):
    """One thing wrong with a configuration file; `path` is empty for the file as a whole."""

    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        if not self.path:
            return f"{self.file}: {self.reason}"
        return f"{self.file}: {self.path}: {self.reason}"


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists every problem found, one line each."""

    problems: list[ConfigProblem]

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[ConfigProblem]]]:
        return (ConfigError, (self.problems,))


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Parse a Go duration string into seconds.

    Accepts what Go's `time.ParseDuration` accepts: `300ms`, `30s`, `5m`, `1h30m`, `1.5s`,
    `.5s`, a sign, and a bare `0`.

    Raises:
        ValueError: `invalid duration '<text>'`.
    """
    rest = text[1:] if text[:1] in ("+", "-") else text
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"invalid duration '{text}'")
    total, position = 0.0, 0
    while position < len(rest):
        part = _DURATION_PART.match(rest, position)
        if part is None:
            raise ValueError(f"invalid duration '{text}'")
        total += float(part.group(1)) * _UNITS[part.group(2)]
        position = part.end()
    return -total if text.startswith("-") else total


Duration = Annotated[float, msgspec.Meta(extra={"go_duration": True})]
"""Seconds, written in YAML as a Go duration string (`30s`); read by `_Checker.durations`."""

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every configuration section: immutable, and a typo is an error."""


class ServerConfig(_Section, frozen=True):
    addr: str = ":8080"
    """Listen address, Go style `host:port`; an empty host listens on every interface."""
    read_timeout: Duration = 30.0
    """Kept for compatibility with Gandalf (`30s`); Granian manages reads itself."""
    write_timeout: Duration = 120.0
    """Kept for compatibility with Gandalf (`120s`). Unlike Gandalf, streams are never cut by
    it: a stream lasts as long as the upstream keeps sending (see `providers[].timeout_ms`)."""
    shutdown_timeout: Duration = 30.0
    """How long SIGTERM waits for in-flight requests before the workers are stopped."""
    workers: NonNegative = 0
    """Data-plane worker processes; 0 = one per CPU (see `worker_count`)."""
    max_body_bytes: Positive = 4 * 1024 * 1024
    """Largest request body accepted (4 MiB); larger bodies get a 400."""
    keepalive_interval: Duration = 15.0
    """SSE `: keep-alive` comment after this much silence, also before the first token."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """auto = console when stderr is a terminal, JSON lines otherwise."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level logged."""
    admin_addr: str = "127.0.0.1:8081"
    """Where the supervisor serves the admin API (the data plane forwards /admin/v1 to it)."""
    control_url: str = ""
    """URL of the supervisor's admin API as seen by the data plane; empty = from admin_addr."""

    @property
    def host(self) -> str:
        """Interface to bind; `0.0.0.0` when `addr` has an empty host."""
        return _split_addr(self.addr)[0]

    @property
    def port(self) -> int:
        return _split_addr(self.addr)[1]

    @property
    def worker_count(self) -> int:
        """`workers`, with 0 resolved to the CPUs this process may run on (at least 1)."""
        if self.workers > 0:
            return self.workers
        if hasattr(os, "sched_getaffinity"):  # honours container CPU sets, unlike cpu_count
            return max(1, len(os.sched_getaffinity(0)))
        return max(1, os.cpu_count() or 1)


def _split_addr(addr: str) -> tuple[str, int]:
    """`host:port` → (host, port), as Go's `net.SplitHostPort`; `[::1]:80` for IPv6."""
    host, separator, port = addr.rpartition(":")
    if not separator or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(addr)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(addr)
    return (host or "0.0.0.0"), int(port)  # noqa: S104 - Go's ":8080" means every interface


class RedisConfig(_Section, frozen=True):
    url: str = ""
    """redis://, rediss:// or unix://; empty = `gandalf run` starts an embedded server."""
    key_prefix: str = "gandalf"
    """Prefix of every Redis key, stream and channel the gateway uses."""


class DatabaseConfig(_Section, frozen=True):
    dsn: str = "gandalf.db"
    """SQLite file of the control plane (`:memory:` for tests)."""


class AuthConfig(_Section, frozen=True):
    admin_key: str = ""
    """Kept for compatibility (unused, as in Gandalf); use GANDALF_ADMIN_KEY or `keys:`."""


class RateLimitConfig(_Section, frozen=True):
    default_rpm: NonNegative = 60
    """Requests per minute for keys without their own limit; 0 = unlimited."""
    default_tpm: NonNegative = 100_000
    """Tokens per minute for keys without their own limit; 0 = unlimited."""


class CacheConfig(_Section, frozen=True):
    enabled: bool = True
    """Cache deterministic chat completions (not streams; temperature ≤ 0.3 or a seed)."""
    max_size: NonNegative = 10_000
    """Most entries kept."""
    default_ttl: Duration = 300.0
    """Entry lifetime (`5m`), and the upper bound of every route's `cache_ttl_s`."""


class CircuitBreakerConfig(_Section, frozen=True):
    enabled: bool = False
    """Skip a provider whose recent weighted error rate is too high."""
    error_threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.30
    """Weighted error rate (0 < x ≤ 1) that opens the breaker."""
    min_samples: Positive = 10
    """Outcomes needed in the window before the breaker may open."""
    window_seconds: Annotated[int, msgspec.Meta(ge=1, le=60)] = 60
    """Sliding window, in seconds (1 to 60)."""
    open_timeout: Duration = 30.0
    """How long the breaker stays open before one half-open probe."""


class MetricsConfig(_Section, frozen=True):
    enabled: bool = False
    """Serve Prometheus metrics on /metrics."""


class TracingConfig(_Section, frozen=True):
    enabled: bool = False
    """Export OpenTelemetry traces over OTLP/gRPC."""
    endpoint: str = "localhost:4317"
    """OTLP collector, `host:port` (insecure gRPC)."""
    sample_rate: Fraction = 0.1
    """Share of new traces sampled (0 to 1); a sampled parent is always followed."""


class TelemetryConfig(_Section, frozen=True):
    metrics: MetricsConfig = MetricsConfig()
    """Prometheus metrics."""
    tracing: TracingConfig = TracingConfig()
    """OpenTelemetry tracing."""


class ProviderAuthConfig(_Section, frozen=True):
    type: Literal["", "api_key", "gcp_oauth", "aws_sigv4"] = ""
    """How requests are signed; empty = from `hosting` (see `ProviderConfig.auth_type`)."""
    api_key: str = ""
    """Overrides the provider's top-level `api_key`."""
    credentials_file: str = ""
    """Google service-account JSON for gcp_oauth; empty = application default credentials."""


class ProviderConfig(_Section, frozen=True):
    name: str
    """Instance name (`openai-us`), unique: what route targets refer to."""
    type: str = ""
    """Wire format: openai, anthropic, gemini or ollama; defaults to `name`."""
    base_url: str = ""
    """http(s) URL; defaults to the type's public API. A trailing `/` is dropped."""
    api_key: str = ""
    """Usually `${VAR}`; when that variable is unset the provider is skipped with a warning."""
    models: tuple[str, ...] = ()
    """Models that route to this provider directly when no route names them."""
    priority: int = 0
    """Order among providers listing the same model (lower first)."""
    weight: NonNegative = 1
    """Kept for compatibility (stored, as in Gandalf); route targets carry the weights."""
    max_rps: NonNegative = 0
    """Kept for compatibility (stored, unused as in Gandalf); 0 = unlimited."""
    timeout_ms: Positive = 120_000
    """The longest the gateway waits for the upstream's next bytes: the response headers, or
    the next chunk of a stream. Never a cap on a whole stream."""
    connect_timeout: Duration = 5.0
    """Longest wait to open a connection (TCP and TLS) to the upstream."""
    enabled: bool = True
    """A disabled provider is not registered; route targets naming it are dropped."""
    hosting: Literal["", "azure", "vertex", "bedrock"] = ""
    """Where the model is hosted: the vendor itself (empty), Azure, Vertex AI or Bedrock."""
    region: str = ""
    """Vertex AI or Bedrock region (required for them)."""
    project: str = ""
    """Google Cloud project (required for Vertex AI)."""
    api_version: str = ""
    """Azure OpenAI `api-version`."""
    auth: ProviderAuthConfig | None = None
    """Explicit credentials; omit for an API key from `api_key`."""

    @property
    def resolved_type(self) -> str:
        return self.type or self.name

    @property
    def resolved_base_url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URLS.get(self.resolved_type, "")).rstrip("/")

    @property
    def resolved_api_key(self) -> str:
        if self.auth is not None and self.auth.api_key:
            return self.auth.api_key
        return self.api_key

    @property
    def auth_type(self) -> str:
        """`auth.type`, else gcp_oauth on Vertex, aws_sigv4 on Bedrock, api_key otherwise."""
        if self.auth is not None and self.auth.type:
            return self.auth.type
        return {"vertex": "gcp_oauth", "bedrock": "aws_sigv4"}.get(self.hosting, "api_key")


class RouteTarget(_Section, frozen=True):
    provider: str
    """Name of a provider in `providers`."""
    model: str
    """Model sent upstream in place of the alias."""
    priority: int = 0
    """Lower is tried first; failover moves to the next priority."""
    weight: NonNegative = 1
    """Share of traffic among targets of equal priority."""


class RouteConfig(_Section, frozen=True):
    model_alias: str
    """The `model` clients send; unique."""
    targets: tuple[RouteTarget, ...]
    """Where the alias goes, at least one."""
    strategy: Literal["priority"] = "priority"
    """Only `priority` (as in Gandalf)."""
    cache_ttl_s: NonNegative = 0
    """Response-cache lifetime for this alias in seconds; 0 = `cache.default_ttl`."""


class KeyConfig(_Section, frozen=True):
    name: str = ""
    """For logs only."""
    key: str = ""
    """Plaintext `gnd_…` key, usually `${VAR}`; stored only as its SHA-256 hash. Empty or an
    unset variable: the key is skipped with a warning."""
    org_id: str = "default"
    """Organisation the key belongs to."""
    team_id: str = ""
    user_id: str = ""
    role: Literal["admin", "member", "viewer", "service_account"] = "member"
    """Permissions: admin (all), member, viewer, service_account (models only)."""
    allowed_models: tuple[str, ...] = ()
    """Aliases the key may call; empty = every model."""
    rpm_limit: NonNegative | None = None
    """Requests per minute; None = `rate_limits.default_rpm`."""
    tpm_limit: NonNegative | None = None
    """Tokens per minute; None = `rate_limits.default_tpm`."""
    max_budget: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """Spend limit in USD; None = no limit."""
    expires_at: str | None = None
    """RFC3339 time after which the key is refused."""


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
    """Usable providers only: disabled and skipped ones are left out."""
    routes: tuple[RouteConfig, ...] = ()
    """Routes with their unusable targets dropped."""
    keys: tuple[KeyConfig, ...] = ()
    """Keys to seed; skipped ones are left out."""


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
_LISTS = ("providers", "routes", "keys")
_S = TypeVar("_S", bound=_Section)
_MAX_PROBLEMS_PER_ITEM = 100


_BOOL = "tag:yaml.org,2002:bool"
_YAML12_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads scalars as YAML 1.2 (and Go's yaml.v3) do, and notes duplicates.

    Timestamps stay strings (`expires_at`, `api_version: 2024-10-21`), and so do yes/no/on/off
    (a model or provider named `no` stays a name). A duplicate key would otherwise resolve
    silently to its last value.
    """

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class-level table, narrowed
        first: [
            (tag, _YAML12_BOOL if tag == _BOOL else rx)
            for tag, rx in resolvers
            if tag != "tag:yaml.org,2002:timestamp"
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    self.duplicates.append((key_node.start_mark.line + 1, key_node.value))
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Expander:
    """Expands `${NAME}` and `${NAME:-default}` in every string value, noting what it did.

    `${NAME}` with NAME set but empty gives ""; `:-` uses its default when NAME is unset or
    empty (as in POSIX shells). An unset NAME without default gives "" and is recorded in
    `unset` under the value's path, for the caller to decide: skip or report.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.unset: dict[str, list[str]] = {}
        self.malformed: list[str] = []
        self.templates: dict[str, tuple[str, str]] = {}
        """path → (value as written, value expanded), to keep expanded values out of messages."""

    def expand(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {key: self.expand(item, _join(path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.expand(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        missing: list[str] = []

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = self.environ.get(name)
            if default is not None:
                return found or default
            if found is None:
                missing.append(name)
                return ""
            return found

        expanded = _VAR.sub(substitute, value)
        if "${" in _VAR.sub("", value):
            self.malformed.append(path)
        if missing:
            self.unset[path] = missing
        self.templates[path] = (value, expanded)
        return expanded

    def unset_under(self, prefix: str) -> dict[str, list[str]]:
        return {p: names for p, names in self.unset.items() if _is_under(p, prefix)}


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))


def _duration(value: Any) -> float:
    """A Go duration string (or a bare 0) → seconds.

    Raises:
        ValueError: the reason, quoting the value.
    """
    if isinstance(value, str):
        seconds = parse_duration(value)
        if seconds < 0:
            raise ValueError(f"invalid duration '{value}' (must not be negative)")
        return seconds
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    # Go's YAML reads a bare number as nanoseconds; refusing it beats guessing.
    raise ValueError(f"invalid duration {value!r} (write it with a unit, such as '30s')")


@functools.cache
def _type_info(kind: type) -> Any:
    return msgspec.inspect.type_info(kind)


def _unwrap(info: Any) -> Any:
    """The type inside `Annotated[...]` and `X | None`."""
    while True:
        if isinstance(info, msgspec.inspect.Metadata):
            info = info.type
        elif isinstance(info, msgspec.inspect.UnionType):
            info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        else:
            return info


def _is_duration(info: Any) -> bool:
    return isinstance(info, msgspec.inspect.Metadata) and bool(
        info.extra and info.extra.get("go_duration")
    )


_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _segments(where: str) -> list[str | int]:
    """Turn msgspec's location `$.targets[0].model` into ["targets", 0, "model"]."""
    return [int(index) if index else name for name, index in _SEGMENT.findall(where)]


def _format(segments: list[str | int]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in segments)


def _choices(kind: type, segments: list[str | int]) -> tuple[str, ...]:
    """The Literal values allowed at `segments` inside `kind`, if that field is a Literal."""
    info: Any = _type_info(kind)
    for segment in [*segments, None]:
        info = _unwrap(info)
        if segment is None:
            break
        if isinstance(segment, int) and isinstance(info, msgspec.inspect.VarTupleType):
            info = info.item_type
        elif isinstance(segment, str) and isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.encode_name == segment), None)
        else:
            return ()
    if isinstance(info, msgspec.inspect.LiteralType):
        return tuple(str(v) for v in info.values)
    return ()


def _explain(kind: type, detail: str) -> tuple[list[str | int], list[str | int] | None, str]:
    """A msgspec error → (where the problem is, what to drop to look further, reason)."""
    message, _, where = detail.partition(" - at `$")
    at = _segments(where.rstrip("`"))
    if unknown := re.fullmatch(r"Object contains unknown field `(.+)`", message):
        return [*at, unknown.group(1)], [*at, unknown.group(1)], "unknown field"
    if missing := re.fullmatch(r"Object missing required field `(.+)`", message):
        return [*at, missing.group(1)], at or None, "required field is missing"
    if enum := re.fullmatch(r"Invalid enum value (.+)", message):
        allowed = ", ".join(c or repr(c) for c in _choices(kind, at))
        return at, at, f"invalid value {enum.group(1)} (expected one of: {allowed})"
    if bound := re.fullmatch(r"Expected `\w+` ([<>]=? ?.+)", message):
        return at, at, f"must be {bound.group(1)}"
    message = message.replace("`", "")
    return at, at, message[:1].lower() + message[1:]


def _without(data: Any, segments: Sequence[str | int]) -> Any:
    """Return `data` minus the field at `segments`; None when nothing can be dropped.

    A bad list item takes its whole list with it, so the indices of later problems stay true.
    """
    keys: list[str] = []
    for segment in segments:
        if isinstance(segment, int):
            break
        keys.append(segment)
    if not keys or not isinstance(data, dict):
        return None
    if len(keys) == 1:
        return {k: v for k, v in data.items() if k != keys[0]}
    inner = _without(data.get(keys[0]), keys[1:])
    return None if inner is None else {**data, keys[0]: inner}


class _Checker:
    """Collects problems and warnings while converting and cross-checking the file."""

    def __init__(self, file: str, expander: _Expander) -> None:
        self.file = file
        self.expander = expander
        self.problems: list[ConfigProblem] = []
        self.warnings: list[str] = []

    def problem(self, path: str, reason: str) -> None:
        if path in self.expander.unset:  # "FOO is not set" says it all; "" is not the mistake
            return
        self._add(path, reason)

    def _add(self, path: str, reason: str) -> None:
        written, expanded = self.expander.templates.get(path, ("", ""))
        if expanded:  # name the variable, never echo what it held
            reason = reason.replace(expanded, written)
        found = ConfigProblem(self.file, path, reason)
        if found not in self.problems:
            self.problems.append(found)

    def report_unset(self, prefix: str) -> None:
        for path, names in self.expander.unset_under(prefix).items():
            for name in names:
                self._add(path, f"environment variable {name} is not set")

    def convert(self, data: Any, kind: type[_S], path: str) -> _S | None:
        """Convert one section or list item, reporting every bad field, not just the first.

        A bad field is reported, then dropped to look further, so the result (None when the
        item cannot be built at all) is only final when nothing was reported; otherwise it is
        good for more checks, and a `ConfigError` follows anyway. Problems at paths holding an
        unset variable are left to the caller (reported, or made a skip), so one mistake never
        reads as two.
        """
        data = self.durations(data, _type_info(kind), path)
        # A field dropped for a bad value may then be reported missing: once is enough.
        reported: set[str] = set()
        for _ in range(_MAX_PROBLEMS_PER_ITEM):
            try:
                return msgspec.convert(data, kind, strict=False, str_keys=True)
            except msgspec.ValidationError as exc:
                at, drop, reason = _explain(kind, str(exc))
                if path + _format(at) not in reported:
                    self.problem(path + _format(at), reason)
                    reported.add(path + _format(at))
                data = _without(data, drop) if drop else None
                if data is None:
                    return None
        return None

    def durations(self, data: Any, info: Any, path: str) -> Any:
        """`data` with Go durations read as seconds where `info` wants a `Duration`.

        A bad duration is reported and its field dropped, so conversion goes on to the rest.
        """
        info = _unwrap(info)
        if not isinstance(info, msgspec.inspect.StructType) or not isinstance(data, dict):
            return data
        fields = {field.encode_name: field.type for field in info.fields}
        result: dict[Any, Any] = {}
        for key, value in data.items():
            where = _join(path, key)
            if key not in fields:
                result[key] = value
            elif not _is_duration(fields[key]):
                result[key] = self.durations(value, fields[key], where)
            elif value is None:
                result[key] = value  # msgspec: "expected float, got null"
            else:
                try:
                    result[key] = _duration(value)
                except ValueError as exc:
                    self.problem(where, str(exc))
        return result


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


_SECTION_CHECKS: dict[str, Callable[[_Checker, Any], None]] = {
    "server": _check_server,
    "redis": _check_redis,
    "database": _check_database,
}


def _sections(check: _Checker, data: dict[Any, Any]) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name in _SECTIONS:
            check.report_unset(name)
            section = check.convert({} if value is None else value, _SECTIONS[name], name)
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


def default_config_path() -> Path:
    """The embedded default: package data when installed, else the source tree's copy."""
    packaged = Path(__file__).with_name("default.yaml")
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def _parse(text: str, file: str) -> tuple[Any, list[ConfigProblem]]:
    """YAML → Python values, and the duplicate keys found; raises on a syntax error."""
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        # The message only: str(exc) quotes the offending line, which may hold a secret.
        parts = (getattr(exc, "context", None), getattr(exc, "problem", None))
        what = "; ".join(str(part) for part in parts if part)
        reason = f"invalid YAML: {what or type(exc).__name__}"
        lines = text.splitlines()
        if mark is not None and mark.line < len(lines) and "${" in lines[mark.line]:
            reason += " (quote values holding ${VAR} inside { } or [ ])"
        raise ConfigError([ConfigProblem(file, where, reason)]) from exc
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]
    duplicates = [
        ConfigProblem(file, f"line {line}", f"duplicate key '{key}'")
        for line, key in loader.duplicates
    ]
    return data, duplicates


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Config, list[str]]:
    """Load, expand `${VAR}` and validate a YAML file; returns (config, warnings).

    Args:
        path: The YAML file; None = the embedded default (`configs/default.yaml`).
        environ: Variables for `${VAR}`; None = this process's environment.

    Raises:
        ConfigError: listing every problem found, not just the first.
    """
    file = Path(path) if path is not None else default_config_path()
    env = os.environ if environ is None else environ
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        reason = f"cannot read the file: {exc.strerror or exc}"
        raise ConfigError([ConfigProblem(str(file), "", reason)]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(str(file), "", "the file is not UTF-8")]) from exc
    data, problems = _parse(text, str(file))
    return build_config(data, str(file), env, problems)


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


def process_environment() -> dict[str, str]:
    """A copy of this process's environment, for the children the supervisor starts."""
    return dict(os.environ)
