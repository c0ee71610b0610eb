"""The HTTP seam between adapters and the network: one pooled upstream client per provider.

Adapters speak to `Transport` only, so the client library can change without touching them.
The client is aiohttp. Measured on this machine (loadtests/README.md), client CPU per small
request: httpx 0.7-1.9 ms, aiohttp ~170 us, pyreqwest ~80 us. pyreqwest was the fastest but was
rejected: cancelling an awaited pyreqwest request does not abort it (the Rust side keeps the
connection and reads the answer to the end), so a client that goes away would leave the
upstream generating - and billing - a completion nobody reads. aiohttp closes the connection
the moment the awaiting task is cancelled.

Timeouts are a connect timeout and a read timeout (the longest wait for the next bytes: the
response head, or the next piece of a stream), never a whole-request timeout, which would cut
long streams.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping

import aiohttp

from app.domain import StreamBroken, UpstreamStatus, UpstreamTimeout, UpstreamUnreachable

MAX_ERROR_BODY = 65536
"""Upstream error bodies are read up to this many bytes."""


@contextlib.contextmanager
def upstream_errors(provider: str) -> Iterator[None]:
    """Turn client exceptions raised before an answer is under way into domain errors."""
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(provider) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnreachable(provider, _cause(exc)) from exc


def _cause(exc: BaseException) -> str:
    """A short description of a client error, without the URL's query or any header."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connect failed: {exc.os_error.strerror or exc.os_error}"
    return type(exc).__name__


class Transport:
    """A keep-alive connection pool to one upstream base URL (built inside a running loop)."""

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
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=90, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=connect_timeout, sock_read=read_timeout
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def post(self, path: str, body: bytes) -> tuple[int, bytes, str]:
        """POST and read the whole answer: (status, body, content type)."""
        with upstream_errors(self.provider):
            async with self._session.post(
                self.base_url + path, data=body, headers=self._headers
            ) as response:
                data = await response.read()
                return response.status, data, response.headers.get("content-type", "")

    @contextlib.asynccontextmanager
    async def post_stream(self, path: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST and yield an iterator over the answer's body pieces as they arrive.

        A non-2xx status raises `UpstreamStatus` on entry, with the body read (capped).
        Leaving the block early closes the connection: that is how a cancelled client
        request cancels the upstream one.
        """
        async with contextlib.AsyncExitStack() as stack:
            with upstream_errors(self.provider):
                response = await stack.enter_async_context(
                    self._session.post(self.base_url + path, data=body, headers=self._headers)
                )
                if response.status >= 300:
                    data = await response.content.read(MAX_ERROR_BODY)
                    raise UpstreamStatus(
                        self.provider,
                        response.status,
                        data,
                        response.headers.get("content-type", ""),
                    )
            yield _pieces(response)

    async def aclose(self) -> None:
        await self._session.close()


async def _pieces(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for piece in response.content.iter_any():
            yield piece
    except (TimeoutError, asyncio.TimeoutError, aiohttp.ClientError) as exc:  # noqa: UP041
        raise StreamBroken(_cause(exc)) from exc
