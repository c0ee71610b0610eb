"""/admin/v1/* reaching a data-plane worker is forwarded to the control plane: one public URL.

The control plane authenticates and checks the role itself; the worker only relays method,
path, query, body and the headers that matter, and the answer's status, body and headers.
"""

from __future__ import annotations

import httpx
from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send

from app.domain import GatewayError, ServiceUnavailable
from app.server.asgi import read_body, respond
from app.server.errors import render

ADMIN_BODY_LIMIT = 1024 * 1024
_FORWARDED_REQUEST = (b"authorization", b"content-type", b"x-request-id", b"accept")
_FORWARDED_RESPONSE = ("content-type", "location", "x-request-id")


class AdminForwarder:
    """Relays admin requests to the supervisor's admin API."""

    def __init__(self, control_url: str) -> None:
        self.control_url = control_url.rstrip("/")
        self._session: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._session = httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.aclose()

    def handler(self) -> ASGIRouteHandler:
        async def forward(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await self._forward(scope, receive, send)
            except GatewayError as exc:
                status, body, content_type = render(exc)
                await respond(send, status, body, content_type, ())

        return asgi("/admin", is_mount=True, copy_scope=False)(forward)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._session is None or not self.control_url:
            raise ServiceUnavailable("the admin API is not available on this gateway")
        # read_body allows one byte more than the limit so the control plane sees the size too
        body = await read_body(scope, receive, ADMIN_BODY_LIMIT + 1)
        headers = {
            key.decode(): value.decode()
            for key, value in scope["headers"]
            if key in _FORWARDED_REQUEST
        }
        url = f"{self.control_url}/admin{scope['path']}"
        query = scope.get("query_string", b"")
        if query:
            url += "?" + query.decode()
        try:
            answer = await self._session.request(
                str(scope.get("method", "GET")), url, content=body or None, headers=headers
            )
        except httpx.HTTPError as exc:
            # Only the admin API is down: this worker keeps serving models from Redis.
            raise ServiceUnavailable(
                "the admin API is unavailable: the control plane does not answer"
            ) from exc
        extra = [
            (name.encode(), answer.headers[name].encode())
            for name in _FORWARDED_RESPONSE[1:]
            if name in answer.headers
        ]
        content_type = answer.headers.get("content-type", "application/json").encode()
        await respond(send, answer.status_code, answer.content, content_type, extra)
