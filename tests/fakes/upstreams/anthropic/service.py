"""The ASGI application: the three dialects (direct, Vertex AI, Bedrock), auth, and `main`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

import msgspec

from tests.fakes.upstreams import server
from tests.fakes.upstreams.anthropic.answers import (
    bedrock_frame,
    input_tokens,
    message_json,
    plan,
    sse_frame,
    stream_events,
)
from tests.fakes.upstreams.anthropic.checks import (
    check_messages,
)
from tests.fakes.upstreams.anthropic.wire import (
    _BEDROCK_PATH,
    _VERTEX_PATH,
    API_KEY_ENV,
    AWS_ERROR_TYPES,
    BEDROCK_VERSION,
    COUNT_KEYS,
    ERROR_TYPES,
    MESSAGE_KEYS,
    VERTEX_VERSION,
    Behaviour,
    _decode,
    _encode,
    _ids,
)
from tests.fakes.upstreams.control import Control, Stats

# --- the application --------------------------------------------------------------------------


class Dialect(NamedTuple):
    """Where a request came in: what its body holds and how streams are framed."""

    name: str
    version: str = ""
    keys: frozenset[str] = MESSAGE_KEYS
    stream_frame: Callable[[dict[str, Any]], bytes] = sse_frame
    content_type: bytes = b"text/event-stream"


_HOSTED_KEYS: Final = MESSAGE_KEYS | {"anthropic_version"}
DIRECT: Final = Dialect("direct")
VERTEX: Final = Dialect("vertex", VERTEX_VERSION, _HOSTED_KEYS)
BEDROCK: Final = Dialect(
    "bedrock", BEDROCK_VERSION, _HOSTED_KEYS, bedrock_frame, b"application/vnd.amazon.eventstream"
)


def anthropic_error(status: int, message: str) -> bytes:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return _encode({"type": "error", "error": {"type": kind, "message": message}})


class FakeAnthropic(server.AsgiFake):
    """The ASGI application."""

    def __init__(self, api_key: str = "sk-fake") -> None:
        self.api_key = api_key
        self.control = Control(
            Behaviour(), Stats, anthropic_error, not_found="Not found: {method} {path}"
        )

    async def api(self, scope: server.Scope, body: bytes, send: server.Send) -> None:
        reply = _Reply(send)
        path: str = scope["path"]
        headers = server.request_headers(scope)
        stats = self.control.stats
        stats.count(f"{scope['method']} {path}", path, headers)
        try:
            stats.last_body[path] = msgspec.Raw(_encode(_decode(body)))
        except msgspec.DecodeError:
            stats.last_body[path] = body.decode("utf-8", "replace")
        await self._route(scope, headers, body, reply)

    async def _route(
        self, scope: server.Scope, headers: dict[str, str], body: bytes, reply: _Reply
    ) -> None:
        path: str = scope["path"]
        if scope["method"] != "POST":
            await reply.json(405, anthropic_error(405, f"Method {scope['method']} not allowed"))
        elif path in ("/v1/messages", "/v1/messages/count_tokens"):
            await self._direct(path, headers, body, reply)
        elif match := _VERTEX_PATH.fullmatch(path):
            problem = _vertex_auth(headers)
            if problem is not None:
                google = {"code": 401, "message": problem, "status": "UNAUTHENTICATED"}
                await reply.json(401, _encode({"error": google}))
            else:
                streamed = match.group(2) == "streamRawPredict"
                await self._messages(VERTEX, body, match.group(1), streamed, reply)
        elif match := _BEDROCK_PATH.fullmatch(path):
            problem = _bedrock_auth(scope, headers, body)
            if problem is not None:
                await reply.aws(403, "InvalidSignatureException", problem)
            else:
                streamed = match.group(2) == "invoke-with-response-stream"
                await self._messages(BEDROCK, body, match.group(1), streamed, reply)
        else:
            await reply.json(404, anthropic_error(404, f"Not found: {path}"))

    async def _direct(self, path: str, headers: dict[str, str], body: bytes, reply: _Reply) -> None:
        if headers.get("x-api-key") != self.api_key:
            await reply.json(401, anthropic_error(401, "invalid x-api-key"))
        elif not headers.get("anthropic-version"):
            await reply.json(400, anthropic_error(400, "anthropic-version: header is required"))
        elif path.endswith("count_tokens"):
            await self._count(body, reply)
        else:
            await self._messages(DIRECT, body, None, None, reply)

    async def _count(self, raw: bytes, reply: _Reply) -> None:
        try:
            body = _parse(raw)
            if not isinstance(body.get("model"), str):
                raise server.Refused("model: Field required")
            check_messages(body, keys=COUNT_KEYS, count=True)
        except server.Refused as refused:
            await reply.json(refused.status, anthropic_error(refused.status, refused.message))
            return
        await reply.json(200, _encode({"input_tokens": input_tokens(body)}))

    async def _messages(
        self, dialect: Dialect, raw: bytes, model: str | None, streamed: bool | None, reply: _Reply
    ) -> None:
        try:
            body = _parse(raw)
            model, streamed = _check_dialect(dialect, body, model, streamed)
            check_messages(body, keys=dialect.keys)
        except server.Refused as refused:
            await reply.error(dialect, refused.status, refused.message)
            return
        behaviour = self.control.take(model)
        if behaviour.status is not None:
            message = behaviour.error_message or f"Fake upstream error {behaviour.status}"
            await reply.error(dialect, behaviour.status, message)
            return
        answer = plan(body)
        ident = f"fake{next(_ids)}"
        unknown = behaviour.unknown_events
        if not streamed:
            await reply.json(200, message_json(answer, model, ident, unknown=unknown))
            return
        events = stream_events(answer, model, ident, unknown=unknown)
        if dialect is BEDROCK:
            events = [event for event in events if event["type"] != "ping"]
            events[-1]["amazon-bedrock-invocationMetrics"] = {
                "inputTokenCount": answer.input_tokens + answer.cache_read,
                "outputTokenCount": answer.output_tokens,
            }
        cut = behaviour.cut_after_events
        if cut is not None and cut < len(events):
            events = events[:cut]
            self.control.stats.cut_streams += 1
        else:
            self.control.stats.completed_streams += 1
        await reply.stream(dialect.content_type, [dialect.stream_frame(e) for e in events])


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = _decode(raw)
    except msgspec.DecodeError:
        raise server.Refused(
            "There was an error parsing the body of your request as JSON"
        ) from None
    if not isinstance(body, dict):
        raise server.Refused("Input should be a valid dictionary")
    return body


def _check_dialect(
    dialect: Dialect, body: dict[str, Any], model: str | None, streamed: bool | None
) -> tuple[str, bool]:
    """The model and whether to stream, after the hosting's own rules for the body."""
    if dialect is DIRECT:
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise server.Refused("model: Field required")
        return body["model"], body.get("stream") is True
    assert model is not None
    assert streamed is not None
    if "model" in body:
        raise server.Refused("model: Extra inputs are not permitted")
    if body.get("anthropic_version") != dialect.version:
        raise server.Refused(f"anthropic_version: Input should be '{dialect.version}'")
    if dialect is BEDROCK and "stream" in body:
        raise server.Refused("extraneous key [stream] is not permitted")
    if dialect is VERTEX and body.get("stream", False) is not streamed:
        action = "streamRawPredict" if streamed else "rawPredict"
        raise server.Refused(f"stream must be {str(streamed).lower()} on :{action}")
    return model, streamed


