import pytest

from app.providers.sse import FrameSplitter, split_done


@pytest.mark.parametrize(
    ("pieces", "released"),
    [
        ([b"data: 1\n\n"], [b"data: 1\n\n"]),
        ([b"data: 1\n", b"\ndata: 2\n\n"], [b"", b"data: 1\n\ndata: 2\n\n"]),
        ([b"data: 1\n\ndata: 2\n\ndata: 3"], [b"data: 1\n\ndata: 2\n\n"]),
        ([b"data: 1\r\n\r\n"], [b"data: 1\n\n"]),
        ([b"da", b"ta: x", b"\n\n"], [b"", b"", b"data: x\n\n"]),
    ],
)
def test_splitter_releases_only_complete_events(pieces: list[bytes], released: list[bytes]) -> None:
    splitter = FrameSplitter()
    assert [splitter.feed(p) for p in pieces] == released


def test_splitter_keeps_the_unfinished_event() -> None:
    splitter = FrameSplitter()
    splitter.feed(b'data: 1\n\ndata: {"a"')
    assert splitter.pending == b'data: {"a"'


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (b"data: 1\n\n", (b"data: 1\n\n", False)),
        (b"data: [DONE]\n\n", (b"", True)),
        (b"data: 1\n\ndata: [DONE]\n\n", (b"data: 1\n\n", True)),
        (b"data:[DONE]\n\n", (b"", True)),
        (b'data: {"content":"data: [DONE]"}\n\n', (b'data: {"content":"data: [DONE]"}\n\n', False)),
    ],
)
def test_split_done_matches_only_a_done_event(frames: bytes, expected: tuple[bytes, bool]) -> None:
    assert split_done(frames) == expected
