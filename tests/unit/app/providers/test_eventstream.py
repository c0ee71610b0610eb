"""The AWS event-stream codec and the Bedrock payload reader."""

from __future__ import annotations

import base64
import datetime
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Iterable

import pytest

from app.domain import StreamBroken
from app.providers.eventstream import (
    MAX_MESSAGE,
    EventMessage,
    EventStreamDecoder,
    EventStreamError,
    HeaderValue,
    bedrock_payloads,
    encode_frame,
    encode_message,
    skipped_events,
)

# AWS's published "empty message" vector (aws-c-event-stream): no headers, no payload.
EMPTY_MESSAGE = bytes.fromhex("000000100000000005c248eb7d98c8ff")
CHUNK_HEADERS = {
    ":message-type": "event",
    ":event-type": "chunk",
    ":content-type": "application/json",
}


def chunk(event: bytes) -> bytes:
    """A Bedrock chunk event carrying one Anthropic event JSON."""
    payload = b'{"bytes":"%s","p":"abcdefgh"}' % base64.b64encode(event)
    return encode_message(CHUNK_HEADERS, payload)


def header(name: str, kind: int, value: bytes = b"") -> bytes:
    return bytes((len(name),)) + name.encode() + bytes((kind,)) + value


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(parts: Iterable[bytes]) -> list[bytes]:
    return [payload async for payload in bedrock_payloads(pieces(*parts))]


def test_decodes_the_published_empty_message() -> None:
    assert EventStreamDecoder().feed(EMPTY_MESSAGE) == [EventMessage({}, b"")]
    assert encode_message({}, b"") == EMPTY_MESSAGE


def test_round_trip_string_headers_and_payload() -> None:
    headers: dict[str, HeaderValue] = {":message-type": "event", "x-héader": "välue"}
    frame = encode_message({k: str(v) for k, v in headers.items()}, b'{"a":1}')
    assert EventStreamDecoder().feed(frame) == [EventMessage(headers, b'{"a":1}')]


def test_frame_layout_and_crcs_match_the_spec() -> None:
    frame = encode_message({"k": "v"}, b"xyz")
    total, headers_length, prelude_crc = struct.unpack(">III", frame[:12])
    assert (total, headers_length) == (len(frame), 1 + 1 + 1 + 2 + 1)
    assert prelude_crc == zlib.crc32(frame[:8])
    assert frame[-4:] == struct.pack(">I", zlib.crc32(frame[:-4]))
    assert frame[12:18] == b"\x01k\x07\x00\x01v"


def test_decodes_every_header_type() -> None:
    moment = 1_700_000_000_123
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    raw = b"".join(
        (
            header("t", 0),
            header("f", 1),
            header("byte", 2, struct.pack(">b", -5)),
            header("short", 3, struct.pack(">h", -300)),
            header("int", 4, struct.pack(">i", 70000)),
            header("long", 5, struct.pack(">q", -(2**40))),
            header("bytes", 6, struct.pack(">H", 3) + b"\x00\x01\x02"),
            header("string", 7, struct.pack(">H", 2) + b"hi"),
            header("time", 8, struct.pack(">q", moment)),
            header("uuid", 9, ident.bytes),
        )
    )
    [message] = EventStreamDecoder().feed(encode_frame(raw, b"p"))
    assert message.payload == b"p"
    assert message.headers == {
        "t": True,
        "f": False,
        "byte": -5,
        "short": -300,
        "int": 70000,
        "long": -(2**40),
        "bytes": b"\x00\x01\x02",
        "string": "hi",
        "time": datetime.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=datetime.UTC),
        "uuid": ident,
    }


def test_split_feeding_byte_by_byte() -> None:
    frames = [encode_message({"n": str(i)}, b"payload %d" % i) for i in range(3)]
    stream = b"".join(frames)
    decoder = EventStreamDecoder()
    messages: list[EventMessage] = []
    for i in range(len(stream)):
        messages += decoder.feed(stream[i : i + 1])
    assert [m.headers["n"] for m in messages] == ["0", "1", "2"]
    assert [m.payload for m in messages] == [b"payload 0", b"payload 1", b"payload 2"]
    assert decoder.pending == 0


def test_several_messages_in_one_piece_and_a_partial_tail() -> None:
    frames = [encode_message({}, b"a"), encode_message({}, b"b"), encode_message({}, b"c")]
    decoder = EventStreamDecoder()
    data = b"".join(frames)
    assert [m.payload for m in decoder.feed(data[:-5])] == [b"a", b"b"]
    assert decoder.pending == len(frames[2]) - 5
    assert [m.payload for m in decoder.feed(data[-5:])] == [b"c"]


def _flip(frame: bytes, at: int) -> bytes:
    return frame[:at] + bytes((frame[at] ^ 0x01,)) + frame[at + 1 :]


def _with_prelude(total: int, headers_length: int, rest: bytes) -> bytes:
    """A prelude with a valid CRC around lengths that lie."""
    prelude = struct.pack(">II", total, headers_length)
    return prelude + struct.pack(">I", zlib.crc32(prelude)) + rest


