"""Ollama translation (requests, answers, NDJSON streams, errors) and the adapter over a stub."""

from __future__ import annotations

import base64
import contextlib
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx
import msgspec
import pytest

from app.domain import (
    InvalidRequest,
    Operation,
    Payload,
    StreamBroken,
    UpstreamProtocolError,
    UpstreamStatus,
    UpstreamUnreachable,
    Usage,
)
from app.providers.ollama import (
    OllamaAdapter,
    OllamaStream,
    build_chat_body,
    build_embed_body,
    build_generate_body,
    openai_error_body,
    translate_chat,
    translate_generate,
    translate_stream,
)
from app.providers.transport import Transport

MODEL = "llama3.2"
PNG_DATA = "iVBORw0KGgo="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CLOCK = {"type": "function", "function": {"name": "now"}}


def payload(
    body: dict[str, Any], operation: Operation = Operation.CHAT, *, stream: bool = False
) -> Payload:
    fields = msgspec.json.decode(msgspec.json.encode(body), type=dict[str, msgspec.Raw])
    return Payload(operation=operation, fields=fields, model="alias", stream=stream)


def chat(*messages: dict[str, Any], stream: bool = False, **fields: Any) -> dict[str, Any]:
    request = payload({"model": "alias", "messages": list(messages), **fields}, stream=stream)
    decoded: dict[str, Any] = msgspec.json.decode(build_chat_body(request, MODEL))
    return decoded


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def frames_of(data: bytes) -> list[dict[str, Any]]:
    assert data.endswith(b"\n\n")
    events = data.split(b"\n\n")[:-1]
    assert all(event.startswith(b"data: ") for event in events)
    return [msgspec.json.decode(event[6:]) for event in events]


# --- requests -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_stream_is_always_stated(stream: bool) -> None:
    body = chat(user("Hi"), stream=stream)
    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": stream,
    }


def test_messages_roles_and_content() -> None:
    body = chat(
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "French."}]},
        user([{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]),
        {"role": "assistant", "content": "ok"},
        user(None),
    )
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "French."},
        {"role": "user", "content": "line 1\nline 2"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": ""},
    ]


def test_data_url_images_go_inline() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_DATA}"}},
        {"type": "image_url", "image_url": f"data:image/jpeg;base64,{PNG_DATA}"},
    ]
    assert chat(user(content))["messages"] == [
        {"role": "user", "content": "What is this?", "images": [PNG_DATA, PNG_DATA]}
    ]


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
            "Ollama needs images inline as data URLs",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,raw"}},
            "Ollama needs images inline as data URLs",
        ),
        ({"type": "input_audio", "input_audio": {"data": "AAAA"}}, "input_audio"),
    ],
)
def test_unusable_content_is_refused(part: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        chat(user([part]))


def test_tool_round_trip() -> None:
    function = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    call = {"id": "call_0", "type": "function", "function": function}
    body = chat(
        user("weather?"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
        {"role": "tool", "tool_call_id": "unknown", "content": "?"},
        {"role": "function", "name": "legacy", "content": "x"},
        tools=[WEATHER],
    )
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        {"role": "tool", "content": "?"},
        {"role": "tool", "content": "x", "tool_name": "legacy"},
    ]
    assert body["tools"] == [WEATHER]


@pytest.mark.parametrize(
    ("choice", "names"),
    [
        (None, ["get_weather", "now"]),
        ("auto", ["get_weather", "now"]),
        ("required", ["get_weather", "now"]),
        ("none", None),
        ({"type": "function", "function": {"name": "now"}}, ["now"]),
    ],
)
def test_tool_choice_approximations(choice: Any, names: list[str] | None) -> None:
    fields = {"tool_choice": choice} if choice is not None else {}
    tools = chat(user("x"), tools=[WEATHER, CLOCK], **fields).get("tools")
    assert (None if tools is None else [t["function"]["name"] for t in tools]) == names


@pytest.mark.parametrize(
    "messages",
    [
        [
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}],
            }
        ],
        [
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "1"}}],
            }
        ],
        [{"role": "critic", "content": "x"}],
    ],
)
def test_unusable_messages_are_refused(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidRequest):
        chat(*messages)


