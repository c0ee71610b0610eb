"""The Anthropic translation, pure: requests, answers, errors, streams; no network."""

from __future__ import annotations

import base64
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import pytest

from app.domain import (
    InvalidRequest,
    Operation,
    Payload,
    PromptTokensDetails,
    StreamBroken,
    UpstreamProtocolError,
    UpstreamStatus,
    Usage,
)
from app.providers.anthropic import (
    BEDROCK_VERSION,
    DEFAULT_MAX_TOKENS,
    VERTEX_VERSION,
    AnthropicAdapter,
    MessagesStreamMeter,
    StreamTranslator,
    messages_usage,
    sse_data,
    translate_error,
    translate_request,
    translate_response,
)
from app.providers.eventstream import encode_message
from app.providers.sse import FrameSplitter

USER = {"role": "user", "content": "Hi"}


def fields(**body: Any) -> dict[str, msgspec.Raw]:
    body.setdefault("model", "alias")
    body.setdefault("messages", [USER])
    return msgspec.json.decode(msgspec.json.encode(body), type=dict[str, msgspec.Raw])


def request(**body: Any) -> dict[str, Any]:
    """The Messages body (as JSON values) for an OpenAI body."""
    decoded: dict[str, Any] = msgspec.json.decode(
        msgspec.json.encode(translate_request(fields(**body)))
    )
    return decoded


def refused(**body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        translate_request(fields(**body))
    assert caught.value.status == 400
    return caught.value


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


# --- requests -------------------------------------------------------------------------------


def test_minimal_request_gets_the_default_max_tokens_and_nothing_else() -> None:
    assert request() == {
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [text("Hi")]}],
    }


def test_every_system_and_developer_message_goes_to_system_in_order() -> None:
    body = request(
        messages=[
            {"role": "system", "content": "one"},
            {"role": "developer", "content": [{"type": "text", "text": "two"}]},
            USER,
            {
                "role": "system",
                "content": [{"type": "text", "text": "three"}, {"type": "text", "text": ""}],
            },
        ]
    )
    assert body["system"] == [text("one"), text("two"), text("three")]
    assert body["messages"] == [{"role": "user", "content": [text("Hi")]}]


def test_text_parts_become_text_blocks() -> None:
    content = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert request(messages=[{"role": "user", "content": content}])["messages"][0]["content"] == [
        text("a"),
        text("b"),
    ]


@pytest.mark.parametrize(
    ("url", "source"),
    [
        (
            "data:image/png;base64,iVBORw0KGgo=",
            {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        ),
        (
            "data:image/jpeg;name=x.jpg;base64,/9j/",
            {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"},
        ),
        ("https://example.com/cat.png", {"type": "url", "url": "https://example.com/cat.png"}),
        ("http://example.com/cat.png", {"type": "url", "url": "http://example.com/cat.png"}),
    ],
)
def test_image_urls_become_image_blocks(url: str, source: dict[str, str]) -> None:
    for image_url in ({"url": url, "detail": "high"}, url):
        content = [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": image_url}]
        body = request(messages=[{"role": "user", "content": content}])
        assert body["messages"][0]["content"] == [text("see"), {"type": "image", "source": source}]


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png,rawbytes",
        "data:;base64,AAAA",
        "data:image/png;base64",
        "ftp://example.com/a.png",
    ],
)
def test_unusable_image_urls_are_refused(url: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    assert refused(messages=[{"role": "user", "content": content}]).param == "messages.[0].content"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-1"}},
    ],
)
def test_parts_anthropic_cannot_take_are_refused(part: dict[str, Any]) -> None:
    error = refused(messages=[{"role": "user", "content": [part]}])
    assert part["type"] in error.message


def test_images_are_refused_in_system_messages() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    refused(messages=[{"role": "system", "content": [part]}, USER])


def test_unknown_roles_are_refused() -> None:
    assert (
        refused(messages=[{"role": "function", "name": "f", "content": "x"}]).param
        == "messages.[0].role"
    )


def test_tools_become_anthropic_tools() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather now",
                "parameters": schema,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "noargs"}},
        {"type": "function", "function": {"name": "nullargs", "parameters": None}},
    ]
    assert request(tools=tools)["tools"] == [
        {"name": "weather", "description": "Weather now", "input_schema": schema},
        {"name": "noargs", "input_schema": {"type": "object", "properties": {}}},
        {"name": "nullargs", "input_schema": {"type": "object", "properties": {}}},
    ]