FRAME = encode_message({":message-type": "event"}, b'{"bytes":"e30="}')


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (_flip(FRAME, 2), "prelude CRC"),  # total length
        (_flip(FRAME, 6), "prelude CRC"),  # headers length
        (_flip(FRAME, 9), "prelude CRC"),  # the prelude CRC itself
        (_flip(FRAME, 14), "message CRC"),  # a header byte
        (_flip(FRAME, len(FRAME) - 6), "message CRC"),  # a payload byte
        (_flip(FRAME, len(FRAME) - 1), "message CRC"),  # the message CRC itself
        (_with_prelude(15, 0, b"\x00" * 8), "out of bounds"),
        (_with_prelude(MAX_MESSAGE + 1, 0, b""), "out of bounds"),
        (_with_prelude(20, 5, b"\x00" * 8), "headers length"),
    ],
)
def test_corruption_is_an_error_at_once(corrupt: bytes, reason: str) -> None:
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError, match=reason):
        decoder.feed(corrupt)
    with pytest.raises(EventStreamError, match="already failed"):
        decoder.feed(EMPTY_MESSAGE)


@pytest.mark.parametrize(
    "raw_headers",
    [
        header("x", 42),  # unknown type
        header("x", 7, struct.pack(">H", 10) + b"short"),  # string runs past the headers
        header("x", 4, b"\x00\x01"),  # int cut short
        header("x", 9, b"\x00" * 5),  # uuid cut short
        b"\x05ab",  # name runs past the headers
        header("x", 7, struct.pack(">H", 2) + b"\xff\xfe"),  # not UTF-8
    ],
)
def test_malformed_headers_are_errors(raw_headers: bytes) -> None:
    with pytest.raises(EventStreamError, match="malformed header"):
        EventStreamDecoder().feed(encode_frame(raw_headers, b""))


async def test_bedrock_payloads_yields_inner_events_in_order() -> None:
    events = [b'{"type":"message_start"}', b'{"type":"content_block_delta","i":1}']
    stream = b"".join(chunk(e) for e in events)
    assert await collect([stream]) == events
    assert await collect([stream[i : i + 7] for i in range(0, len(stream), 7)]) == events


async def test_other_events_and_message_types_are_skipped_and_counted() -> None:
    before = skipped_events.copy()
    other = encode_message({":message-type": "event", ":event-type": "metadata"}, b"{}")
    odd = encode_message({":message-type": "ping"}, b"")
    assert await collect([other, chunk(b"{}"), odd]) == [b"{}"]
    assert skipped_events["event:metadata"] == before["event:metadata"] + 1
    assert skipped_events["message:ping"] == before["message:ping"] + 1


async def test_exception_message_is_stream_broken_with_type_and_message() -> None:
    exception = encode_message(
        {":message-type": "exception", ":exception-type": "throttlingException"},
        b'{"message":"Too many requests, please wait before trying again."}',
    )
    with pytest.raises(StreamBroken) as caught:
        await collect([chunk(b"{}"), exception])
    assert str(caught.value) == (
        "bedrock exception: throttlingException: "
        "Too many requests, please wait before trying again."
    )


async def test_exception_message_is_truncated() -> None:
    exception = encode_message(
        {":message-type": "exception", ":exception-type": "x" * 100},
        b'{"message":"%s"}' % (b"m" * 2000),
    )
    with pytest.raises(StreamBroken) as caught:
        await collect([exception])
    assert str(caught.value) == f"bedrock exception: {'x' * 64}: {'m' * 512}"


async def test_error_message_type_uses_error_headers() -> None:
    error = encode_message(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    with pytest.raises(StreamBroken, match="bedrock exception: InternalFailure: boom"):
        await collect([error])


async def test_truncated_frame_at_end_of_stream_is_stream_broken() -> None:
    stream = chunk(b'{"a":1}') + chunk(b'{"b":2}')
    got: list[bytes] = []
    with pytest.raises(StreamBroken, match="ended inside a frame"):
        async for payload in bedrock_payloads(pieces(stream[:-3])):
            got.append(payload)
    assert got == [b'{"a":1}']


async def test_lying_length_ends_in_an_error_not_a_wait() -> None:
    # A valid prelude claiming 1 MiB, then the stream ends: an error at EOF.
    with pytest.raises(StreamBroken, match="ended inside a frame"):
        await collect([_with_prelude(1 << 20, 0, b"\x00" * 30)])


async def test_crc_corruption_in_stream_is_stream_broken() -> None:
    with pytest.raises(StreamBroken, match="message CRC"):
        await collect([chunk(b"{}"), _flip(chunk(b"{}"), 20)])


@pytest.mark.parametrize(
    "payload", [b"not json", b'{"bytes": "***"}', b'{"nobytes": 1}', b'{"bytes": 5}']
)
async def test_unreadable_chunk_is_stream_broken(payload: bytes) -> None:
    with pytest.raises(StreamBroken, match="chunk unreadable"):
        await collect([encode_message(CHUNK_HEADERS, payload)])
