"""Each vendor's error shapes: a gateway error as the vendor's SDK expects it, and a stream's end.

An upstream error passes through as the upstream sent it, except from a cloud hosting of
Anthropic (Vertex AI, Bedrock), whose error bodies are not Anthropic's and are reshaped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from app.providers.anthropic import translate_error
from app.providers.native.request import Framing, Vendor
from app.providers.sse import DONE_FRAME

if TYPE_CHECKING:
    from app.providers.native.plan import Plan

_encode = msgspec.json.encode


ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
GOOGLE_STATUSES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class _AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class _AnthropicError(msgspec.Struct, tag_field="type", tag="error"):
    error: _AnthropicErrorDetail


class _GoogleErrorDetail(msgspec.Struct):
    code: int
    message: str
    status: str


class _GoogleError(msgspec.Struct):
    error: _GoogleErrorDetail


class _OllamaError(msgspec.Struct):
    error: str


def anthropic_error(status: int, message: str, kind: str | None = None) -> bytes:
    """`{"type": "error", "error": {"type", "message"}}`, the type from the status."""
    kind = kind or ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return _encode(_AnthropicError(_AnthropicErrorDetail(kind, message)))


def gemini_error(status: int, message: str) -> bytes:
    """Google's `{"error": {"code", "message", "status"}}`."""
    name = GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return _encode(_GoogleError(_GoogleErrorDetail(status, message, name)))


def ollama_error(message: str) -> bytes:
    """Ollama's `{"error": "..."}`."""
    return _encode(_OllamaError(message))


def error_body(vendor: Vendor, status: int, message: str) -> bytes | None:
    """A gateway error in `vendor`'s shape; None for Azure (OpenAI's shape, rendered as such)."""
    if vendor is Vendor.ANTHROPIC:
        return anthropic_error(status, message)
    if vendor is Vendor.GEMINI:
        return gemini_error(status, message)
    if vendor is Vendor.OLLAMA:
        return ollama_error(message)
    return None


class _OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str


class _OpenAIError(msgspec.Struct):
    error: _OpenAIErrorDetail


_decode_openai_error = msgspec.json.Decoder(_OpenAIError).decode


def upstream_error(plan: Plan, status: int, body: bytes, content_type: str) -> tuple[bytes, str]:
    """An upstream error body for the client: as it came, or Anthropic-shaped for a cloud."""
    if not plan.reshape_errors:
        return body, content_type
    error = _decode_openai_error(translate_error(status, body)).error
    return anthropic_error(status, error.message, error.type), "application/json"


_STREAM_ERROR = "upstream stream error"


def stream_error(vendor: Vendor, framing: Framing) -> bytes:
    """What ends a stream that broke after its head was sent, in the vendor's own way.

    Nothing for a Gemini JSON array: left open, it cannot be parsed, which says enough.
    """
    if framing is Framing.JSON_ARRAY:
        return b""
    if vendor is Vendor.ANTHROPIC:
        return b"event: error\ndata: " + anthropic_error(502, _STREAM_ERROR, "api_error") + b"\n\n"
    if vendor is Vendor.GEMINI:
        return b"data: " + gemini_error(502, _STREAM_ERROR) + b"\n\n"
    if vendor is Vendor.OLLAMA:
        return ollama_error(_STREAM_ERROR) + b"\n"
    detail = _OpenAIErrorDetail(_STREAM_ERROR, "stream_error")
    return b"event: error\ndata: " + _encode(_OpenAIError(detail)) + b"\n\n" + DONE_FRAME