def _vertex_auth(headers: dict[str, str]) -> str | None:
    """Why a Vertex request's bearer token is refused, or None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme != "Bearer" or not token:
        return "Request is missing required authentication credential."
    from tests.fakes.gcp_token import token_is_valid  # noqa: PLC0415 - written alongside

    if not token_is_valid(token):
        return "Request had invalid authentication credentials."
    return None


def _bedrock_auth(scope: server.Scope, headers: dict[str, str], body: bytes) -> str | None:
    """Why a Bedrock request's SigV4 signature is refused, or None."""
    from tests.fakes.sigv4 import verify_sigv4  # noqa: PLC0415 - written alongside

    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"").decode("latin-1")
    reason: str | None = verify_sigv4("POST", raw_path.decode("latin-1"), query, headers, body)
    return reason


class _Reply:
    """Sends one ASGI response."""

    def __init__(self, send: server.Send) -> None:
        self._send = send

    async def json(
        self, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        headers = [(b"content-type", b"application/json"), *extra]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def aws(self, status: int, kind: str, message: str) -> None:
        extra = [(b"x-amzn-errortype", kind.encode())]
        await self.json(status, _encode({"message": message}), extra)

    async def error(self, dialect: Dialect, status: int, message: str) -> None:
        if dialect is BEDROCK:
            kind = AWS_ERROR_TYPES.get(status, "InternalServerException")
            await self.aws(status, kind, message)
        else:
            await self.json(status, anthropic_error(status, message))

    async def stream(self, content_type: bytes, frames: list[bytes]) -> None:
        headers = [(b"content-type", content_type), (b"cache-control", b"no-cache")]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        for frame in frames:
            await self._send({"type": "http.response.body", "body": frame, "more_body": True})
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


app = FakeAnthropic(os.environ.get(API_KEY_ENV, "sk-fake"))
