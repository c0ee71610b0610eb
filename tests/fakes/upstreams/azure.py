"""A fake Azure OpenAI resource on loopback: both URL styles, strict like the real service.

Run from the repository root: `python -m tests.fakes.upstreams.azure --host 127.0.0.1 --port P
[--api-key K] [--workers 1]`; an ASGI app (`tests.fakes.upstreams.azure:app`) served by Granian.
The key reaches the workers through `FAKE_AZURE_API_KEY`.

Routes (POST):
- `/openai/deployments/{deployment}/chat/completions?api-version=YYYY-MM-DD[-preview]` and
  `/openai/deployments/{deployment}/embeddings?api-version=...`: the deployment names the model;
  without a well-formed `api-version` Azure answers 404 `{"error": {"code": "404", "message":
  "Resource not found"}}`, and so does this fake.
- `/openai/v1/chat/completions`, `/openai/v1/embeddings`: the v1 API, `model` required in the
  body, no `api-version` needed.
- Every route wants the `api-key` header (else 401 in Azure's shape: `{"error": {"code": "401",
  "message": "Access denied due to invalid subscription key..."}}`); unknown paths get 404.

Bodies are checked like the OpenAI API (400 `{"error": {message, type, param, code}}`): message
roles and content shapes, a `tool` message must answer a `tool_calls` id of the assistant message
before it, `tools` entries, `stream`/`stream_options` (only with `stream`), `n` (1 only here).

Answers follow the conversation script shared by every vendor fake:
- tools declared and the last message from the user: one call of the first tool with
  arguments `{"echo": "<last user text>"}`, finish `tool_calls`;
- the last message a tool result: `Tool said: <result text>`;
- else `Hello! You said: <last user text>`, plus ` [image <media type>]` (` [image url]` for an
  http(s) URL) per image of that message, plus ` [system: <system texts joined by " | ">]`.
Usage: prompt = characters of all message text // 4 + 1 + 10 per image; completion = words of
the answer (5 for a tool call); with a system prompt 2 prompt tokens are reported as cached in
`prompt_tokens_details.cached_tokens`. Streams carry the same usage (a last `"choices": []`
chunk, only when `stream_options.include_usage` is true), one word per delta, tool arguments in
three fragments, and start like Azure's with a content-filter annotation chunk (`"choices": []`,
`prompt_filter_results`, empty id and model) before the role chunk.

Control (no auth; use `--workers 1`): `POST /_fake/behaviour` `{"model": "<deployment or
model>" | "*", "status": N, "message": "...", "cut_after_events": K, "times": T}` (an error
status for the matching requests, or a stream that ends after K events - the annotation chunk
counts - with no `[DONE]`; `times` limits it to T requests; a model's own beats `*`), `GET` /
`DELETE /_fake/behaviour`, `POST /_fake/reset`, `GET /_fake/stats`: `total`, `requests`
(`"POST <path>?<query>"` -> count), `paths` (every path with its query string, in order),
`last_body` / `last_headers` (by path), `completed_streams`, `cut_streams`.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import struct
import time
from typing import Any, Final, NamedTuple

import msgspec

from tests.fakes.upstreams import control, server
from tests.fakes.upstreams import script as conversation

API_KEY_ENV: Final = "FAKE_AZURE_API_KEY"
CLI: Final = server.Cli("A fake Azure OpenAI resource.", 8105, "azure-fake-key", API_KEY_ENV)
ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
_DEPLOYMENT_ROUTE = re.compile(
    r"/openai/deployments/(?P<deployment>[^/]+)(?P<operation>/chat/completions|/embeddings)"
)
_V1_ROUTE = re.compile(r"/openai/v1(?P<operation>/chat/completions|/embeddings)")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_VECTOR: Final = [0.125 * (i + 1) for i in range(8)]
_FILTER_RESULTS: Final = {
    name: {"filtered": False, "severity": "safe"}
    for name in ("hate", "self_harm", "sexual", "violence")
}

Problem = tuple[str, str | None]

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_ids = itertools.count(1)


def azure_error(code: str, message: str) -> dict[str, Any]:
    """Azure's own error shape (auth, routing, throttling)."""
    return {"error": {"code": code, "message": message}}


