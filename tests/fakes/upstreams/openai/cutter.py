"""Cutting a stream mid-body under an RSGI server that offers no abort (see `Cutter`)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Final

from tests.fakes.upstreams.openai.wire import (
    Headers,
)


class Cutter:
    """Drops one client connection in the middle of a chunked body (Linux only).

    RSGI has no way to abort a response: raising in the application, or returning, after
    `response_stream()` makes Granian end the chunked body cleanly. So this finds this
    process's socket connected to the client and shuts it down under Granian, once Granian has
    handed the bytes sent so far to the kernel (`send_bytes` only queues them): the client then
    gets the head and the frames, then an unterminated body, like from an upstream that died.
    """

    TIMEOUT: Final = 1.0
    _TCP_INFO_SIZE: Final = 232  # up to tcpi_bytes_sent (Linux 4.19+)
    _BYTES_ACKED: Final = struct.Struct("=Q")  # tcpi_bytes_acked, at offset 120
    _SIOCOUTQ: Final = 0x5411  # bytes in the send queue, unacknowledged or unsent

    def __init__(self, client: str) -> None:
        """Find the socket; call before the response starts so byte counts start with it."""
        self._sock = _connected_socket(client)
        self._start = self._written()

    def _written(self) -> int | None:
        """Bytes written to the socket so far (acknowledged plus still queued), if known."""
        if self._sock is None:
            return None
        try:
            info = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, self._TCP_INFO_SIZE)
            acked: int = self._BYTES_ACKED.unpack_from(info, 120)[0]
            queued = fcntl.ioctl(self._sock.fileno(), self._SIOCOUTQ, b"\0\0\0\0")
        except (OSError, struct.error):
            return None
        return acked + int.from_bytes(queued, sys.byteorder)

    async def cut(self, at_least: int) -> bool:
        """Shut the connection down once `at_least` bytes of the response reached the kernel."""
        sock = self._sock
        if sock is None:
            return False
        deadline = time.monotonic() + self.TIMEOUT
        start = self._start
        with sock:
            if start is None:  # no byte counts: give Granian a moment instead
                await asyncio.sleep(0.05)
            while start is not None and time.monotonic() < deadline:
                written = self._written()
                if written is None or written - start >= at_least:
                    break
                await asyncio.sleep(0.001)
            sock.shutdown(socket.SHUT_RDWR)
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


def _connected_socket(client: str) -> socket.socket | None:
    """A duplicate of this process's TCP socket whose peer is `client` ("host:port")."""
    host, _, port_text = client.rpartition(":")
    peer = (host.strip("[]"), int(port_text))
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return None
    for entry in fds.iterdir():
        try:
            if not entry.readlink().name.startswith("socket:"):
                continue
            dup = os.dup(int(entry.name))
        except (OSError, ValueError):
            continue
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.getpeername()[:2] == peer:
                return sock
        except OSError:
            pass
        sock.close()
    return None


def _wire_size(head_lines: Headers, frames: list[bytes]) -> int:
    """A lower bound of the bytes of a chunked response: our head lines, the frames framed.

    Granian adds `server` and `date` lines to the head (about 55 bytes, fewer than any frame),
    so reaching this count means every frame was written.
    """
    head = len(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    head += sum(len(name) + len(value) + 4 for name, value in head_lines)
    return head + sum(len(b"%x\r\n" % len(frame)) + len(frame) + 2 for frame in frames)
