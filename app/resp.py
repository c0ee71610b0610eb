"""A lean pipelining Redis client for the hot path: RESP over one asyncio connection.

The two round trips of every request (admission, settlement) are small pipelines. redis-py's
asyncio pipeline costs about 100 µs of CPU each (command stack, pool checkout, retries,
response callbacks) — measured, more than the rest of the request. This client writes each
pipeline in one `write` on one shared connection per worker, and hiredis (the C parser redis-py
itself uses) reads the answers, which Redis sends in order, so concurrent requests never wait
on each other or on a pool. Everything else (pub/sub, the control plane) keeps redis-py.

Errors are redis-py's classes, so callers catch one family: `ConnectionError` when Redis cannot
be reached (a failed connect is not retried for `RECONNECT_PAUSE` seconds, so an outage costs
requests nothing), `TimeoutError` when an answer is late (the connection is then dropped,
since later answers would no longer match their requests), and error replies in place as
`ResponseError` / `NoScriptError`.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

REDIS_ERRORS = (RedisError, OSError)
"""What talking to Redis can raise (unreachable, timed out, refused), with either client."""


class NotSent(RedisConnectionError):
    """No connection to Redis: the commands were never sent, so sending them again is safe."""


RECONNECT_PAUSE = 0.5
"""Seconds after a failed connect during which calls fail at once instead of reconnecting."""

Arg = str | bytes | int | float


def encode(args: tuple[Arg, ...]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _reply(value: Any) -> Any:
    if isinstance(value, ResponseError) and str(value).startswith("NOSCRIPT"):
        return NoScriptError(str(value))
    return value


class _Waiter:
    __slots__ = ("future", "left", "replies", "since")

    def __init__(self, future: asyncio.Future[list[Any]], count: int, since: float) -> None:
        self.future = future
        self.left = count
        self.replies: list[Any] = []
        self.since = since


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiters: collections.deque[_Waiter] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed = self.loop.create_future()
        self.outgoing: list[bytes] = []
        """Commands queued during this turn of the event loop, written together."""
        self.flush_scheduled = False
        self.watched = False
        """A timer checks this connection's oldest request (see `RespClient._watch`)."""

    def flush(self) -> None:
        self.flush_scheduled = False
        data, self.outgoing = b"".join(self.outgoing), []
        if self.transport is not None:
            self.transport.write(data)
        # else: connection_lost has failed the waiters already

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's do not subclass asyncio.Transport, so no isinstance)
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while True:
            value = self.reader.gets()
            if value is False:
                return
            if not waiters:  # an answer nobody asked for: the stream is out of step
                self.abort(RedisConnectionError("unexpected reply from redis"))
                return
            waiter = waiters[0]
            waiter.replies.append(_reply(value))
            waiter.left -= 1
            if waiter.left == 0:
                waiters.popleft()
                if not waiter.future.done():
                    waiter.future.set_result(waiter.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        error = RedisConnectionError(f"connection to redis lost: {exc or 'closed'}")
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self, error: Exception) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    """One pipelined connection to one Redis, opened on first use and again after a loss."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self._options = parse_url(url)
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._failed_at = 0.0

    def pipeline(self, transaction: bool = False) -> RespPipeline:
        return RespPipeline(self)

    async def script_load(self, source: str) -> str:
        (sha,) = await self.run([("SCRIPT", "LOAD", source)])
        if isinstance(sha, BaseException):
            raise sha
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    async def run(self, commands: list[tuple[Arg, ...]]) -> list[Any]:
        """Queue the commands and wait for their replies (errors in place).

        Commands queued by every request during one turn of the event loop leave in a single
        write (auto-pipelining): under load, many requests share one system call here and
        one read in Redis.
        """
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connect()
        loop = protocol.loop
        future: asyncio.Future[list[Any]] = loop.create_future()
        protocol.waiters.append(_Waiter(future, len(commands), time.monotonic()))
        protocol.outgoing.extend(encode(c) for c in commands)
        if not protocol.flush_scheduled:
            protocol.flush_scheduled = True
            loop.call_soon(protocol.flush)
        if not protocol.watched:
            protocol.watched = True
            loop.call_later(self._timeout, self._watch, protocol)
        return await future

    def _watch(self, protocol: _Protocol) -> None:
        """Drop the connection when its oldest request has waited longer than the timeout."""
        if not protocol.waiters or protocol.transport is None:
            protocol.watched = False
            return
        waited = time.monotonic() - protocol.waiters[0].since
        if waited >= self._timeout:
            protocol.watched = False
            protocol.abort(RedisTimeoutError("redis did not answer in time"))
            return
        protocol.loop.call_later(self._timeout - waited, self._watch, protocol)

    async def _connect(self) -> _Protocol:
        if time.monotonic() - self._failed_at < RECONNECT_PAUSE:
            raise NotSent("redis is unreachable (retrying shortly)")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and self._protocol.transport is not None:
                return self._protocol
            try:
                protocol = await asyncio.wait_for(self._open(), self._timeout)
            except (OSError, TimeoutError, RedisConnectionError) as exc:
                self._failed_at = time.monotonic()
                raise NotSent(f"cannot connect to redis: {exc}") from exc
            self._protocol = protocol
            return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options
        if "path" in options:
            _, protocol = await loop.create_unix_connection(_Protocol, options["path"])
        else:
            tls = (
                ssl.create_default_context()
                if options.get("connection_class") is (SSLConnection)
                else None
            )
            _, protocol = await loop.create_connection(
                _Protocol, options.get("host", "localhost"), options.get("port", 6379), ssl=tls
            )
        setup: list[tuple[Arg, ...]] = []
        if options.get("password"):
            user = options.get("username")
            setup.append(
                ("AUTH", user, options["password"]) if user else ("AUTH", options["password"])
            )
        if options.get("db"):
            setup.append(("SELECT", options["db"]))
        if setup:
            self._protocol = protocol
            for reply in await self.run(setup):
                if isinstance(reply, BaseException):
                    protocol.abort(RedisConnectionError(str(reply)))
                    raise RedisConnectionError(f"redis refused the connection setup: {reply}")
        return protocol

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await protocol.closed


class RespPipeline:
    """The part of redis-py's pipeline the hot path uses: queue, then one round trip."""

    __slots__ = ("_client", "_commands")

    def __init__(self, client: RespClient) -> None:
        self._client = client
        self._commands: list[tuple[Arg, ...]] = []

    def __len__(self) -> int:
        return len(self._commands)

    def execute_command(self, *args: Arg) -> None:
        self._commands.append(args)

    def get(self, key: str) -> None:
        self._commands.append(("GET", key))

    def set(self, key: str, value: bytes, ex: int | None = None) -> None:
        self._commands.append(("SET", key, value, "EX", ex) if ex else ("SET", key, value))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self._commands:
            return []
        replies = await self._client.run(self._commands)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
        return replies
