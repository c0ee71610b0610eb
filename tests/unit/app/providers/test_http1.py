"""Http1Pool against tiny loopback servers written with asyncio streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from app.providers.http1 import ConnectionLost, Http1Pool, ReadTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.closed = asyncio.Event()
        self.requests: list[bytes] = []

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return body


async def _serve(handler: Handler) -> AsyncIterator[tuple[Server, Http1Pool]]:
    state = Server()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            state.closed.set()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Http1Pool(
        f"http://127.0.0.1:{port}/v1",
        {"Authorization": "Bearer k"},
        connect_timeout=1,
        read_timeout=0.5,
    )
    try:
        yield state, pool
    finally:
        pool.close()
        server.close()


@pytest.fixture
async def keep_alive_server() -> AsyncIterator[tuple[Server, Http1Pool]]:
    state_ref: list[Server] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await state_ref[0].read_request(reader)
            writer.write(OK)
            await writer.drain()

    async for state, pool in _serve(handler):
        state_ref.append(state)
        yield state, pool


async def test_post_sends_path_headers_and_body_and_reuses_the_connection(
    keep_alive_server: tuple[Server, Http1Pool],
) -> None:
    state, pool = keep_alive_server
    for _ in range(3):
        async with pool.post("/chat/completions", b'{"a":1}') as answer:
            assert await pool.read_all(answer, 1000) == b"{}"
            assert answer.status == 200
            assert answer.content_type == b"application/json"
    assert state.connections == 1
    first = state.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Authorization: Bearer k\r\n" in first
    assert first.endswith(b'Content-Length: 7\r\n\r\n{"a":1}')


async def test_chunked_stream_pieces_arrive_in_order() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Server().read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async for _, pool in _serve(handler):
        async with pool.post("/x", b"{}") as answer:
            pieces = [p async for p in pool.pieces(answer)]
        assert b"".join(pieces) == b"data: 1\n\ndata: 2\n\n"


async def test_a_stale_keep_alive_connection_is_retried_once() -> None:
    served: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Server().read_request(reader)
        writer.write(OK)
        await writer.drain()
        served.append(1)
        # the server closes idle connections right away, as a load balancer might

    async for state, pool in _serve(handler):
        for _ in range(3):
            async with pool.post("/x", b"{}") as answer:
                assert await pool.read_all(answer, 100) == b"{}"
            await asyncio.sleep(0.05)
        assert len(served) == 3
        assert state.connections == 3


async def test_cancelling_the_caller_closes_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Server().read_request(reader)
        await reader.read()  # returns when the client closes

    async for state, pool in _serve(handler):
        pool.read_timeout = 30

        async def call(pool: Http1Pool) -> None:
            async with pool.post("/x", b"{}") as answer:
                await pool.read_all(answer, 100)

        task = asyncio.ensure_future(call(pool))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(state.closed.wait(), 2)


async def test_no_answer_within_the_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Server().read_request(reader)
        await asyncio.sleep(5)

    async for _, pool in _serve(handler):
        with pytest.raises(ReadTimeout):
            async with pool.post("/x", b"{}"):
                pass


@pytest.mark.parametrize(
    ("answer", "before"),
    [
        (b"", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", False),
        (b"garbage\r\n\r\n", False),
    ],
)
async def test_broken_answers_raise_connection_lost(answer: bytes, before: bool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Server().read_request(reader)
        writer.write(answer)
        await writer.drain()

    async for _, pool in _serve(handler):
        with pytest.raises(ConnectionLost) as caught:
            async with pool.post("/x", b"{}") as got:
                await pool.read_all(got, 100)
        assert caught.value.before_answer is before


async def test_connect_refused_is_an_os_error() -> None:
    pool = Http1Pool("http://127.0.0.1:1/v1", {}, connect_timeout=1, read_timeout=1)
    with pytest.raises(OSError):
        async with pool.post("/x", b"{}"):
            pass


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Http1Pool("ftp://x/", {}, connect_timeout=1, read_timeout=1)
