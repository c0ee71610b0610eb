"""The `/_fake/*` control API every vendor fake serves: scripted behaviours and stats.

No I/O here: `Control.answer` turns a control request into a status and a body, so the ASGI
fakes and the RSGI OpenAI fake each send it their own way. Behaviours and stats live in the
worker process that answers, which is why tests script a fake run with `--workers 1`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec

_encode = msgspec.json.encode


class Scripted(Protocol):
    """What every vendor's `Behaviour` Struct has: the model it applies to, and how often."""

    model: str
    times: int | None


B = TypeVar("B", bound=Scripted)


class Behaviour(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The behaviour the Ollama, Azure and Gemini fakes share (their docstrings say how each
    answers it); Gemini's adds fields."""

    model: str = "*"
    """The model it applies to; `*` for any."""
    status: int | None = None
    message: str | None = None
    cut_after_events: int | None = None
    times: int | None = None


class Stats:
    """Counters and the last request seen, rendered by `GET /_fake/stats`.

    A fake that reports more adds attributes in its subclass: every attribute is rendered.
    """

    def __init__(self) -> None:
        self.total = 0
        self.requests: Counter[str] = Counter()
        self.last_body: dict[str, Any] = {}
        self.last_headers: dict[str, Any] = {}
        self.completed_streams = 0
        self.cut_streams = 0

    def count(self, request: str, key: str, headers: Any) -> None:
        """One request (`"METHOD path"`), its headers kept under `key`."""
        self.total += 1
        self.requests[request] += 1
        self.last_headers[key] = headers

    def fields(self) -> dict[str, Any]:
        return dict(vars(self))

    def render(self) -> bytes:
        return _encode(self.fields())


class Control(Generic[B]):
    """A fake's behaviours (one per model, `"*"` for any) and stats, and the routes to both.

    `error(status, message)` is the vendor's error body; a control route that does not exist
    answers 404 with `not_found` (formatted with `method` and `path`). `POST /_fake/reset` and
    `DELETE /_fake/behaviour` answer `cleared`, or the (empty) behaviour list when it is None.
    """

    def __init__(
        self,
        default: B,
        stats: Callable[[], Stats],
        error: Callable[[int, str], bytes],
        *,
        not_found: str = "no control route {method} {path}",
        cleared: bytes | None = None,
    ) -> None:
        self.default = default
        self.behaviours: dict[str, B] = {}
        self.stats = stats()
        self._new_stats = stats
        self._error = error
        self._not_found = not_found
        self._cleared = cleared
        self._decode: Callable[[bytes], B] = msgspec.json.Decoder(type(default)).decode

    def take(self, model: str) -> B:
        """The model's own behaviour, else the `"*"` one, else the default; `times` counts down."""
        behaviours = self.behaviours
        if not behaviours:  # the common case, on the benchmark's hot path
            return self.default
        behaviour = behaviours.get(model) or behaviours.get("*")
        if behaviour is None:
            return self.default
        if behaviour.times is not None:
            behaviour.times -= 1
            if behaviour.times <= 0:
                del behaviours[behaviour.model]
        return behaviour

    def answer(self, method: str, path: str, raw: bytes) -> tuple[int, bytes]:
        """The status and JSON body for a request under `/_fake/`."""
        if path == "/_fake/stats" and method == "GET":
            return 200, self.stats.render()
        if path == "/_fake/reset" and method == "POST":
            self.behaviours.clear()
            self.stats = self._new_stats()
            return 200, self._cleared or self._listing()
        if path == "/_fake/behaviour" and method == "POST":
            try:
                behaviour = self._decode(raw)
            except msgspec.DecodeError as exc:
                return 400, self._error(400, str(exc))
            self.behaviours[behaviour.model] = behaviour
        elif path == "/_fake/behaviour" and method == "DELETE":
            self.behaviours.clear()
            return 200, self._cleared or self._listing()
        elif path != "/_fake/behaviour" or method != "GET":
            return 404, self._error(404, self._not_found.format(method=method, path=path))
        return 200, self._listing()

    def _listing(self) -> bytes:
        return _encode({"behaviours": list(self.behaviours.values())})
