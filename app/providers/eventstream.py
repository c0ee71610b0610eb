"""The AWS binary event stream (`application/vnd.amazon.eventstream`), as Bedrock streams.

A message is a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes), typed
headers, the payload, and a CRC32 of everything before it. The prelude CRC is checked before
waiting for the rest of a message, so a corrupted length is an error at once, never a wait
for bytes that will not come; a frame still incomplete when the stream ends is an error too.

`bedrock_payloads` turns Bedrock's `invoke-with-response-stream` body into the inner Anthropic
event JSONs, so the Anthropic stream translation serves Bedrock unchanged.
"""

from __future__ import annotations

import datetime
import struct
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import NamedTuple

import msgspec

from app.domain import StreamBroken

MIN_MESSAGE = 16
"""Prelude (12 bytes) and message CRC (4) with no headers and no payload."""
MAX_MESSAGE = 16 * 1024 * 1024
"""The longest message accepted; a larger length claim is treated as corruption."""
EXCEPTION_TYPE_LIMIT = 64
EXCEPTION_MESSAGE_LIMIT = 512

HeaderValue = bool | int | bytes | str | datetime.datetime | uuid.UUID

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_FIXED: Mapping[int, struct.Struct] = {
    2: struct.Struct(">b"),  # byte
    3: struct.Struct(">h"),  # short
    4: struct.Struct(">i"),  # integer
    5: struct.Struct(">q"),  # long
    8: struct.Struct(">q"),  # timestamp, milliseconds since the epoch
}
_BYTES, _STRING, _TIMESTAMP, _UUID = 6, 7, 8, 9

skipped_events: Counter[str] = Counter()
"""Bedrock messages `bedrock_payloads` passed over, by message type / event type."""


class EventStreamError(Exception):
    """A frame that breaks the format: bad length, CRC mismatch, malformed header."""


class EventMessage(NamedTuple):
    headers: dict[str, HeaderValue]
    payload: bytes


