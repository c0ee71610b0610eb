"""The configuration schema: frozen msgspec Structs with their defaults, and Go durations."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from app.prices_default import DEFAULT_PRICES, DEFAULT_PRICES_VERSION
from app.pricing import Price, PriceTable

KEY_PREFIX = "gnd_"
PROVIDER_TYPES = ("anthropic", "gemini", "ollama", "openai")
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
    "ollama": "http://localhost:11434",
}


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
    x_gateway: bool = False
    """Add the `x_gateway` object (provider, latency_ms, cost_usd, cache_hit, request_id) to
    every chat answer, and a final `: x_gateway {…}` comment to streams. Off by default, so
    strict clients get plain OpenAI bodies; one request asks for it with the header
    `X-Gateway-Metadata: true`."""

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
    usage_retention_days: NonNegative = 90
    """Raw usage rows older than this many days are deleted (hourly, in small batches); 0 keeps
    them forever. The hourly and daily rollups are kept, and budgets are rebuilt from them."""


class AuthConfig(_Section, frozen=True):
    admin_key: str = ""
    """Kept for compatibility (unused, as in Gandalf); use GANDALF_ADMIN_KEY or `keys:`."""


class RateLimitConfig(_Section, frozen=True):
    default_rpm: NonNegative = 60
    """Requests per minute for keys without their own limit; 0 = unlimited."""
    default_tpm: NonNegative = 100_000
    """Tokens per minute for keys without their own limit; 0 = unlimited."""
    default_output_tokens: Positive = 1000
    """Output tokens assumed, to reserve TPM and budget, when a request sets no `max_tokens` or
    `max_completion_tokens`; settlement corrects the reservation to what was used."""
    redis_failure: Literal["fail_open", "fail_closed"] = "fail_open"
    """When Redis cannot be reached for limits: fail_open serves the request unlimited and logs
    it; fail_closed answers 503."""


class PricingConfig(_Section, frozen=True):
    version: str = DEFAULT_PRICES_VERSION
    """Names the price list; recorded with the spend it priced. Change it when prices change."""
    defaults: bool = True
    """Start from the shipped list (`app/prices_default.py`); false = only `models`."""
    models: Mapping[str, Price] = {}
    """Model or `prefix*` → prices in USD per 1M tokens; replaces a shipped entry of that name."""

    def table(self) -> PriceTable:
        """`models` over the shipped list (unless `defaults` is false). Build it once."""
        prices = {**DEFAULT_PRICES, **self.models} if self.defaults else dict(self.models)
        return PriceTable(prices, version=self.version)


class CacheConfig(_Section, frozen=True):
    enabled: bool = True
    """Cache deterministic chat completions (not streams; temperature ≤ 0.3 or a seed)."""
    max_size: NonNegative = 10_000
    """Kept for compatibility with Gandalf (most entries kept, in its in-process cache). The
    cache lives in Redis here and is not bounded by count: TTLs and Redis's maxmemory policy
    bound its memory."""
    default_ttl: Duration = 300.0
    """Entry lifetime (`5m`), and the upper bound of every route's `cache_ttl_s`."""
    scope: Literal["key", "org"] = "key"
    """Who shares an entry: key = only the API key that stored it (as in Gandalf); org = every
    key of the same organization."""
    max_entry_bytes: Positive = 1024 * 1024
    """Largest response body stored (1 MiB); a larger response is served but not cached."""


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
        """`base_url`, else the hosting's regional endpoint, else the type's public API."""
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.hosting == "vertex":
            return f"https://{self.region}-aiplatform.googleapis.com"
        if self.hosting == "bedrock":
            return f"https://bedrock-runtime.{self.region}.amazonaws.com"
        return DEFAULT_BASE_URLS.get(self.resolved_type, "")

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
    """Spend limit in USD per `budget_period`; None = no limit."""
    budget_period: Literal["monthly", "weekly", "daily", "total"] = "monthly"
    """monthly, weekly, daily: spend starts again from 0 each period; total: never."""
    expires_at: str | None = None
    """RFC3339 time after which the key is refused."""


class Config(_Section, frozen=True):
    server: ServerConfig = ServerConfig()
    redis: RedisConfig = RedisConfig()
    database: DatabaseConfig = DatabaseConfig()
    auth: AuthConfig = AuthConfig()
    rate_limits: RateLimitConfig = RateLimitConfig()
    pricing: PricingConfig = PricingConfig()
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
    "pricing": PricingConfig,
    "cache": CacheConfig,
    "circuit_breaker": CircuitBreakerConfig,
    "telemetry": TelemetryConfig,
}
_LISTS = ("providers", "routes", "keys")
