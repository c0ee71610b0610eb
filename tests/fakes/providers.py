"""FakeProvider: a `domain.Provider` driven by callables, for unit tests of routing and pipeline."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from app.domain import Payload, Reply

SendFn = Callable[[Payload, str], Reply]


class FakeProvider:
    """Answers with `send(payload, model)`, or raises what it returns when that is an exception."""

    def __init__(
        self,
        name: str,
        send: SendFn | None = None,
        events: Sequence[bytes | BaseException] = (),
        open_error: BaseException | None = None,
    ) -> None:
        self._name = name
        self._send = send or (
            lambda _payload, model: Reply(body=b'{"model":"' + model.encode() + b'"}')
        )
        self._events = events
        self._open_error = open_error
        self.calls: list[str] = []
        self.closed_streams = 0

    @property
    def name(self) -> str:
        return self._name

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        self.calls.append(upstream_model)
        return self._send(payload, upstream_model)

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: Payload, upstream_model: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        self.calls.append(upstream_model)
        if self._open_error is not None:
            raise self._open_error
        try:
            yield self._iterate()
        finally:
            self.closed_streams += 1

    async def _iterate(self) -> AsyncIterator[bytes]:
        for event in self._events:
            if isinstance(event, BaseException):
                raise event
            yield event

    async def aclose(self) -> None:
        return None