def test_unknown_tool_types_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        chat(user("x"), tools=[{"type": "web_search"}])


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"temperature": 0.2}, {"options": {"temperature": 0.2}}),
        ({"top_p": 0.9}, {"options": {"top_p": 0.9}}),
        ({"max_tokens": 50}, {"options": {"num_predict": 50}}),
        ({"max_tokens": 50, "max_completion_tokens": 60}, {"options": {"num_predict": 60}}),
        ({"stop": "END"}, {"options": {"stop": ["END"]}}),
        ({"stop": ["a", "b"]}, {"options": {"stop": ["a", "b"]}}),
        ({"stop": ["", "a"]}, {"options": {"stop": ["a"]}}),
        ({"stop": ""}, {}),
        ({"seed": 1}, {"options": {"seed": 1}}),
        (
            {"presence_penalty": 0.1, "frequency_penalty": 0.2},
            {"options": {"presence_penalty": 0.1, "frequency_penalty": 0.2}},
        ),
        ({"response_format": {"type": "json_object"}}, {"format": "json"}),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "a", "schema": {"type": "object"}},
                }
            },
            {"format": {"type": "object"}},
        ),
        ({"response_format": {"type": "text"}}, {}),
        ({"n": 1, "user": "u", "logprobs": True}, {}),
    ],
)
def test_options_and_format(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = chat(user("x"), **fields)
    del body["model"], body["messages"], body["stream"]
    assert body == expected


def test_n_above_one_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat(user("x"), n=2)
    assert caught.value.param == "n"


def test_generate_body() -> None:
    request = payload(
        {"model": "m", "prompt": ["Once"], "suffix": "end", "max_tokens": 5},
        Operation.COMPLETIONS,
        stream=True,
    )
    assert msgspec.json.decode(build_generate_body(request, MODEL)) == {
        "model": MODEL,
        "prompt": "Once",
        "stream": True,
        "suffix": "end",
        "options": {"num_predict": 5},
    }


@pytest.mark.parametrize("prompt", [["a", "b"], [1, 2], None])
def test_generate_takes_one_text_prompt(prompt: Any) -> None:
    with pytest.raises(InvalidRequest):
        build_generate_body(payload({"prompt": prompt}, Operation.COMPLETIONS), MODEL)


def test_embed_body() -> None:
    request = payload({"input": "a", "dimensions": 64}, Operation.EMBEDDINGS)
    body, wants_base64 = build_embed_body(request, "nomic-embed-text")
    assert msgspec.json.decode(body) == {
        "model": "nomic-embed-text",
        "input": ["a"],
        "dimensions": 64,
    }
    assert not wants_base64


@pytest.mark.parametrize("value", [[1, 2], [[1], [2]], [], 3])
def test_embed_refuses_token_arrays(value: Any) -> None:
    with pytest.raises(InvalidRequest):
        build_embed_body(payload({"input": value}, Operation.EMBEDDINGS), "e")


def test_an_unreadable_request_is_invalid() -> None:
    with pytest.raises(InvalidRequest, match="invalid request"):
        build_chat_body(payload({"messages": "hi"}), MODEL)


# --- answers --------------------------------------------------------------------------------

CHAT_ANSWER = b"""{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z",
"message":{"role":"assistant","content":"The sky is blue."},"done_reason":"stop","done":true,
"total_duration":4883583458,"prompt_eval_count":26,"eval_count":8,"eval_duration":10000}"""
CALL_ANSWER = b"""{"model":"llama3.2","message":{"role":"assistant","content":"",
"tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}},
{"function":{"name":"get_weather","arguments":{"city":"Rome"}}}]},
"done_reason":"stop","done":true,"prompt_eval_count":40,"eval_count":12}"""


def test_chat_answer() -> None:
    body, usage = translate_chat("oll", CHAT_ANSWER, MODEL)
    answer = msgspec.json.decode(body)
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert answer["model"] == MODEL
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The sky is blue."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert answer["usage"] == {"prompt_tokens": 26, "completion_tokens": 8, "total_tokens": 34}
    assert usage == Usage(prompt_tokens=26, completion_tokens=8, total_tokens=34)


def test_tool_call_answer_ids_and_finish() -> None:
    body, _ = translate_chat("oll", CALL_ANSWER, MODEL)
    choice = msgspec.json.decode(body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
            },
        ],
    }


