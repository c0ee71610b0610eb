from typing import Any

import msgspec
import pytest

from app.cache.fingerprint import fingerprint
from app.domain import CacheRequest, Operation
from app.server.requests import decode_payload

BASE: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a colour."},
    ],
    "temperature": 0,
}


def _cache(body: bytes) -> CacheRequest:
    cache = decode_payload(Operation.CHAT, body).cache
    assert cache is not None, "the test request must be cacheable"
    return cache


def _key(changes: dict[str, Any], scope: str = "key-1") -> str:
    return fingerprint(scope, _cache(msgspec.json.encode({**BASE, **changes})))


def test_equal_requests_give_equal_keys() -> None:
    body = msgspec.json.encode(BASE)
    first = fingerprint("key-1", _cache(body))
    second = fingerprint("key-1", _cache(body))
    assert first == second
    assert len(first) == 64
    assert set(first) <= set("0123456789abcdef")


def test_field_order_and_spacing_between_fields_do_not_change_the_key() -> None:
    compact = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"temperature":0}'
    reordered = (
        b'{ "temperature" : 0 ,\n "messages" : [{"role":"user","content":"hi"}],'
        b' "model" :  "gpt-4o-mini" }'
    )
    assert fingerprint("key-1", _cache(compact)) == fingerprint("key-1", _cache(reordered))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("key-1", "org:key-1"),
        ("key-1", "key-2"),
        ("org:acme", "org:globex"),
        ("key-1", "org:acme"),
    ],
)
def test_the_scope_changes_the_key(one: str, other: str) -> None:
    assert _key({}, scope=one) != _key({}, scope=other)


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "gpt-4o"},
        {"messages": [{"role": "user", "content": "Name a colour."}]},
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name a fruit."},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "assistant", "content": "Name a colour."},
            ]
        },
        {"temperature": 0.2},
        {"seed": 7},
        {"top_p": 0.5},
        {"max_tokens": 16},
        {"stop": ["\n"]},
        {"n": 1},
        {"tools": [{"type": "function", "function": {"name": "colour", "parameters": {}}}]},
        {"tool_choice": "none"},
        {"response_format": {"type": "json_object"}},
        {"logprobs": True},
        {"some_future_parameter": {"a": 1}},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_every_fingerprinted_field_changes_the_key(changes: dict[str, Any]) -> None:
    assert _key(changes) != _key({})


def test_a_seed_value_changes_the_key() -> None:
    assert _key({"seed": 1}) != _key({"seed": 2})


@pytest.mark.parametrize(
    "changes",
    [
        {"stream": True},
        {"stream": False},
        {"stream_options": {"include_usage": True}},
        {"user": "alice"},
        {"stream": True, "stream_options": {"include_usage": False}, "user": "bob"},
    ],
    ids=["stream", "stream-false", "stream_options", "user", "all-three"],
)
def test_stream_stream_options_and_user_do_not_change_the_key(changes: dict[str, Any]) -> None:
    assert _key(changes) == _key({})


def test_a_name_and_its_value_cannot_run_together() -> None:
    # Without separators both would hash "...x12": name "x1" + value 2, name "x" + value 12.
    one = _key({"x1": 2})
    other = _key({"x": 12})
    assert one != other


def test_neighbouring_fields_cannot_run_together() -> None:
    # "a" = "1" then "b" = 2, against one field "a" whose value is the text '"1"b2'.
    one = CacheRequest(fingerprint_fields=(("a", b'"1"'), ("b", b"2")))
    other = CacheRequest(fingerprint_fields=(("a", b'"1"b2'),))
    assert fingerprint("key-1", one) != fingerprint("key-1", other)


def test_the_scope_cannot_run_into_the_first_field() -> None:
    # Without separators both would hash 'key-1model"m"'.
    one = CacheRequest(fingerprint_fields=(("model", b'"m"'),))
    other = CacheRequest(fingerprint_fields=(("el", b'"m"'),))
    assert fingerprint("key-1", one) != fingerprint("key-1mod", other)


def test_a_nul_in_a_field_name_cannot_imitate_two_fields() -> None:
    two_fields = _key({"p": 1, "q": 2})
    one_field = _key({"p\u00001\u0000q": 2})
    assert two_fields != one_field
