"""Reading a configuration file: YAML parsing with duplicate-key detection, then validation."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from app.config.environment import CONFIG_ENV_VAR
from app.config.errors import ConfigError, ConfigProblem
from app.config.schema import Config
from app.config.validate import build_config

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


def default_config_path() -> Path:
    """The embedded default: package data when installed, else the source tree's copy."""
    packaged = Path(__file__).parent.with_name("default.yaml")
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


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
