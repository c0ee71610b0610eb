"""`create_app()`: the Litestar application of one data-plane worker (Granian's factory target)."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException

from app.config import Config, config_from_environment
from app.server.errors import error_body
from app.server.openai_api import OpenAIApi
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


def create_app(config: Config | None = None) -> Litestar:
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
    return Litestar(
        route_handlers=[*OpenAIApi(state).handlers(), *system_handlers(state)],
        lifespan=[state.lifespan],
        exception_handlers={HTTPException: _http_error},
        openapi_config=None,
    )
