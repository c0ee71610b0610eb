"""Configuration: Gandalf's YAML schema, `${VAR}` expansion, and validation.

The file is parsed first and `${VAR}` is expanded inside string values afterwards, so a
variable can never inject YAML. Validation reports every problem at once, each with its file,
field path and reason; secrets never appear in a problem or a warning.

The only package that reads the environment. `schema` holds the Structs, `load` reads the
file, `expand` resolves `${VAR}`, `convert` turns msgspec's first-error-only reports into a
full list with paths, `validate` cross-checks fields, and `environment` names the variables.
Import from `app.config`; the modules are its layout, not its interface.
"""

from app.config.environment import (
    ADMIN_KEY_ENV_VAR,
    CONFIG_ENV_VAR,
    CONTROL_URL_ENV_VAR,
    REDIS_URL_ENV_VAR,
    SERVER_PID_ENV_VAR,
    SUPERVISOR_PID_ENV_VAR,
    admin_key_from_environment,
    process_environment,
    secret_from_environment,
    server_pid_from_environment,
    set_worker_environment,
    supervisor_pid_from_environment,
)
from app.config.errors import ConfigError, ConfigProblem
from app.config.load import config_from_environment, default_config_path, load_config
from app.config.schema import (
    DEFAULT_BASE_URLS,
    KEY_PREFIX,
    PROVIDER_TYPES,
    AuthConfig,
    CacheConfig,
    CircuitBreakerConfig,
    Config,
    DatabaseConfig,
    Duration,
    Fraction,
    KeyConfig,
    MetricsConfig,
    NonNegative,
    Positive,
    PricingConfig,
    ProviderAuthConfig,
    ProviderConfig,
    RateLimitConfig,
    RedisConfig,
    RouteConfig,
    RouteTarget,
    ServerConfig,
    TelemetryConfig,
    TracingConfig,
    parse_duration,
)
from app.config.validate import build_config

__all__ = [
    "ADMIN_KEY_ENV_VAR",
    "CONFIG_ENV_VAR",
    "CONTROL_URL_ENV_VAR",
    "DEFAULT_BASE_URLS",
    "KEY_PREFIX",
    "PROVIDER_TYPES",
    "REDIS_URL_ENV_VAR",
    "SERVER_PID_ENV_VAR",
    "SUPERVISOR_PID_ENV_VAR",
    "AuthConfig",
    "CacheConfig",
    "CircuitBreakerConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DatabaseConfig",
    "Duration",
    "Fraction",
    "KeyConfig",
    "MetricsConfig",
    "NonNegative",
    "Positive",
    "PricingConfig",
    "ProviderAuthConfig",
    "ProviderConfig",
    "RateLimitConfig",
    "RedisConfig",
    "RouteConfig",
    "RouteTarget",
    "ServerConfig",
    "TelemetryConfig",
    "TracingConfig",
    "admin_key_from_environment",
    "build_config",
    "config_from_environment",
    "default_config_path",
    "load_config",
    "parse_duration",
    "process_environment",
    "secret_from_environment",
    "server_pid_from_environment",
    "set_worker_environment",
    "supervisor_pid_from_environment",
]
