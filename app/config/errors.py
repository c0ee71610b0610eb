"""What a bad configuration raises: every problem, each with its file, field path and reason."""

from __future__ import annotations

import msgspec


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
