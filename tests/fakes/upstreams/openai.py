"""A fake OpenAI API on loopback: strict about what it receives, fast, and scriptable.

Run: `python -m tests.fakes.upstreams.openai --port 8101 [--api-key sk-fake] [--workers 1]`.

It answers chat (plain and SSE), legacy completions, embeddings and the model list the way
the real API does, checking the bearer key and the required fields. The answer is a fixed
sequence of `chunks` tokens (default 20) whether streamed or not, so the same request gives the
same text and the same usage both ways.

Control (no auth; state is per process, so use one worker when scripting behaviour):
`POST /_fake/behaviour` `{"model", "status", "error_message", "delay_ms", "first_token_delay_ms",
"chunk_delay_ms", "chunks", "cut_after_chunks", "times"}` (model "*" matches any);
`DELETE /_fake/behaviour`; `POST /_fake/reset`; `GET /_fake/stats`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import struct
import time
from collections import Counter
from typing import Any

import msgspec
from granian.rsgi import HTTPProtocol, Scope


class Behaviour(msgspec.Struct, kw_only=True):
    model: str
    status: int | None = None
    error_message: str | None = None
    delay_ms: int = 0
    first_token_delay_ms: int = 0
    chunk_delay_ms: int = 0
    chunks: int = 20
    cut_after_chunks: int | None = None
    times: int | None = None


class Stats:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.total = 0
        self.disconnects = 0
        self.completed_streams = 0
        self.last_body: dict[str, Any] = {}
        self.last_headers: dict[str, dict[str, str]] = {}

    def render(self) -> bytes:
        return msgspec.json.encode(
            {
                "total": self.total,
                "requests": dict(self.requests),
                "disconnects": self.disconnects,
                "completed_streams": self.completed_streams,
                "last_body": self.last_body,
                "last_headers": self.last_headers,
            }
        )


class Cut(Exception):
    """Raised mid-stream: Granian then drops the connection without ending the body."""


JSON = [("content-type", "application/json")]
SSE = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
_decode = msgspec.json.decode
_encode = msgspec.json.encode
_ids = itertools.count(1)


def _error(message: str, param: str | None = None, code: str | None = None) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return _encode({"error": error})


def _tokens(n: int) -> list[str]:
    return [f"tok{i} " for i in range(n)]


def _prompt_tokens(body: dict[str, Any]) -> int:
    text = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            text += len(content)
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            text += len(value)
        elif isinstance(value, list):
            text += sum(len(v) if isinstance(v, str) else 1 for v in value)
    return text // 4 + 1


class FakeOpenAI:
    """The RSGI application."""

    def __init__(self, api_key: str) -> None:
        self.expected_auth = f"Bearer {api_key}"
        self.behaviours: dict[str, Behaviour] = {}
        self.stats = Stats()

    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol) -> None:
        path = scope.path
        if path.startswith("/_fake/"):
            await self._control(scope, proto)
            return
        body_bytes = await proto()
        if scope.headers.get("authorization") != self.expected_auth:
            proto.response_bytes(
                401, JSON, _error("Incorrect API key provided", code="invalid_api_key")
            )
            return
        if scope.method == "GET" and path == "/v1/models":
            proto.response_bytes(200, JSON, _MODELS)
            return
        handler = _ROUTES.get(path)
        if handler is None or scope.method != "POST":
            proto.response_bytes(404, JSON, _error(f"Unknown request URL: {scope.method} {path}"))
            return
        try:
            body = _decode(body_bytes)
        except msgspec.DecodeError:
            proto.response_bytes(
                400, JSON, _error("We could not parse the JSON body of your request.")
            )
            return
        problem = _check(path, body)
        if problem is not None:
            proto.response_bytes(400, JSON, _error(problem[0], param=problem[1]))
            return
        model = body["model"]
        self.stats.total += 1
        self.stats.requests[f"POST {path} {model}"] += 1
        self.stats.last_body[model] = body
        self.stats.last_headers[model] = {k: scope.headers.get(k) for k in scope.headers.keys()}  # noqa: SIM118
        await handler(self, proto, body, self._behaviour(model))

    def _behaviour(self, model: str) -> Behaviour:
        behaviour = self.behaviours.get(model) or self.behaviours.get("*")
        if behaviour is None:
            return _DEFAULT
        if behaviour.times is not None:
            behaviour.times -= 1
            if behaviour.times <= 0:
                self.behaviours.pop(behaviour.model, None)
        return behaviour

    async def _wait(self, proto: HTTPProtocol, ms: int) -> bool:
        """Sleep, unless the client goes away first (then count it and return False)."""
        if ms <= 0:
            return True
        sleeper = asyncio.ensure_future(asyncio.sleep(ms / 1000))
        gone = asyncio.ensure_future(proto.client_disconnect())
        done, pending = await asyncio.wait({sleeper, gone}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if gone in done:
            self.stats.disconnects += 1
            return False
        return True

    async def chat(self, proto: HTTPProtocol, body: dict[str, Any], b: Behaviour) -> None:
        if not await self._wait(proto, b.delay_ms) or self._failed(proto, b):
            return
        model, tokens = body["model"], _tokens(b.chunks)
        usage = _usage(_prompt_tokens(body), len(tokens))
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(tokens), "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            proto.response_bytes(
                200, JSON, _encode(_envelope("chat.completion", model, [choice], usage))
            )
            return
        frames = [
            _chunk(model, {"role": "assistant", "content": ""} if i == 0 else {"content": t})
            for i, t in enumerate(["", *tokens])
        ]
        frames.append(_chunk(model, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append(_sse(_envelope("chat.completion.chunk", model, [], usage)))
        await self._stream(proto, frames, b)

    async def completions(self, proto: HTTPProtocol, body: dict[str, Any], b: Behaviour) -> None:
        if not await self._wait(proto, b.delay_ms) or self._failed(proto, b):
            return
        model, tokens = body["model"], _tokens(b.chunks)
        usage = _usage(_prompt_tokens(body), len(tokens))

        def choice(text: str, finish: str | None) -> dict[str, Any]:
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

        if not body.get("stream"):
            envelope = _envelope("text_completion", model, [choice("".join(tokens), "stop")], usage)
            proto.response_bytes(200, JSON, _encode(envelope))
            return
        frames = [_sse(_envelope("text_completion", model, [choice(t, None)])) for t in tokens]
        frames.append(_sse(_envelope("text_completion", model, [choice("", "stop")])))
        await self._stream(proto, frames, b)

    async def embeddings(self, proto: HTTPProtocol, body: dict[str, Any], b: Behaviour) -> None:
        if not await self._wait(proto, b.delay_ms) or self._failed(proto, b):
            return
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if inputs and isinstance(inputs[0], int):
            inputs = [inputs]
        vector = [0.125 * (i + 1) for i in range(8)]
        packed = base64.b64encode(struct.pack("<8f", *vector)).decode()
        value: Any = packed if body.get("encoding_format") == "base64" else vector
        data = [{"object": "embedding", "index": i, "embedding": value} for i in range(len(inputs))]
        tokens = _prompt_tokens(body)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        answer = {"object": "list", "data": data, "model": body["model"], "usage": usage}
        proto.response_bytes(200, JSON, _encode(answer))

    def _failed(self, proto: HTTPProtocol, b: Behaviour) -> bool:
        if b.status is None or b.status < 400:
            return False
        message = b.error_message or f"fake upstream error {b.status}"
        proto.response_bytes(b.status, JSON, _error(message, code="fake_error"))
        return True

    async def _stream(self, proto: HTTPProtocol, frames: list[bytes], b: Behaviour) -> None:
        transport = proto.response_stream(200, SSE)
        if not await self._wait(proto, b.first_token_delay_ms):
            return
        try:
            for i, frame in enumerate(frames):
                if b.cut_after_chunks is not None and i >= b.cut_after_chunks:
                    raise Cut
                if i and not await self._wait(proto, b.chunk_delay_ms):
                    return
                await transport.send_bytes(frame)
            await transport.send_bytes(b"data: [DONE]\n\n")
        except (OSError, RuntimeError):
            self.stats.disconnects += 1
            return
        self.stats.completed_streams += 1

    async def _control(self, scope: Scope, proto: HTTPProtocol) -> None:
        body = await proto()
        key = (scope.method, scope.path)
        if key == ("POST", "/_fake/behaviour"):
            behaviour = msgspec.json.decode(body, type=Behaviour)
            self.behaviours[behaviour.model] = behaviour
        elif key == ("DELETE", "/_fake/behaviour"):
            self.behaviours.clear()
        elif key == ("POST", "/_fake/reset"):
            self.behaviours.clear()
            self.stats = Stats()
        elif key == ("GET", "/_fake/stats"):
            proto.response_bytes(200, JSON, self.stats.render())
            return
        else:
            proto.response_bytes(404, JSON, _error("unknown control path"))
            return
        proto.response_bytes(204, [], b"")


def _check(path: str, body: Any) -> tuple[str, str | None] | None:
    """The first problem the real API would report, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object.", None
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter", "model"
    required = {"/v1/chat/completions": "messages", "/v1/completions": "prompt"}.get(path, "input")
    value = body.get(required)
    if value is None:
        return f"Missing required parameter: '{required}'.", required
    if required == "messages":
        if not isinstance(value, list) or not value:
            return "'messages' must be a non-empty array.", "messages"
        for i, message in enumerate(value):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                return f"Missing required parameter: 'messages[{i}].role'.", f"messages[{i}].role"
    return None


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _envelope(
    kind: str, model: str, choices: list[Any], usage: dict[str, int] | None = None
) -> dict[str, Any]:
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    envelope: dict[str, Any] = {
        "id": f"{prefix}-fake{next(_ids)}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
    }
    if kind == "chat.completion":
        envelope["service_tier"] = "default"
    if usage is not None:
        envelope["usage"] = usage
    return envelope


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return _sse(_envelope("chat.completion.chunk", model, [choice]))


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


_DEFAULT = Behaviour(model="*")
_MODELS = _encode(
    {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
            for m in ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")
        ],
    }
)
_ROUTES = {
    "/v1/chat/completions": FakeOpenAI.chat,
    "/v1/completions": FakeOpenAI.completions,
    "/v1/embeddings": FakeOpenAI.embeddings,
}


def app_factory() -> FakeOpenAI:
    import os  # noqa: PLC0415 - the key reaches the worker processes through the environment

    return FakeOpenAI(os.environ.get("FAKE_OPENAI_API_KEY", "sk-fake"))


def main() -> None:
    from granian import Granian  # noqa: PLC0415
    from granian.constants import HTTPModes, Interfaces, Loops  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--api-key", default="sk-fake")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    import os  # noqa: PLC0415

    os.environ["FAKE_OPENAI_API_KEY"] = args.api_key
    Granian(
        "tests.fakes.upstreams.openai:app_factory",
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.RSGI,
        workers=args.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        log_access=False,
        log_level="warning",  # type: ignore[arg-type]
    ).serve()


if __name__ == "__main__":
    main()