def test_non_function_tools_are_refused() -> None:
    assert refused(tools=[{"type": "custom", "custom": {"name": "x"}}]).param == "tools[0]"


TOOLS = [{"type": "function", "function": {"name": "weather"}}]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            None,
            {"type": "tool", "name": "weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
        (None, True, None),
    ],
)
def test_tool_choice_and_parallel_tool_calls(
    choice: Any, parallel: bool | None, expected: Any
) -> None:
    body: dict[str, Any] = {"tools": TOOLS}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert request(**body).get("tool_choice") == expected


def test_tool_choice_without_tools_is_dropped() -> None:
    assert "tool_choice" not in request(tool_choice="required", parallel_tool_calls=False)


def test_an_unknown_tool_choice_is_refused() -> None:
    assert refused(tools=TOOLS, tool_choice="sometimes").param == "tool_choice"


def _call(ident: str, arguments: str, name: str = "weather") -> dict[str, Any]:
    return {"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_calls_and_results_become_tool_use_and_tool_result_turns() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [_call("call_1", '{"city": "Paris"}'), _call("call_2", "")],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
        {"role": "user", "content": "Thanks"},
    ]
    assert request(messages=messages)["messages"] == [
        {"role": "user", "content": [text("Weather in Paris and Rome?")]},
        {
            "role": "assistant",
            "content": [
                text("Checking."),
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [text("rainy")]},
                text("Thanks"),
            ],
        },
    ]


def test_assistant_with_only_tool_calls_has_no_text_block() -> None:
    messages = [USER, {"role": "assistant", "content": None, "tool_calls": [_call("c", "{}")]}]
    assert request(messages=messages)["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "c", "name": "weather", "input": {}}],
    }


def test_tool_results_go_before_text_in_a_merged_user_turn() -> None:
    messages = [
        USER,
        {"role": "assistant", "tool_calls": [_call("c", "{}")]},
        {"role": "user", "content": "also this"},
        {"role": "tool", "tool_call_id": "c", "content": ""},
    ]
    assert request(messages=messages)["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c"},
        text("also this"),
    ]


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]", '"text"', "not json"])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    messages = [USER, {"role": "assistant", "tool_calls": [_call("c", arguments)]}]
    assert refused(messages=messages).param == "messages.[1].tool_calls.[0].function.arguments"


def test_tool_messages_need_a_tool_call_id() -> None:
    assert (
        refused(messages=[USER, {"role": "tool", "content": "x"}]).param
        == "messages.[1].tool_call_id"
    )


def test_consecutive_turns_of_one_role_merge() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "d"},
        {"role": "user", "content": "e"},
    ]
    assert request(messages=messages)["messages"] == [
        {"role": "user", "content": [text("a"), text("b")]},
        {"role": "assistant", "content": [text("c"), text("d")]},
        {"role": "user", "content": [text("e")]},
    ]


@pytest.mark.parametrize(
    ("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"]), ([], None), (None, None)]
)
def test_stop_becomes_a_list_of_stop_sequences(stop: Any, expected: list[str] | None) -> None:
    assert request(stop=stop).get("stop_sequences") == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200}, 200),
        ({"max_completion_tokens": 200, "max_tokens": 100}, 200),
        ({"max_tokens": None}, DEFAULT_MAX_TOKENS),
        ({}, DEFAULT_MAX_TOKENS),
    ],
)
def test_max_tokens(given: dict[str, Any], expected: int) -> None:
    assert request(**given)["max_tokens"] == expected


def test_sampling_user_and_dropped_fields() -> None:
    body = request(
        temperature=0.5,
        top_p=1,
        user="user-42",
        n=1,
        seed=7,
        frequency_penalty=0.1,
        response_format={"type": "json_object"},
        stream_options={"include_usage": True},
        logprobs=True,
        stream=True,
    )
    assert body == {
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [text("Hi")]}],
        "temperature": 0.5,
        "top_p": 1.0,
        "metadata": {"user_id": "user-42"},
    }


def test_more_than_one_choice_is_refused() -> None:
    assert refused(n=2).param == "n"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop": 3}, "stop"),
        ({"tools": {"a": 1}}, "tools"),
    ],
)
def test_wrong_types_are_refused_with_the_param(body: dict[str, Any], param: str) -> None:
    assert refused(**body).param == param


