import operator
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from app.config import (
    CONFIG_ENV_VAR,
    Config,
    ConfigError,
    ConfigProblem,
    PricingConfig,
    ProviderAuthConfig,
    ProviderConfig,
    ServerConfig,
    default_config_path,
    load_config,
    parse_duration,
)
from app.prices_default import DEFAULT_PRICES, DEFAULT_PRICES_VERSION
from app.pricing import Price

REPO = Path(__file__).resolve().parents[3]
ADMIN_KEY = "gnd_" + "A" * 43
SECRETS = {
    "OPENAI_API_KEY": "sk-openai-secret-0123456789",
    "ANTHROPIC_API_KEY": "sk-ant-secret-0123456789",
    "GEMINI_API_KEY": "AIza-gemini-secret-0123456789",
    "GANDALF_ADMIN_KEY": ADMIN_KEY,
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gandalf.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[Config, list[str]]:
    return load_config(_write(tmp_path, text), environ=env or {})


def _problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    """Each problem as `path: reason`, after checking that every line names the file."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=env or {})
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.problems)
    assert all(line.startswith(f"{path}: ") for line in lines)
    return [f"{p.path}: {p.reason}" if p.path else p.reason for p in caught.value.problems]


# Defaults


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("server.addr", ":8080"),
        ("server.host", "0.0.0.0"),
        ("server.port", 8080),
        ("server.read_timeout", 30.0),
        ("server.write_timeout", 120.0),
        ("server.shutdown_timeout", 30.0),
        ("server.workers", 0),
        ("server.max_body_bytes", 4 * 1024 * 1024),
        ("server.log_format", "auto"),
        ("server.log_level", "info"),
        ("redis.url", ""),
        ("redis.key_prefix", "gandalf"),
        ("database.dsn", "gandalf.db"),
        ("auth.admin_key", ""),
        ("rate_limits.default_rpm", 60),
        ("rate_limits.default_tpm", 100_000),
        ("rate_limits.default_output_tokens", 1000),
        ("rate_limits.redis_failure", "fail_open"),
        ("pricing.version", "2026-11"),
        ("pricing.defaults", True),
        ("pricing.models", {}),
        ("cache.enabled", True),
        ("cache.max_size", 10_000),
        ("cache.default_ttl", 300.0),
        ("cache.scope", "key"),
        ("cache.max_entry_bytes", 1_048_576),
        ("circuit_breaker.enabled", False),
        ("circuit_breaker.error_threshold", 0.30),
        ("circuit_breaker.min_samples", 10),
        ("circuit_breaker.window_seconds", 60),
        ("circuit_breaker.open_timeout", 30.0),
        ("telemetry.metrics.enabled", False),
        ("telemetry.tracing.enabled", False),
        ("telemetry.tracing.endpoint", "localhost:4317"),
        ("telemetry.tracing.sample_rate", 0.1),
        ("providers", ()),
        ("routes", ()),
        ("keys", ()),
    ],
)
def test_an_empty_file_gives_the_defaults(tmp_path: Path, field: str, expected: object) -> None:
    config, warnings = _load(tmp_path, "")
    assert operator.attrgetter(field)(config) == expected
    assert warnings == []


@pytest.mark.parametrize("text", ["", "# only a comment\n", "server:\n", "server: {}\nkeys: []\n"])
def test_empty_sections_are_the_default_config(tmp_path: Path, text: str) -> None:
    assert _load(tmp_path, text) == (Config(), [])


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"name": "openai"}, ("openai", "https://api.openai.com/v1", "api_key")),
        ({"name": "anthropic"}, ("anthropic", "https://api.anthropic.com/v1", "api_key")),
        (
            {"name": "gemini"},
            ("gemini", "https://generativelanguage.googleapis.com/v1beta", "api_key"),
        ),
        ({"name": "ollama"}, ("ollama", "http://localhost:11434", "api_key")),
        (
            {"name": "eu", "type": "openai", "base_url": "https://eu.example/v1/"},
            ("openai", "https://eu.example/v1", "api_key"),
        ),
        (
            {"name": "v", "type": "gemini", "hosting": "vertex", "region": "europe-west4"},
            ("gemini", "https://europe-west4-aiplatform.googleapis.com", "gcp_oauth"),
        ),
        (
            {"name": "b", "type": "anthropic", "hosting": "bedrock", "region": "us-east-1"},
            ("anthropic", "https://bedrock-runtime.us-east-1.amazonaws.com", "aws_sigv4"),
        ),
        (
            {
                "name": "b",
                "type": "anthropic",
                "hosting": "bedrock",
                "region": "us-east-1",
                "base_url": "http://127.0.0.1:9000/",
                "auth": {"type": "api_key"},
            },
            ("anthropic", "http://127.0.0.1:9000", "api_key"),
        ),
    ],
)
def test_provider_resolved_settings(fields: dict[str, Any], expected: tuple[str, str, str]) -> None:
    auth = fields.pop("auth", None)
    provider = ProviderConfig(
        **fields, auth=ProviderAuthConfig(**auth) if auth is not None else None
    )
    assert (provider.resolved_type, provider.resolved_base_url, provider.auth_type) == expected


@pytest.mark.parametrize(
    ("api_key", "auth_key", "expected"),
    [("k1", "", "k1"), ("k1", "k2", "k2"), ("", "k2", "k2"), ("", "", "")],
)
def test_auth_api_key_overrides_api_key(api_key: str, auth_key: str, expected: str) -> None:
    provider = ProviderConfig(
        name="openai", api_key=api_key, auth=ProviderAuthConfig(api_key=auth_key)
    )
    assert provider.resolved_api_key == expected


@pytest.mark.parametrize(
    ("addr", "host", "port"),
    [
        (":8080", "0.0.0.0", 8080),
        ("127.0.0.1:9000", "127.0.0.1", 9000),
        ("localhost:1", "localhost", 1),
        ("[::1]:65535", "::1", 65535),
    ],
)
def test_server_addr_splits_go_style(addr: str, host: str, port: int) -> None:
    server = ServerConfig(addr=addr)
    assert (server.host, server.port) == (host, port)


@pytest.mark.parametrize(("workers", "at_least"), [(0, 1), (1, 1), (7, 7)])
def test_worker_count_resolves_zero_to_the_cpus(workers: int, at_least: int) -> None:
    count = ServerConfig(workers=workers).worker_count
    assert count >= at_least
    if workers:
        assert count == workers


# Durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("300ms", 0.3),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("1m30.5s", 90.5),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("250ns", 2.5e-7),
        ("+2s", 2.0),
        ("-2s", -2.0),
    ],
)
def test_parse_duration_accepts_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "3x", "30", "1.5", "s", "5 m", " 5m", "5m ", "1d", "h1", "-", ".s", "5mm"]
)
def test_parse_duration_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1h30m", 5400.0), ("250ms", 0.25), ('"0"', 0.0), ("0", 0.0), ("0s", 0.0)],
)
def test_durations_in_yaml_become_seconds(tmp_path: Path, value: str, seconds: float) -> None:
    config, _ = _load(tmp_path, f"server:\n  shutdown_timeout: {value}\n")
    assert config.server.shutdown_timeout == seconds
    assert type(config.server.shutdown_timeout) is float  # plain: the config encodes as is


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("3x", "invalid duration '3x'"),
        ("-5s", "invalid duration '-5s' (must not be negative)"),
        ("30", "invalid duration 30 (write it with a unit, such as '30s')"),
        ("1.5", "invalid duration 1.5 (write it with a unit, such as '30s')"),
        ("[1]", "invalid duration [1] (write it with a unit, such as '30s')"),
        ("true", "invalid duration True (write it with a unit, such as '30s')"),
        ("null", "expected float, got null"),
    ],
)
def test_bad_durations_are_reported_with_their_path(
    tmp_path: Path, value: str, reason: str
) -> None:
    problems = _problems(tmp_path, f"cache:\n  default_ttl: {value}\n")
    assert problems == [f"cache.default_ttl: {reason}"]


# ${VAR} expansion


@pytest.mark.parametrize(
    ("written", "env", "expected"),
    [
        ("${DSN}", {"DSN": "/data/g.db"}, "/data/g.db"),
        ("${DSN}", {"DSN": ""}, ""),
        ("${DSN:-fallback.db}", {}, "fallback.db"),
        ("${DSN:-fallback.db}", {"DSN": ""}, "fallback.db"),
        ("${DSN:-fallback.db}", {"DSN": "set.db"}, "set.db"),
        ("${DSN:-}", {}, ""),
        ("/data/${NAME}.db", {"NAME": "g"}, "/data/g.db"),
        ("${DIR}/${NAME}.db", {"DIR": "/d", "NAME": "g"}, "/d/g.db"),
        ("$DSN", {"DSN": "x"}, "$DSN"),
        ("plain.db", {"DSN": "x"}, "plain.db"),
    ],
)
def test_variables_expand_inside_strings(
    tmp_path: Path, written: str, env: dict[str, str], expected: str
) -> None:
    config, _ = _load(tmp_path, f'auth:\n  admin_key: "{written}"\n', env)
    assert config.auth.admin_key == expected


def test_a_variable_cannot_inject_yaml(tmp_path: Path) -> None:
    env = {"DSN": "x.db\nserver:\n  workers: 9", "W": "3"}
    config, _ = _load(tmp_path, "database:\n  dsn: ${DSN}\nserver:\n  workers: ${W}\n", env)
    assert config.database.dsn == env["DSN"]
    assert config.server.workers == 3


@pytest.mark.parametrize(
    ("text", "env", "field", "expected"),
    [
        ("server:\n  workers: ${W}\n", {"W": "4"}, "server.workers", 4),
        ("server:\n  workers: ${W:-2}\n", {}, "server.workers", 2),
        ("cache:\n  enabled: ${C:-false}\n", {}, "cache.enabled", False),
        (
            "circuit_breaker:\n  error_threshold: ${T}\n",
            {"T": "0.5"},
            "circuit_breaker.error_threshold",
            0.5,
        ),
        ("server:\n  shutdown_timeout: ${S:-10s}\n", {}, "server.shutdown_timeout", 10.0),
    ],
)
def test_expanded_values_take_their_field_type(
    tmp_path: Path, text: str, env: dict[str, str], field: str, expected: object
) -> None:
    config, _ = _load(tmp_path, text, env)
    assert operator.attrgetter(field)(config) == expected


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("database:\n  dsn: ${DSN}\n", ["database.dsn: environment variable DSN is not set"]),
        (
            "server:\n  workers: ${W}\n",
            ["server.workers: environment variable W is not set"],
        ),
        (
            "database:\n  dsn: ${A}-${B}\n",
            [
                "database.dsn: environment variable A is not set",
                "database.dsn: environment variable B is not set",
            ],
        ),
        (
            "providers:\n  - {name: openai, api_key: k, base_url: '${URL}'}\n",
            ["providers[0].base_url: environment variable URL is not set"],
        ),
        (
            "keys:\n  - {key: gnd_x, team_id: '${TEAM}'}\n",
            ["keys[0].team_id: environment variable TEAM is not set"],
        ),
        (
            "routes:\n  - {model_alias: '${ALIAS}', targets: []}\n",
            [
                "routes[0].model_alias: environment variable ALIAS is not set",
                "routes[0].targets: must name at least one target",
            ],
        ),
        (
            "database:\n  dsn: ${not a name}\n",
            ["database.dsn: malformed variable reference (write ${NAME} or ${NAME:-default})"],
        ),
    ],
)
def test_an_unset_variable_elsewhere_is_a_problem(
    tmp_path: Path, text: str, problems: list[str]
) -> None:
    assert _problems(tmp_path, text) == problems


PROVIDERS_AND_ROUTES = """
providers:
  - {name: openai, api_key: "${OPENAI_API_KEY}", models: [gpt-4o]}
  - {name: anthropic, api_key: "${ANTHROPIC_API_KEY}"}
  - {name: local, type: ollama, enabled: false, api_key: "${LOCAL_KEY}"}
routes:
  - model_alias: smart
    targets:
      - {provider: anthropic, model: claude-sonnet-4-6, priority: 1}
      - {provider: openai, model: gpt-4.1, priority: 2}
  - model_alias: claude
    targets: [{provider: anthropic, model: claude-haiku-4-5}]
  - model_alias: llama
    targets: [{provider: local, model: llama3}, {provider: openai, model: gpt-4o-mini}]
"""


def test_an_unset_provider_key_skips_the_provider_and_its_route_targets(tmp_path: Path) -> None:
    config, warnings = _load(tmp_path, PROVIDERS_AND_ROUTES, {"OPENAI_API_KEY": "sk-1"})
    assert [p.name for p in config.providers] == ["openai"]
    assert config.providers[0].resolved_api_key == "sk-1"
    routes = {r.model_alias: [t.provider for t in r.targets] for r in config.routes}
    assert routes == {"smart": ["openai"], "llama": ["openai"]}
    assert warnings == [
        "provider 'anthropic' skipped: ANTHROPIC_API_KEY is not set",
        "route 'smart': target 'anthropic' dropped (provider skipped)",
        "route 'claude': target 'anthropic' dropped (provider skipped)",
        "route 'claude' dropped: no usable target",
        "route 'llama': target 'local' dropped (provider disabled)",
    ]


def test_an_unset_auth_api_key_skips_the_provider(tmp_path: Path) -> None:
    text = "providers:\n  - {name: openai, api_key: literal, auth: {api_key: '${K}'}}\n"
    config, warnings = _load(tmp_path, text)
    assert config.providers == ()
    assert warnings == ["provider 'openai' skipped: K is not set"]


def test_a_skipped_provider_may_lean_on_other_unset_variables(tmp_path: Path) -> None:
    text = """
    providers:
      - name: azure
        type: openai
        hosting: azure
        base_url: ${AZURE_ENDPOINT}
        api_key: ${AZURE_KEY}
    """
    config, warnings = _load(tmp_path, text)
    assert config.providers == ()
    assert warnings == ["provider 'azure' skipped: AZURE_KEY is not set"]


def test_a_skipped_provider_is_still_checked_for_mistakes(tmp_path: Path) -> None:
    text = "providers:\n  - {name: openai, api_key: '${K}', modles: [x], type: opnai}\n"
    assert _problems(tmp_path, text) == [
        "providers[0].modles: unknown field",
        "providers[0].type: unknown provider type 'opnai' "
        "(expected one of: anthropic, gemini, ollama, openai)",
    ]


@pytest.mark.parametrize(
    ("written", "env", "warning"),
    [
        ('"${GANDALF_ADMIN_KEY}"', {}, "key 'admin' skipped: GANDALF_ADMIN_KEY is not set"),
        (
            '"${GANDALF_ADMIN_KEY}"',
            {"GANDALF_ADMIN_KEY": ""},
            "key 'admin' skipped: the key is empty",
        ),
        ('""', {}, "key 'admin' skipped: the key is empty"),
    ],
)
def test_an_unset_or_empty_key_is_skipped(
    tmp_path: Path, written: str, env: dict[str, str], warning: str
) -> None:
    config, warnings = _load(tmp_path, f"keys:\n  - {{name: admin, key: {written}}}\n", env)
    assert config.keys == ()
    assert warnings == [warning]


def test_a_key_from_the_environment_is_kept(tmp_path: Path) -> None:
    text = "keys:\n  - {name: admin, key: '${K}', role: admin, expires_at: 2027-01-01T00:00:00Z}\n"
    config, warnings = _load(tmp_path, text, {"K": ADMIN_KEY})
    assert warnings == []
    (key,) = config.keys
    assert (key.key, key.role, key.org_id, key.expires_at) == (
        ADMIN_KEY,
        "admin",
        "default",
        "2027-01-01T00:00:00Z",
    )


# Limits, budgets, prices and the response cache


def test_limit_budget_and_cache_settings_are_read(tmp_path: Path) -> None:
    text = """
    rate_limits: {default_output_tokens: 256, redis_failure: fail_closed}
    cache: {scope: org, max_entry_bytes: 65536, max_size: 5}
    keys:
      - {key: gnd_weekly, budget_period: weekly, max_budget: 2.5}
      - {key: gnd_total, budget_period: total}
      - {key: gnd_default}
    """
    config, warnings = _load(tmp_path, text)
    assert warnings == []
    assert (config.rate_limits.default_output_tokens, config.rate_limits.redis_failure) == (
        256,
        "fail_closed",
    )
    assert (config.cache.scope, config.cache.max_entry_bytes, config.cache.max_size) == (
        "org",
        65536,
        5,
    )
    assert [(k.budget_period, k.max_budget) for k in config.keys] == [
        ("weekly", 2.5),
        ("total", None),
        ("monthly", None),
    ]


@pytest.mark.parametrize("period", ["monthly", "weekly", "daily", "total"])
def test_every_budget_period_is_accepted(tmp_path: Path, period: str) -> None:
    config, _ = _load(tmp_path, f"keys:\n  - {{key: gnd_x, budget_period: {period}}}\n")
    assert config.keys[0].budget_period == period


PRICING = """
pricing:
  version: acme-2026-12
  models:
    gpt-4o: {input: 2.0, output: 8.0}
    my-finetune: {input: 3, output: 12, cached_input: 1.5}
    "llama3*": {input: 0, output: 0}
"""


def test_configured_prices_are_merged_over_the_shipped_ones(tmp_path: Path) -> None:
    config, _ = _load(tmp_path, PRICING)
    assert config.pricing.models == {
        "gpt-4o": Price(input=2.0, output=8.0),
        "my-finetune": Price(input=3.0, output=12.0, cached_input=1.5),
        "llama3*": Price(input=0.0, output=0.0),
    }
    table = config.pricing.table()
    assert table.version == "acme-2026-12"
    assert table.lookup("gpt-4o") == Price(input=2.0, output=8.0, cached_input=2.0)  # replaced
    assert table.lookup("my-finetune") == Price(input=3.0, output=12.0, cached_input=1.5)
    assert table.lookup("llama3:8b") == Price(input=0.0, output=0.0)
    # the rest of the shipped list is still there, dated snapshots included
    assert table.lookup("gpt-4o-mini") == DEFAULT_PRICES["gpt-4o-mini"]
    assert table.lookup("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o-20*"]
    assert set(table.prices) == set(DEFAULT_PRICES) | {"my-finetune", "llama3*"}


def test_pricing_defaults_false_drops_the_shipped_list(tmp_path: Path) -> None:
    config, _ = _load(tmp_path, PRICING.replace("  models:", "  defaults: false\n  models:"))
    table = config.pricing.table()
    assert set(table.prices) == {"gpt-4o", "my-finetune", "llama3*"}
    assert table.lookup("gpt-4o-mini") is None
    assert table.cost_nano("gpt-4o-mini", 1000, 1000) == 0


@pytest.mark.parametrize("text", ["", "pricing:\n", "pricing:\n  models:\n"])
def test_the_default_pricing_is_the_shipped_list(tmp_path: Path, text: str) -> None:
    config, _ = _load(tmp_path, text)
    assert config.pricing == PricingConfig()
    table = config.pricing.table()
    assert (table.version, table.prices) == (DEFAULT_PRICES_VERSION, DEFAULT_PRICES)
    assert table.cost_nano("gpt-4o", 1000, 1000) == 12_500_000


def test_pricing_values_may_come_from_the_environment(tmp_path: Path) -> None:
    text = "pricing:\n  version: ${V}\n  models:\n    m: {input: '${IN}', output: 1}\n"
    config, _ = _load(tmp_path, text, {"V": "v9", "IN": "0.5"})
    assert (config.pricing.version, config.pricing.models["m"].input) == ("v9", 0.5)
    assert _problems(tmp_path, text) == [
        "pricing.version: environment variable V is not set",
        "pricing.models.m.input: environment variable IN is not set",
    ]


def test_every_pricing_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """
    pricing:
      version: ""
      defaults: maybe
      models:
        gpt-4o: {input: -1, output: x, extra: 1}
        "g*pt": {input: 1, output: 1}
        ok*: {input: 1, output: 1}
        m2: 3
    """
    assert sorted(_problems(tmp_path, text)) == sorted(
        [
            "pricing.defaults: expected bool, got str",
            "pricing.models.gpt-4o.input: must be >= 0.0",
            "pricing.models.gpt-4o.output: expected float, got str",
            "pricing.models.gpt-4o.extra: unknown field",
            "pricing.models.g*pt: '*' may only end a model name (a prefix such as 'gpt-4o-mini*')",
            "pricing.models.m2: expected object, got int",
            "pricing.version: must not be empty",
        ]
    )


# Problems, one kind at a time


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("server:\n  wokers: 3\n", "server.wokers: unknown field"),
        (
            "bogus: {}\n",
            "bogus: unknown section (expected one of: server, redis, database, auth, "
            "rate_limits, pricing, cache, circuit_breaker, telemetry, providers, routes, keys)",
        ),
        (
            "telemetry:\n  tracing: {sampel_rate: 1}\n",
            "telemetry.tracing.sampel_rate: unknown field",
        ),
        ("server:\n  workers: many\n", "server.workers: expected int, got str"),
        ("server:\n  workers: -1\n", "server.workers: must be >= 0"),
        ("server:\n  max_body_bytes: 0\n", "server.max_body_bytes: must be >= 1"),
        ("server: 5\n", "server: expected object, got int"),
        (
            "server:\n  log_format: jsn\n",
            "server.log_format: invalid value 'jsn' (expected one of: auto, console, json)",
        ),
        (
            "server:\n  log_level: trace\n",
            "server.log_level: invalid value 'trace' "
            "(expected one of: debug, error, info, warning)",
        ),
        ("server:\n  addr: '8080'\n", "server.addr: must be host:port with a port from 1 to 65535"),
        ("server:\n  addr: ':0'\n", "server.addr: must be host:port with a port from 1 to 65535"),
        (
            "server:\n  addr: ':65536'\n",
            "server.addr: must be host:port with a port from 1 to 65535",
        ),
        (
            "server:\n  addr: '::1:80'\n",
            "server.addr: must be host:port with a port from 1 to 65535",
        ),
        ("server:\n  keepalive_interval: 0s\n", "server.keepalive_interval: must be positive"),
        (
            "server:\n  control_url: ftp://x\n",
            "server.control_url: must be an http:// or https:// URL",
        ),
        (
            "redis:\n  url: localhost:6379\n",
            "redis.url: must be a redis://, rediss:// or unix:// URL",
        ),
        (
            "redis:\n  key_prefix: ''\n",
            "redis.key_prefix: must be non-empty, without spaces or braces",
        ),
        ("database:\n  dsn: ''\n", "database.dsn: must not be empty"),
        ("rate_limits:\n  default_rpm: -5\n", "rate_limits.default_rpm: must be >= 0"),
        (
            "rate_limits:\n  default_output_tokens: 0\n",
            "rate_limits.default_output_tokens: must be >= 1",
        ),
        (
            "rate_limits:\n  default_output_tokens: lots\n",
            "rate_limits.default_output_tokens: expected int, got str",
        ),
        (
            "rate_limits:\n  redis_failure: open\n",
            "rate_limits.redis_failure: invalid value 'open' "
            "(expected one of: fail_closed, fail_open)",
        ),
        ("pricing:\n  version: ''\n", "pricing.version: must not be empty"),
        ("pricing:\n  defaults: no\n", "pricing.defaults: expected bool, got str"),
        ("pricing:\n  models: [gpt-4o]\n", "pricing.models: expected object, got array"),
        ("pricing:\n  modles: {}\n", "pricing.modles: unknown field"),
        (
            "pricing:\n  models:\n    gpt-4o: {input: -1, output: 1}\n",
            "pricing.models.gpt-4o.input: must be >= 0.0",
        ),
        (
            "pricing:\n  models:\n    gpt-4o: {input: 1, output: -0.5}\n",
            "pricing.models.gpt-4o.output: must be >= 0.0",
        ),
        (
            "pricing:\n  models:\n    gpt-4.1: {input: 1, output: 1, cached_input: -1}\n",
            "pricing.models.gpt-4.1.cached_input: must be >= 0.0",
        ),
        (
            "pricing:\n  models:\n    gpt-4o: {input: .inf, output: 1}\n",
            "pricing.models.gpt-4o: prices must be finite and >= 0",
        ),
        (
            "pricing:\n  models:\n    gpt-4o: {input: 1}\n",
            "pricing.models.gpt-4o.output: required field is missing",
        ),
        (
            "pricing:\n  models:\n    gpt-4o: {input: 1, output: 1, cached: 1}\n",
            "pricing.models.gpt-4o.cached: unknown field",
        ),
        (
            "pricing:\n  models:\n    gpt-4o: 2.5\n",
            "pricing.models.gpt-4o: expected object, got float",
        ),
        (
            "pricing:\n  models:\n    gpt-*-mini: {input: 1, output: 1}\n",
            "pricing.models.gpt-*-mini: '*' may only end a model name "
            "(a prefix such as 'gpt-4o-mini*')",
        ),
        (
            "pricing:\n  models:\n    '': {input: 1, output: 1}\n",
            "pricing.models.: must not be empty",
        ),
        (
            "pricing:\n  models:\n    4: {input: 1, output: 1}\n",
            "pricing.models.4: must be a model name",
        ),
        ("cache:\n  enabled: yes\n", "cache.enabled: expected bool, got str"),
        (
            "cache:\n  scope: team\n",
            "cache.scope: invalid value 'team' (expected one of: key, org)",
        ),
        ("cache:\n  max_entry_bytes: 0\n", "cache.max_entry_bytes: must be >= 1"),
        (
            "circuit_breaker:\n  error_threshold: 0\n",
            "circuit_breaker.error_threshold: must be > 0.0",
        ),
        (
            "circuit_breaker:\n  error_threshold: 1.5\n",
            "circuit_breaker.error_threshold: must be <= 1.0",
        ),
        (
            "circuit_breaker:\n  window_seconds: 61\n",
            "circuit_breaker.window_seconds: must be <= 60",
        ),
        ("circuit_breaker:\n  window_seconds: 0\n", "circuit_breaker.window_seconds: must be >= 1"),
        ("circuit_breaker:\n  min_samples: 0\n", "circuit_breaker.min_samples: must be >= 1"),
        (
            "telemetry:\n  tracing: {sample_rate: 2}\n",
            "telemetry.tracing.sample_rate: must be <= 1.0",
        ),
        ("providers: {name: openai}\n", "providers: must be a list"),
        ("providers:\n  - openai\n", "providers[0]: expected object, got str"),
        ("providers:\n  - {type: openai}\n", "providers[0].name: required field is missing"),
        ("providers:\n  - {name: ''}\n", "providers[0].name: must not be empty"),
        (
            "providers:\n  - {name: a, type: openai}\n  - {name: b, type: openai}\n"
            "  - {name: a, type: openai}\n",
            "providers[2].name: duplicate provider name 'a' (also providers[0])",
        ),
        (
            "providers:\n  - {name: a, type: gemini}\n  - {name: b, type: gemini}\n"
            "  - {name: p, type: foo}\n",
            "providers[2].type: unknown provider type 'foo' "
            "(expected one of: anthropic, gemini, ollama, openai)",
        ),
        (
            "providers:\n  - {name: mine}\n",
            "providers[0].type: unknown provider type 'mine' "
            "(expected one of: anthropic, gemini, ollama, openai)",
        ),
        (
            "providers:\n  - {name: openai, base_url: 'localhost:8000'}\n",
            "providers[0].base_url: must be an http:// or https:// URL",
        ),
        (
            "providers:\n  - {name: openai, hosting: gcp}\n",
            "providers[0].hosting: invalid value 'gcp' "
            "(expected one of: '', azure, bedrock, vertex)",
        ),
        (
            "providers:\n  - {name: openai, hosting: azure}\n",
            "providers[0].base_url: required for hosting 'azure'",
        ),
        (
            "providers:\n  - {name: gemini, hosting: vertex, region: europe-west4}\n",
            "providers[0].project: required for hosting 'vertex'",
        ),
        (
            "providers:\n  - {name: gemini, hosting: vertex, project: p}\n",
            "providers[0].region: required for hosting 'vertex'",
        ),
        (
            "providers:\n  - {name: anthropic, hosting: bedrock}\n",
            "providers[0].region: required for hosting 'bedrock'",
        ),
        (
            "providers:\n  - {name: openai, auth: {type: oauth}}\n",
            "providers[0].auth.type: invalid value 'oauth' "
            "(expected one of: '', api_key, aws_sigv4, gcp_oauth)",
        ),
        (
            "providers:\n  - {name: openai, timeout_ms: 0}\n",
            "providers[0].timeout_ms: must be >= 1",
        ),
        (
            "providers:\n  - {name: openai, connect_timeout: 0s}\n",
            "providers[0].connect_timeout: must be positive",
        ),
        (
            "providers:\n  - {name: openai, models: gpt-4o}\n",
            "providers[0].models: expected array, got str",
        ),
        (
            "routes:\n  - {model_alias: a, targets: [{provider: opnai, model: m}]}\n",
            "routes[0].targets[0].provider: unknown provider 'opnai'",
        ),
        ("routes:\n  - {model_alias: a}\n", "routes[0].targets: required field is missing"),
        (
            "routes:\n  - {model_alias: a, targets: []}\n",
            "routes[0].targets: must name at least one target",
        ),
        (
            "routes:\n  - {targets: [{provider: x, model: m}]}\n"
            "providers:\n  - {name: x, type: openai, api_key: k}\n",
            "routes[0].model_alias: required field is missing",
        ),
        (
            "routes:\n  - {model_alias: a, targets: [{model: m}]}\n",
            "routes[0].targets[0].provider: required field is missing",
        ),
        (
            "routes:\n  - {model_alias: a, strategy: weighted, targets: [{provider: x, model: m}]}"
            "\n"
            "providers:\n  - {name: x, type: openai, api_key: k}\n",
            "routes[0].strategy: invalid value 'weighted' (expected one of: priority)",
        ),
        ("keys:\n  - {key: sk-123}\n", "keys[0].key: must start with 'gnd_'"),
        (
            "keys:\n  - {key: gnd_x, role: boss}\n",
            "keys[0].role: invalid value 'boss' "
            "(expected one of: admin, member, service_account, viewer)",
        ),
        ("keys:\n  - {key: gnd_x, rpm_limit: -1}\n", "keys[0].rpm_limit: must be >= 0"),
        ("keys:\n  - {key: gnd_x, max_budget: -1}\n", "keys[0].max_budget: must be >= 0.0"),
        (
            "keys:\n  - {key: gnd_x, budget_period: yearly}\n",
            "keys[0].budget_period: invalid value 'yearly' "
            "(expected one of: daily, monthly, total, weekly)",
        ),
        (
            "keys:\n  - {key: gnd_x, allowed_models: [1]}\n",
            "keys[0].allowed_models[0]: expected str, got int",
        ),
        (
            "keys:\n  - {key: gnd_x, expires_at: 2027-01-01}\n",
            "keys[0].expires_at: must be an RFC3339 time (2027-01-01T00:00:00Z)",
        ),
        (
            "keys:\n  - {key: gnd_x, expires_at: '2027-13-01T00:00:00Z'}\n",
            "keys[0].expires_at: must be an RFC3339 time (2027-01-01T00:00:00Z)",
        ),
        (
            "keys:\n  - {key: gnd_x}\n  - {key: gnd_x}\n",
            "keys[1].key: duplicate key (also keys[0])",
        ),
        ("server: {}\nserver: {}\n", "line 2: duplicate key 'server'"),
        ("- a\n- b\n", "the top level must be a mapping of sections"),
    ],
)
def test_each_problem_names_its_path_and_reason(tmp_path: Path, text: str, problem: str) -> None:
    assert _problems(tmp_path, text) == [problem]


def test_a_duplicate_route_alias_names_the_first(tmp_path: Path) -> None:
    text = """
    providers:
      - {name: openai, api_key: k}
    routes:
      - {model_alias: gpt-4o, targets: [{provider: openai, model: gpt-4o}]}
      - {model_alias: b, targets: [{provider: openai, model: b}]}
      - {model_alias: c, targets: [{provider: openai, model: c}]}
      - {model_alias: gpt-4o, targets: [{provider: openai, model: gpt-4o}]}
    """
    assert _problems(tmp_path, text) == [
        "routes[3].model_alias: duplicate alias 'gpt-4o' (also routes[0])"
    ]


def test_a_route_to_a_broken_provider_is_not_reported_twice(tmp_path: Path) -> None:
    text = """
    providers:
      - {name: p, type: nosuch}
    routes:
      - {model_alias: a, targets: [{provider: p, model: m}]}
    """
    assert _problems(tmp_path, text) == [
        "providers[0].type: unknown provider type 'nosuch' "
        "(expected one of: anthropic, gemini, ollama, openai)"
    ]


@pytest.mark.parametrize(
    ("text", "reason_start"),
    [
        ("server:\n  addr: [\n", "line 3, column 1: invalid YAML: "),
        ("server:\n\taddr: x\n", "line 2, column 1: invalid YAML: "),
        ("a: 'unterminated\n", "line 2, column 1: invalid YAML: "),
    ],
)
def test_a_yaml_syntax_error_gives_its_line(tmp_path: Path, text: str, reason_start: str) -> None:
    (problem,) = _problems(tmp_path, text)
    assert problem.startswith(reason_start)


def test_a_yaml_error_on_an_unquoted_variable_in_flow_style_says_to_quote_it(
    tmp_path: Path,
) -> None:
    (problem,) = _problems(tmp_path, "keys:\n  - {name: admin, key: ${GANDALF_ADMIN_KEY}}\n")
    assert problem.startswith("line 2, column 25: invalid YAML: ")
    assert problem.endswith("(quote values holding ${VAR} inside { } or [ ])")


def test_a_yaml_error_never_quotes_the_line(tmp_path: Path) -> None:
    secret = "sk-very-secret-value-123456"
    path = _write(tmp_path, f"providers:\n  - {{name: openai, api_key: {secret}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert secret not in str(caught.value)


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    (problem,) = caught.value.problems
    assert problem == ConfigProblem(
        str(path), "", "cannot read the file: No such file or directory"
    )
    assert str(caught.value) == f"{path}: cannot read the file: No such file or directory"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """
    server:
      wokers: 3
      shutdown_timeout: 3x
      addr: nope
      log_format: jsn
    cache: {max_size: -1}
    telemetry: {tracing: {sample_rate: 7, endpiont: x}}
    extra: {}
    providers:
      - {name: openai, api_key: k, modles: [x], timeout_ms: fast}
      - {name: p2, type: foo}
      - {name: p2, type: openai}
      - {type: openai}
      - {name: vx, type: gemini, hosting: vertex}
    routes:
      - model_alias: a
        targets:
          - {provider: opnai, model: m}
          - {provider: openai}
          - {provider: openai, model: ok, weight: -1}
      - {model_alias: a, targets: [{provider: openai, model: m}]}
      - {model_alias: b}
    keys:
      - {key: sk-1}
      - {key: gnd_1, role: boss, expires_at: tomorrow}
    """
    assert sorted(_problems(tmp_path, text)) == sorted(
        [
            "server.wokers: unknown field",
            "server.shutdown_timeout: invalid duration '3x'",
            "server.log_format: invalid value 'jsn' (expected one of: auto, console, json)",
            "server.addr: must be host:port with a port from 1 to 65535",
            "cache.max_size: must be >= 0",
            "telemetry.tracing.sample_rate: must be <= 1.0",
            "telemetry.tracing.endpiont: unknown field",
            "extra: unknown section (expected one of: server, redis, database, auth, rate_limits, "
            "pricing, cache, circuit_breaker, telemetry, providers, routes, keys)",
            "providers[0].modles: unknown field",
            "providers[0].timeout_ms: expected int, got str",
            "providers[1].type: unknown provider type 'foo' "
            "(expected one of: anthropic, gemini, ollama, openai)",
            "providers[2].name: duplicate provider name 'p2' (also providers[1])",
            "providers[3].name: required field is missing",
            "providers[4].project: required for hosting 'vertex'",
            "providers[4].region: required for hosting 'vertex'",
            "routes[0].targets[0].provider: unknown provider 'opnai'",
            "routes[0].targets[1].model: required field is missing",
            "routes[0].targets[2].weight: must be >= 0",
            "routes[1].model_alias: duplicate alias 'a' (also routes[0])",
            "routes[2].targets: required field is missing",
            "keys[0].key: must start with 'gnd_'",
            "keys[1].role: invalid value 'boss' (expected one of: admin, member, service_account, "
            "viewer)",
            "keys[1].expires_at: must be an RFC3339 time (2027-01-01T00:00:00Z)",
        ]
    )


# YAML reading


def test_yaml_reads_as_go_does(tmp_path: Path) -> None:
    text = """
    providers:
      - {name: "no", type: openai, api_key: k, api_version: 2024-10-21, models: [on, off]}
    """
    config, _ = _load(tmp_path, text)
    (provider,) = config.providers
    assert (provider.name, provider.api_version, provider.models) == (
        "no",
        "2024-10-21",
        ("on", "off"),
    )


# Secrets


def test_no_secret_reaches_a_warning_or_a_problem(tmp_path: Path) -> None:
    text = """
    server:
      log_level: ${OPENAI_API_KEY}
    providers:
      - {name: openai, api_key: "${OPENAI_API_KEY}", hosting: "${ANTHROPIC_API_KEY}"}
      - {name: gemini, api_key: "AIza-literal-secret-42", base_url: "AIza-literal-secret-42"}
      - {name: anthropic, api_key: "${UNSET_KEY}"}
    keys:
      - {key: "${GANDALF_ADMIN_KEY}", role: "${GANDALF_ADMIN_KEY}"}
      - {key: "sk-not-a-gandalf-key-123"}
    """
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=SECRETS)
    message = str(caught.value)
    for secret in [*SECRETS.values(), "AIza-literal-secret-42", "sk-not-a-gandalf-key-123"]:
        assert secret not in message
    assert "server.log_level: invalid value '${OPENAI_API_KEY}'" in message
    assert "keys[0].role: invalid value '${GANDALF_ADMIN_KEY}'" in message


def test_no_secret_reaches_a_warning(tmp_path: Path) -> None:
    _, warnings = load_config(REPO / "configs" / "gandalf.yaml", environ={})
    _, more = load_config(REPO / "configs" / "gandalf.yaml", environ=SECRETS)
    assert warnings
    for secret in SECRETS.values():
        assert all(secret not in warning for warning in warnings + more)


# Shipped configurations


@pytest.mark.parametrize("path", [REPO / "configs" / "gandalf.yaml", None])
def test_the_shipped_configs_load_without_any_variable(path: Path | None) -> None:
    config, warnings = load_config(path, environ={})
    assert "key 'default-admin' skipped: GANDALF_ADMIN_KEY is not set" in warnings
    for name in ("openai", "anthropic", "gemini"):
        assert f"provider '{name}' skipped: {name.upper()}_API_KEY is not set" in warnings
    assert config.keys == ()
    assert config.server.workers == 2


@pytest.mark.parametrize("path", [REPO / "configs" / "gandalf.yaml", None])
def test_the_shipped_configs_load_with_every_variable(path: Path | None) -> None:
    config, warnings = load_config(path, environ=SECRETS)
    assert warnings == []
    assert {"openai", "anthropic", "gemini"} <= {p.name for p in config.providers}
    assert {p.name: p.resolved_api_key for p in config.providers}["openai"] == (
        SECRETS["OPENAI_API_KEY"]
    )
    (key,) = config.keys
    assert (key.name, key.key, key.role, key.org_id) == (
        "default-admin",
        ADMIN_KEY,
        "admin",
        "default",
    )


def test_the_example_config_routes_every_model_and_fails_over() -> None:
    config, _ = load_config(REPO / "configs" / "gandalf.yaml", environ=SECRETS)
    routes = {r.model_alias: [(t.provider, t.model) for t in r.targets] for r in config.routes}
    assert routes["gpt-4o"] == [("openai", "gpt-4o")]
    assert len(routes["smart"]) == 2
    for provider in config.providers:
        for model in provider.models:
            assert routes[model] == [(provider.name, model)]
    assert config.server.addr == ":8080"
    assert config.redis.url == ""
    assert config.circuit_breaker.enabled
    assert "ollama" not in {p.name for p in config.providers}


def test_the_example_config_writes_the_limit_price_and_cache_defaults() -> None:
    config, _ = load_config(REPO / "configs" / "gandalf.yaml", environ=SECRETS)
    defaults = Config()
    assert config.rate_limits == defaults.rate_limits
    assert config.cache == defaults.cache
    assert (config.pricing.version, config.pricing.defaults) == (DEFAULT_PRICES_VERSION, True)
    assert config.keys[0].budget_period == "monthly"
    table = config.pricing.table()
    assert table.lookup("my-finetune") == Price(input=3.0, output=12.0, cached_input=1.5)
    assert table.lookup("llama3:8b") == Price(input=0.0, output=0.0)
    assert table.lookup("claude-sonnet-4-6") == DEFAULT_PRICES["claude-sonnet-4-6*"]


def test_the_embedded_default_is_local_and_keeps_ollama() -> None:
    config, _ = load_config(environ={})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    (ollama,) = config.providers
    assert (ollama.name, ollama.resolved_base_url) == ("ollama", "http://localhost:11434")
    assert ollama.models
    assert config.routes == ()
    moved, _ = load_config(environ={"OLLAMA_BASE_URL": "http://gpu:11434/"})
    assert moved.providers[0].resolved_base_url == "http://gpu:11434"


def test_the_embedded_default_is_the_repository_copy() -> None:
    path = default_config_path()
    assert path.read_text() == (REPO / "configs" / "default.yaml").read_text()


# Process environment


def test_environment_overrides_from_the_supervisor(tmp_path: Path) -> None:
    env = {"GANDALF_REDIS_URL": "unix:///tmp/r.sock", "GANDALF_CONTROL_URL": "http://127.0.0.1:1"}
    config, _ = _load(tmp_path, "", env)
    assert (config.redis.url, config.server.control_url) == (
        "unix:///tmp/r.sock",
        "http://127.0.0.1:1",
    )


@pytest.mark.parametrize(("written", "workers"), [(True, 7), (False, 2)])
def test_config_from_environment_reads_gandalf_config(
    tmp_path: Path, written: bool, workers: int
) -> None:
    path = _write(tmp_path, "server:\n  workers: 7\n")
    env = {"PATH": "/usr/bin:/bin", CONFIG_ENV_VAR: str(path) if written else ""}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from app.config import config_from_environment as f; print(f()[0].server.workers)",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(workers)


def test_config_error_survives_pickling() -> None:
    error = ConfigError([ConfigProblem("f.yaml", "server.addr", "bad")])
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert copy.problems == error.problems
    assert str(copy) == "f.yaml: server.addr: bad"
