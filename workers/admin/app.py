"""The supervisor's HTTP app: the admin API `/admin/v1` and the supervisor's own probes.

Every change is written to SQLite first and then published to Redis, so the data plane
follows within milliseconds. Errors are OpenAI-shaped like the data plane's: a unique
violation is 409 (Gandalf answered 500), a value the schema refuses 400, anything unexpected
500 `internal error` with the details in the log only.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import structlog
from litestar import Litestar, Response, Router, get, post
from litestar.exceptions import HTTPException

from app.domain import GatewayError, Permission
from app.keyspace import Keyspace
from app.server.errors import error_body, render
from storage.db import Database, config_version
from storage.errors import Conflict, InvalidValue, NotFound, StorageError
from workers.admin.catalog import PROVIDERS, ROUTES
from workers.admin.keys import key_handlers
from workers.admin.payloads import AnyRequest, PurgeBody, decode_body
from workers.admin.rbac import caller
from workers.admin.usage import usage_handlers
from workers.publisher import Publisher

log = structlog.get_logger("gandalf.admin")


def _error(status: int, message: str, error_type: str = "invalid_request_error") -> Response[bytes]:
    return Response(
        error_body(message, error_type), status_code=status, media_type="application/json"
    )


def _gateway_error(_: AnyRequest, exc: GatewayError) -> Response[bytes]:
    status, body, content_type = render(exc)
    return Response(body, status_code=status, media_type=content_type.decode())


def _storage_error(request: AnyRequest, exc: StorageError) -> Response[bytes]:
    if isinstance(exc, NotFound):
        return _error(404, "not found")
    if isinstance(exc, Conflict):
        return _error(409, f"conflict: {exc}")
    if isinstance(exc, InvalidValue):
        return _error(400, str(exc))
    log.error("storage error", path=request.url.path, error=repr(exc))
    return _error(500, "internal error", "api_error")


def _http_error(_: AnyRequest, exc: HTTPException) -> Response[bytes]:
    return _error(exc.status_code, str(exc.detail))


def _unexpected(request: AnyRequest, exc: Exception) -> Response[bytes]:
    log.exception("admin request failed", path=request.url.path, error=repr(exc))
    return _error(500, "internal error", "api_error")


async def purge(client: aioredis.Redis, keyspace: Keyspace, model: str | None) -> int:
    """Unlink cached answers (of one requested model, or all); returns how many."""
    pattern = keyspace.cache_prefix + (f"{_glob_escape(model)}:*" if model else "*")
    removed = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=500):
        batch.append(key)
        if len(batch) >= 500:
            removed += await client.unlink(*batch)
            batch = []
    if batch:
        removed += await client.unlink(*batch)
    return removed


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def create_admin_app(
    db: Database, publisher: Publisher, client: aioredis.Redis, keyspace: Keyspace
) -> Litestar:
    """The admin API and the supervisor's health probes."""

    @post("/cache/purge", status_code=204)
    async def purge_cache(request: AnyRequest) -> None:
        """Delete cached answers, all or one model's (`?model=` or `{"model": ...}`).

        Every worker sees it at once: the cache lives in Redis.
        """
        await caller(request, db, Permission.MANAGE_PROVIDERS)
        model = request.query_params.get("model")
        if model is None and request.headers.get("content-length", "0") != "0":
            model = (await decode_body(request, PurgeBody)).model
        removed = await purge(client, keyspace, model or None)
        log.info("cache purged", model=model or "*", entries=removed)

    admin = Router(
        "/admin/v1",
        route_handlers=[
            *key_handlers(db, publisher),
            *PROVIDERS.handlers(db, publisher),
            *ROUTES.handlers(db, publisher),
            *usage_handlers(db),
            purge_cache,
        ],
    )

    @get("/healthz", media_type="text/plain", sync_to_thread=False)
    def healthz() -> str:
        return "ok"

    @get("/readyz", media_type="text/plain")
    async def readyz() -> Response[str]:
        """Ready when SQLite answers, Redis answers and holds what was published."""
        try:
            await client.ping()
            await db.read(config_version)
        except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
            return Response(
                f"not ready: {type(exc).__name__}", status_code=503, media_type="text/plain"
            )
        if not publisher.published:
            return Response(
                "not ready: nothing published yet", status_code=503, media_type="text/plain"
            )
        return Response("ok", media_type="text/plain")

    handlers: dict[Any, Any] = {
        GatewayError: _gateway_error,
        StorageError: _storage_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }
    return Litestar(
        route_handlers=[admin, healthz, readyz],
        exception_handlers=handlers,
        openapi_config=None,
        request_max_body_size=None,
    )
