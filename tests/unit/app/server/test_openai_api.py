"""app/server/openai_api.py helpers that decide on request fields."""

from __future__ import annotations

from app.domain import Operation, Payload
from app.server.openai_api import _wants_usage
from app.server.requests import decode_payload


def _payload(options: bytes) -> Payload:
    body = b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true%s}'
    return decode_payload(Operation.CHAT, body % options)


def test_only_include_usage_true_asks_for_the_usage_chunk() -> None:
    assert _wants_usage(_payload(b',"stream_options":{"include_usage":true}'))
    assert not _wants_usage(_payload(b',"stream_options":{"include_usage":false}'))
    assert not _wants_usage(_payload(b',"stream_options":{}'))
    assert not _wants_usage(_payload(b""))