def test_tool_call_with_its_own_id_and_text_arguments() -> None:
    body = b'{"message":{"content":"","tool_calls":[{"id":"abc","function":{"name":"f",'
    body += b'"arguments":"{\\"a\\":1}"}}]},"done":true}'
    call = msgspec.json.decode(translate_chat("oll", body, MODEL)[0])["choices"][0]["message"]
    assert call["tool_calls"][0]["id"] == "abc"
    assert call["tool_calls"][0]["function"]["arguments"] == '{"a":1}'


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("stop", "stop"), ("length", "length"), ("load", "stop"), (None, "stop")],
)
def test_done_reasons(reason: str | None, expected: str) -> None:
    answer = {"message": {"content": "x"}, "done": True, "done_reason": reason}
    body, _ = translate_chat("oll", msgspec.json.encode(answer), MODEL)
    assert msgspec.json.decode(body)["choices"][0]["finish_reason"] == expected


def test_generate_answer() -> None:
    raw = b'{"response":"Once upon","done":true,"done_reason":"length",'
    raw += b'"prompt_eval_count":3,"eval_count":2}'
    body, usage = translate_generate("oll", raw, MODEL)
    answer = msgspec.json.decode(body)
    assert answer["object"] == "text_completion"
    assert answer["choices"] == [
        {"text": "Once upon", "index": 0, "logprobs": None, "finish_reason": "length"}
    ]
    assert usage.total_tokens == 5


@pytest.mark.parametrize("raw", [b"<html>", b'{"message": "text"}'])
def test_unreadable_answers(raw: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        translate_chat("oll", raw, MODEL)


@pytest.mark.parametrize(
    ("status", "raw", "message", "kind"),
    [
        (
            404,
            b'{"error":"model \\"x\\" not found, try pulling it first"}',
            'model "x" not found, try pulling it first',
            "invalid_request_error",
        ),
        (
            500,
            b'{"error":"llama runner process has terminated"}',
            "llama runner process has terminated",
            "api_error",
        ),
        (502, b"Bad Gateway", "Ollama answered HTTP 502", "api_error"),
        (401, b"{}", "Ollama answered HTTP 401", "authentication_error"),
    ],
)
def test_errors_in_openai_shape(status: int, raw: bytes, message: str, kind: str) -> None:
    assert msgspec.json.decode(openai_error_body(status, raw)) == {
        "error": {"message": message, "type": kind, "param": None, "code": None}
    }


# --- streams --------------------------------------------------------------------------------

TEXT_LINES = (
    b'{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":"The"},'
    b'"done":false}\n'
    b'{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":" sky"},'
    b'"done":false}\n'
    b'{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":""},'
    b'"done_reason":"stop","done":true,"total_duration":1,"prompt_eval_count":26,'
    b'"eval_count":2}\n'
)
CALL_LINES = (
    b'{"model":"llama3.2","message":{"role":"assistant","content":"","tool_calls":[{"function":'
    b'{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}\n'
    b'{"model":"llama3.2","message":{"role":"assistant","content":""},"done_reason":"stop",'
    b'"done":true,"prompt_eval_count":40,"eval_count":5}\n'
)


async def _pieces(*pieces: bytes, error: BaseException | None = None) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
    if error is not None:
        raise error


async def run_stream(
    *pieces: bytes,
    chat: bool = True,
    skipped: Counter[str] | None = None,
    error: BaseException | None = None,
) -> list[dict[str, Any]]:
    translator = OllamaStream(
        MODEL, skipped if skipped is not None else Counter(), chat=chat, created=5
    )
    source = _pieces(*pieces, error=error)
    return frames_of(b"".join([f async for f in translate_stream(source, translator)]))


def deltas(chunks: list[dict[str, Any]]) -> list[Any]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks[:-1]]


async def test_text_stream() -> None:
    chunks = await run_stream(TEXT_LINES)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "The"}, None),
        ({"content": " sky"}, None),
        ({}, "stop"),
    ]
    assert len({c["id"] for c in chunks}) == 1
    assert {(c["object"], c["created"], c["model"]) for c in chunks} == {
        ("chat.completion.chunk", 5, MODEL)
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 26, "completion_tokens": 2, "total_tokens": 28}


async def test_stream_fed_byte_by_byte() -> None:
    split = await run_stream(*[TEXT_LINES[i : i + 1] for i in range(len(TEXT_LINES))])
    assert deltas(split) == deltas(await run_stream(TEXT_LINES))


