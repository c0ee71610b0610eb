"""`${VAR}` expansion in parsed YAML values, noting unset and malformed references by path."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

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
