"""The fake Gemini's vocabulary: settings, Google's error body, behaviours and stats.

The checks, the answers and the service all build on these, so they sit apart from each.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Final

import msgspec

from tests.fakes.upstreams import control, server

API_KEY_ENV: Final = "FAKE_GEMINI_API_KEY"
CLI: Final = server.Cli("A fake Gemini API.", 8102, "fake-gemini-key", API_KEY_ENV)
EMBEDDING_SIZE: Final = 8

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_ids = itertools.count(1)

STATUS_NAMES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
BLOCKING: Final = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"})
_DIRECT = re.compile(r"^/v1beta/models/([^/:]+):([A-Za-z]+)$")
_VERTEX = re.compile(
    r"^/v1/projects/[^/]+/locations/[^/]+/publishers/google/models/([^/:]+):([A-Za-z]+)$"
)
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,63}$")
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "x-goog-api-key"})


class Behaviour(control.Behaviour):
    finish_reason: str | None = None
    block_reason: str | None = None


class Stats(control.Stats):
    """The shared stats, plus the query string of the last request per path."""

    def __init__(self) -> None:
        super().__init__()
        self.last_query: dict[str, str] = {}


def error_body(status: int, message: str) -> bytes:
    name = STATUS_NAMES.get(status, "UNKNOWN")
    return _encode({"error": {"code": status, "message": message, "status": name}})


def _unknown(name: str, where: str) -> server.Refused:
    at = f" at '{where}'" if where else ""
    return server.Refused(
        f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
    )


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> None:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise server.Refused(f"Invalid value at '{where}', {_encode(value).decode()}")
    if not isinstance(value, kind):
        raise server.Refused(f"Invalid value at '{where}', {_encode(value).decode()}")


def _known(obj: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise server.Refused(f"Invalid value at '{where}': expected an object")
    for key in obj:
        if key not in allowed:
            raise _unknown(key, where)
    return obj