async def test_streamed_tool_call() -> None:
    chunks = await run_stream(CALL_LINES)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_0",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}, None),
        ({}, "tool_calls"),
    ]
    assert chunks[-1]["usage"]["completion_tokens"] == 5


async def test_generate_stream() -> None:
    lines = b'{"response":"Once","done":false}\n{"response":" upon","done":false}\n'
    lines += b'{"response":"","done":true,"done_reason":"length","prompt_eval_count":2,'
    lines += b'"eval_count":2}'  # the last line may come without its newline
    chunks = await run_stream(lines, chat=False)
    assert [(c["choices"][0]["text"], c["choices"][0]["finish_reason"]) for c in chunks[:-1]] == [
        ("Once", None),
        (" upon", None),
        ("", "length"),
    ]
    assert chunks[0]["object"] == "text_completion"
    assert chunks[-1]["usage"]["total_tokens"] == 4


async def test_stream_ends_at_the_done_line() -> None:
    chunks = await run_stream(TEXT_LINES, b'{"garbage after done"\n')
    assert chunks[-1]["usage"]["total_tokens"] == 28


async def test_eof_without_done_is_broken() -> None:
    with pytest.raises(StreamBroken, match="done"):
        await run_stream(TEXT_LINES[: TEXT_LINES.rindex(b'{"model"')])


@pytest.mark.parametrize(
    "line", [b'{"error":"an unknown error was encountered while running the model"}\n', b"{bad\n"]
)
async def test_error_line_breaks_the_stream(line: bytes) -> None:
    with pytest.raises(StreamBroken):
        await run_stream(TEXT_LINES[:80], line)


async def test_transport_break_propagates() -> None:
    with pytest.raises(StreamBroken, match="reset"):
        await run_stream(TEXT_LINES[:50], error=StreamBroken("connection reset"))


async def test_thinking_is_skipped_and_counted() -> None:
    line = b'{"message":{"role":"assistant","content":"","thinking":"hmm"},"done":false}\n'
    skipped: Counter[str] = Counter()
    chunks = await run_stream(line, TEXT_LINES, skipped=skipped)
    assert len(chunks) == 5
    assert skipped == Counter({"thinking": 1})


# --- the adapter ----------------------------------------------------------------------------


