"""The ASGI application: the direct and Vertex AI routes, auth, behaviours, and `main`."""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import parse_qs

import msgspec

from tests.fakes.upstreams import control, server
from tests.fakes.upstreams.gemini.answers import (
    MODELS,
    embeddings,
    events,
    predictions,
    script,
    whole,
)
from tests.fakes.upstreams.gemini.checks import (
    check_embed,
    check_generate,
    check_predict,
)
from tests.fakes.upstreams.gemini.wire import (
    _CREDENTIAL_HEADERS,
    _DIRECT,
    _VERTEX,
    API_KEY_ENV,
    Behaviour,
    Stats,
    _decode,
    error_body,
)

# --- the ASGI application -------------------------------------------------------------------

JSON: Final = [(b"content-type", b"application/json; charset=UTF-8")]


def token_is_valid(token: str) -> bool:
    """The shared fake token store's verdict (another module; imported only when needed)."""
    from tests.fakes.gcp_token import token_is_valid as valid  # noqa: PLC0415

    return bool(valid(token))


class FakeGemini(server.AsgiFake):
    json_headers = JSON

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.control = control.Control(Behaviour(), Stats, error_body)

    async def api(self, scope: server.Scope, raw: bytes, send: server.Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            await self._serve(scope, method, path, raw, send)
        except server.Refused as exc:
            await server.respond(send, exc.status, error_body(exc.status, exc.message), JSON)

    def _record(self, scope: server.Scope, method: str, path: str, raw: bytes) -> dict[str, str]:
        stats = self.control.stats
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        shown = {k: "***" if k in _CREDENTIAL_HEADERS else v for k, v in headers.items()}
        stats.count(f"{method} {path}", path, shown)
        stats.last_query[path] = scope["query_string"].decode("latin-1")
        if raw:
            stats.last_body[path] = msgspec.Raw(raw)
        return headers

    async def _serve(
        self, scope: server.Scope, method: str, path: str, raw: bytes, send: server.Send
    ) -> None:
        headers = self._record(scope, method, path, raw)
        query = parse_qs(scope["query_string"].decode("latin-1"))
        direct, vertex = _DIRECT.match(path), _VERTEX.match(path)
        if method == "GET" and path == "/v1beta/models":
            self._check_key(headers, query)
            await server.respond(send, 200, MODELS, JSON)
            return
        match = direct or vertex
        if method != "POST" or match is None:
            raise server.Refused(f"The requested URL {path} was not found on this server.", 404)
        if direct:
            self._check_key(headers, query)
        else:
            _check_token(headers)
        model, action = match.group(1), match.group(2)
        try:
            body = _decode(raw)
        except msgspec.DecodeError as exc:
            raise server.Refused(f"Invalid JSON payload received. {exc}") from exc
        if action == "batchEmbedContents" and direct:
            vectors = embeddings(check_embed(body, model))
            self._behaviour(model)  # embeddings take scripted statuses too
            await server.respond(send, 200, vectors, JSON)
            return
        if action == "predict" and vertex:
            texts = check_predict(body)
            self._behaviour(model)
            await server.respond(send, 200, predictions(texts), JSON)
            return
        if action not in ("generateContent", "streamGenerateContent"):
            raise server.Refused(f"Method {action} not found for models/{model}.", 404)
        declared = check_generate(body)
        behaviour = self._behaviour(model)
        answer = script(body, declared)
        count = body.get("generationConfig", {}).get("candidateCount", 1)
        if action == "generateContent":
            await server.respond(send, 200, whole(answer, model, count, behaviour), JSON)
            return
        sse = query.get("alt") == ["sse"]
        await self._stream(send, events(answer, model, count, behaviour), behaviour, sse=sse)

    def _check_key(self, headers: dict[str, str], query: dict[str, list[str]]) -> None:
        key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
        if not key:
            raise server.Refused(
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
                403,
            )
        if key != self.api_key:
            raise server.Refused("API key not valid. Please pass a valid API key.", 400)

    def _behaviour(self, model: str) -> Behaviour:
        behaviour = self.control.take(model)
        if behaviour.status is not None and behaviour.status >= 400:
            message = behaviour.message or f"Fake upstream error {behaviour.status}"
            raise server.Refused(message, behaviour.status)
        return behaviour

    async def _stream(
        self, send: server.Send, frames: list[bytes], behaviour: Behaviour, *, sse: bool
    ) -> None:
        if sse:
            pieces = [b"data: " + frame + b"\r\n\r\n" for frame in frames]
            kind = b"text/event-stream"
        else:  # without alt=sse Google streams one JSON array, element by element
            pieces = [(b"[" if i == 0 else b",\r\n") + f for i, f in enumerate(frames)]
            pieces.append(b"]")
            kind = b"application/json; charset=UTF-8"
        headers = [(b"content-type", kind)]
        await server.stream_or_cut(
            send, headers, pieces, behaviour.cut_after_events, self.control.stats
        )


def _check_token(headers: dict[str, str]) -> None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme != "Bearer" or not token or not token_is_valid(token):
        raise server.Refused(
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential.",
            401,
        )


app = FakeGemini(os.environ.get(API_KEY_ENV, "fake-gemini-key"))
