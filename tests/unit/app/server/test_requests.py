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
