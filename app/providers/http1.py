"""A lean HTTP/1.1 client for the upstream hot path: asyncio protocol + httptools' C parser.

Why not a general client: per request, httpx spends 0.7-1.9 ms of CPU and aiohttp ~270 us under
load on this machine, against a budget of 300 us for the whole gateway; pyreqwest is fast but an
in-flight request cannot be aborted (cancelling the awaiting task leaves the Rust side reading
the answer), so a client that goes away would leave the upstream generating. This client does
one thing: POST a body with keep-alive pooling, TLS, and connect/read timeouts - and closes
the connection the moment the awaiting task is cancelled. With it the whole gateway spends about
250 us of CPU per plain request (README, Performance).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import httptools

MAX_BUFFERED = 1 << 20
"""Unread stream bytes above which reading from the upstream pauses (back-pressure)."""
MAX_IDLE = 256


class ConnectionLost(Exception):
    """The connection closed or failed before the answer was complete."""

    def __init__(self, detail: str, *, before_answer: bool) -> None:
        super().__init__(detail)
        self.before_answer = before_answer


class ReadTimeout(Exception):
    """No bytes arrived within the read timeout."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._paused = False
        self.reused = False
        self.reset()

    def reset(self) -> None:
        self.status = 0
        self.content_type = b""
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.head_done = False
        self.complete = False
        self.reusable = False
        self.got_bytes = False
        self.error: BaseException | None = None
        self._header_name = b""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = ConnectionLost(f"invalid HTTP answer: {exc}", before_answer=False)
            self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.complete and self.error is None:
            detail = f"connection lost: {exc}" if exc else "connection closed by the upstream"
            self.error = ConnectionLost(detail, before_answer=not self.got_bytes)
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > MAX_BUFFERED and self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        # llhttp answers this only from inside a callback: ask now, not later.
        self.reusable = self._parser.should_keep_alive()
        self.complete = True

    # used by the pool
    @property
    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def keep_alive(self) -> bool:
        return self.complete and self.reusable and self.error is None

    def send(self, data: bytes) -> None:
        assert self._transport is not None  # noqa: S101 - checked by `usable` just before
        self._transport.write(data)

    async def wait(self, seconds: float) -> None:
        """Until more arrived, the answer completed, or the connection failed."""
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(seconds, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def take(self) -> bytes:
        """The body bytes received so far."""
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks = []
        self.buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout())


class Http1Pool:
    """Keep-alive connections to one origin, and the POST that uses them."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"unsupported upstream URL: {base_url}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if url.scheme == "https" else None
        )
        self._prefix = url.path.rstrip("/").encode()
        host_header = url.netloc.rsplit("@", 1)[-1].encode()
        self._host_line = b"Host: " + host_header + b"\r\n"
        self._fixed_lines = {
            name.lower(): f"{name}: {value}\r\n".encode() for name, value in headers.items()
        }
        self._static = self._host_line + b"".join(self._fixed_lines.values())
        self._connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, protocol = await loop.create_connection(
                lambda: _Connection(loop),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
        return protocol

    def _request(self, path: str, body: bytes, headers: Mapping[str, str] | None) -> bytes:
        static, extra = self._static, b""
        if headers:
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()
            replaced = {name.lower() for name in headers} & self._fixed_lines.keys()
            if replaced:  # this request's own value stands in for the pool's
                static = self._host_line + b"".join(
                    line for name, line in self._fixed_lines.items() if name not in replaced
                )
        return b"".join(
            (
                b"POST ",
                self._prefix,
                path.encode(),
                b" HTTP/1.1\r\n",
                static,
                extra,
                b"Content-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )

    @contextlib.asynccontextmanager
    async def post(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[_Connection]:
        """Send a POST and yield its connection once the answer's head has arrived.

        `headers` are sent with this request only, after the pool's own (a request signature);
        one that names a header of the pool replaces it for this request.

        A reused keep-alive connection that turns out to be closed before any answer byte is
        retried once on a fresh one (the usual keep-alive race). Leaving the block before the
        answer is complete - an error, or cancellation - closes the connection.
        """
        request = self._request(path, body, headers)
        conn = await self._send(request)
        try:
            while not conn.head_done:
                if conn.error is not None:
                    error = conn.error
                    if conn.reused and isinstance(error, ConnectionLost) and error.before_answer:
                        conn.close()
                        conn = await self._send(request, reuse=False)
                        continue
                    raise error
                await conn.wait(self.read_timeout)
            yield conn
        finally:
            if conn.keep_alive and len(self._idle) < MAX_IDLE:
                conn.reused = True
                conn.reset()
                self._idle.append(conn)
            else:
                conn.close()

    async def _send(self, request: bytes, *, reuse: bool = True) -> _Connection:
        conn: _Connection | None = None
        while reuse and self._idle:
            candidate = self._idle.pop()
            if candidate.usable:
                conn = candidate
                break
        if conn is None:
            conn = await self._connect()
        conn.send(request)
        return conn

    async def read_all(self, conn: _Connection, limit: int) -> bytes:
        """The rest of the answer's body (at most `limit` bytes)."""
        while not conn.complete:
            if conn.error is not None:
                raise conn.error
            if conn.buffered > limit:
                raise ConnectionLost(f"answer larger than {limit} bytes", before_answer=False)
            await conn.wait(self.read_timeout)
        return conn.take()

    async def pieces(self, conn: _Connection) -> AsyncIterator[bytes]:
        """The answer's body as it arrives."""
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise conn.error
            await conn.wait(self.read_timeout)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


Answer = _Connection
"""What `Http1Pool.post` yields: the answer's status, content type and body so far."""