# --- the adapter's body and path per hosting ------------------------------------------------


class StubTransport:
    """Stands in for `Transport`: records requests, answers what it was given."""

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        pieces: Sequence[bytes] = (),
        stream_status: int | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.pieces = pieces
        self.stream_status = stream_status
        self.requests: list[tuple[str, Any]] = []
        self.closed = False

    async def post(self, path: str, body: bytes) -> tuple[int, bytes, str]:
        self.requests.append((path, msgspec.json.decode(body)))
        return self.status, self.body, "application/json"

    @contextlib.asynccontextmanager
    async def post_stream(self, path: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        self.requests.append((path, msgspec.json.decode(body)))
        if self.stream_status is not None:
            raise UpstreamStatus("anthropic", self.stream_status, self.body, "application/json")

        async def pieces() -> AsyncIterator[bytes]:
            for piece in self.pieces:
                yield piece

        yield pieces()

    async def aclose(self) -> None:
        self.closed = True


def adapter(transport: StubTransport, hosting: str = "") -> AnthropicAdapter:
    return AnthropicAdapter("anthropic", transport, hosting=hosting)  # type: ignore[arg-type]


def payload(*, stream: bool = False, operation: Operation = Operation.CHAT, **body: Any) -> Payload:
    return Payload(operation=operation, fields=fields(**body), model="alias", stream=stream)


MODEL = "anthropic.claude-3-5-sonnet-20241022-v2:0"
VERTEX_MODEL = "claude-sonnet-4@20250514"


@pytest.mark.parametrize(
    ("hosting", "stream", "path", "extra"),
    [
        ("", False, "/messages", {"model": MODEL}),
        ("", True, "/messages", {"model": MODEL, "stream": True}),
        ("vertex", False, f"/{VERTEX_MODEL}:rawPredict", {"anthropic_version": VERTEX_VERSION}),
        (
            "vertex",
            True,
            f"/{VERTEX_MODEL}:streamRawPredict",
            {"anthropic_version": VERTEX_VERSION, "stream": True},
        ),
        (
            "bedrock",
            False,
            "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/invoke",
            {"anthropic_version": BEDROCK_VERSION},
        ),
        (
            "bedrock",
            True,
            "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/invoke-with-response-stream",
            {"anthropic_version": BEDROCK_VERSION},
        ),
    ],
)
def test_path_and_body_per_hosting(
    hosting: str, stream: bool, path: str, extra: dict[str, Any]
) -> None:
    anthropic = adapter(StubTransport(), hosting)
    model = VERTEX_MODEL if hosting == "vertex" else MODEL
    assert anthropic.path(model, stream=stream) == path
    body = msgspec.json.decode(anthropic.body(payload(stream=True), model, stream=stream))
    assert body == {
        **extra,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [text("Hi")]}],
    }


def test_a_colon_in_a_vertex_model_cannot_change_the_action() -> None:
    assert adapter(StubTransport(), "vertex").path("odd:model/x", stream=False) == (
        "/odd%3Amodel%2Fx:rawPredict"
    )


def test_an_unknown_hosting_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="azure"):
        adapter(StubTransport(), "azure")


@pytest.mark.parametrize(
    ("operation", "word"),
    [(Operation.EMBEDDINGS, "embeddings"), (Operation.COMPLETIONS, "completions")],
)
async def test_embeddings_and_completions_are_refused_before_any_request(
    operation: Operation, word: str
) -> None:
    transport = StubTransport()
    anthropic = adapter(transport)
    with pytest.raises(InvalidRequest, match=f"model 'alias' does not support {word}"):
        await anthropic.send(payload(operation=operation, input="x"), "claude")
    with pytest.raises(InvalidRequest):
        async with anthropic.stream(payload(operation=operation, input="x", stream=True), "claude"):
            pass
    assert transport.requests == []


async def test_aclose_closes_the_transport() -> None:
    transport = StubTransport()
    await adapter(transport).aclose()
    assert transport.closed


# --- answers --------------------------------------------------------------------------------

ANSWER = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me "},
        {"type": "text", "text": "check."},
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "weather",
            "input": {"city": "Paris", "days": [1, 2]},
        },
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "cache_creation_input_tokens": 20,
        "cache_read_input_tokens": 30,
        "output_tokens": 40,
    },
}
CACHED_USAGE = Usage(
    prompt_tokens=150,
    completion_tokens=40,
    total_tokens=190,
    prompt_tokens_details=PromptTokensDetails(cached_tokens=30),
)


