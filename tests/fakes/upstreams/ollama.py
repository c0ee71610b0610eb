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

import base64
import binascii
from typing import Any, Final

import msgspec

from tests.fakes.upstreams import script as conversation
from tests.fakes.upstreams import server
from tests.fakes.upstreams.control import Behaviour, Control, Stats
from tests.fakes.upstreams.script import Answer

_encode = msgspec.json.encode
_decode = msgspec.json.decode
CLI: Final = server.Cli("A fake Ollama API.", 8103)

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


def error_body(message: str) -> bytes:
    return _encode({"error": message})


def _type_name(value: Any) -> str:
    names = {str: "string", bool: "bool", int: "number", float: "number", list: "array"}
    return names.get(type(value), "object" if isinstance(value, dict) else "null")


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> None:
    wrong_bool = isinstance(value, bool) and kind in (int, NUMBER)
    if wrong_bool or not isinstance(value, kind):
        raise server.Refused(f"json: cannot unmarshal {_type_name(value)} into Go value {where}")


def _known(obj: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise server.Refused(f"json: cannot unmarshal {_type_name(obj)} into Go value {where}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise server.Refused(f"fake ollama: unknown field '{unknown[0]}' in {where}")
    return obj


def _check_common(raw: Any, fields: frozenset[str], where: str) -> dict[str, Any]:
    body = _known(raw, fields, where)
    model = body.get("model")
    if not model:
        raise server.Refused("model is required")
    _expect(model, str, f"{where}.model")
    if "stream" in body:
        _expect(body["stream"], bool, f"{where}.stream")
    options = body.get("options")
    if options is not None:
        options = _known(options, frozenset(OPTION_TYPES), "Options")
        for name, value in options.items():
            _expect(value, OPTION_TYPES[name], f"Options.{name}")
        if not all(isinstance(stop, str) for stop in options.get("stop", ())):
            raise server.Refused("json: cannot unmarshal into Go value Options.stop of type string")
    form = body.get("format")
    if form is not None and form != "json" and not isinstance(form, dict):
        raise server.Refused(f"invalid format: {_encode(form).decode()}")
    return body


def sniff(data: str) -> str:
    """The media type of a base64 image (Ollama refuses invalid base64)."""
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise server.Refused("illegal base64 data in images") from exc
    return next((kind for magic, kind in MAGIC if raw.startswith(magic)), "image/unknown")


def _check_message(message: Any, where: str) -> None:
    message = _known(message, MESSAGE_FIELDS, where)
    if message.get("role") not in ROLES:
        raise server.Refused(f"invalid role '{message.get('role')}' in {where}")
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
            raise server.Refused("json: tool type must be 'function'")
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
        raise server.Refused("model is required")
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise server.Refused("invalid input type")
    if "dimensions" in body:
        _expect(body["dimensions"], int, "EmbedRequest.dimensions")
    return texts


# --- the conversation script ----------------------------------------------------------------


def script(messages: list[dict[str, Any]], tools: list[Any]) -> Answer:
    """The shared script (`tests.fakes.upstreams.script`) over Ollama messages."""
    chars = sum(len(m.get("content", "")) for m in messages)
    images = sum(len(m.get("images") or ()) for m in messages)
    prompt = conversation.prompt_tokens(chars, images)
    last = messages[-1] if messages else {"role": "user", "content": ""}
    said = last.get("content", "")
    text = conversation.reply(
        tool_result=said if last["role"] == "tool" else None,
        call=bool(tools) and last["role"] == "user",
        said=said,
        images=[sniff(image) for image in (last.get("images") or ())[:1]],
        system=[m.get("content", "") for m in messages if m["role"] == "system"],
    )
    output = conversation.output_tokens(text)
    if text is None:
        call = {"function": {"name": tools[0]["function"]["name"], "arguments": {"echo": said}}}
        return Answer(call=call, prompt_tokens=prompt, output_tokens=output)
    return Answer(text=text, prompt_tokens=prompt, output_tokens=output)


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
    tokens = conversation.prompt_tokens(sum(len(text) for text in texts))
    return _encode({"model": model, "embeddings": vectors, "prompt_eval_count": tokens})


# --- the ASGI application -------------------------------------------------------------------

JSON: Final = [(b"content-type", b"application/json; charset=utf-8")]
NDJSON: Final = [(b"content-type", b"application/x-ndjson")]


class FakeOllama(server.AsgiFake):
    json_headers = JSON

    def __init__(self) -> None:
        self.control = Control(Behaviour(), Stats, lambda _, message: error_body(message))

    async def api(self, scope: server.Scope, raw: bytes, send: server.Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        stats = self.control.stats
        stats.count(f"{method} {path}", path, server.request_headers(scope))
        if raw:
            stats.last_body[path] = msgspec.Raw(raw)
        try:
            await self._serve(method, path, raw, send)
        except server.Refused as exc:
            await server.respond(send, exc.status, error_body(exc.message), JSON)

    async def _serve(self, method: str, path: str, raw: bytes, send: server.Send) -> None:
        if method == "GET" and path == "/api/tags":
            await server.respond(send, 200, TAGS, JSON)
            return
        if method != "POST" or path not in ("/api/chat", "/api/generate", "/api/embed"):
            raise server.Refused("404 page not found", 404)
        try:
            body = _decode(raw)
        except msgspec.DecodeError as exc:
            raise server.Refused(f"invalid character in JSON: {exc}") from exc
        if path == "/api/embed":
            texts = check_embed(body)
            self._behaviour(body["model"])
            size = body.get("dimensions", EMBEDDING_SIZE)
            await server.respond(send, 200, embed_answer(body["model"], texts, size), JSON)
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
            await server.respond(send, 200, lines[0], JSON)
            return
        pieces = [line + b"\n" for line in lines]
        await server.stream_or_cut(
            send, NDJSON, pieces, behaviour.cut_after_events, self.control.stats
        )

    def _behaviour(self, model: str) -> Behaviour:
        behaviour = self.control.take(model)
        if behaviour.status is not None and behaviour.status >= 400:
            raise server.Refused(
                behaviour.message or f"fake error {behaviour.status}", behaviour.status
            )
        return behaviour


app = FakeOllama()


def main(argv: list[str] | None = None) -> None:
    """Serve the fake with Granian until SIGINT/SIGTERM."""
    server.serve("tests.fakes.upstreams.ollama:app", CLI, argv)


if __name__ == "__main__":
    main()
