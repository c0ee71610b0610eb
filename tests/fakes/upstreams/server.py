"""How every fake upstream runs: the ASGI plumbing they share and the Granian `main()`.

Each vendor fake is a process (`python -m tests.fakes.upstreams.<vendor> --host --port
--api-key --workers`, the options `harness.FakeUpstream.start` passes); this module holds what
is the same in all of them, so a fake's own module is only its vendor's rules.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

if TYPE_CHECKING:
    from tests.fakes.upstreams.control import Control, Stats

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Header = tuple[bytes, bytes]


class Refused(Exception):
    """A request the real service would refuse: its status and message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Cut(Exception):
    """Raised mid-response: Granian then drops the connection without ending the body."""


async def read_body(receive: Receive) -> bytes:
    """The whole request body (a disconnect ends it: its message has no body)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, headers: Sequence[Header]) -> None:
    """One whole response."""
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send) -> None:
    """Granian's lifespan protocol: nothing to start, nothing to stop."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


def request_headers(scope: Scope) -> dict[str, str]:
    """The request headers by lower-case name (latin-1, as HTTP/1.1 allows any byte)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def stream_or_cut(
    send: Send, headers: Sequence[Header], pieces: list[bytes], cut: int | None, stats: Stats
) -> None:
    """Stream `pieces`; with `cut`, raise `Cut` (no end of body) before piece number `cut`."""
    await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
    for i, piece in enumerate(pieces):
        if cut is not None and i >= cut:
            stats.cut_streams += 1
            raise Cut
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    stats.completed_streams += 1


class AsgiFake:
    """An ASGI fake: the lifespan, the `/_fake/*` control routes, then `api` for the rest."""

    json_headers: ClassVar[Sequence[Header]] = [(b"content-type", b"application/json")]
    control: Control[Any]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        if scope["path"].startswith("/_fake/"):
            answer = self.control.answer(scope["method"], scope["path"], raw)
            await respond(send, *answer, self.json_headers)
            return
        await self.api(scope, raw, send)

    async def api(self, scope: Scope, raw: bytes, send: Send) -> None:
        """Answer a request to the vendor's API (`raw` is its whole body)."""
        raise NotImplementedError


class Cli(NamedTuple):
    """How a fake's command line differs from the others'."""

    description: str
    port: int
    api_key: str = ""
    key_env: str | None = None
    """Where the key reaches the worker processes (they import the module afresh); without
    one the fake takes no key and `--api-key` is accepted and ignored."""
    rsgi: bool = False


def serve(target: str, cli: Cli, argv: list[str] | None = None) -> None:
    """Parse the harness's options and serve `target` ("module:app") with Granian."""
    from granian import Granian  # noqa: PLC0415 - only the CLI needs the server
    from granian.constants import HTTPModes, Interfaces, Loops  # noqa: PLC0415
    from granian.log import LogLevels  # noqa: PLC0415

    module = target.partition(":")[0]
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=cli.description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=cli.port)
    parser.add_argument("--api-key", default=cli.api_key, help=None if cli.key_env else "ignored")
    parser.add_argument("--workers", type=int, default=1, help="use 1 to script behaviour")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if cli.key_env is not None:
        os.environ[cli.key_env] = args.api_key  # inherited by the worker processes
    Granian(
        target,
        address=args.host,
        port=args.port,
        interface=Interfaces.RSGI if cli.rsgi else Interfaces.ASGI,
        workers=args.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels.warning,
        log_access=False,
        workers_kill_timeout=1,
    ).serve()