def test_answer_becomes_a_chat_completion() -> None:
    skipped: Counter[str] = Counter()
    body, usage = translate_response(
        msgspec.json.encode(ANSWER), "claude", skipped, created=1700000000
    )
    assert msgspec.json.decode(body) == {
        "id": "msg_01",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {
                                "name": "weather",
                                "arguments": '{"city":"Paris","days":[1,2]}',
                            },
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 150,
            "completion_tokens": 40,
            "total_tokens": 190,
            "prompt_tokens_details": {"cached_tokens": 30},
        },
    }
    assert usage == CACHED_USAGE
    assert skipped == Counter({"block:thinking": 1, "block:server_tool_use": 1})


def test_only_tool_calls_give_null_content_and_created_is_now() -> None:
    answer = {**ANSWER, "content": [ANSWER["content"][3]]}  # type: ignore[index]
    body, _ = translate_response(msgspec.json.encode(answer), "claude")
    decoded = msgspec.json.decode(body)
    assert decoded["choices"][0]["message"]["content"] is None
    assert isinstance(decoded["created"], int)
    assert decoded["created"] > 1_600_000_000


def test_empty_answer_has_empty_content_and_upstream_model_stands_in() -> None:
    answer = {
        "id": "msg_2",
        "content": [],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 0},
    }
    body, usage = translate_response(msgspec.json.encode(answer), "claude-haiku")
    decoded = msgspec.json.decode(body)
    assert decoded["model"] == "claude-haiku"
    assert decoded["choices"][0]["message"] == {"role": "assistant", "content": "", "refusal": None}
    assert usage == Usage(prompt_tokens=3, completion_tokens=0, total_tokens=3)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(stop_reason: str | None, finish: str) -> None:
    answer = {"id": "m", "content": [text("x")], "stop_reason": stop_reason}
    body, _ = translate_response(msgspec.json.encode(answer), "claude")
    assert msgspec.json.decode(body)["choices"][0]["finish_reason"] == finish


async def test_send_translates_the_answer_and_reports_usage() -> None:
    transport = StubTransport(body=msgspec.json.encode(ANSWER))
    anthropic = adapter(transport)
    reply = await anthropic.send(payload(stream=True), "claude-sonnet")
    assert reply.usage == CACHED_USAGE
    assert msgspec.json.decode(reply.body)["object"] == "chat.completion"
    assert transport.requests[0][1]["model"] == "claude-sonnet"
    assert "stream" not in transport.requests[0][1]
    assert anthropic.skipped == Counter({"block:thinking": 1, "block:server_tool_use": 1})


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"content": "nope"}', b"[]"])
async def test_an_unreadable_answer_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        await adapter(StubTransport(body=body)).send(payload(), "claude")


# --- errors ---------------------------------------------------------------------------------


def openai_error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            b'{"type":"error","error":{"type":"invalid_request_error",'
            b'"message":"max_tokens: Field required"}}',
            openai_error("max_tokens: Field required", "invalid_request_error"),
        ),
        (
            529,
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}',
            openai_error("Overloaded", "overloaded_error"),
        ),
        (
            401,
            b'{"error":{"code":401,"message":"Request had invalid authentication credentials.",'
            b'"status":"UNAUTHENTICATED"}}',
            openai_error("Request had invalid authentication credentials.", "authentication_error"),
        ),
        (
            429,
            b'[{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}]',
            openai_error("Quota exceeded", "rate_limit_error"),
        ),
        (
            400,
            b'{"message":"extraneous key [stream] is not permitted"}',
            openai_error("extraneous key [stream] is not permitted", "invalid_request_error"),
        ),
        (
            403,
            b'{"Message":"User is not authorized"}',
            openai_error("User is not authorized", "permission_error"),
        ),
        (502, b"<html>Bad Gateway</html>", openai_error("upstream answered 502", "api_error")),
        (404, b"", openai_error("upstream answered 404", "not_found_error")),
        (500, b"[]", openai_error("upstream answered 500", "api_error")),
    ],
)
def test_error_bodies_become_openai_errors(
    status: int, body: bytes, expected: dict[str, Any]
) -> None:
    assert msgspec.json.decode(translate_error(status, body)) == expected


