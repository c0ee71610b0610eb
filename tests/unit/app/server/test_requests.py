import msgspec
import pytest

from app.domain import InvalidRequest, Operation
from app.server.requests import decode_payload

CHAT = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'


def test_unknown_fields_are_kept_byte_for_byte() -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"logprobs":true,"x":{"a": 1}}'
    payload = decode_payload(Operation.CHAT, body)
    assert payload.model == "m"
    assert bytes(payload.fields["x"]) == b'{"a": 1}'
    assert bytes(payload.fields["logprobs"]) == b"true"


def test_stream_flag_is_read() -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
    assert decode_payload(Operation.CHAT, body).stream is True
    assert decode_payload(Operation.CHAT, CHAT).stream is False


@pytest.mark.parametrize(
    ("operation", "body", "param", "fragment"),
    [
        (Operation.CHAT, b"{not json", None, "invalid request body"),
        (Operation.CHAT, b"[1,2]", None, "invalid type"),
        (Operation.CHAT, b'{"messages":[{"role":"user","content":"x"}]}', "model", "missing"),
        (Operation.CHAT, b'{"model":"m"}', "messages", "missing"),
        (Operation.CHAT, b'{"model":"m","messages":[]}', "messages", "at least one"),
        (Operation.CHAT, b'{"model":1,"messages":[{"role":"user"}]}', "model", "invalid type"),
        (
            Operation.CHAT,
            b'{"model":"m","messages":[{"content":"x"}]}',
            "messages[0].role",
            "missing",
        ),
        (
            Operation.CHAT,
            b'{"model":"m","messages":[{"role":"user"}],"temperature":"hot"}',
            "temperature",
            "invalid type",
        ),
        (
            Operation.CHAT,
            b'{"model":"m","messages":[{"role":"user"}],"stream":"yes"}',
            "stream",
            "invalid type",
        ),
        (Operation.EMBEDDINGS, b'{"model":"m"}', "input", "missing"),
        (Operation.EMBEDDINGS, b'{"model":"m","input":{"a":1}}', "input", "invalid type"),
        (Operation.COMPLETIONS, b'{"model":"m"}', "prompt", "missing"),
    ],
)
def test_bad_bodies_name_the_field(
    operation: Operation, body: bytes, param: str | None, fragment: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_payload(operation, body)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert fragment in caught.value.message


@pytest.mark.parametrize("value", [b'"text"', b'["a","b"]', b"[1,2,3]", b"[[1,2],[3]]"])
def test_embedding_inputs_of_every_documented_shape(value: bytes) -> None:
    payload = decode_payload(Operation.EMBEDDINGS, b'{"model":"e","input":' + value + b"}")
    assert msgspec.json.decode(payload.fields["input"]) is not None


def _chat(extra: bytes = b"") -> bytes:
    return b'{"model":"m","messages":[{"role":"user","content":"hello"}]' + extra + b"}"


@pytest.mark.parametrize(
    ("operation", "body", "tokens"),
    [
        # 35 bytes of messages: ceil(35 / 4) = 9, + 4 for the message, + 3.
        (Operation.CHAT, _chat(), 16),
        # 85 bytes (the space after the comma counts): 22 + 2 * 4 + 3.
        (
            Operation.CHAT,
            b'{"model":"m","messages":[{"role":"system","content":"Be brief."}, '
            b'{"role":"user","content":"Name a colour."}]}',
            33,
        ),
        # 60 bytes: 15 + 4 + 3; other fields do not count.
        (
            Operation.CHAT,
            b'{"model":"m","max_tokens":9000,"messages":'
            b'[{"role":"user","content":[{"type":"text","text":"hello"}]}]}',
            22,
        ),
        (Operation.COMPLETIONS, b'{"model":"m","prompt":"abcde"}', 2),
        (Operation.COMPLETIONS, b'{"model":"m","prompt":["ab","cd"]}', 3),
        (Operation.COMPLETIONS, b'{"model":"m","prompt":"abcdef"}', 2),
        (Operation.EMBEDDINGS, b'{"model":"e","input":"hello world"}', 4),
        (Operation.EMBEDDINGS, b'{"model":"e","input":[[1,2,3]]}', 3),
        (Operation.EMBEDDINGS, b'{"model":"e","input":""}', 1),
        (Operation.EMBEDDINGS, b'{"model":"e","input":[]}', 1),
        (Operation.COMPLETIONS, b'{"model":"m","prompt":""}', 1),
    ],
)
def test_input_tokens_are_estimated_from_the_raw_input(
    operation: Operation, body: bytes, tokens: int
) -> None:
    assert decode_payload(operation, body).input_tokens == tokens


@pytest.mark.parametrize(
    ("operation", "body", "limit"),
    [
        (Operation.CHAT, _chat(), None),
        (Operation.CHAT, _chat(b',"max_tokens":100'), 100),
        (Operation.CHAT, _chat(b',"max_completion_tokens":50'), 50),
        (Operation.CHAT, _chat(b',"max_tokens":100,"max_completion_tokens":50'), 50),
        (Operation.CHAT, _chat(b',"max_completion_tokens":200,"max_tokens":100'), 200),
        (Operation.CHAT, _chat(b',"max_completion_tokens":0,"max_tokens":100'), 0),
        (Operation.COMPLETIONS, b'{"model":"m","prompt":"x"}', None),
        (Operation.COMPLETIONS, b'{"model":"m","prompt":"x","max_tokens":7}', 7),
        (Operation.EMBEDDINGS, b'{"model":"e","input":"x"}', None),
        (Operation.EMBEDDINGS, b'{"model":"e","input":"x","max_tokens":5}', None),
    ],
)
def test_max_output_tokens_prefers_max_completion_tokens(
    operation: Operation, body: bytes, limit: int | None
) -> None:
    assert decode_payload(operation, body).max_output_tokens == limit


@pytest.mark.parametrize(
    ("extra", "cacheable"),
    [
        (b"", False),
        (b',"temperature":0', True),
        (b',"temperature":0.3', True),
        (b',"temperature":0.31', False),
        (b',"temperature":1', False),
        (b',"temperature":null', False),
        (b',"seed":1', True),
        (b',"seed":1,"temperature":1.5', True),
        (b',"seed":null', False),
        (b',"temperature":0,"n":1', True),
        (b',"temperature":0,"n":0', True),
        (b',"temperature":0,"n":null', True),
        (b',"temperature":0,"n":2', False),
        (b',"seed":1,"n":3', False),
        (b',"temperature":0,"stream":true', True),
        (b',"seed":4,"stream":true,"stream_options":{"include_usage":true}', True),
    ],
)
def test_chat_is_cacheable_with_a_seed_or_a_low_temperature_and_one_choice(
    extra: bytes, cacheable: bool
) -> None:
    assert (decode_payload(Operation.CHAT, _chat(extra)).cache is not None) is cacheable


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        (Operation.COMPLETIONS, b'{"model":"m","prompt":"x","temperature":0}'),
        (Operation.EMBEDDINGS, b'{"model":"e","input":"x","seed":1,"temperature":0}'),
    ],
)
def test_only_chat_is_cacheable(operation: Operation, body: bytes) -> None:
    assert decode_payload(operation, body).cache is None


def test_the_cache_fields_are_the_raw_fields_sorted_without_stream_and_user() -> None:
    body = (
        b'{"stream":true,"user":"alice","temperature":0,"model":"m","logprobs":true,'
        b'"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'
    )
    cache = decode_payload(Operation.CHAT, body).cache
    assert cache is not None
    assert cache.fingerprint_fields == (
        ("logprobs", b"true"),
        ("messages", b'[{"role":"user","content":"hi"}]'),
        ("model", b'"m"'),
        ("temperature", b"0"),
    )
