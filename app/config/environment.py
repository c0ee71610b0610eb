"""Environment variables the gateway reads, and the environment the supervisor hands on."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV_VAR = "GANDALF_CONFIG"
REDIS_URL_ENV_VAR = "GANDALF_REDIS_URL"
CONTROL_URL_ENV_VAR = "GANDALF_CONTROL_URL"
ADMIN_KEY_ENV_VAR = "GANDALF_ADMIN_KEY"
SUPERVISOR_PID_ENV_VAR = "GANDALF_SUPERVISOR_PID"
SERVER_PID_ENV_VAR = "GANDALF_SERVER_PID"
"""Set by `gandalf serve` for its Granian workers: the process that must be their parent."""


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
    env[SUPERVISOR_PID_ENV_VAR] = str(os.getpid())
    return env


def process_environment() -> dict[str, str]:
    """A copy of this process's environment, for the children the supervisor starts."""
    return dict(os.environ)


def supervisor_pid_from_environment() -> int | None:
    """The supervisor that started this data plane, if one did."""
    value = os.environ.get(SUPERVISOR_PID_ENV_VAR, "")
    return int(value) if value.isdigit() else None


def server_pid_from_environment() -> int | None:
    """The `gandalf serve` process this worker belongs to, if it was started by one."""
    value = os.environ.get(SERVER_PID_ENV_VAR, "")
    return int(value) if value.isdigit() else None
