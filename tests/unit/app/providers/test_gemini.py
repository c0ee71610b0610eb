"""Gemini translation (requests, answers, streams, errors) and the adapter over a stub transport."""

from __future__ import annotations

import base64
import contextlib
import struct
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, cast

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
from app.providers.gemini import (
    GeminiAdapter,
    GeminiStream,
    build_chat_body,
    build_embedding_body,
    clean_schema,
    model_path,
    openai_error_body,
    translate_response,
    translate_stream,
)
from app.providers.gemini.answer import translate_predictions
from app.providers.gemini.request import build_predict_body
from app.providers.transport import Transport

MODEL = "gemini-2.0-flash"
PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def payload(
    body: dict[str, Any], operation: Operation = Operation.CHAT, *, stream: bool = False
) -> Payload:
    fields = msgspec.json.decode(msgspec.json.encode(body), type=dict[str, msgspec.Raw])
    return Payload(operation=operation, fields=fields, model="alias", stream=stream, input_tokens=7)


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The Gemini body for an OpenAI chat request, decoded."""
    body = build_chat_body(payload({"model": "alias", "messages": list(messages), **fields}))
    decoded: dict[str, Any] = msgspec.json.decode(body)
    return decoded


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def frames_of(data: bytes) -> list[dict[str, Any]]:
    """The OpenAI chunks in SSE frames (each must be a complete `data:` event)."""
    assert data.endswith(b"\n\n")
    events = data.split(b"\n\n")[:-1]
    assert all(event.startswith(b"data: ") for event in events)
    return [msgspec.json.decode(event[6:]) for event in events]


# --- requests -------------------------------------------------------------------------------


def test_roles_map_to_user_model_and_system_instruction() -> None:
    body = chat(
        {"role": "system", "content": "Be brief."},
        user("Hi"),
        {"role": "assistant", "content": "Hello."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        user("Again"),
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello."}]},
        {"role": "user", "parts": [{"text": "Again"}]},
    ]
    assert "generationConfig" not in body
    assert "tools" not in body


def test_text_and_image_parts() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://x.test/cat.webp?size=2"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/photo"}},
        {"type": "image_url", "image_url": "https://x.test/a.PNG"},
    ]
    parts = chat(user(content))["contents"][0]["parts"]
    assert parts == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/cat.webp?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/photo"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a.PNG"}},
    ]


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "ftp://x.test/a.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ],
)
def test_unsupported_content_is_refused(part: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        chat(user([part]))


def test_empty_messages_are_left_out_and_no_content_is_refused() -> None:
    assert chat(user(""), user("x"))["contents"] == [{"role": "user", "parts": [{"text": "x"}]}]
    with pytest.raises(InvalidRequest, match="at least one"):
        chat({"role": "system", "content": "only a system prompt"})
    with pytest.raises(InvalidRequest, match="role"):
        chat({"role": "robot", "content": "x"})
    with pytest.raises(InvalidRequest, match="invalid chat request"):
        build_chat_body(payload({"model": "m"}))


def test_tools_become_one_declaration_list_with_cleaned_schemas() -> None:
    body = chat(
        user("weather?"), tools=[WEATHER, {"type": "function", "function": {"name": "now"}}]
    )
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
                {"name": "now"},
            ]
        }
    ]
    assert "toolConfig" not in body


def test_clean_schema_is_recursive_and_keeps_property_names_and_data() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "strict": {"type": "boolean"},
            "tags": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "mode": {"type": ["string", "null"], "enum": [{"strict": 1}, "b"]},
            "either": {"anyOf": [{"type": "string", "$schema": "x"}, {"type": "integer"}]},
        },
        "$defs": {"strict": {"type": "string", "strict": True}},
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {
            "strict": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "object"}},
            "mode": {"type": "string", "nullable": True, "enum": [{"strict": 1}, "b"]},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "$defs": {"strict": {"type": "string"}},
    }


@pytest.mark.parametrize(
    "parameters",
    [{"type": "object", "properties": {}}, {"type": "object"}, {"properties": {}}],
)
def test_parameters_of_an_object_without_properties_are_left_out(
    parameters: dict[str, Any],
) -> None:
    tool = {"type": "function", "function": {"name": "ping", "parameters": parameters}}
    assert chat(user("x"), tools=[tool])["tools"][0]["functionDeclarations"] == [{"name": "ping"}]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    body = chat(user("x"), tools=[WEATHER], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_tool_choice_without_tools_and_unknown_ones() -> None:
    assert "toolConfig" not in chat(user("x"), tool_choice="auto")
    with pytest.raises(InvalidRequest):
        chat(user("x"), tools=[WEATHER], tool_choice="sometimes")
    with pytest.raises(InvalidRequest):
        chat(user("x"), tools=[{"type": "custom", "custom": {"name": "x"}}])


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_round_trip_names_the_function_and_groups_results() -> None:
    body = chat(
        user("weather in Paris and Rome?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                _call("call_a", "get_weather", '{"city": "Paris"}'),
                _call("call_b", "get_time", ""),
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "noon"}]},
        user("thanks"),
    )
    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"city": "Paris"},
                        "id": "call_a",
                    }
                },
                {"functionCall": {"name": "get_time", "args": {}, "id": "call_b"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"content": {"temp": 21}},
                        "id": "call_a",
                    }
                },
                {
                    "functionResponse": {
                        "name": "get_time",
                        "response": {"content": "noon"},
                        "id": "call_b",
                    }
                },
            ],
        },
        {"role": "user", "parts": [{"text": "thanks"}]},
    ]


def test_empty_assistant_and_system_text_make_no_empty_parts() -> None:
    """Clients send `"content": ""` beside tool calls; Gemini refuses an empty text part."""
    body = chat(
        {"role": "system", "content": ""},
        user("weather?"),
        {"role": "assistant", "content": "", "tool_calls": [_call("call_a", "get_weather", "")]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
    )
    assert "systemInstruction" not in body
    assert body["contents"][1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {}, "id": "call_a"}}],
    }


def test_later_tool_calls_win_for_a_reused_id_and_legacy_function_role() -> None:
    body = chat(
        user("a"),
        {"role": "assistant", "tool_calls": [_call("call_0", "first", "{}")]},
        {"role": "tool", "tool_call_id": "call_0", "content": "1"},
        {"role": "assistant", "tool_calls": [_call("call_0", "second", "{}")]},
        {"role": "tool", "tool_call_id": "call_0", "content": "[1, 2]"},
        {"role": "function", "name": "legacy", "content": "x"},
    )
    responses = [c["parts"] for c in body["contents"] if c["role"] == "user"][1:]
    assert responses[0][0]["functionResponse"]["name"] == "first"
    assert responses[1][0]["functionResponse"]["name"] == "second"
    assert responses[1][0]["functionResponse"]["response"] == {"content": "[1, 2]"}
    assert responses[1][1]["functionResponse"]["name"] == "legacy"


@pytest.mark.parametrize(
    "messages",
    [
        [user("a"), {"role": "tool", "tool_call_id": "nope", "content": "x"}],
        [user("a"), {"role": "assistant", "tool_calls": [_call("c", "f", "{not json")]}],
        [user("a"), {"role": "assistant", "tool_calls": [_call("c", "f", "[1]")]}],
    ],
)
def test_unusable_tool_messages_are_refused(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidRequest):
        chat(*messages)


def test_thought_signature_goes_back_with_its_call() -> None:
    call = _call("c1", "f", "{}") | {
        "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}}
    }
    body = chat(user("a"), {"role": "assistant", "tool_calls": [call]})
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == "c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("fields", "config"),
    [
        ({"temperature": 0.2}, {"temperature": 0.2}),
        ({"top_p": 0.9}, {"topP": 0.9}),
        ({"max_tokens": 50}, {"maxOutputTokens": 50}),
        ({"max_tokens": 50, "max_completion_tokens": 60}, {"maxOutputTokens": 60}),
        ({"stop": "END"}, {"stopSequences": ["END"]}),
        ({"stop": ["a", "b"]}, {"stopSequences": ["a", "b"]}),
        ({"n": 3}, {"candidateCount": 3}),
        ({"seed": 42}, {"seed": 42}),
        ({"presence_penalty": 0.5}, {"presencePenalty": 0.5}),
        ({"frequency_penalty": -0.5}, {"frequencyPenalty": -0.5}),
        ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "answer",
                        "strict": True,
                        "schema": {
                            "type": "object",
                            "properties": {"a": {"type": "string"}},
                            "additionalProperties": False,
                        },
                    },
                }
            },
            {
                "responseMimeType": "application/json",
                "responseSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
            },
        ),
    ],
)
def test_generation_config(fields: dict[str, Any], config: dict[str, Any]) -> None:
    assert chat(user("x"), **fields)["generationConfig"] == config


@pytest.mark.parametrize(
    "fields",
    [
        {"n": 1},
        {"response_format": {"type": "text"}},
        {"stop": []},
        {"stop": ""},
        {"stop": [""]},
        {"user": "u1", "stream_options": {"include_usage": True}, "parallel_tool_calls": True},
    ],
)
def test_fields_without_effect_add_no_generation_config(fields: dict[str, Any]) -> None:
    assert "generationConfig" not in chat(user("x"), **fields)


# --- answers --------------------------------------------------------------------------------

TEXT_ANSWER = b"""{
  "candidates": [{"content": {"parts": [{"text": "The sky "}, {"text": "is blue."}],
    "role": "model"}, "finishReason": "STOP", "index": 0, "avgLogprobs": -0.1}],
  "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 4, "totalTokenCount": 30,
    "cachedContentTokenCount": 8, "thoughtsTokenCount": 14,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]},
  "modelVersion": "gemini-2.5-flash", "responseId": "r1"}"""


def translate(body: bytes, skipped: Counter[str] | None = None) -> tuple[dict[str, Any], Usage]:
    answer, usage = translate_response(
        "gem", body, MODEL, skipped if skipped is not None else Counter()
    )
    decoded: dict[str, Any] = msgspec.json.decode(answer)
    return decoded, usage


def test_text_answer_with_usage_cached_and_thinking_tokens() -> None:
    answer, usage = translate(TEXT_ANSWER)
    assert answer["id"] == "chatcmpl-r1"
    assert answer["object"] == "chat.completion"
    assert isinstance(answer["created"], int)
    assert answer["model"] == MODEL
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The sky is blue."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert answer["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 18,
        "total_tokens": 30,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 14},
    }
    assert usage == Usage(
        prompt_tokens=12,
        completion_tokens=18,
        total_tokens=30,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=8),
    )


def test_usage_without_cache_reads_has_no_details() -> None:
    body = b'{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}],'
    body += b'"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1}}'
    answer, usage = translate(body)
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert usage.prompt_tokens_details is None


def test_function_calls_get_unique_ids_and_finish_tool_calls() -> None:
    body = msgspec.json.encode(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "Checking."},
                            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                            {
                                "functionCall": {"name": "now", "id": "gem-7"},
                                "thoughtSignature": "c2ln",
                            },
                        ],
                    },
                    "finishReason": "STOP",
                }
            ]
        }
    )
    answer, _ = translate(body)
    message = answer["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["tool_calls"] == [
        {
            "id": "call_0_get_weather",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "call_1_get_weather",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
        {
            "id": "gem-7",
            "type": "function",
            "function": {"name": "now", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": "c2ln"}},
        },
    ]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_a_call_without_text_has_null_content() -> None:
    body = b'{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}}]},'
    body += b'"finishReason":"STOP"}]}'
    message = translate(body)[0]["choices"][0]["message"]
    assert message["content"] is None


@pytest.mark.parametrize(
    ("reason", "called", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("OTHER", False, "stop"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        ("FINISH_REASON_UNSPECIFIED", False, "stop"),
    ],
)
def test_finish_reasons(reason: str, called: bool, expected: str) -> None:
    parts = [{"functionCall": {"name": "f", "args": {}}}] if called else [{"text": "x"}]
    candidate = {"content": {"parts": parts}, "finishReason": reason}
    answer, _ = translate(msgspec.json.encode({"candidates": [candidate]}))
    assert answer["choices"][0]["finish_reason"] == expected


def test_candidate_without_content_after_safety_stop() -> None:
    body = b'{"candidates":[{"finishReason":"SAFETY","index":0,"safetyRatings":[]}]}'
    choice = translate(body)[0]["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ""}
    assert choice["finish_reason"] == "content_filter"


def test_blocked_prompt_is_a_content_filter_choice() -> None:
    body = b'{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},'
    body += b'"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9}}'
    answer, usage = translate(body)
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert usage.prompt_tokens == 9


@pytest.mark.parametrize("body", [b"not json", b'{"candidates": []}', b"[]"])
def test_unreadable_answers_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        translate(body)


def test_parts_the_openai_shape_cannot_hold_are_skipped_and_counted() -> None:
    body = msgspec.json.encode(
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"text": "thinking...", "thought": True},
                            {"executableCode": {"language": "PYTHON", "code": "1+1"}},
                            {"text": "2"},
                        ]
                    },
                    "finishReason": "STOP",
                }
            ]
        }
    )
    skipped: Counter[str] = Counter()
    answer, _ = translate(body, skipped)
    assert answer["choices"][0]["message"]["content"] == "2"
    assert skipped == Counter({"thought": 1, "part": 1})


def test_several_candidates_become_several_choices() -> None:
    body = b'{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"},'
    body += b'{"content":{"parts":[{"text":"b"}]},"finishReason":"MAX_TOKENS","index":1}]}'
    choices = translate(body)[0]["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


# --- streams --------------------------------------------------------------------------------

TEXT_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"},'
    b'"index": 0}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},'
    b'"modelVersion": "gemini-2.0-flash","responseId": "s1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " sky is"}],"role": "model"},'
    b'"index": 0}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 3,'
    b'"totalTokenCount": 11},"modelVersion": "gemini-2.0-flash","responseId": "s1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " blue."}],"role": "model"},'
    b'"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,'
    b'"candidatesTokenCount": 5,"totalTokenCount": 13,"cachedContentTokenCount": 2},'
    b'"modelVersion": "gemini-2.0-flash","responseId": "s1"}\r\n\r\n'
)
CALL_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather",'
    b'"args": {"city": "Paris"}}}, {"functionCall": {"name": "get_weather",'
    b'"args": {"city": "Rome"}}}],"role": "model"},"index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 20,"candidatesTokenCount": 10}}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},'
    b'"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 20,'
    b'"candidatesTokenCount": 10,"totalTokenCount": 30}}\r\n\r\n'
)


async def _pieces(*pieces: bytes, error: BaseException | None = None) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
    if error is not None:
        raise error


async def run_stream(
    *pieces: bytes, skipped: Counter[str] | None = None, error: BaseException | None = None
) -> list[dict[str, Any]]:
    translator = GeminiStream(MODEL, skipped if skipped is not None else Counter(), created=77)
    out = b"".join([f async for f in translate_stream(_pieces(*pieces, error=error), translator)])
    return frames_of(out)


def deltas(chunks: list[dict[str, Any]]) -> list[Any]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks[:-1]]


async def test_text_stream_chunks() -> None:
    chunks = await run_stream(TEXT_STREAM)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "The"}, None),
        ({"content": " sky is"}, None),
        ({"content": " blue."}, None),
        ({}, "stop"),
    ]
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-s1"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 77
        assert chunk["model"] == MODEL
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 5,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 2},
    }


async def test_stream_fed_byte_by_byte_gives_the_same_chunks() -> None:
    whole = await run_stream(TEXT_STREAM)
    split = await run_stream(*[TEXT_STREAM[i : i + 1] for i in range(len(TEXT_STREAM))])
    assert deltas(split) == deltas(whole)
    assert split[-1]["usage"] == whole[-1]["usage"]


async def test_streamed_function_calls_open_with_id_and_name_then_arguments() -> None:
    chunks = await run_stream(CALL_STREAM)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_0_get_weather",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_1_get_weather",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 1, "function": {"arguments": '{"city":"Rome"}'}}]}, None),
        ({}, "tool_calls"),
    ]
    assert chunks[-1]["usage"] == {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}


async def test_stream_without_finish_reason_is_broken() -> None:
    cut = TEXT_STREAM[: TEXT_STREAM.rindex(b"data:")]
    with pytest.raises(StreamBroken, match="finishReason"):
        await run_stream(cut)


async def test_a_half_event_at_eof_is_dropped_and_the_stream_is_broken() -> None:
    with pytest.raises(StreamBroken):
        await run_stream(TEXT_STREAM[:-20])


async def test_transport_break_propagates() -> None:
    with pytest.raises(StreamBroken, match="reset"):
        await run_stream(TEXT_STREAM[:100], error=StreamBroken("connection reset"))


@pytest.mark.parametrize(
    "event",
    [
        b'data: {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}\n\n',
        b"data: {not json\n\n",
    ],
)
async def test_error_or_garbage_event_breaks_the_stream(event: bytes) -> None:
    with pytest.raises(StreamBroken):
        await run_stream(TEXT_STREAM[: TEXT_STREAM.index(b"\r\n\r\n") + 4], event)


async def test_blocked_prompt_stream() -> None:
    event = b'data: {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},'
    event += b'"usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}\r\n\r\n'
    chunks = await run_stream(event)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({}, "content_filter"),
    ]
    assert chunks[-1]["usage"]["prompt_tokens"] == 4


async def test_safety_stop_mid_stream() -> None:
    first = TEXT_STREAM[: TEXT_STREAM.index(b"\r\n\r\n") + 4]
    stop = b'data: {"candidates": [{"finishReason": "SAFETY","index": 0}]}\r\n\r\n'
    chunks = await run_stream(first, stop)
    assert [d for d, _ in deltas(chunks)][1] == {"content": "The"}
    assert deltas(chunks)[-1] == ({}, "content_filter")


async def test_thoughts_and_unknown_parts_are_skipped_in_streams() -> None:
    thought = b'data: {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true},'
    thought += b'{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}}]}\n\n'
    skipped: Counter[str] = Counter()
    chunks = await run_stream(thought, TEXT_STREAM, skipped=skipped)
    assert {"content": "hmm"} not in [d for d, _ in deltas(chunks)]
    assert skipped == Counter({"thought": 1, "part": 1})


async def test_stream_without_usage_metadata_has_no_usage_chunk() -> None:
    event = b'data: {"candidates": [{"content": {"parts": [{"text": "x"}]},'
    event += b'"finishReason": "STOP"}]}\n\n'
    chunks = await run_stream(event)
    assert all(chunk["choices"] for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_two_candidates_stream_as_two_choices() -> None:
    event = b'data: {"candidates": [{"content": {"parts": [{"text": "a"}]}, "index": 0},'
    event += b'{"content": {"parts": [{"text": "b"}]}, "index": 1, "finishReason": "STOP"}]}\n\n'
    last = b'data: {"candidates": [{"finishReason": "STOP", "index": 0}],'
    last += b'"usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2}}\n\n'
    chunks = await run_stream(event, last)
    seen = [(c["choices"][0]["index"], c["choices"][0]["delta"]) for c in chunks[:-1]]
    assert seen[:5] == [
        (0, {"role": "assistant", "content": ""}),
        (0, {"content": "a"}),
        (1, {"role": "assistant", "content": ""}),
        (1, {"content": "b"}),
        (1, {}),
    ]
    assert seen[5] == (0, {})


def test_a_new_stream_state_knows_no_usage() -> None:
    stream = GeminiStream(MODEL, Counter())
    assert stream.usage is None
    stream.feed(b'{"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1}}')
    assert stream.usage == Usage(prompt_tokens=5, completion_tokens=1, total_tokens=6)


# --- embeddings -----------------------------------------------------------------------------


def test_embedding_body() -> None:
    body, wants_base64 = build_embedding_body(
        payload({"model": "e", "input": ["a", "b"], "dimensions": 256}, Operation.EMBEDDINGS),
        "models/text-embedding-004",
    )
    assert not wants_base64
    assert msgspec.json.decode(body) == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 256,
            },
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "b"}]},
                "outputDimensionality": 256,
            },
        ]
    }
    one, _ = build_embedding_body(payload({"input": "solo"}, Operation.EMBEDDINGS), "te")
    assert msgspec.json.decode(one) == {
        "requests": [{"model": "models/te", "content": {"parts": [{"text": "solo"}]}}]
    }


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2], [3]], [], 5, ["a", 1]])
def test_token_array_and_other_inputs_are_refused(value: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        build_embedding_body(payload({"input": value}, Operation.EMBEDDINGS), "te")
    assert caught.value.param == "input"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "message", "kind"),
    [
        (
            400,
            b'{"error":{"code":400,"message":"Bad field","status":"INVALID_ARGUMENT"}}',
            "Bad field",
            "invalid_request_error",
        ),
        (
            429,
            b'[{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}}]',
            "Quota",
            "rate_limit_error",
        ),
        (401, b'{"error":{"code":401,"message":"No","status":"UNAUTHENTICATED"}}', "No", None),
        (503, b"<html>Service Unavailable</html>", "Gemini answered HTTP 503", "api_error"),
        (404, b"[]", "Gemini answered HTTP 404", "invalid_request_error"),
    ],
)
def test_errors_in_openai_shape(status: int, body: bytes, message: str, kind: str | None) -> None:
    error = msgspec.json.decode(openai_error_body(status, body))["error"]
    assert error["message"] == message
    assert error["type"] == (kind or "authentication_error")
    assert error["param"] is None
    assert error["code"] is None


# --- the adapter ----------------------------------------------------------------------------


class StubTransport:
    """What the adapter uses of `Transport`, answering from a script."""

    base_url = "https://generativelanguage.googleapis.com/v1beta"

    def __init__(
        self,
        status: int = 200,
        body: bytes = TEXT_ANSWER,
        pieces: tuple[bytes, ...] = (TEXT_STREAM,),
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
        return self.status, self.body, "application/json; charset=UTF-8"

    @contextlib.asynccontextmanager
    async def post_stream(self, path: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        self.sent.append((path, body))
        if self.open_error is not None:
            raise self.open_error
        yield _pieces(*self.pieces)

    async def aclose(self) -> None:
        self.closed = True


def adapter(stub: StubTransport, hosting: str = "") -> GeminiAdapter:
    return GeminiAdapter("gem", cast("Transport", stub), hosting=hosting)


HELLO = {"model": "alias", "messages": [user("Hi")]}


async def test_send_posts_generate_content_and_answers_openai() -> None:
    stub = StubTransport()
    reply = await adapter(stub).send(payload(HELLO), MODEL)
    assert stub.sent[0][0] == "/models/gemini-2.0-flash:generateContent"
    assert msgspec.json.decode(stub.sent[0][1])["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]}
    ]
    assert msgspec.json.decode(reply.body)["choices"][0]["message"]["content"] == "The sky is blue."
    assert reply.usage is not None
    assert reply.usage.cached_tokens == 8


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("models/gemini-pro", "/models/gemini-pro:generateContent"),
        ("tunedModels/my model", "/models/tunedModels%2Fmy%20model:generateContent"),
    ],
)
def test_model_path(model: str, path: str) -> None:
    assert model_path(model, "generateContent") == path


async def test_stream_posts_stream_generate_content_with_alt_sse() -> None:
    stub = StubTransport()
    async with adapter(stub, "vertex").stream(payload(HELLO, stream=True), MODEL) as frames:
        out = b"".join([f async for f in frames])
    assert stub.sent[0][0] == "/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    assert frames_of(out)[-1]["usage"]["total_tokens"] == 13


async def test_upstream_errors_reach_the_client_in_openai_shape() -> None:
    body = b'{"error":{"code":400,"message":"* contents: bad","status":"INVALID_ARGUMENT"}}'
    stub = StubTransport(status=400, body=body)
    with pytest.raises(UpstreamStatus) as caught:
        await adapter(stub).send(payload(HELLO), MODEL)
    error = caught.value
    assert error.upstream_status == 400
    assert error.content_type == "application/json"
    assert msgspec.json.decode(error.body)["error"]["message"] == "* contents: bad"
    assert error.passes_through


async def test_stream_open_errors_are_translated_too() -> None:
    raw = b'{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}'
    stub = StubTransport(open_error=UpstreamStatus("gem", 429, raw, "application/json"))
    with pytest.raises(UpstreamStatus) as caught:
        async with adapter(stub).stream(payload(HELLO, stream=True), MODEL):
            pass
    assert msgspec.json.decode(caught.value.body)["error"] == {
        "message": "Resource exhausted",
        "type": "rate_limit_error",
        "param": None,
        "code": None,
    }


async def test_embeddings_direct_with_base64_and_estimated_usage() -> None:
    values = [0.5, -1.25, 2.0]
    stub = StubTransport(body=msgspec.json.encode({"embeddings": [{"values": values}] * 2}))
    request = {"model": "e", "input": ["a", "b"], "encoding_format": "base64"}
    reply = await adapter(stub).send(payload(request, Operation.EMBEDDINGS), "text-embedding-004")
    assert stub.sent[0][0] == "/models/text-embedding-004:batchEmbedContents"
    assert reply.usage is None
    answer = msgspec.json.decode(reply.body)
    assert [item["index"] for item in answer["data"]] == [0, 1]
    decoded = struct.unpack("<3f", base64.b64decode(answer["data"][1]["embedding"]))
    assert list(decoded) == values
    assert answer["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert answer["model"] == "text-embedding-004"


async def test_embedding_floats_and_unreadable_answers() -> None:
    stub = StubTransport(body=b'{"embeddings": [{"values": [0.25]}]}')
    reply = await adapter(stub).send(payload({"input": "a"}, Operation.EMBEDDINGS), "te")
    assert msgspec.json.decode(reply.body)["data"] == [
        {"object": "embedding", "index": 0, "embedding": [0.25]}
    ]
    stub.body = b'{"embedding": {"values": [1]}}'
    with pytest.raises(UpstreamProtocolError):
        await adapter(stub).send(payload({"input": "a"}, Operation.EMBEDDINGS), "te")


async def test_refusals_before_any_request() -> None:
    stub = StubTransport()
    with pytest.raises(InvalidRequest, match="Vertex"):  # token arrays: texts only
        await adapter(stub, "vertex").send(payload({"input": [1, 2]}, Operation.EMBEDDINGS), "te")
    with pytest.raises(InvalidRequest, match="legacy completions"):
        await adapter(stub).send(payload({"prompt": "a"}, Operation.COMPLETIONS), MODEL)
    with pytest.raises(InvalidRequest):
        async with adapter(stub).stream(payload({"prompt": "a"}, Operation.COMPLETIONS), MODEL):
            pass
    assert stub.sent == []
    with pytest.raises(ValueError, match="hosting"):
        adapter(stub, "bedrock")


async def test_name_and_aclose() -> None:
    stub = StubTransport()
    gemini = adapter(stub)
    assert gemini.name == "gem"
    await gemini.aclose()
    assert stub.closed


def test_vertex_embeddings_are_a_predict_call_billed_on_its_token_counts() -> None:
    request = {"model": "e", "input": ["one", "two"], "dimensions": 3, "encoding_format": "float"}
    body, base64_vectors = build_predict_body(payload(request, Operation.EMBEDDINGS))
    assert msgspec.json.decode(body) == {
        "instances": [{"content": "one"}, {"content": "two"}],
        "parameters": {"outputDimensionality": 3},
    }
    assert base64_vectors is False
    answer = (
        b'{"predictions":[{"embeddings":{"values":[0.1,0.2],"statistics":{"token_count":2}}},'
        b'{"embeddings":{"values":[0.3,0.4],"statistics":{"token_count":5}}}]}'
    )
    listing, usage = translate_predictions("v", answer, "e", base64_vectors=False)
    decoded = msgspec.json.decode(listing)
    assert [item["embedding"] for item in decoded["data"]] == [[0.1, 0.2], [0.3, 0.4]]
    assert decoded["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert (usage.prompt_tokens, usage.total_tokens) == (7, 7)