class StubTransport:
    base_url = "http://ollama.test:11434"

    def __init__(
        self,
        status: int = 200,
        body: bytes = CHAT_ANSWER,
        pieces: tuple[bytes, ...] = (TEXT_LINES,),
        open_error: BaseException | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.pieces = pieces
        self.open_error = open_error
        self.sent: list[tuple[str, bytes]] = []
        self.closed = False

    async def post(self, path: str, body: bytes) -> tuple[int, bytes, str]:
        self.sent.append((path, body))
        return self.status, self.body, "application/json; charset=utf-8"

    @contextlib.asynccontextmanager
    async def post_stream(self, path: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        self.sent.append((path, body))
        if self.open_error is not None:
            raise self.open_error
        yield _pieces(*self.pieces)

    async def aclose(self) -> None:
        self.closed = True


def adapter(stub: StubTransport) -> OllamaAdapter:
    return OllamaAdapter("oll", cast("Transport", stub))


HELLO = {"model": "alias", "messages": [user("Hi")]}


async def test_send_chat() -> None:
    stub = StubTransport()
    reply = await adapter(stub).send(payload(HELLO), MODEL)
    assert stub.sent[0][0] == "/api/chat"
    assert msgspec.json.decode(stub.sent[0][1])["stream"] is False
    assert reply.usage == Usage(prompt_tokens=26, completion_tokens=8, total_tokens=34)


async def test_send_completion_and_embeddings() -> None:
    stub = StubTransport(body=b'{"response":"x","done":true,"eval_count":1}')
    reply = await adapter(stub).send(payload({"prompt": "a"}, Operation.COMPLETIONS), MODEL)
    assert stub.sent[-1][0] == "/api/generate"
    assert msgspec.json.decode(reply.body)["choices"][0]["text"] == "x"
    stub.body = b'{"model":"e","embeddings":[[0.5,1.0],[2.0,-1.0]],"prompt_eval_count":4}'
    request = {"input": ["a", "b"], "encoding_format": "base64"}
    reply = await adapter(stub).send(payload(request, Operation.EMBEDDINGS), "e")
    assert stub.sent[-1][0] == "/api/embed"
    answer = msgspec.json.decode(reply.body)
    assert [d["index"] for d in answer["data"]] == [0, 1]
    assert struct.unpack("<2f", base64.b64decode(answer["data"][1]["embedding"])) == (2.0, -1.0)
    assert answer["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert reply.usage == Usage(prompt_tokens=4, total_tokens=4)
    stub.body = b'{"embeddings": "nope"}'
    with pytest.raises(UpstreamProtocolError):
        await adapter(stub).send(payload(request, Operation.EMBEDDINGS), "e")


async def test_send_translates_errors() -> None:
    stub = StubTransport(status=404, body=b'{"error":"model \\"m\\" not found"}')
    with pytest.raises(UpstreamStatus) as caught:
        await adapter(stub).send(payload(HELLO), MODEL)
    assert caught.value.upstream_status == 404
    assert caught.value.content_type == "application/json"
    assert msgspec.json.decode(caught.value.body)["error"]["message"] == 'model "m" not found'


async def test_stream_chat_and_completion_paths() -> None:
    stub = StubTransport()
    async with adapter(stub).stream(payload(HELLO, stream=True), MODEL) as frames:
        chunks = frames_of(b"".join([f async for f in frames]))
    assert stub.sent[0][0] == "/api/chat"
    assert msgspec.json.decode(stub.sent[0][1])["stream"] is True
    assert chunks[-1]["usage"]["total_tokens"] == 28
    stub.pieces = (b'{"response":"a","done":true,"eval_count":1}\n',)
    request = payload({"prompt": "x"}, Operation.COMPLETIONS, stream=True)
    async with adapter(stub).stream(request, MODEL) as frames:
        chunks = frames_of(b"".join([f async for f in frames]))
    assert stub.sent[1][0] == "/api/generate"
    assert chunks[0]["object"] == "text_completion"


async def test_stream_open_errors_are_translated() -> None:
    error = UpstreamStatus("oll", 500, b'{"error":"boom"}', "application/json")
    stub = StubTransport(open_error=error)
    with pytest.raises(UpstreamStatus) as caught:
        async with adapter(stub).stream(payload(HELLO, stream=True), MODEL):
            pass
    assert msgspec.json.decode(caught.value.body)["error"]["message"] == "boom"
    assert caught.value.retryable


async def test_embeddings_do_not_stream() -> None:
    with pytest.raises(InvalidRequest):
        async with adapter(StubTransport()).stream(
            payload({"input": "a"}, Operation.EMBEDDINGS), "e"
        ):
            pass


async def test_name_and_aclose() -> None:
    stub = StubTransport()
    oll = adapter(stub)
    assert oll.name == "oll"
    await oll.aclose()
    assert stub.closed


# --- list_models (its own httpx client) -----------------------------------------------------


@pytest.fixture
def mock_http(monkeypatch: pytest.MonkeyPatch) -> Callable[[httpx.MockTransport], None]:
    def install(transport: httpx.MockTransport) -> None:
        real = httpx.AsyncClient

        def client(**kwargs: Any) -> httpx.AsyncClient:
            return real(transport=transport, **kwargs)

        monkeypatch.setattr(httpx, "AsyncClient", client)

    return install


async def test_list_models(mock_http: Callable[[httpx.MockTransport], None]) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"models": [{"name": "llama3.2:latest"}, {"name": "qwen"}]})

    mock_http(httpx.MockTransport(handler))
    assert await adapter(StubTransport()).list_models() == ["llama3.2:latest", "qwen"]
    assert seen == ["http://ollama.test:11434/api/tags"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(500, json={"error": "boom"}), UpstreamStatus),
        (httpx.Response(200, content=b"<html>"), UpstreamProtocolError),
        (httpx.ConnectError("refused"), UpstreamUnreachable),
    ],
)
async def test_list_models_failures(
    mock_http: Callable[[httpx.MockTransport], None],
    answer: httpx.Response | Exception,
    error: type[Exception],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    mock_http(httpx.MockTransport(handler))
    with pytest.raises(error):
        await adapter(StubTransport()).list_models()
