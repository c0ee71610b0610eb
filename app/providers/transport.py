"""The HTTP seam between adapters and the network: one pooled upstream client per provider.

Adapters speak to `Transport` only, so the client can change without touching them. It is
`http1.Http1Pool` (see its docstring for why not httpx, aiohttp or pyreqwest). Timeouts are a
connect timeout and a read timeout (the longest wait for the next bytes: the response head, or
the next piece of a stream), never a whole-request timeout, which would cut long streams.

Credentials are `httpx.Auth` objects (`app.providers.auth`), never adapter code. A static one
(an API key header: it has `static_headers`) is applied once, to the pool's fixed headers; any
other (SigV4, Google OAuth) runs its async flow for every request, on the exact method, URL and
body that go out, and its headers are sent with that request only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping

import httpx

from app.domain import (
    StreamBroken,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from app.providers.http1 import Answer, ConnectionLost, Http1Pool, ReadTimeout

MAX_BODY = 64 * 1024 * 1024
"""Largest non-streaming answer read from an upstream."""
MAX_ERROR_BODY = 65536
"""Upstream error bodies are read up to this many bytes."""
_TRANSPORT_HEADERS = frozenset({"host", "content-length", "content-type", "connection"})


@contextlib.contextmanager
def upstream_errors(provider: str) -> Iterator[None]:
    """Turn client failures before an answer is under way into domain errors."""
    try:
        yield
    except (TimeoutError, ReadTimeout) as exc:
        raise UpstreamTimeout(provider) from exc
    except ConnectionLost as exc:
        if exc.before_answer:
            raise UpstreamUnreachable(provider, str(exc)) from exc
        raise UpstreamProtocolError(provider, str(exc)) from exc
    except OSError as exc:
        raise UpstreamUnreachable(provider, exc.strerror or type(exc).__name__) from exc


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
        auth: httpx.Auth | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        fixed = {"Content-Type": "application/json", **headers}
        static = getattr(auth, "static_headers", None)
        if isinstance(static, Mapping):
            fixed.update(static)
            auth = None
        self._auth = auth
        self._fixed = fixed
        self._fixed_lower = {name.lower(): value for name, value in fixed.items()}
        self._pool = Http1Pool(
            self.base_url,
            fixed,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    async def _sign(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Mapping[str, str] | None:
        """The per-request headers: the auth flow's, then `headers` (None for neither)."""
        if self._auth is None:
            return headers or None
        fixed = {**self._fixed, **headers} if headers else self._fixed
        request = httpx.Request("POST", self.base_url + path, headers=fixed, content=body)
        flow = self._auth.async_auth_flow(request)
        try:
            signed = await flow.__anext__()
        except UpstreamError as exc:  # credentials unavailable: name the provider, fail over
            exc.provider = self.provider
            raise
        finally:
            await flow.aclose()
        sent = {
            name: value
            for name, value in signed.headers.items()
            if name not in _TRANSPORT_HEADERS and self._fixed_lower.get(name) != value
        }
        return {**sent, **headers} if headers else sent

    async def post(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes, str]:
        """POST and read the whole answer: (status, body, content type).

        `headers` go with this request only (and replace fixed ones of the same name): the
        allow-listed client headers of the native routes, such as `anthropic-beta`.
        """
        headers = await self._sign(path, body, headers)
        with upstream_errors(self.provider):
            async with self._pool.post(path, body, headers) as answer:
                data = await self._pool.read_all(answer, MAX_BODY)
                return answer.status, data, answer.content_type.decode("latin-1")

    @contextlib.asynccontextmanager
    async def post_stream(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST and yield an iterator over the answer's body pieces as they arrive.

        A non-2xx status raises `UpstreamStatus` on entry, with the body read (capped).
        Leaving the block early closes the connection: that is how a cancelled client
        request cancels the upstream one. `headers` as for `post`.
        """
        headers = await self._sign(path, body, headers)
        async with contextlib.AsyncExitStack() as stack:
            with upstream_errors(self.provider):
                answer = await stack.enter_async_context(self._pool.post(path, body, headers))
                if answer.status >= 300:
                    data = await self._pool.read_all(answer, MAX_ERROR_BODY)
                    raise UpstreamStatus(
                        self.provider,
                        answer.status,
                        data,
                        answer.content_type.decode("latin-1"),
                    )
            yield self._pieces(answer)

    async def _pieces(self, answer: Answer) -> AsyncIterator[bytes]:
        try:
            async for piece in self._pool.pieces(answer):
                yield piece
        except (ReadTimeout, ConnectionLost) as exc:
            raise StreamBroken(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        self._pool.close()