class EventStreamDecoder:
    """Feed it body pieces as they arrive; it returns the messages they complete.

    After an error the decoder stays failed: the stream cannot be resynchronised.
    """

    __slots__ = ("_buffer", "_error")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._error: EventStreamError | None = None

    @property
    def pending(self) -> int:
        """Bytes of a message not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[EventMessage]:
        """Add bytes; return every message they complete (possibly none).

        Raises:
            EventStreamError: the stream is corrupt (and stays so for later calls).
        """
        if self._error is not None:
            raise EventStreamError(f"stream already failed: {self._error}")
        buffer = self._buffer
        buffer += data
        messages: list[EventMessage] = []
        offset = 0
        try:
            while len(buffer) - offset >= _PRELUDE.size:
                total = _check_prelude(buffer, offset)
                if len(buffer) - offset < total:
                    break
                messages.append(_decode_message(bytes(buffer[offset : offset + total])))
                offset += total
        except EventStreamError as exc:
            self._error = exc
            raise
        finally:
            del buffer[:offset]
        return messages


def _check_prelude(buffer: bytearray, offset: int) -> int:
    """The total length the prelude at `offset` claims, once its CRC and bounds hold."""
    total, headers_length, crc = _PRELUDE.unpack_from(buffer, offset)
    if zlib.crc32(buffer[offset : offset + 8]) != crc:
        raise EventStreamError("prelude CRC mismatch")
    if not MIN_MESSAGE <= total <= MAX_MESSAGE:
        raise EventStreamError(f"message length {total} out of bounds")
    if headers_length > total - MIN_MESSAGE:
        raise EventStreamError(f"headers length {headers_length} exceeds message length {total}")
    return int(total)


def _decode_message(message: bytes) -> EventMessage:
    (crc,) = _U32.unpack_from(message, len(message) - 4)
    if zlib.crc32(memoryview(message)[:-4]) != crc:
        raise EventStreamError("message CRC mismatch")
    (headers_length,) = _U32.unpack_from(message, 4)
    end = _PRELUDE.size + headers_length
    return EventMessage(_decode_headers(message[_PRELUDE.size : end]), message[end:-4])


def _decode_headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    at = 0
    try:
        while at < len(data):
            size = data[at]
            name = data[at + 1 : at + 1 + size].decode()
            at += 1 + size
            kind = data[at]
            headers[name], at = _decode_value(kind, data, at + 1)
    except (IndexError, struct.error, UnicodeDecodeError, ValueError, OverflowError) as exc:
        raise EventStreamError(f"malformed header: {exc}") from exc
    return headers


def _decode_value(kind: int, data: bytes, at: int) -> tuple[HeaderValue, int]:
    """One header value of type `kind` starting at `at`, and where the next header starts."""
    if kind in (0, 1):
        return kind == 0, at
    fixed = _FIXED.get(kind)
    if fixed is not None:
        (number,) = fixed.unpack_from(data, at)
        if kind == _TIMESTAMP:
            epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
            return epoch + datetime.timedelta(milliseconds=number), at + fixed.size
        return int(number), at + fixed.size
    if kind in (_BYTES, _STRING):
        (size,) = _U16.unpack_from(data, at)
        raw = data[at + 2 : at + 2 + size]
        if len(raw) != size:
            raise ValueError("value runs past the headers")
        return (raw.decode() if kind == _STRING else raw), at + 2 + size
    if kind == _UUID:
        raw = data[at : at + 16]
        if len(raw) != 16:
            raise ValueError("uuid runs past the headers")
        return uuid.UUID(bytes=raw), at + 16
    raise ValueError(f"unknown header type {kind}")


def encode_frame(raw_headers: bytes, payload: bytes) -> bytes:
    """A message around already-encoded headers: prelude, CRCs and all."""
    total = MIN_MESSAGE + len(raw_headers) + len(payload)
    prelude = struct.pack(">II", total, len(raw_headers))
    message = prelude + _U32.pack(zlib.crc32(prelude)) + raw_headers + payload
    return message + _U32.pack(zlib.crc32(message))


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """A message with string headers (type 7), as Bedrock sends its events."""
    raw = bytearray()
    for name, value in headers.items():
        encoded_name, encoded_value = name.encode(), value.encode()
        raw += bytes((len(encoded_name),)) + encoded_name
        raw += bytes((_STRING,)) + _U16.pack(len(encoded_value)) + encoded_value
    return encode_frame(bytes(raw), payload)


class _Chunk(msgspec.Struct):
    data: bytes = msgspec.field(name="bytes")
    """Base64 in the JSON; msgspec decodes it."""


class _ExceptionBody(msgspec.Struct):
    message: str | None = None
    Message: str | None = None  # some AWS services capitalise it


_decode_chunk = msgspec.json.Decoder(_Chunk).decode
_decode_exception = msgspec.json.Decoder(_ExceptionBody).decode


async def bedrock_payloads(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The inner event JSON of each Bedrock `chunk` event, in order.

    Raises:
        StreamBroken: a corrupt frame, a frame cut off by the end of the stream, a chunk that
            cannot be read, or an exception message from Bedrock.
    """
    decoder = EventStreamDecoder()
    async for piece in pieces:
        try:
            messages = decoder.feed(piece)
        except EventStreamError as exc:
            raise StreamBroken(f"bedrock event stream: {exc}") from exc
        for message in messages:
            payload = _chunk_payload(message)
            if payload is not None:
                yield payload
    if decoder.pending:
        raise StreamBroken(f"bedrock event stream ended inside a frame ({decoder.pending} bytes)")


def _chunk_payload(message: EventMessage) -> bytes | None:
    """A chunk event's decoded bytes; None for other events; raises for an exception."""
    headers = message.headers
    kind = headers.get(":message-type")
    if kind == "event":
        event = headers.get(":event-type")
        if event != "chunk":
            skipped_events[f"event:{_text(event)}"] += 1
            return None
        try:
            return _decode_chunk(message.payload).data
        except msgspec.DecodeError as exc:
            raise StreamBroken(f"bedrock chunk unreadable: {exc}") from exc
    if kind in ("exception", "error"):
        raise StreamBroken(_exception_text(message))
    skipped_events[f"message:{_text(kind)}"] += 1
    return None


def _exception_text(message: EventMessage) -> str:
    """`bedrock exception: <type>: <message>`, both cut short (they reach logs)."""
    headers = message.headers
    kind = _text(headers.get(":exception-type") or headers.get(":error-code") or "unknown")
    text = headers.get(":error-message")
    if not isinstance(text, str):
        try:
            body = _decode_exception(message.payload)
            text = body.message or body.Message
        except msgspec.DecodeError:
            text = None
        if text is None:
            text = message.payload.decode("utf-8", "replace")
    return f"bedrock exception: {kind[:EXCEPTION_TYPE_LIMIT]}: {text[:EXCEPTION_MESSAGE_LIMIT]}"


def _text(value: HeaderValue | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
