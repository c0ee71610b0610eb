import msgspec
import pytest

from app.domain import Usage
from app.metering import StreamMeter

HEAD = (
    b'"id":"chatcmpl-7xyz","object":"chat.completion.chunk","created":1718000100,'
    b'"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb"'
)


def _delta(delta: bytes, finish: bytes = b"null", usage: bytes = b"") -> bytes:
    return (
        b"data: {"
        + HEAD
        + b',"choices":[{"index":0,"delta":'
        + delta
        + b',"logprobs":null,"finish_reason":'
        + finish
        + b"}]"
        + usage
        + b"}\n\n"
    )


USAGE_CHUNK = (
    b"data: {" + HEAD + b',"choices":[],'
    b'"usage":{"prompt_tokens":21,"completion_tokens":6,"total_tokens":27}}\n\n'
)
USAGE = Usage(prompt_tokens=21, completion_tokens=6, total_tokens=27)
CONTENT = [
    _delta(b'{"role":"assistant","content":""}'),
    _delta(b'{"content":"The usage"}'),
    _delta(b'{"content":" field is \\"usage\\"; see usage."}'),
    _delta(b"{}", b'"stop"'),
]
# What OpenAI sends when the client set `include_usage`: `"usage":null` on every chunk.
CONTENT_WITH_NULL_USAGE = [_delta(b'{"content":"Teal"}', usage=b',"usage":null'), CONTENT[-1]]


def _see_all(meter: StreamMeter, groups: list[bytes]) -> bytes:
    return b"".join(meter.see(group) for group in groups)


GROUPINGS = {
    "one-by-one": [*CONTENT, USAGE_CHUNK],
    "all-at-once": [b"".join([*CONTENT, USAGE_CHUNK])],
    "usage-with-finish": [*CONTENT[:3], CONTENT[3] + USAGE_CHUNK],
}


@pytest.mark.parametrize("groups", GROUPINGS.values(), ids=GROUPINGS.keys())
def test_the_usage_chunk_is_captured_and_stripped(groups: list[bytes]) -> None:
    meter = StreamMeter(strip_usage=True, assemble=False)
    assert _see_all(meter, groups) == b"".join(CONTENT)
    assert meter.usage == USAGE
    assert meter.used(input_estimate=500) == USAGE


@pytest.mark.parametrize("groups", GROUPINGS.values(), ids=GROUPINGS.keys())
def test_the_usage_chunk_is_kept_when_the_client_asked_for_it(groups: list[bytes]) -> None:
    meter = StreamMeter(strip_usage=False, assemble=False)
    assert _see_all(meter, groups) == b"".join([*CONTENT, USAGE_CHUNK])
    assert meter.usage == USAGE


def test_a_stripped_usage_chunk_alone_leaves_nothing_to_send() -> None:
    meter = StreamMeter(strip_usage=True, assemble=False)
    assert meter.see(USAGE_CHUNK) == b""
    assert meter.usage == USAGE


@pytest.mark.parametrize("strip_usage", [True, False])
@pytest.mark.parametrize(
    "frames",
    [*CONTENT, *CONTENT_WITH_NULL_USAGE, b"".join(CONTENT_WITH_NULL_USAGE)],
)
def test_other_frames_pass_byte_for_byte(strip_usage: bool, frames: bytes) -> None:
    meter = StreamMeter(strip_usage=strip_usage, assemble=False)
    assert meter.see(frames) == frames
    assert meter.usage is None


def test_usage_on_a_chunk_that_has_choices_is_captured_and_kept() -> None:
    frame = _delta(
        b"{}",
        b'"stop"',
        usage=b',"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}',
    )
    meter = StreamMeter(strip_usage=True, assemble=False)
    assert meter.see(frame) == frame
    assert meter.usage == Usage(prompt_tokens=3, completion_tokens=1, total_tokens=4)


@pytest.mark.parametrize(
    ("groups", "chunks"),
    [
        ([], 0),
        (CONTENT, 4),
        ([b"".join(CONTENT)], 4),
        ([*CONTENT, USAGE_CHUNK], 5),
        ([CONTENT[0], b"".join(CONTENT[1:3]), CONTENT[3]], 4),
    ],
)
def test_chunks_are_counted(groups: list[bytes], chunks: int) -> None:
    meter = StreamMeter(strip_usage=True, assemble=False)
    _see_all(meter, groups)
    assert meter.chunks == chunks


def test_data_colon_inside_the_text_is_not_counted_as_a_chunk() -> None:
    meter = StreamMeter(strip_usage=True, assemble=False)
    meter.see(_delta(b'{"content":"data: 1, data: 2"}'))
    assert meter.chunks == 1


def test_a_stream_without_a_usage_chunk_is_settled_on_the_estimate_and_the_chunks() -> None:
    meter = StreamMeter(strip_usage=True, assemble=False)
    _see_all(meter, CONTENT)
    assert meter.usage is None
    assert meter.used(input_estimate=40) == Usage(
        prompt_tokens=40, completion_tokens=4, total_tokens=44
    )


def test_a_stream_that_sent_nothing_is_settled_on_the_estimate() -> None:
    meter = StreamMeter(strip_usage=False, assemble=False)
    assert meter.used(input_estimate=12) == Usage(
        prompt_tokens=12, completion_tokens=0, total_tokens=12
    )


def test_the_assembler_is_made_only_when_asked() -> None:
    assert StreamMeter(strip_usage=True, assemble=False).assembler is None
    assert StreamMeter(strip_usage=True, assemble=True).assembler is not None


def test_the_assembler_sees_the_usage_chunk_the_client_does_not() -> None:
    meter = StreamMeter(strip_usage=True, assemble=True)
    assert _see_all(meter, [*CONTENT, USAGE_CHUNK]) == b"".join(CONTENT)
    assert meter.assembler is not None
    body = meter.assembler.body()
    assert body is not None
    completion = msgspec.json.decode(body)
    assert (
        completion["choices"][0]["message"]["content"] == 'The usage field is "usage"; see usage.'
    )
    assert completion["usage"] == {"prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27}
