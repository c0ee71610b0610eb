"""The ASGI application: deployment and v1 routes, api-key auth, behaviours, and `main`."""

from __future__ import annotations

import os
from typing import Any, Final

import msgspec

from tests.fakes.upstreams import control, server
from tests.fakes.upstreams.azure.answers import (
    chat_chunks,
    chat_completion,
    embeddings,
    script,
)
from tests.fakes.upstreams.azure.checks import (
    check_chat,
    check_embeddings,
)
from tests.fakes.upstreams.azure.wire import (
    _API_VERSION,
    _DEPLOYMENT_ROUTE,
    _V1_ROUTE,
    API_KEY_ENV,
    NOT_FOUND,
    UNAUTHORIZED,
    Behaviour,
    Stats,
    _decode,
    _encode,
    azure_error,
    openai_error,
)

# --- the ASGI application -------------------------------------------------------------------


JSON: Final = [(b"content-type", b"application/json")]


async def _send_json(send: server.Send, status: int, body: Any) -> None:
    await server.respond(send, status, _encode(body), JSON)


def _control_error(status: int, message: str) -> bytes:
    """Azure's 404 for an unknown control route; the OpenAI shape for a bad behaviour."""
    return _encode(NOT_FOUND if status == 404 else openai_error(message))


def _status_error(status: int, message: str | None) -> dict[str, Any]:
    if status == 429:
        text = "Requests to the ChatCompletions_Create Operation have exceeded the token rate limit"
        return azure_error("429", message or text)
    if status >= 500:
        return azure_error("InternalServerError", message or "The server had an error.")
    return openai_error(message or f"Fake Azure error {status}", code=str(status))


class FakeAzure(server.AsgiFake):
    """The ASGI application."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.control = control.Control(Behaviour(), Stats, _control_error, cleared=b"{}")

    async def api(self, scope: server.Scope, raw: bytes, send: server.Send) -> None:
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        headers = server.request_headers(scope)
        stats = self.control.stats
        full = f"{path}?{query}" if query else path
        stats.count(f"{scope['method']} {full}", path, headers)
        stats.paths.append(full)
        if len(stats.paths) > 10_000:  # a load test must not grow it without end
            del stats.paths[:5_000]
        stats.last_body[path] = msgspec.Raw(raw)
        deployment = _DEPLOYMENT_ROUTE.fullmatch(path)
        route = deployment or _V1_ROUTE.fullmatch(path)
        if route is None or scope["method"] != "POST":
            await _send_json(send, 404, NOT_FOUND)
            return
        if headers.get("api-key") != self.api_key:
            await _send_json(send, 401, UNAUTHORIZED)
            return
        versions = [
            v for k, _, v in (p.partition("=") for p in query.split("&")) if k == "api-version"
        ]
        if deployment is not None and not (versions and _API_VERSION.fullmatch(versions[-1])):
            await _send_json(send, 404, NOT_FOUND)
            return
        try:
            body = _decode(raw)
        except msgspec.DecodeError:
            await _send_json(send, 400, openai_error("We could not parse the JSON body."))
            return
        if not isinstance(body, dict):
            await _send_json(send, 400, openai_error("Invalid type for body: expected an object."))
            return
        model = deployment["deployment"] if deployment is not None else body.get("model")
        if not isinstance(model, str) or not model:
            await _send_json(send, 400, openai_error("you must provide a model parameter", "model"))
            return
        await self._operation(route["operation"], model, body, send)

    async def _operation(
        self, operation: str, model: str, body: dict[str, Any], send: server.Send
    ) -> None:
        chat = operation == "/chat/completions"
        problem = check_chat(body) if chat else check_embeddings(body)
        if problem is not None:
            await _send_json(send, 400, openai_error(*problem))
            return
        behaviour = self.control.take(model)
        if behaviour.status is not None:
            await _send_json(
                send, behaviour.status, _status_error(behaviour.status, behaviour.message)
            )
            return
        if not chat:
            await _send_json(send, 200, embeddings(model, body))
            return
        answer = script(body)
        if not body.get("stream"):
            await _send_json(send, 200, chat_completion(model, answer))
            return
        options = body.get("stream_options") or {}
        chunks = chat_chunks(model, answer, options.get("include_usage") is True)
        await self._stream(send, chunks, behaviour.cut_after_events)

    async def _stream(
        self, send: server.Send, chunks: list[dict[str, Any]], cut: int | None
    ) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        cutting = cut is not None and cut < len(chunks)
        for chunk in chunks[:cut] if cutting else chunks:
            frame = b"data: " + _encode(chunk) + b"\n\n"
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        if cutting:
            self.control.stats.cut_streams += 1
            await send({"type": "http.response.body", "body": b""})
            return
        self.control.stats.completed_streams += 1
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


app = FakeAzure(os.environ.get(API_KEY_ENV, "azure-fake-key"))