def test_long_error_messages_are_cut() -> None:
    body = msgspec.json.encode(
        {"type": "error", "error": {"type": "api_error", "message": "x" * 5000}}
    )
    assert len(msgspec.json.decode(translate_error(500, body))["error"]["message"]) == 1024


async def test_send_raises_upstream_status_with_the_translated_body() -> None:
    vendor = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}'
    with pytest.raises(UpstreamStatus) as caught:
        await adapter(StubTransport(status=400, body=vendor)).send(payload(), "claude")
    error = caught.value
    assert (error.upstream_status, error.content_type, error.passes_through) == (
        400,
        "application/json",
        True,
    )
    assert msgspec.json.decode(error.body) == openai_error("bad", "invalid_request_error")


async def test_stream_entry_raises_upstream_status_with_the_translated_body() -> None:
    vendor = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
    transport = StubTransport(body=vendor, stream_status=429)
    with pytest.raises(UpstreamStatus) as caught:
        async with adapter(transport).stream(payload(stream=True), "claude"):
            pass
    assert caught.value.upstream_status == 429
    assert msgspec.json.decode(caught.value.body) == openai_error("slow down", "rate_limit_error")


# --- streams --------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    """Events as Anthropic sends them: an `event:` line and a `data:` line each."""
    return b"".join(
        b"event: %s\ndata: %s\n\n" % (e["type"].encode(), msgspec.json.encode(e)) for e in events
    )


def chunks(frames: bytes) -> list[dict[str, Any]]:
    """The OpenAI chunks in SSE frames, checking each is a complete `data:` event."""
    assert frames.endswith(b"\n\n")
    events = frames[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events)
    return [msgspec.json.decode(event[6:]) for event in events]


def translate(
    stream: bytes, skipped: Counter[str] | None = None
) -> tuple[list[dict[str, Any]], StreamTranslator]:
    translator = StreamTranslator("claude-upstream", skipped, created=1700000000)
    frames = b"".join(translator.feed(data) for data in sse_data(stream))
    return chunks(frames), translator


def deltas(result: list[dict[str, Any]]) -> list[Any]:
    return [c["choices"][0]["delta"] if c["choices"] else c["usage"] for c in result]


def start(usage: dict[str, int] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": "msg_s1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 25, "output_tokens": 1},
    }
    return {"type": "message_start", "message": message}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **value: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": value}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output_tokens: int) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


PING = {"type": "ping"}
MESSAGE_STOP = {"type": "message_stop"}
TEXT_STREAM = sse(
    start(),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    delta(0, type="text_delta", text="Hello"),
    delta(0, type="text_delta", text=" there"),
    stop(0),
    message_delta("end_turn", 15),
    MESSAGE_STOP,
)


