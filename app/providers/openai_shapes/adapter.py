"""The I/O plumbing every translating adapter shares; the vendor's translation stays in its own.

An upstream error status leaves as `UpstreamStatus` carrying an OpenAI error body, made by the
vendor's own `translate_error`, so clients see OpenAI's errors whichever vendor refused.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

from app.domain import UpstreamStatus
from app.providers.transport import Transport


class TranslatingAdapter:
    """Name, transport, skipped-parts counter, and upstream statuses as OpenAI error bodies."""

    def __init__(
        self, name: str, transport: Transport, translate_error: Callable[[int, bytes], bytes]
    ) -> None:
        self._name = name
        self._transport = transport
        self._translate_error = translate_error
        self.skipped: Counter[str] = Counter()
        """What answers held that the OpenAI shape cannot (thinking, unknown parts), by kind."""

    @property
    def name(self) -> str:
        return self._name

    def _status(self, status: int, body: bytes) -> UpstreamStatus:
        return UpstreamStatus(
            self._name, status, self._translate_error(status, body), "application/json"
        )

    async def _post(self, path: str, body: bytes) -> bytes:
        """POST and read the answer; an error status raises `UpstreamStatus`."""
        status, answer, _ = await self._transport.post(path, body)
        if status >= 300:
            raise self._status(status, answer)
        return answer

    async def _post_stream(
        self, stack: contextlib.AsyncExitStack[bool | None], path: str, body: bytes
    ) -> AsyncIterator[bytes]:
        """Open a streamed POST on `stack`; an error status raises `UpstreamStatus`."""
        try:
            return await stack.enter_async_context(self._transport.post_stream(path, body))
        except UpstreamStatus as exc:
            raise self._status(exc.upstream_status, exc.body) from exc

    async def aclose(self) -> None:
        await self._transport.aclose()
