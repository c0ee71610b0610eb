"""The opt-in `x_gateway` object: spliced into JSON answers, a comment before `[DONE]`."""

from __future__ import annotations

import time

import msgspec

from app.providers.sse import DONE_FRAME
from app.server.openai_api import Metadata


def _meta() -> Metadata:
    return Metadata("req-1", time.perf_counter())


def test_an_answer_gets_the_object_as_its_last_field() -> None:
    answer = b'{"id":"x","usage":{"prompt_tokens":1}}\n'
    body = msgspec.json.decode(_meta().attach(answer, False, provider="p", cost_nano=1_500))
    assert body["id"] == "x" and body["usage"] == {"prompt_tokens": 1}
    assert body["x_gateway"] == {
        "provider": "p",
        "latency_ms": body["x_gateway"]["latency_ms"],
        "cost_usd": 1.5e-6,
        "cache_hit": False,
        "request_id": "req-1",
    }


def test_an_empty_object_and_a_body_that_is_not_an_object() -> None:
    empty = msgspec.json.decode(_meta().attach(b"{ }", False, provider="cache", cost_nano=0))
    assert empty["x_gateway"]["cache_hit"] is True
    assert _meta().attach(b"[1]", False, provider="p", cost_nano=0) == b"[1]"


def test_a_stream_gets_a_comment_before_done() -> None:
    stream = b'data: {"choices":[]}\n\n' + DONE_FRAME
    out = _meta().attach(stream, True, provider="cache", cost_nano=0)
    head, comment, done = out.split(b"\n\n", 2)
    assert head == b'data: {"choices":[]}'
    assert comment.startswith(b": x_gateway {")
    assert msgspec.json.decode(comment.removeprefix(b": x_gateway "))["provider"] == "cache"
    assert done == DONE_FRAME
    unterminated = b'data: {"choices":[]}\n\n'
    assert _meta().attach(unterminated, True, provider="p", cost_nano=0) == unterminated
