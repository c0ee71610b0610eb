"""The fake Azure's vocabulary: settings, routes, Azure- and OpenAI-shaped errors, behaviours.

The checks, the answers and the service all build on these, so they sit apart from each.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Final

import msgspec

from tests.fakes.upstreams import control, server

API_KEY_ENV: Final = "FAKE_AZURE_API_KEY"
CLI: Final = server.Cli("A fake Azure OpenAI resource.", 8105, "azure-fake-key", API_KEY_ENV)
ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
_DEPLOYMENT_ROUTE = re.compile(
    r"/openai/deployments/(?P<deployment>[^/]+)(?P<operation>/chat/completions|/embeddings)"
)
_V1_ROUTE = re.compile(r"/openai/v1(?P<operation>/chat/completions|/embeddings)")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_VECTOR: Final = [0.125 * (i + 1) for i in range(8)]
_FILTER_RESULTS: Final = {
    name: {"filtered": False, "severity": "safe"}
    for name in ("hate", "self_harm", "sexual", "violence")
}

Problem = tuple[str, str | None]

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_ids = itertools.count(1)


def azure_error(code: str, message: str) -> dict[str, Any]:
    """Azure's own error shape (auth, routing, throttling)."""
    return {"error": {"code": code, "message": message}}


def openai_error(message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape Azure uses for invalid request bodies."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return {"error": error}


NOT_FOUND: Final = azure_error("404", "Resource not found")
UNAUTHORIZED: Final = azure_error(
    "401",
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource.",
)


Behaviour = control.Behaviour
"""Its `model` is the deployment, or the `model` of a v1 body."""


class Stats(control.Stats):
    """The shared stats, plus every path with its query string, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []
