import itertools
from typing import Any

import msgspec
import pytest

from app.cache.replay import StreamAssembler, replay_as_sse
from app.providers.sse import DONE_FRAME, split_done

COMPLETION = (
    b'{"id":"chatcmpl-9abc","object":"chat.completion","created":1718000000,'
    b'"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Teal, a blue-green.","refusal":null},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":21,"completion_tokens":6,"total_tokens":27,'
    b'"prompt_tokens_details":{"cached_tokens":0}},"system_fingerprint":"fp_0ba0d124f1"}'
)
USAGE = {
    "prompt_tokens": 21,
    "completion_tokens": 6,
    "total_tokens": 27,
    "prompt_tokens_details": {"cached_tokens": 0},
}
"""The replayed usage is the upstream's, field for field."""


def _chunks(stream: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of a replayed stream, which must end with exactly one `[DONE]`."""
    assert stream.endswith(DONE_FRAME)
    events = stream[: -len(DONE_FRAME)].split(b"\n\n")
    assert events[-1] == b""
    chunks = []
    for event in events[:-1]:
        assert event.startswith(b"data: ")
        chunks.append(msgspec.json.decode(event[len(b"data: ") :]))
    return chunks


def _content(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


def test_replay_gives_the_message_then_the_finish_reason_then_done() -> None:
    stream = replay_as_sse(COMPLETION, include_usage=False)
    assert stream is not None
    chunks = _chunks(stream)
    assert len(chunks) == 2
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == "chatcmpl-9abc"
        assert chunk["created"] == 1718000000
        assert chunk["model"] == "gpt-4o-mini-2024-07-18"
        assert chunk["system_fingerprint"] == "fp_0ba0d124f1"
        assert "usage" not in chunk
    message, finish = chunks[0]["choices"], chunks[1]["choices"]
    assert message == [
        {"index": 0, "delta": {"role": "assistant", "content": "Teal, a blue-green."}}
    ]
    assert finish == [{"index": 0, "delta": {}, "finish_reason": "stop"}]


def test_replay_adds_the_usage_chunk_only_when_asked() -> None:
    stream = replay_as_sse(COMPLETION, include_usage=True)
    assert stream is not None
    chunks = _chunks(stream)
    assert len(chunks) == 3
    assert chunks[2]["object"] == "chat.completion.chunk"
    assert chunks[2]["choices"] == []
    assert chunks[2]["usage"] == USAGE
    assert _content(chunks) == "Teal, a blue-green."


def test_replay_of_an_answer_without_usage_has_no_usage_chunk_even_when_asked() -> None:
    body = msgspec.json.encode({**msgspec.json.decode(COMPLETION), "usage": None})
    stream = replay_as_sse(body, include_usage=True)
    assert stream is not None
    assert [chunk["choices"] != [] for chunk in _chunks(stream)] == [True, True]


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"id":"x"', b"[1,2]", b'{"choices":"stop"}', b'{"created":"today"}'],
)
def test_an_unreadable_body_replays_as_none(body: bytes) -> None:
    assert replay_as_sse(body, include_usage=True) is None


def test_replay_of_a_tool_call_answer_keeps_the_tool_calls() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "colour", "arguments": "{}"},
    }
    answer = msgspec.json.decode(COMPLETION)
    answer["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
    answer["choices"][0]["finish_reason"] = "tool_calls"
    stream = replay_as_sse(msgspec.json.encode(answer), include_usage=False)
    assert stream is not None
    deltas = [choice["delta"] for chunk in _chunks(stream) for choice in chunk["choices"]]
    assert any("tool_calls" in delta for delta in deltas)


HEAD = (
    b'"id":"chatcmpl-7xyz","object":"chat.completion.chunk","created":1718000100,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb"'
)


def _event(rest: bytes) -> bytes:
    return b"data: {" + HEAD + b"," + rest + b"}\n\n"


def _delta(delta: bytes, finish: bytes = b"null") -> bytes:
    return _event(
        b'"choices":[{"index":0,"delta":'
        + delta
        + b',"logprobs":null,"finish_reason":'
        + finish
        + b"}]"
    )


STREAM = [
    _delta(b'{"role":"assistant","content":"","refusal":null}'),
    _delta(b'{"content":"Teal"}'),
    _delta(b'{"content":", a"}'),
    _delta(b'{"content":" blue-"}'),
    _delta(b'{"content":"green."}'),
    _delta(b"{}", b'"stop"'),
    _event(b'"choices":[],"usage":{"prompt_tokens":21,"completion_tokens":6,"total_tokens":27}'),
]


def _groups(events: list[bytes], cuts: tuple[int, ...]) -> list[bytes]:
    """The events joined into `feed` calls, cut before each index in `cuts`."""
    bounds = [0, *cuts, len(events)]
    return [b"".join(events[a:b]) for a, b in itertools.pairwise(bounds)]


def _assemble(groups: list[bytes]) -> StreamAssembler:
    assembler = StreamAssembler()
    for group in groups:
        assembler.feed(group)
    return assembler


CUTS = [(), (1, 2, 3, 4, 5, 6), (2,), (1, 5), (3, 6), (6,)]


@pytest.mark.parametrize("cuts", CUTS)
def test_a_stream_fed_in_any_grouping_assembles_into_the_completion(
    cuts: tuple[int, ...],
) -> None:
    assembler = _assemble(_groups(STREAM, cuts))
    assert assembler.broken is False
    body = assembler.body()
    assert body is not None
    assert msgspec.json.decode(body) == {
        "id": "chatcmpl-7xyz",
        "object": "chat.completion",
        "created": 1718000100,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Teal, a blue-green."},
                "finish_reason": "stop",
            }
        ],
        "system_fingerprint": "fp_44709d6fcb",
        "usage": {"prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27},
    }


def test_a_stream_without_a_usage_chunk_assembles_without_usage() -> None:
    body = _assemble(STREAM[:-1]).body()
    assert body is not None
    completion = msgspec.json.decode(body)
    assert "usage" not in completion
    assert completion["choices"][0]["message"]["content"] == "Teal, a blue-green."


@pytest.mark.parametrize("include_usage", [True, False])
def test_an_assembled_answer_replays_as_the_same_text(include_usage: bool) -> None:
    assembled = _assemble(STREAM).body()
    assert assembled is not None
    stream = replay_as_sse(assembled, include_usage=include_usage)
    assert stream is not None
    assert _content(_chunks(stream)) == "Teal, a blue-green."
    frames, done = split_done(stream)
    assert done
    again = _assemble([frames]).body()
    if include_usage:
        assert again == assembled
    else:
        assert again is not None
        assert msgspec.json.decode(again) == {
            key: value for key, value in msgspec.json.decode(assembled).items() if key != "usage"
        }


TOOL_CALL = (
    b'{"tool_calls":[{"index":0,"id":"call_1","type":"function",'
    b'"function":{"name":"colour","arguments":""}}]}'
)
SECOND_CHOICE = _event(b'"choices":[{"index":1,"delta":{"content":"Red."},"finish_reason":null}]')


@pytest.mark.parametrize(
    "extra",
    [
        _delta(TOOL_CALL),
        _delta(b'{"function_call":{"name":"colour","arguments":""}}'),
        SECOND_CHOICE,
    ],
    ids=["tool_calls", "function_call", "second-choice"],
)
def test_a_stream_it_cannot_store_gives_no_body(extra: bytes) -> None:
    assembler = _assemble([*STREAM[:3], extra, *STREAM[3:]])
    assert assembler.broken is True
    assert assembler.body() is None


def test_a_stream_without_a_finish_reason_gives_no_body() -> None:
    assembler = _assemble([STREAM[0], STREAM[1], STREAM[2]])
    assert assembler.broken is False
    assert assembler.body() is None


def test_an_empty_stream_gives_no_body() -> None:
    assert StreamAssembler().body() is None


@pytest.mark.parametrize(
    "bad", [b'data: {"id":"x","choices":[\n\n', b"data: not json\n\n", b'data: {"choices":7}\n\n']
)
def test_invalid_json_breaks_the_assembler(bad: bytes) -> None:
    assembler = _assemble([*STREAM[:2], bad, *STREAM[2:]])
    assert assembler.broken is True
    assert assembler.body() is None


def test_an_azure_prompt_filter_chunk_does_not_blank_the_id_and_model() -> None:
    filter_chunk = (
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
        b'"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}\n\n'
    )
    body = _assemble([filter_chunk, *STREAM]).body()
    assert body is not None
    completion = msgspec.json.decode(body)
    assert completion["id"] == "chatcmpl-7xyz"
    assert completion["model"] == "gpt-4o-mini-2024-07-18"
