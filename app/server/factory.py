"""`create_app()`: the Litestar application of one data-plane worker (Granian's factory target)."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Litestar, Request, Response
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import Receive, Scope, Send

from app.config import Config, config_from_environment
from app.server.admin_forward import AdminForwarder
from app.server.errors import error_body
from app.server.native_api import NativeApi
from app.server.openai_api import Handler, OpenAIApi
from app.server.state import WorkerState
from app.server.system_api import system_handlers
from app.telemetry.logging import configure_logging


def _http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own errors (unknown path, wrong method) in the OpenAI shape."""
    return Response(
        error_body(exc.detail, "invalid_request_error"),
        status_code=exc.status_code,
        media_type="application/json",
    )


class HotPathApp:
    """Sends the few hot-path requests straight to their handler; everything else to Litestar.

    Litestar's router, exception middleware and scope bookkeeping cost about 50 us a request
    (measured with py-spy under load) - a sixth of the hot path's budget - and the hot-path
    handlers use none of it: they decode, authorise, route and answer by themselves.
    """

    def __init__(self, app: Litestar, hot: dict[str, Handler]) -> None:
        self.app = app
        self._hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            handler = self._hot.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: Config | None = None) -> HotPathApp:
    """Build the worker app; with no config, read it from the file named by GANDALF_CONFIG."""
    if config is None:
        config, warnings = config_from_environment()
    else:
        warnings = []
    configure_logging(config.server.log_format, config.server.log_level)
    log = structlog.get_logger("gandalf.worker")
    for warning in warnings:  # the CLI already reported them once, before starting workers
        log.debug(warning)
    state = WorkerState(config)
    api = OpenAIApi(state)
    native = NativeApi(state).handlers()
    admin = AdminForwarder(config.server.control_url or f"http://{config.server.admin_addr}")
    app = Litestar(
        route_handlers=[*api.handlers(), *native, *system_handlers(state), admin.handler()],
        on_startup=[admin.start],
        on_shutdown=[admin.aclose],
        lifespan=[state.lifespan],
        exception_handlers={HTTPException: _http_error},
        openapi_config=None,
    )
    return HotPathApp(app, api.hot_paths())
