"""Writing an SSE answer: the head with the first event, keep-alive comments when quiet."""

from __future__ import annotations

import asyncio
import time

from litestar.types import Send

from app.providers.sse import KEEPALIVE_FRAME

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
SSE_EXTRA = SSE_HEADERS[1:]
"""The SSE headers besides the content type, for an SSE answer written in one piece."""


class SseWriter:
    """Writes the SSE answer; a side task sends keep-alives whenever it has been quiet.

    The response head goes out with the first event or the first keep-alive, whichever comes
    first: an upstream that is slow to answer at all still gets keep-alives, and until then an
    error can still be a plain JSON answer with its own status.
    """

    __slots__ = ("_extra", "_interval", "_last", "_send", "started")

    def __init__(self, send: Send, interval: float, extra: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self._interval = interval
        self._extra = extra
        self._last = time.monotonic()
        self.started = False

    async def start(self) -> None:
        if not self.started:
            self.started = True  # set before awaiting: the keep-alive task checks it too
            headers = [*SSE_HEADERS, *self._extra]
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def write(self, data: bytes) -> None:
        self._last = time.monotonic()
        if not self.started:
            await self.start()
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def keep_alive(self) -> None:
        while True:
            quiet = time.monotonic() - self._last
            if quiet >= self._interval:
                await self.write(KEEPALIVE_FRAME)
                quiet = 0.0
            await asyncio.sleep(self._interval - quiet)