def test_text_stream_becomes_openai_chunks() -> None:
    result, translator = translate(TEXT_STREAM)
    head = {
        "id": "msg_s1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "claude-sonnet-4-5",
    }
    for chunk in result:
        assert {k: chunk[k] for k in head} == head
    assert [c["choices"] for c in result] == [
        [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        [{"index": 0, "delta": {"content": "Hello"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {"content": " there"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
        [],
    ]
    assert result[-1]["usage"] == {
        "prompt_tokens": 25,
        "completion_tokens": 15,
        "total_tokens": 40,
        "prompt_tokens_details": None,
    }
    assert translator.complete
    assert translator.usage == Usage(prompt_tokens=25, completion_tokens=15, total_tokens=40)


def test_two_parallel_tool_calls_are_numbered_from_zero() -> None:
    stream = sse(
        start({"input_tokens": 472, "output_tokens": 2}),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Checking both."),
        stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_A", "name": "weather", "input": {}}),
        delta(1, type="input_json_delta", partial_json=""),
        delta(1, type="input_json_delta", partial_json='{"city": '),
        delta(1, type="input_json_delta", partial_json='"Paris"}'),
        stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_B", "name": "time", "input": {}}),
        delta(2, type="input_json_delta", partial_json='{"tz": "CET"}'),
        stop(2),
        message_delta("tool_use", 89),
        MESSAGE_STOP,
    )
    result, _ = translate(stream)
    assert deltas(result) == [
        {"role": "assistant", "content": ""},
        {"content": "Checking both."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_A",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_B",
                    "type": "function",
                    "function": {"name": "time", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "CET"}'}}]},
        {},
        {
            "prompt_tokens": 472,
            "completion_tokens": 89,
            "total_tokens": 561,
            "prompt_tokens_details": None,
        },
    ]
    assert result[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_thinking_blocks_are_skipped_and_counted() -> None:
    stream = sse(
        start(),
        block_start(0, {"type": "thinking", "thinking": ""}),
        delta(0, type="thinking_delta", thinking="Let me think"),
        delta(0, type="signature_delta", signature="EqQB"),
        stop(0),
        block_start(1, {"type": "redacted_thinking", "data": "xyz"}),
        stop(1),
        block_start(2, {"type": "text", "text": ""}),
        delta(2, type="text_delta", text="Answer"),
        stop(2),
        message_delta("end_turn", 30),
        MESSAGE_STOP,
    )
    skipped: Counter[str] = Counter()
    result, _ = translate(stream, skipped)
    assert deltas(result)[:3] == [{"role": "assistant", "content": ""}, {"content": "Answer"}, {}]
    assert skipped == Counter({"block:thinking": 1, "block:redacted_thinking": 1})


def test_unknown_events_blocks_and_deltas_are_skipped_and_counted() -> None:
    stream = sse(
        start(),
        {"type": "brand_new_event", "payload": {"x": 1}},
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="citations_delta", citation={"type": "char_location"}),
        delta(0, type="text_delta", text="Hi"),
        block_start(1, {"type": "mystery_block"}),
        delta(1, type="mystery_delta", value=1),
        delta(5, type="input_json_delta", partial_json="{}"),
        message_delta("end_turn", 2),
        MESSAGE_STOP,
    )
    skipped: Counter[str] = Counter()
    result, translator = translate(stream, skipped)
    assert deltas(result)[:2] == [{"role": "assistant", "content": ""}, {"content": "Hi"}]
    assert translator.complete
    assert skipped == Counter(
        {
            "event:brand_new_event": 1,
            "delta:citations_delta": 1,
            "block:mystery_block": 1,
            "delta:input_json_delta": 1,
        }
    )


def test_stream_usage_counts_cache_reads_and_takes_the_last_cumulative_output() -> None:
    usage = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 1000,
        "output_tokens": 1,
    }
    stream = sse(
        start(usage),
        block_start(0, {"type": "text", "text": "Hi"}),
        message_delta("max_tokens", 7),
        message_delta("max_tokens", 12),
        MESSAGE_STOP,
    )
    result, translator = translate(stream)
    assert deltas(result)[1] == {"content": "Hi"}
    assert result[-2]["choices"][0]["finish_reason"] == "length"
    assert result[-1]["usage"] == {
        "prompt_tokens": 1015,
        "completion_tokens": 12,
        "total_tokens": 1027,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }
    assert translator.usage == Usage(
        prompt_tokens=1015,
        completion_tokens=12,
        total_tokens=1027,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=1000),
    )


def test_usage_is_none_before_message_start() -> None:
    assert StreamTranslator("claude").usage is None


def test_an_error_event_breaks_the_stream() -> None:
    translator = StreamTranslator("claude")
    translator.feed(msgspec.json.encode(start()))
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(StreamBroken, match="overloaded_error: Overloaded"):
        translator.feed(msgspec.json.encode(error))


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b'{"type":"content_block_delta","index":"zero","delta":{}}',
        b'{"type":"message_start"}',
    ],
)
def test_unreadable_or_malformed_events_break_the_stream(data: bytes) -> None:
    with pytest.raises(StreamBroken):
        StreamTranslator("claude").feed(data)


def test_message_stop_without_message_start_breaks_the_stream() -> None:
    with pytest.raises(StreamBroken, match="message_start"):
        StreamTranslator("claude").feed(b'{"type":"message_stop"}')


def test_events_after_message_stop_are_ignored() -> None:
    translator = StreamTranslator("claude")
    for data in sse_data(TEXT_STREAM):
        translator.feed(data)
    assert translator.feed(msgspec.json.encode(delta(0, type="text_delta", text="late"))) == b""


def test_sse_data_reads_data_lines_whatever_the_spacing() -> None:
    frames = (
        b'event: ping\ndata: {"type": "ping"}\n\n: comment\n\ndata:{"a":1}\n\ndata: x\ndata: y\n\n'
    )
    assert list(sse_data(frames)) == [b'{"type": "ping"}', b'{"a":1}', b"x\ny"]


def test_sse_with_crlf_line_ends() -> None:
    splitter = FrameSplitter()
    frames = splitter.feed(TEXT_STREAM.replace(b"\n", b"\r\n"))
    result, _ = translate(frames)
    assert deltas(result)[1] == {"content": "Hello"}


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [frames async for frames in stream]


def pieces_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_adapter_stream_over_sse_pieces_of_any_size() -> None:
    for size in (1, 7, 64, len(TEXT_STREAM)):
        transport = StubTransport(pieces=pieces_of(TEXT_STREAM, size))
        async with adapter(transport).stream(payload(stream=True), "claude") as frames:
            result = chunks(b"".join(await collect(frames)))
        assert "".join(d.get("content", "") for d in deltas(result)[:-1]) == "Hello there"
        assert result[-1]["usage"]["total_tokens"] == 40
        assert transport.requests[0] == (
            "/messages",
            {
                "model": "claude",
                "max_tokens": DEFAULT_MAX_TOKENS,
                "messages": [{"role": "user", "content": [text("Hi")]}],
                "stream": True,
            },
        )


async def test_adapter_stream_that_ends_without_message_stop_breaks() -> None:
    cut = TEXT_STREAM[: TEXT_STREAM.index(b"event: message_delta")]
    async with adapter(StubTransport(pieces=[cut])).stream(
        payload(stream=True), "claude"
    ) as frames:
        received = []
        with pytest.raises(StreamBroken, match="message_stop"):
            async for piece in frames:
                received.append(piece)
    assert deltas(chunks(b"".join(received)))[-1] == {"content": " there"}


def bedrock_chunk(event: dict[str, Any]) -> bytes:
    headers = {
        ":message-type": "event",
        ":event-type": "chunk",
        ":content-type": "application/json",
    }
    return encode_message(headers, b'{"bytes":"%s"}' % base64.b64encode(msgspec.json.encode(event)))


BEDROCK_STREAM = b"".join(
    bedrock_chunk(msgspec.json.decode(data))
    for data in sse_data(TEXT_STREAM)
    if b'"ping"' not in data
)


async def test_adapter_stream_over_the_bedrock_event_stream() -> None:
    transport = StubTransport(pieces=pieces_of(BEDROCK_STREAM, 50))
    async with adapter(transport, "bedrock").stream(payload(stream=True), MODEL) as frames:
        result = chunks(b"".join(await collect(frames)))
    assert deltas(result)[1:3] == [{"content": "Hello"}, {"content": " there"}]
    assert result[-1]["usage"]["completion_tokens"] == 15
    path, body = transport.requests[0]
    assert path.endswith("/invoke-with-response-stream")
    assert "stream" not in body


async def test_adapter_bedrock_stream_cut_inside_a_frame_breaks() -> None:
    transport = StubTransport(pieces=[BEDROCK_STREAM[:-10]])
    async with adapter(transport, "bedrock").stream(payload(stream=True), MODEL) as frames:
        with pytest.raises(StreamBroken):
            await collect(frames)


# --- native Messages traffic ----------------------------------------------------------------


def test_messages_usage_of_a_native_answer() -> None:
    assert messages_usage(msgspec.json.encode(ANSWER)) == CACHED_USAGE
    assert messages_usage(b'{"id":"m","content":[]}') is None
    assert messages_usage(b"not json") is None


def test_stream_meter_reads_usage_of_a_native_stream() -> None:
    meter = MessagesStreamMeter()
    first = TEXT_STREAM.index(b"event: content_block_start")
    seen = [(meter.usage, meter.complete)]
    meter.see(TEXT_STREAM[:first])
    seen.append((meter.usage, meter.complete))
    meter.see(TEXT_STREAM[first:])
    seen.append((meter.usage, meter.complete))
    assert seen == [
        (None, False),
        (Usage(prompt_tokens=25, completion_tokens=1, total_tokens=26), False),
        (Usage(prompt_tokens=25, completion_tokens=15, total_tokens=40), True),
    ]


def test_stream_meter_ignores_unreadable_events() -> None:
    meter = MessagesStreamMeter()
    meter.see(b'event: message_start\ndata: {"type":"message_start","usage": broken\n\n')
    assert meter.usage is None
    assert not meter.complete
