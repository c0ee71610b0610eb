"""A fake Anthropic Messages API on loopback, with its Vertex AI and Bedrock hostings: strict.

Run from the repository root:
`python -m tests.fakes.upstreams.anthropic --host 127.0.0.1 --port 8102 [--api-key sk-fake]
[--workers 1]`. A plain ASGI application (`tests.fakes.upstreams.anthropic:app`) served by
Granian; the key reaches the workers through `FAKE_ANTHROPIC_API_KEY`.

Paths, each checked like the real service (auth first, then the body):

- `POST /v1/messages`: `x-api-key` must be the key (else 401 `authentication_error`) and an
  `anthropic-version` header must be there (else 400). The body needs `model`.
- `POST /v1/messages/count_tokens`: the same checks; answers `{"input_tokens": N}`.
- `POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict` and
  `:streamRawPredict`: `Authorization: Bearer <token>` checked by
  `tests.fakes.gcp_token.token_is_valid` (else 401 in Google's error shape); the body needs
  `"anthropic_version": "vertex-2023-10-16"`, no `model`, and `stream` true exactly on
  `:streamRawPredict`.
- `POST /model/{model-id}/invoke` and `/invoke-with-response-stream`: SigV4 checked by
  `tests.fakes.sigv4.verify_sigv4` (else 403 with its reason); the body needs
  `"anthropic_version": "bedrock-2023-05-31"` and neither `model` nor `stream`; errors are AWS
  shaped (`{"message": ...}` and `x-amzn-errortype`); streams are
  `application/vnd.amazon.eventstream` `chunk` events wrapping the Anthropic event JSONs.

The body checks (`check_messages`): the fields Anthropic knows (others: 400 "Extra inputs are
not permitted"), `max_tokens` an integer >= 1, `messages` alternating user/assistant from a
user turn, content strings or known blocks (text, image with a base64 or url source,
tool_use in assistant turns, tool_result in user turns answering the previous turn's
tool_use ids, and every tool_use answered), `system` a string or text blocks,
`stop_sequences` a list, tools with `input_schema`, `tool_choice` only with tools.

The conversation script (shared by every vendor fake): with tools and a last user turn that
holds no tool result, one call of the first tool with `{"echo": <last user text>}`; after a
tool result, `Tool said: <result>`; else `Hello! You said: <last user text>`, plus
` [image <media type>]` (` [image url]`) per image of that turn and ` [system: a | b]`. Input
tokens are the characters of all text // 4 + 1, plus 10 per image; with a system prompt 2 of
them are reported as `cache_read_input_tokens`. Output tokens are the answer's words (5 for a
tool call). Streams carry the same usage, one text delta per word, the tool input in three
`input_json_delta` fragments (the first empty, as Anthropic sends), and a `ping`.

Control, without auth (state lives in the worker: script it with `--workers 1`):
`POST /_fake/behaviour` `{"model": "<name>"|"*", "status", "error_message",
"cut_after_events", "unknown_events", "times"}` - `status` answers that error (in the path's
error shape), `cut_after_events` ends a stream after that many events with no
`message_stop`, `unknown_events` adds a thinking block, an unknown block, an unknown delta
and an unknown event (to answers too); `DELETE` clears, `GET` lists. `POST /_fake/reset`.
`GET /_fake/stats`: `total`, `requests` (`"POST <path>"` -> count), `last_body` and
`last_headers` by path, `completed_streams`, `cut_streams`.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, Final, NamedTuple

import msgspec

from app.providers.eventstream import encode_message
from tests.fakes.upstreams import script as conversation
from tests.fakes.upstreams import server
from tests.fakes.upstreams.control import Control, Stats

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


# --- checks -----------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_messages(body: Any, *, keys: frozenset[str] = MESSAGE_KEYS, count: bool = False) -> None:
    """Raise `Refused` where the Messages API would refuse `body` (model checked by caller)."""
    if not isinstance(body, dict):
        raise server.Refused("Input should be a valid dictionary")
    for key in body:
        if key not in keys:
            raise server.Refused(f"{key}: Extra inputs are not permitted")
    if not count:
        if "max_tokens" not in body:
            raise server.Refused("max_tokens: Field required")
        if not _is_int(body["max_tokens"]) or body["max_tokens"] < 1:
            raise server.Refused("max_tokens: Input should be a valid integer greater than 0")
    _check_turns(body.get("messages"))
    _check_system(body.get("system"))
    _check_options(body)
    _check_tools(body.get("tools"), body.get("tool_choice"), "tool_choice" in body)


def _check_options(body: dict[str, Any]) -> None:
    stop = body.get("stop_sequences")
    if "stop_sequences" in body and (
        not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)
    ):
        raise server.Refused("stop_sequences: Input should be a valid list")
    for name in ("temperature", "top_p"):
        if name in body and (not _is_number(body[name]) or not 0 <= body[name] <= 1):
            raise server.Refused(f"{name}: Input should be a number between 0 and 1")
    metadata = body.get("metadata")
    if "metadata" in body and (
        not isinstance(metadata, dict)
        or set(metadata) - {"user_id"}
        or not isinstance(metadata.get("user_id", ""), str)
    ):
        raise server.Refused("metadata: only user_id (a string) is permitted")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise server.Refused("stream: Input should be a valid boolean")


def _check_turns(messages: Any) -> None:
    if messages is None:
        raise server.Refused("messages: Field required")
    if not isinstance(messages, list) or not messages:
        raise server.Refused("messages: at least one message is required")
    previous_uses: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise server.Refused(f"messages.{i}: a message has exactly a role and content")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise server.Refused(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise server.Refused(
                'messages: first message must use the "user" role'
                if i == 0
                else 'messages: roles must alternate between "user" and "assistant", but found '
                f'multiple "{role}" roles in a row'
            )
        content = message.get("content")
        last = i == len(messages) - 1
        if content in ("", []) and not (last and role == "assistant"):
            raise server.Refused(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        blocks = content if isinstance(content, list) else []
        if not isinstance(content, str | list):
            raise server.Refused(f"messages.{i}.content: Input should be a valid string or list")
        for j, block in enumerate(blocks):
            _check_block(block, f"messages.{i}.content.{j}", role)
        if role == "user":
            _check_answers(i, blocks, previous_uses)
        previous_uses = {b["id"] for b in blocks if b["type"] == "tool_use"}


def _check_answers(i: int, blocks: list[dict[str, Any]], uses: set[str]) -> None:
    """A user turn answers exactly the previous turn's tool_use ids with tool_result blocks."""
    answered = {b["tool_use_id"] for b in blocks if b["type"] == "tool_result"}
    if answered - uses:
        raise server.Refused(
            f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` "
            f"blocks: {', '.join(sorted(answered - uses))}. Each `tool_result` "
            "block must have a corresponding `tool_use` block in the previous message."
        )
    if uses - answered:
        raise server.Refused(
            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(sorted(uses - answered))}. Each "
            "`tool_use` block must have a corresponding `tool_result` block in the next "
            "message."
        )


def _check_block(block: Any, where: str, role: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise server.Refused(f"{where}: a content block is an object with a type")
    kind = block["type"]
    if kind == "text":
        _check_text(block, where)
    elif kind == "image":
        _check_image(block, where)
    elif kind == "tool_use" and role == "assistant":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise server.Refused(f"{where}: tool_use blocks need an id and a name")
        if not isinstance(block.get("input"), dict):
            raise server.Refused(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result" and role == "user":
        _check_tool_result(block, where)
    else:
        raise server.Refused(f"{where}: unexpected block type '{kind}' in a {role} message")


def _check_tool_result(block: dict[str, Any], where: str) -> None:
    if not isinstance(block.get("tool_use_id"), str):
        raise server.Refused(f"{where}.tool_use_id: Field required")
    content = block.get("content", "")
    if isinstance(content, list):
        for k, inner in enumerate(content):
            if not isinstance(inner, dict) or inner.get("type") not in ("text", "image"):
                raise server.Refused(f"{where}.content.{k}: text or image blocks only")
            _check_block(inner, f"{where}.content.{k}", "user")
    elif not isinstance(content, str):
        raise server.Refused(f"{where}.content: Input should be a valid string or list")


def _check_text(block: dict[str, Any], where: str) -> None:
    if set(block) - {"type", "text", "cache_control", "citations"}:
        raise server.Refused(f"{where}: Extra inputs are not permitted")
    if not isinstance(block.get("text"), str):
        raise server.Refused(f"{where}.text: Field required")
    if not block["text"]:
        raise server.Refused(f"{where}.text: text content blocks must be non-empty")


def _check_image(block: dict[str, Any], where: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise server.Refused(f"{where}.source: Field required")
    if source.get("type") == "base64":
        if source.get("media_type") not in MEDIA_TYPES:
            raise server.Refused(
                f"{where}.source.media_type: Input should be one of {sorted(MEDIA_TYPES)}"
            )
        data = source.get("data")
        if not isinstance(data, str) or not data:
            raise server.Refused(f"{where}.source.data: Field required")
        try:
            base64.b64decode(data, validate=True)
        except ValueError:
            raise server.Refused(f"{where}.source.data: invalid base64 data") from None
    elif source.get("type") == "url":
        if not isinstance(source.get("url"), str) or not source["url"].startswith("http"):
            raise server.Refused(f"{where}.source.url: Field required")
    else:
        raise server.Refused(f"{where}.source.type: Input should be 'base64' or 'url'")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise server.Refused("system: Input should be a valid string or list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise server.Refused(f"system.{i}: Input should be a text block")
        _check_text(block, f"system.{i}")


def _check_tools(tools: Any, choice: Any, has_choice: bool) -> None:
    if tools is not None:
        if not isinstance(tools, list):
            raise server.Refused("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or set(tool) - {
                "name",
                "description",
                "input_schema",
                "type",
                "cache_control",
            }:
                raise server.Refused(f"tools.{i}: Extra inputs are not permitted")
            if not isinstance(tool.get("name"), str):
                raise server.Refused(f"tools.{i}.name: Field required")
            if not isinstance(tool.get("input_schema"), dict):
                raise server.Refused(f"tools.{i}.custom.input_schema: Field required")
            if not isinstance(tool.get("description", ""), str):
                raise server.Refused(f"tools.{i}.description: Input should be a valid string")
    if has_choice:
        if not tools:
            raise server.Refused("tool_choice may only be specified while providing tools")
        _check_choice(choice)


def _check_choice(choice: Any) -> None:
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise server.Refused("tool_choice: Input tag should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        raise server.Refused("tool_choice.tool.name: Field required")
    if choice["type"] == "none" and "disable_parallel_tool_use" in choice:
        raise server.Refused(
            "tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted"
        )
    if not isinstance(choice.get("disable_parallel_tool_use", False), bool):
        raise server.Refused(
            "tool_choice.disable_parallel_tool_use: Input should be a valid boolean"
        )


# --- the script -------------------------------------------------------------------------------


class Answer(msgspec.Struct, kw_only=True):
    """What the script answers: text, or one tool call; and the usage."""

    text: str = ""
    tool_name: str = ""
    tool_input: bytes = b""
    stop_reason: str = "end_turn"
    input_tokens: int
    cache_read: int
    output_tokens: int


def _texts(content: Any) -> Iterator[str]:
    """The text of a message's content (or a tool result's), block by block."""
    if isinstance(content, str):
        yield content
        return
    for block in content or ():
        if block.get("type") == "text":
            yield block["text"]
        elif block.get("type") == "tool_result":
            yield from _texts(block.get("content", ""))


def _images(content: Any) -> Iterator[str]:
    """`<media type>` or `url` per image of a content, tool results included."""
    for block in content if isinstance(content, list) else ():
        if block.get("type") == "image":
            source = block["source"]
            yield "url" if source["type"] == "url" else source["media_type"]
        elif block.get("type") == "tool_result":
            yield from _images(block.get("content"))


def _system_texts(system: Any) -> list[str]:
    if isinstance(system, str):
        return [system] if system else []
    return [block["text"] for block in system or ()]


def input_tokens(body: dict[str, Any]) -> int:
    """The script's input tokens: characters of all text // 4 + 1, plus 10 per image."""
    chars = sum(len(text) for text in _system_texts(body.get("system")))
    images = 0
    for message in body["messages"]:
        chars += sum(len(text) for text in _texts(message["content"]))
        images += sum(1 for _ in _images(message["content"]))
    return conversation.prompt_tokens(chars, images)


def plan(body: dict[str, Any]) -> Answer:
    """The shared script (`tests.fakes.upstreams.script`) answering a valid Messages body."""
    messages = body["messages"]
    users = [m for m in messages if m["role"] == "user"]
    last_user = users[-1]["content"] if users else ""
    if isinstance(last_user, str):
        user_text = last_user
    else:
        user_text = " ".join(_texts([b for b in last_user if b.get("type") == "text"]))
    total = input_tokens(body)
    system = _system_texts(body.get("system"))
    cache = min(conversation.CACHED_TOKENS, total) if system else 0
    last = messages[-1]
    results = [
        " ".join(_texts(b.get("content", "")))
        for b in (last["content"] if isinstance(last["content"], list) else ())
        if b.get("type") == "tool_result"
    ]
    user_last = last["role"] == "user"
    text = conversation.reply(
        tool_result=" | ".join(results) if user_last and results else None,
        call=user_last and bool(body.get("tools")),
        said=user_text,
        images=_images(last_user),
        system=system,
    )
    output = conversation.output_tokens(text)
    if text is None:
        return Answer(
            tool_name=body["tools"][0]["name"],
            tool_input=_encode({"echo": user_text}),
            stop_reason="tool_use",
            input_tokens=total - cache,
            cache_read=cache,
            output_tokens=output,
        )
    return Answer(text=text, input_tokens=total - cache, cache_read=cache, output_tokens=output)


def _usage_json(answer: Answer, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": answer.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": answer.cache_read,
        "output_tokens": output_tokens,
    }


_THINKING: Final = {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"}
_UNKNOWN_BLOCK: Final = {"type": "fake_unknown_block", "data": "skip me"}
_THINKING_EVENTS: Final[list[dict[str, Any]]] = [
    {"type": "content_block_start", "index": 0, "content_block": _THINKING | {"thinking": ""}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Hm"},
    },
    {"type": "fake_unknown_event", "detail": "skip me"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "x"},
    },
    {"type": "content_block_stop", "index": 0},
]


def message_json(answer: Answer, model: str, ident: str, *, unknown: bool) -> bytes:
    """The non-streamed Messages answer."""
    content: list[Any] = [_THINKING] if unknown else []
    if answer.tool_name:
        tool_input = msgspec.Raw(answer.tool_input)
        content.append({"type": "tool_use", "id": f"toolu_{ident}", "name": answer.tool_name})
        content[-1]["input"] = tool_input
    else:
        content.append({"type": "text", "text": answer.text})
    if unknown:
        content.append(_UNKNOWN_BLOCK)
    return _encode(
        {
            "id": f"msg_{ident}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": answer.stop_reason,
            "stop_sequence": None,
            "usage": _usage_json(answer, answer.output_tokens),
        }
    )


def _fragments(text: bytes) -> list[str]:
    """Three pieces (the first empty, as Anthropic starts), cut inside the JSON."""
    cut = max(1, len(text) // 2)
    return ["", text[:cut].decode(), text[cut:].decode()]


def stream_events(answer: Answer, model: str, ident: str, *, unknown: bool) -> list[dict[str, Any]]:
    """The events of the streamed answer, in order."""
    start: dict[str, Any] = {"id": f"msg_{ident}", "type": "message", "role": "assistant"}
    start |= {"model": model, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = _usage_json(answer, 1)
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    index = 0
    if unknown:
        events += _THINKING_EVENTS
        index = 1
    block: dict[str, Any]
    deltas: list[dict[str, Any]]
    if answer.tool_name:
        block = {"type": "tool_use", "id": f"toolu_{ident}", "name": answer.tool_name, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": part}
            for part in _fragments(answer.tool_input)
        ]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": word} for word in _WORDS.findall(answer.text)]
        if unknown:
            deltas.insert(1, {"type": "citations_delta", "citation": {"type": "char_location"}})
    events.append({"type": "content_block_start", "index": index, "content_block": block})
    events.append({"type": "ping"})
    events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    events.append({"type": "content_block_stop", "index": index})
    if unknown:
        events += [
            {"type": "content_block_start", "index": index + 1, "content_block": _UNKNOWN_BLOCK},
            {"type": "content_block_delta", "index": index + 1, "delta": {"type": "fake_delta"}},
            {"type": "content_block_stop", "index": index + 1},
        ]
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": answer.output_tokens},
        }
    )
    events.append({"type": "message_stop"})
    return events


def sse_frame(event: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), _encode(event))


_CHUNK_HEADERS: Final = {
    ":message-type": "event",
    ":event-type": "chunk",
    ":content-type": "application/json",
}


def bedrock_frame(event: dict[str, Any]) -> bytes:
    """One Bedrock `chunk` event wrapping the Anthropic event's JSON in base64."""
    payload = b'{"bytes":"%s"}' % base64.b64encode(_encode(event))
    return encode_message(_CHUNK_HEADERS, payload)


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


def main(argv: list[str] | None = None) -> None:
    """Serve the fake with Granian until SIGINT/SIGTERM."""
    server.serve("tests.fakes.upstreams.anthropic:app", CLI, argv)


if __name__ == "__main__":
    main()