def openai_error(message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape Azure uses for invalid request bodies."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return {"error": error}


NOT_FOUND: Final = azure_error("404", "Resource not found")
UNAUTHORIZED: Final = azure_error(
    "401",
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource.",
)


Behaviour = control.Behaviour
"""Its `model` is the deployment, or the `model` of a v1 body."""


class Stats(control.Stats):
    """The shared stats, plus every path with its query string, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []


# --- validation -----------------------------------------------------------------------------


def _type_problem(param: str, expected: str) -> Problem:
    return f"Invalid type for '{param}': expected {expected}.", param


def _check_parts(content: list[Any], where: str, *, images: bool) -> Problem | None:
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if images and kind == "image_url":
            image = part.get("image_url")
            if isinstance(image, dict) and isinstance(image.get("url"), str):
                continue
            return _type_problem(f"{param}.image_url", "an object with a string 'url'")
        return f"Invalid content part at '{param}'.", param
    return None


def _check_content(message: dict[str, Any], where: str, role: str) -> Problem | None:
    content = message.get("content")
    if role == "assistant" and content is None:
        if message.get("tool_calls") or "content" in message:
            return None
        return f"Missing required parameter: '{where}.content'.", f"{where}.content"
    if isinstance(content, str):
        return None
    if isinstance(content, list):
        return _check_parts(content, where, images=role == "user")
    if content is None:
        return f"Missing required parameter: '{where}.content'.", f"{where}.content"
    return _type_problem(f"{where}.content", "a string or an array")


def _check_tool_calls(calls: Any, where: str) -> Problem | None:
    if not isinstance(calls, list) or not calls:
        return _type_problem(f"{where}.tool_calls", "a non-empty array")
    for k, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        valid = (
            isinstance(call, dict)
            and isinstance(call.get("id"), str)
            and call.get("type") == "function"
            and isinstance(function, dict)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), str)
        )
        if not valid:
            return _type_problem(f"{where}.tool_calls[{k}]", "{id, type: function, function}")
    return None


def _check_message(  # noqa: PLR0911 - one return per rule
    message: Any, i: int, open_calls: set[str]
) -> Problem | None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        return _type_problem(where, "an object")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        supported = ", ".join(f"'{r}'" for r in sorted(ROLES))
        return f"Invalid value: '{role}'. Supported values are: {supported}.", f"{where}.role"
    problem = _check_content(message, where, role)
    if problem is not None:
        return problem
    if role == "assistant" and "tool_calls" in message:
        problem = _check_tool_calls(message["tool_calls"], where)
        if problem is not None:
            return problem
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            text = "Missing parameter 'tool_call_id': messages with role 'tool' must have a "
            return text + "'tool_call_id'.", f"{where}.tool_call_id"
        if call_id not in open_calls:
            text = "Invalid parameter: messages with role 'tool' must be a response to a "
            return text + "preceeding message with 'tool_calls'.", f"{where}.role"
    return None


def _check_messages(messages: Any) -> Problem | None:
    if messages is None:
        return "Missing required parameter: 'messages'.", "messages"
    if not isinstance(messages, list) or not messages:
        return "Invalid 'messages': expected a non-empty array.", "messages"
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        problem = _check_message(message, i, open_calls)
        if problem is not None:
            return problem
        role = message.get("role")
        if role == "assistant":
            open_calls = {call["id"] for call in message.get("tool_calls") or ()}
        elif role != "tool":
            open_calls = set()
    return None


def _check_tools(tools: Any) -> Problem | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        return _type_problem("tools", "an array")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            return _type_problem(f"tools[{i}]", "{type: function, function}")
        if not isinstance(function, dict) or not _TOOL_NAME.fullmatch(function.get("name") or ""):
            text = f"Invalid 'tools[{i}].function.name': must match ^[a-zA-Z0-9_-]{{1,64}}$."
            return text, f"tools[{i}].function.name"
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            return _type_problem(f"tools[{i}].function.parameters", "an object")
    return None


def _check_stream(body: dict[str, Any]) -> Problem | None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return _type_problem("stream", "a boolean")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            text = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            return text, "stream_options"
        if not isinstance(options, dict):
            return _type_problem("stream_options", "an object")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            return _type_problem("stream_options.include_usage", "a boolean")
    return None


def check_chat(body: dict[str, Any]) -> Problem | None:
    n = body.get("n")
    if n is not None and n != 1:
        return "This fake serves n=1 only.", "n"
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            return _type_problem(name, "a positive integer")
    return (
        _check_messages(body.get("messages"))
        or _check_tools(body.get("tools"))
        or (_check_stream(body))
    )


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) for v in value)


def check_embeddings(body: dict[str, Any]) -> Problem | None:
    value = body.get("input")
    if value is None:
        return "Missing required parameter: 'input'.", "input"
    valid = (
        (isinstance(value, str) and value != "")
        or _is_tokens(value)
        or (
            isinstance(value, list)
            and bool(value)
            and all((isinstance(v, str) and v != "") or _is_tokens(v) for v in value)
        )
    )
    if not valid:
        return "'$.input' is invalid. Please check the API reference.", "input"
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        return f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.", (
            "encoding_format"
        )
    if "stream" in body:
        return "Unrecognized request argument supplied: stream", "stream"
    return None


# --- the conversation script ----------------------------------------------------------------


class Answer(NamedTuple):
    text: str | None
    tool: tuple[str, str] | None  # (function name, arguments JSON)
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _images(content: Any) -> list[str]:
    """The media type of each image part (`url` for an http(s) URL)."""
    kinds = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = part["image_url"]["url"]
            kinds.append(url[5:].split(";", 1)[0] if url.startswith("data:") else "url")
    return kinds


def script(body: dict[str, Any]) -> Answer:
    """The shared script (`tests.fakes.upstreams.script`) over a Chat Completions body."""
    messages: list[dict[str, Any]] = body["messages"]
    chars = sum(len(_text(m.get("content"))) for m in messages)
    images = sum(len(_images(m.get("content"))) for m in messages)
    prompt = conversation.prompt_tokens(chars, images)
    system = [_text(m.get("content")) for m in messages if m["role"] in ("system", "developer")]
    cached = min(conversation.CACHED_TOKENS, prompt) if system else 0
    last = messages[-1]
    users = [m for m in messages if m["role"] == "user"]
    user = users[-1] if users else {}
    tools = body.get("tools")
    text = conversation.reply(
        tool_result=_text(last.get("content")) if last["role"] in ("tool", "function") else None,
        call=bool(tools) and last["role"] == "user",
        said=_text(user.get("content")),
        images=_images(user.get("content")),
        system=system,
    )
    output = conversation.output_tokens(text)
    if text is None:
        arguments = _encode({"echo": _text(last.get("content"))}).decode()
        return Answer(None, (tools[0]["function"]["name"], arguments), prompt, output, cached)
    return Answer(text, None, prompt, output, cached)


def _usage(answer: Answer) -> dict[str, Any]:
    total = answer.prompt_tokens + answer.completion_tokens
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": total,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _tool_call(answer: Answer, call_id: str) -> dict[str, Any]:
    assert answer.tool is not None
    name, arguments = answer.tool
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chat_completion(model: str, answer: Answer) -> dict[str, Any]:
    ident = next(_ids)
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool is not None:
        message["tool_calls"] = [_tool_call(answer, f"call_fake{ident}")]
    return {
        "id": f"chatcmpl-fake{ident}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _FILTER_RESULTS}],
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if answer.tool else "stop",
                "content_filter_results": _FILTER_RESULTS,
            }
        ],
        "usage": _usage(answer),
    }


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def chat_chunks(model: str, answer: Answer, include_usage: bool) -> list[dict[str, Any]]:
    """Every chunk of the streamed answer, Azure's annotation chunk first."""
    ident = next(_ids)
    head = {
        "id": f"chatcmpl-fake{ident}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], **extra}

    annotation = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
    annotation["prompt_filter_results"] = [
        {"prompt_index": 0, "content_filter_results": _FILTER_RESULTS}
    ]
    chunks = [annotation, chunk({"role": "assistant", "content": ""})]
    if answer.tool is not None:
        call = _tool_call(answer, f"call_fake{ident}")
        arguments = call["function"]["arguments"]
        call["function"] = {"name": call["function"]["name"], "arguments": ""}
        chunks.append(chunk({"tool_calls": [{"index": 0, **call}]}))
        for fragment in _split(arguments, 3):
            chunks.append(
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
            )
        chunks.append(chunk({}, "tool_calls"))
    else:
        for word in re.findall(r"\s*\S+", answer.text or ""):
            chunks.append(chunk({"content": word}))
        chunks.append(chunk({}, "stop"))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": _usage(answer)})
    return chunks


def embeddings(model: str, body: dict[str, Any]) -> dict[str, Any]:
    value = body["input"]
    items = [value] if isinstance(value, str) or _is_tokens(value) else value
    chars = sum(len(item) for item in items if isinstance(item, str))
    ids = sum(len(item) for item in items if isinstance(item, list))
    vector: Any = _VECTOR
    if body.get("encoding_format") == "base64":
        vector = base64.b64encode(struct.pack("<8f", *_VECTOR)).decode()
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(len(items))]
    tokens = conversation.prompt_tokens(chars) + ids
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


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


def main(argv: list[str] | None = None) -> None:
    """Serve the fake with Granian until SIGINT/SIGTERM."""
    server.serve("tests.fakes.upstreams.azure:app", CLI, argv)


if __name__ == "__main__":
    main()
