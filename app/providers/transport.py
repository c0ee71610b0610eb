"""The HTTP seam between adapters and the network: one pooled upstream client per provider.

Adapters speak to `Transport` only, so the client library can change without touching them.
It is pyreqwest (Rust, hyper) because the per-request cost of the client is the largest item of
the hot path: measured on this machine's class of hardware, httpx spends 0.7-1.9 ms of CPU per
request, aiohttp 90-160 µs, pyreqwest 30-90 µs (see loadtests/README.md). httpx stays the
project's client for everything that is not the per-request upstream call.

Timeouts are a connect timeout and a read timeout (the longest wait for the next bytes: the
response head, or the next piece of a stream), never a whole-request timeout, which would cut
long streams.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import timedelta

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    ConnectTimeoutError,
    PyreqwestError,
    ReadTimeoutError,
    RequestTimeoutError,
    TransportError,
)
from pyreqwest.response import ResponseBodyReader

from app.domain import StreamBroken, UpstreamStatus, UpstreamTimeout, UpstreamUnreachable

MAX_ERROR_BODY = 4096
"""Upstream error bodies are cut to this many bytes before they travel further."""


@contextlib.contextmanager
def upstream_errors(provider: str) -> Iterator[None]:
    """Turn client exceptions raised before a response is under way into domain errors."""
    try:
        yield
    except (ConnectTimeoutError, ReadTimeoutError, RequestTimeoutError) as exc:
        raise UpstreamTimeout(provider) from exc
    except TransportError as exc:
        raise UpstreamUnreachable(provider, _cause(exc)) from exc
    except PyreqwestError as exc:
        raise UpstreamUnreachable(provider, _cause(exc)) from exc


def _cause(exc: PyreqwestError) -> str:
    """The innermost cause ("tcp connect error: connection refused"), never a URL or header."""
    details = getattr(exc, "details", None) or {}
    causes = details.get("causes") or []
    if causes:
        return str(causes[-1].get("message", ""))[:200]
    return str(exc.args[0] if exc.args else exc)[:200]


class Transport:
    """A keep-alive connection pool to one upstream base URL."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._headers = {"content-type": "application/json", **headers}
        self._client: Client = (
            ClientBuilder()
            .connect_timeout(timedelta(seconds=connect_timeout))
            .read_timeout(timedelta(seconds=read_timeout))
            .pool_idle_timeout(timedelta(seconds=90))
            .pool_max_idle_per_host(256)
            .follow_redirects(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .tcp_nodelay(True)
            .build()
        )

    async def post(self, path: str, body: bytes) -> tuple[int, bytes, str]:
        """POST and read the whole answer: (status, body, content type)."""
        with upstream_errors(self.provider):
            response = await (
                self._client.post(self.base_url + path)
                .headers(self._headers)
                .body_bytes(body)
                .build()
                .send()
            )
            data = bytes(await response.bytes())
        return response.status, data, response.get_header("content-type") or ""

    @contextlib.asynccontextmanager
    async def post_stream(self, path: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST and yield an iterator over the answer's body pieces as they arrive.

        A non-2xx status raises `UpstreamStatus` on entry, with the body read (capped).
        Leaving the block closes the connection, which is how a cancelled client request
        cancels the upstream one.
        """
        request = (
            self._client.post(self.base_url + path)
            .headers(self._headers)
            .body_bytes(body)
            .build_streamed()
        )
        async with contextlib.AsyncExitStack() as stack:
            with upstream_errors(self.provider):
                response = await stack.enter_async_context(request)
            if response.status >= 300:
                with upstream_errors(self.provider):
                    data = bytes(await response.body_reader.read(MAX_ERROR_BODY) or b"")
                raise UpstreamStatus(
                    self.provider,
                    response.status,
                    data,
                    response.get_header("content-type") or "",
                )
            yield self._pieces(response.body_reader)

    @staticmethod
    async def _pieces(reader: ResponseBodyReader) -> AsyncIterator[bytes]:
        while True:
            try:
                piece = await reader.read_chunk()
            except PyreqwestError as exc:
                raise StreamBroken(_cause(exc)) from exc
            if piece is None:
                return
            yield bytes(piece)

    async def aclose(self) -> None:
        await self._client.close()
