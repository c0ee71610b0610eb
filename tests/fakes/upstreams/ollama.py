"""A fake Ollama native API on loopback: strict, deterministic, scriptable.

Run from the repository root: `python -m tests.fakes.upstreams.ollama --host 127.0.0.1
--port 8103 [--workers 1]` (`--api-key` is accepted and ignored: Ollama has no auth). A plain
ASGI app (`tests.fakes.upstreams.ollama:app`) served by Granian.

Routes, with Ollama's error shape `{"error": "..."}`:

- `POST /api/chat` `{model, messages, stream, tools, options, format, keep_alive, think}`:
  messages of role system/user/assistant/tool with a *string* `content`, `images` (base64),
  `tool_calls` (`{function: {name, arguments: <object>}}`), `tool_name`. Streams NDJSON when
  `stream` is true **or absent** (Ollama's default), else one JSON object.
- `POST /api/generate` `{model, prompt, suffix, stream, options, format, ...}`: the same, with
  `response` text.
- `POST /api/embed` `{model, input: str | [str], dimensions, truncate}`: `embeddings` and
  `prompt_eval_count`.
- `GET /api/tags`: the pulled models.

Stricter than Ollama on purpose (it ignores unknown fields, so a wrong translation would pass
silently): unknown fields at the top, in messages, in tool calls and in `options` are refused
with 400, as are type mismatches (Ollama's own `json: cannot unmarshal ...`).

The conversation script is the one shared by every vendor fake: a call of the first declared
tool with `{"echo": <last user text>}` when tools are declared and the user spoke last;
`Tool said: <result>` after a tool message; otherwise `Hello! You said: <text>` with
` [image <type>]` (the type sniffed from the bytes) and ` [system: a | b]`. Usage:
`prompt_eval_count` = characters of all message text // 4 + 1 (+10 per image), `eval_count` =
words (5 for a call); streams send a word per line and the same counts on the `done` line.

Control (state per worker: script it with `--workers 1`): `POST /_fake/behaviour`
`{"model": "*" | name, "status": N, "message": str, "cut_after_events": K, "times": N}`
(`DELETE` clears, `GET` lists); `POST /_fake/reset`; `GET /_fake/stats`: `total`, `requests`
("METHOD path" → count), `last_body` / `last_headers` per path, `completed_streams`,
`cut_streams`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import msgspec

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_encode = msgspec.json.encode
_decode = msgspec.json.decode

EMBEDDING_SIZE: Final = 8
ROLES: Final = frozenset({"system", "user", "assistant", "tool"})
CHAT_FIELDS: Final = frozenset(
    {"model", "messages", "stream", "tools", "options", "format", "keep_alive", "think"}
)
GENERATE_FIELDS: Final = frozenset(
    {"model", "prompt", "suffix", "images", "stream", "options", "format", "system", "raw"}
    | {"keep_alive", "think", "context", "template"}
)
EMBED_FIELDS: Final = frozenset({"model", "input", "dimensions", "truncate", "keep_alive"})
MESSAGE_FIELDS: Final = frozenset({"role", "content", "images", "tool_calls", "tool_name"})
NUMBER: Final = (int, float)
OPTION_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "num_keep": int,
    "seed": int,
    "num_predict": int,
    "top_k": int,
    "top_p": NUMBER,
    "min_p": NUMBER,
    "typical_p": NUMBER,
    "repeat_last_n": int,
    "temperature": NUMBER,
    "repeat_penalty": NUMBER,
    "presence_penalty": NUMBER,
    "frequency_penalty": NUMBER,
    "stop": list,
    "num_ctx": int,
    "num_batch": int,
    "num_gpu": int,
    "num_thread": int,
}
MAGIC: Final = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)
TAGS: Final = _encode(
    {
        "models": [
            {
                "name": name,
                "model": name,
                "modified_at": "2025-01-01T00:00:00Z",
                "size": 2019393189,
                "digest": "a80c4f17acd5" + "0" * 52,
                "details": {"format": "gguf", "family": family},
            }
            for name, family in (
                ("llama3.2:latest", "llama"),
                ("qwen2.5:7b", "qwen2"),
                ("nomic-embed-text:latest", "nomic-bert"),
            )
        ]
    }
)


class Behaviour(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: str = "*"
    status: int | None = None
    message: str | None = None
    cut_after_events: int | None = None
    times: int | None = None


_decode_behaviour = msgspec.json.Decoder(Behaviour).decode


class Stats:
    def __init__(self) -> None:
        self.total = 0
        self.requests: Counter[str] = Counter()
        self.last_body: dict[str, msgspec.Raw] = {}
        self.last_headers: dict[str, dict[str, str]] = {}
        self.completed_streams = 0
        self.cut_streams = 0

    def render(self) -> bytes:
        return _encode(
            {
                "total": self.total,
                "requests": self.requests,
                "last_body": self.last_body,
                "last_headers": self.last_headers,
                "completed_streams": self.completed_streams,
                "cut_streams": self.cut_streams,
            }
        )


class Refused(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Cut(Exception):
    """Raised mid-response: Granian then drops the connection without ending the body."""


def error_body(message: str) -> bytes:
    return _encode({"error": message})


def _type_name(value: Any) -> str:
    names = {str: "string", bool: "bool", int: "number", float: "number", list: "array"}
    return names.get(type(value), "object" if isinstance(value, dict) else "null")


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> None:
    wrong_bool = isinstance(value, bool) and kind in (int, NUMBER)
    if wrong_bool or not isinstance(value, kind):
        raise Refused(f"json: cannot unmarshal {_type_name(value)} into Go value {where}")


def _known(obj: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise Refused(f"json: cannot unmarshal {_type_name(obj)} into Go value {where}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise Refused(f"fake ollama: unknown field '{unknown[0]}' in {where}")
    return obj


def _check_common(raw: Any, fields: frozenset[str], where: str) -> dict[str, Any]:
    body = _known(raw, fields, where)
    model = body.get("model")
    if not model:
        raise Refused("model is required")
    _expect(model, str, f"{where}.model")
    if "stream" in body:
        _expect(body["stream"], bool, f"{where}.stream")
    options = body.get("options")
    if options is not None:
        options = _known(options, frozenset(OPTION_TYPES), "Options")
        for name, value in options.items():
            _expect(value, OPTION_TYPES[name], f"Options.{name}")
        if not all(isinstance(stop, str) for stop in options.get("stop", ())):
            raise Refused("json: cannot unmarshal into Go value Options.stop of type string")
    form = body.get("format")
    if form is not None and form != "json" and not isinstance(form, dict):
        raise Refused(f"invalid format: {_encode(form).decode()}")
    return body


def sniff(data: str) -> str:
    """The media type of a base64 image (Ollama refuses invalid base64)."""
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise Refused("illegal base64 data in images") from exc
    return next((kind for magic, kind in MAGIC if raw.startswith(magic)), "image/unknown")


def _check_message(message: Any, where: str) -> None:
    message = _known(message, MESSAGE_FIELDS, where)
    if message.get("role") not in ROLES:
        raise Refused(f"invalid role '{message.get('role')}' in {where}")
    _expect(message.get("content", ""), str, f"{where}.content of type string")
    for image in message.get("images") or ():
        _expect(image, str, f"{where}.images")
        sniff(image)
    for item in message.get("tool_calls") or ():
        call = _known(item, frozenset({"function", "id"}), f"{where}.tool_calls")
        function = _known(
            call.get("function"), frozenset({"name", "arguments", "index"}), f"{where}.function"
        )
        _expect(function.get("name"), str, f"{where}.function.name")
        _expect(function.get("arguments", {}), dict, f"{where}.function.arguments")
    if "tool_name" in message:
        _expect(message["tool_name"], str, f"{where}.tool_name")


def check_chat(raw: Any) -> dict[str, Any]:
    body = _check_common(raw, CHAT_FIELDS, "ChatRequest")
    messages = body.get("messages", [])
    _expect(messages, list, "ChatRequest.messages")
    for i, message in enumerate(messages):
        _check_message(message, f"ChatRequest.messages[{i}]")
    for item in body.get("tools") or ():
        tool = _known(item, frozenset({"type", "function"}), "Tool")
        if tool.get("type") != "function":
            raise Refused("json: tool type must be 'function'")
        function = _known(
            tool.get("function"), frozenset({"name", "description", "parameters"}), "ToolFunction"
        )
        _expect(function.get("name"), str, "ToolFunction.name")
        _expect(function.get("parameters", {}), dict, "ToolFunction.parameters")
    return body


def check_generate(raw: Any) -> dict[str, Any]:
    body = _check_common(raw, GENERATE_FIELDS, "GenerateRequest")
    _expect(body.get("prompt", ""), str, "GenerateRequest.prompt")
    return body


def check_embed(raw: Any) -> list[str]:
    body = _known(raw, EMBED_FIELDS, "EmbedRequest")
    if not body.get("model"):
        raise Refused("model is required")
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise Refused("invalid input type")
    if "dimensions" in body:
        _expect(body["dimensions"], int, "EmbedRequest.dimensions")
    return texts


# --- the conversation script ----------------------------------------------------------------


class Answer(msgspec.Struct, kw_only=True):
    text: str = ""
    call: dict[str, Any] | None = None
    prompt_tokens: int
    output_tokens: int


def script(messages: list[dict[str, Any]], tools: list[Any]) -> Answer:
    chars = sum(len(m.get("content", "")) for m in messages)
    images = sum(len(m.get("images") or ()) for m in messages)
    prompt = chars // 4 + 1 + 10 * images
    system = [m.get("content", "") for m in messages if m["role"] == "system"]
    last = messages[-1] if messages else {"role": "user", "content": ""}
    said = last.get("content", "")
    if last["role"] == "tool":
        text = f"Tool said: {said}"
    elif tools and last["role"] == "user":
        call = {"function": {"name": tools[0]["function"]["name"], "arguments": {"echo": said}}}
        return Answer(call=call, prompt_tokens=prompt, output_tokens=5)
    else:
        text = f"Hello! You said: {said}"
        if last.get("images"):
            text += f" [image {sniff(last['images'][0])}]"
        if system:
            text += f" [system: {' | '.join(system)}]"
    return Answer(text=text, prompt_tokens=prompt, output_tokens=len(text.split()))


def _line(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "created_at": "2025-01-01T00:00:00.000000Z", **fields}


def _counts(answer: Answer) -> dict[str, Any]:
    return {
        "done_reason": "stop",
        "total_duration": 1_000_000,
        "load_duration": 1_000,
        "prompt_eval_count": answer.prompt_tokens,
        "prompt_eval_duration": 1_000,
        "eval_count": answer.output_tokens,
        "eval_duration": 1_000,
    }


def chat_lines(answer: Answer, model: str, *, stream: bool) -> list[bytes]:
    """The answer as NDJSON lines (streamed), or the one whole object."""

    def message(content: str, **extra: Any) -> dict[str, Any]:
        return {"role": "assistant", "content": content, **extra}

    if not stream:
        calls = {"tool_calls": [answer.call]} if answer.call else {}
        return [
            _encode(
                _line(model, message=message(answer.text, **calls), done=True, **_counts(answer))
            )
        ]
    lines: list[dict[str, Any]] = []
    if answer.call is not None:
        lines.append(_line(model, message=message("", tool_calls=[answer.call]), done=False))
    else:
        words = answer.text.split(" ")
        lines += [
            _line(model, message=message(w if i == 0 else " " + w), done=False)
            for i, w in enumerate(words)
        ]
    lines.append(_line(model, message=message(""), done=True, **_counts(answer)))
    return [_encode(line) for line in lines]


def generate_lines(answer: Answer, model: str, *, stream: bool) -> list[bytes]:
    if not stream:
        return [_encode(_line(model, response=answer.text, done=True, **_counts(answer)))]
    words = answer.text.split(" ")
    lines = [
        _line(model, response=w if i == 0 else " " + w, done=False) for i, w in enumerate(words)
    ]
    lines.append(_line(model, response="", done=True, **_counts(answer)))
    return [_encode(line) for line in lines]


def embed_answer(model: str, texts: list[str], size: int) -> bytes:
    vectors = []
    for text in texts:
        seed = sum(text.encode()) % 97
        vectors.append([round((seed + i) / 100, 4) for i in range(size)])
    tokens = sum(len(text) for text in texts) // 4 + 1
    return _encode({"model": model, "embeddings": vectors, "prompt_eval_count": tokens})


# --- the ASGI application -------------------------------------------------------------------

JSON: Final = [(b"content-type", b"application/json; charset=utf-8")]
NDJSON: Final = [(b"content-type", b"application/x-ndjson")]


async def respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class FakeOllama:
    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.stats = Stats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        raw = await read_body(receive)
        if path.startswith("/_fake/"):
            await self._control(method, path, raw, send)
            return
        stats = self.stats
        stats.total += 1
        stats.requests[f"{method} {path}"] += 1
        stats.last_headers[path] = {k.decode(): v.decode() for k, v in scope["headers"]}
        if raw:
            stats.last_body[path] = msgspec.Raw(raw)
        try:
            await self._serve(method, path, raw, send)
        except Refused as exc:
            await respond(send, exc.status, error_body(exc.message))

    async def _serve(self, method: str, path: str, raw: bytes, send: Send) -> None:
        if method == "GET" and path == "/api/tags":
            await respond(send, 200, TAGS)
            return
        if method != "POST" or path not in ("/api/chat", "/api/generate", "/api/embed"):
            raise Refused("404 page not found", 404)
        try:
            body = _decode(raw)
        except msgspec.DecodeError as exc:
            raise Refused(f"invalid character in JSON: {exc}") from exc
        if path == "/api/embed":
            texts = check_embed(body)
            self._behaviour(body["model"])
            size = body.get("dimensions", EMBEDDING_SIZE)
            await respond(send, 200, embed_answer(body["model"], texts, size))
            return
        stream = body.get("stream", True) if isinstance(body, dict) else True
        if path == "/api/chat":
            body = check_chat(body)
            behaviour = self._behaviour(body["model"])
            answer = script(body.get("messages", []), body.get("tools") or [])
            lines = chat_lines(answer, body["model"], stream=stream)
        else:
            body = check_generate(body)
            behaviour = self._behaviour(body["model"])
            messages = [{"role": "user", "content": body.get("prompt", "")}]
            lines = generate_lines(script(messages, []), body["model"], stream=stream)
        if not stream:
            await respond(send, 200, lines[0])
            return
        await self._stream(send, lines, behaviour)

    def _behaviour(self, model: str) -> Behaviour:
        behaviour = self.behaviours.get(model) or self.behaviours.get("*")
        if behaviour is None:
            return Behaviour()
        if behaviour.times is not None:
            behaviour.times -= 1
            if behaviour.times <= 0:
                del self.behaviours[behaviour.model]
        if behaviour.status is not None and behaviour.status >= 400:
            raise Refused(behaviour.message or f"fake error {behaviour.status}", behaviour.status)
        return behaviour

    async def _stream(self, send: Send, lines: list[bytes], behaviour: Behaviour) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": NDJSON})
        cut = behaviour.cut_after_events
        for i, line in enumerate(lines):
            if cut is not None and i >= cut:
                self.stats.cut_streams += 1
                raise Cut
            await send({"type": "http.response.body", "body": line + b"\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        self.stats.completed_streams += 1

    async def _control(self, method: str, path: str, raw: bytes, send: Send) -> None:
        if path == "/_fake/stats" and method == "GET":
            await respond(send, 200, self.stats.render())
            return
        if path == "/_fake/reset" and method == "POST":
            self.behaviours.clear()
            self.stats = Stats()
        elif path == "/_fake/behaviour" and method == "POST":
            try:
                behaviour = _decode_behaviour(raw)
            except msgspec.DecodeError as exc:
                await respond(send, 400, error_body(str(exc)))
                return
            self.behaviours[behaviour.model] = behaviour
        elif path == "/_fake/behaviour" and method == "DELETE":
            self.behaviours.clear()
        elif path != "/_fake/behaviour" or method != "GET":
            await respond(send, 404, error_body(f"no control route {method} {path}"))
            return
        await respond(send, 200, _encode({"behaviours": list(self.behaviours.values())}))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


app = FakeOllama()


def main(argv: list[str] | None = None) -> None:
    """Serve the fake with Granian until SIGINT/SIGTERM."""
    from granian import Granian  # noqa: PLC0415 - only the CLI needs the server
    from granian.constants import HTTPModes, Interfaces, Loops  # noqa: PLC0415
    from granian.log import LogLevels  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.upstreams.ollama", description="A fake Ollama API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8103)
    parser.add_argument("--api-key", default="", help="ignored: Ollama has no auth")
    parser.add_argument("--workers", type=int, default=1, help="use 1 to script behaviour")
    args = parser.parse_args(argv)
    Granian(
        "tests.fakes.upstreams.ollama:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels.warning,
        log_access=False,
        workers_kill_timeout=1,
    ).serve()


if __name__ == "__main__":
    main()
