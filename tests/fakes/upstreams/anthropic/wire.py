"""The fake Anthropic's vocabulary: settings, the body fields and error types it knows, `Behaviour`.

Both the checks and the service read these, so they sit apart from either.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Final

import msgspec

from tests.fakes.upstreams import server

API_KEY_ENV: Final = "FAKE_ANTHROPIC_API_KEY"
CLI: Final = server.Cli(
    "A fake Anthropic Messages API (direct, Vertex AI and Bedrock paths).",
    8102,
    "sk-fake",
    API_KEY_ENV,
)
VERTEX_VERSION: Final = "vertex-2023-10-16"
BEDROCK_VERSION: Final = "bedrock-2023-05-31"
MEDIA_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_ids = itertools.count(1)
_VERTEX_PATH = re.compile(
    r"/v1/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/([^/:]+):"
    r"(rawPredict|streamRawPredict)"
)
_BEDROCK_PATH = re.compile(r"/model/([^/]+)/(invoke|invoke-with-response-stream)")
_WORDS = re.compile(r"\S+\s*")

MESSAGE_KEYS: Final = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tools",
        "tool_choice",
        "stream",
        "thinking",
        "service_tier",
    }
)
COUNT_KEYS: Final = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})
ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
AWS_ERROR_TYPES: Final = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


class Behaviour(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the fake does for one model (or `"*"`): see the module docstring."""

    model: str = "*"
    status: Annotated[int, msgspec.Meta(ge=400, le=599)] | None = None
    error_message: str | None = None
    cut_after_events: Annotated[int, msgspec.Meta(ge=0)] | None = None
    unknown_events: bool = False
    times: Annotated[int, msgspec.Meta(ge=1)] | None = None
