"""`GatewayError` → OpenAI-shaped error body: the one place errors are rendered."""

from __future__ import annotations

import msgspec

from app.domain import GatewayError, UpstreamStatus


class _ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


_encode = msgspec.json.encode
JSON = b"application/json"


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}` as bytes."""
    return _encode(_ErrorBody(_ErrorDetail(message, type_, param, code)))


def render(error: GatewayError) -> tuple[int, bytes, bytes]:
    """(status, body, content type) for an error; an upstream 4xx is passed through as it came."""
    if isinstance(error, UpstreamStatus) and error.passes_through:
        content_type = error.content_type.encode() or JSON
        return error.upstream_status, error.body, content_type
    return (
        error.http_status,
        error_body(error.message, error.type, error.param, error.code),
        JSON,
    )


def stream_error_frame(error: GatewayError) -> bytes:
    """An `event: error` SSE frame for a failure after the stream's head was sent."""
    return (
        b"event: error\ndata: "
        + error_body(error.message, error.type, error.param, error.code)
        + b"\n\n"
    )
