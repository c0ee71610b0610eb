"""The fake OpenAI's vocabulary: its behaviours, stats and OpenAI-shaped error bodies.

Every other module of the fake builds on these, so they sit apart from the rules and the answers.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Final

import msgspec
from granian._granian import RSGIHeaders as RequestHeaders

from tests.fakes.upstreams import control, server

API_KEY_ENV: Final = "FAKE_OPENAI_API_KEY"
CLI: Final = server.Cli("A fake OpenAI API.", 8101, "sk-fake", API_KEY_ENV, rsgi=True)
DEFAULT_CHUNKS: Final = 20

Headers = list[tuple[str, str]]
JSON_HEADERS: Final[Headers] = [("content-type", "application/json")]
SSE_HEADERS: Final[Headers] = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_ids = itertools.count(1)

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Behaviour(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the fake does for one model (or `"*"`): see the module docstring."""

    model: str
    status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None
    error_message: str | None = None
    delay_ms: NonNegative = 0
    first_token_delay_ms: NonNegative = 0
    chunk_delay_ms: NonNegative = 0
    chunks: NonNegative = DEFAULT_CHUNKS
    cut_after_chunks: NonNegative | None = None
    times: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Stats(control.Stats):
    """The shared stats, keyed by model, plus the clients gone before their answer ended.

    `last_headers` holds Granian's header objects: made dicts only when rendered.
    """

    def __init__(self) -> None:
        super().__init__()
        self.disconnects = 0

    def fields(self) -> dict[str, Any]:
        headers = {m: _headers(h) for m, h in self.last_headers.items()}
        return {**super().fields(), "last_headers": headers}


# --- OpenAI-shaped errors -------------------------------------------------------------------


def error_body(
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> bytes:
    """The body of an OpenAI error response."""
    return _encode({"error": {"message": message, "type": kind, "param": param, "code": code}})


_UNAUTHORIZED: Final = error_body("Incorrect API key provided", code="invalid_api_key")
_NOT_AN_OBJECT: Final = error_body("Invalid type for body: expected an object.")
_BAD_JSON: Final = error_body(
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)


def _status_error(status: int, message: str | None) -> bytes:
    """The error body for a scripted `status`, typed the way the real API types it."""
    if status == 429:
        return error_body(message or "Rate limit reached", None, "rate_limit_exceeded", "requests")
    if status >= 500:
        return error_body(message or "The server had an error", kind="server_error")
    return error_body(message or f"Fake upstream error {status}")


def _headers(request_headers: RequestHeaders) -> dict[str, str]:
    """The request headers by lower-case name; repeated ones joined with ", "."""
    items = request_headers.items()
    headers = dict(items)
    if len(headers) != len(items):
        headers = {}
        for name, value in items:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
