"""Probes: /healthz (the process answers) and /readyz (it can serve traffic)."""

from __future__ import annotations

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from app.server.state import WorkerState


def system_handlers(state: WorkerState) -> list[HTTPRouteHandler]:
    @get("/healthz", media_type="text/plain", sync_to_thread=False, include_in_schema=False)
    def healthz() -> str:
        return "ok"

    @get("/readyz", media_type="text/plain", include_in_schema=False)
    async def readyz() -> Response[str]:
        if await state.is_ready():
            return Response("ok", media_type="text/plain")
        return Response("not ready", status_code=503, media_type="text/plain")

    return [healthz, readyz]
