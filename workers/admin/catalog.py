"""`/admin/v1/providers` and `/admin/v1/routes`: what the data plane routes to.

Every change publishes a new configuration snapshot, so workers route by it at once
(Gandalf's provider CRUD changed nothing at runtime, and its routes lagged by up to 10 s).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, delete, get, post, put

from app.config import PROVIDER_TYPES
from app.domain import InvalidRequest, Permission
from storage import providers, routes
from storage.db import Database
from storage.records import ProviderRecord, RouteRecord, page
from workers.admin.payloads import (
    AnyRequest,
    ProviderBody,
    RouteBody,
    decode_body,
    json_response,
    optional_page_params,
)
from workers.admin.rbac import caller
from workers.publisher import Publisher

_STRATEGIES = ("priority",)


def provider_record(body: ProviderBody, provider_id: str) -> ProviderRecord:
    """Gandalf's defaults (`id` = `name`, `type` = `name`) and an early 400 on a bad type."""
    name = body.name or provider_id
    if not name:
        raise InvalidRequest("name is required", param="name")
    kind = body.type or name
    if kind not in PROVIDER_TYPES:
        raise InvalidRequest(
            f"unknown provider type '{kind}': use one of {', '.join(sorted(PROVIDER_TYPES))}",
            param="type",
        )
    fields = msgspec.structs.asdict(body)
    fields.update(id=provider_id or name, name=name, type=kind)
    return ProviderRecord(**fields)


def route_record(body: RouteBody, route_id: str) -> RouteRecord:
    if not body.model_alias:
        raise InvalidRequest("model_alias is required", param="model_alias")
    if body.strategy not in _STRATEGIES:
        raise InvalidRequest("strategy must be 'priority'", param="strategy")
    if body.cache_ttl_s < 0:
        raise InvalidRequest("cache_ttl_s must not be negative", param="cache_ttl_s")
    for index, target in enumerate(body.targets):
        if not target.provider_id or not target.model:
            raise InvalidRequest(
                "every target needs provider_id and model", param=f"targets[{index}]"
            )
    return RouteRecord(
        id=route_id,
        model_alias=body.model_alias,
        targets=body.targets,
        strategy=body.strategy,
        cache_ttl_s=body.cache_ttl_s,
    )


def provider_handlers(db: Database, publisher: Publisher) -> list[Any]:
    needs = Permission.MANAGE_PROVIDERS

    @get("/providers")
    async def list_providers(request: AnyRequest) -> Response[bytes]:
        await caller(request, db, needs)
        offset, limit = optional_page_params(request)
        rows, total = await db.read(providers.list_providers, offset, limit)
        return json_response(page(rows, offset, len(rows) if limit is None else limit, total))

    @post("/providers")
    async def create_provider(request: AnyRequest) -> Response[bytes]:
        await caller(request, db, needs)
        body = await decode_body(request, ProviderBody)
        record = await db.write(providers.create_provider, provider_record(body, body.id))
        await publisher.config_changed()
        return json_response(record, 201, f"/admin/v1/providers/{record.id}")

    @get("/providers/{provider_id:str}")
    async def get_provider(request: AnyRequest, provider_id: str) -> Response[bytes]:
        await caller(request, db, needs)
        return json_response(await db.read(providers.get_provider, provider_id))

    @put("/providers/{provider_id:str}")
    async def update_provider(request: AnyRequest, provider_id: str) -> Response[bytes]:
        await caller(request, db, needs)
        body = await decode_body(request, ProviderBody)
        record = await db.write(providers.update_provider, provider_record(body, provider_id))
        await publisher.config_changed()
        return json_response(record)

    @delete("/providers/{provider_id:str}", status_code=204)
    async def delete_provider(request: AnyRequest, provider_id: str) -> None:
        await caller(request, db, needs)
        await db.write(providers.delete_provider, provider_id)
        await publisher.config_changed()

    return [list_providers, create_provider, get_provider, update_provider, delete_provider]


def route_handlers(db: Database, publisher: Publisher) -> list[Any]:
    needs = Permission.MANAGE_ROUTES

    @get("/routes")
    async def list_routes(request: AnyRequest) -> Response[bytes]:
        await caller(request, db, needs)
        offset, limit = optional_page_params(request)
        rows, total = await db.read(routes.list_routes, offset, limit)
        return json_response(page(rows, offset, len(rows) if limit is None else limit, total))

    @post("/routes")
    async def create_route(request: AnyRequest) -> Response[bytes]:
        await caller(request, db, needs)
        body = await decode_body(request, RouteBody)
        record = await db.write(routes.create_route, route_record(body, body.id))
        await publisher.config_changed()
        return json_response(record, 201, f"/admin/v1/routes/{record.id}")

    @get("/routes/{route_id:str}")
    async def get_route(request: AnyRequest, route_id: str) -> Response[bytes]:
        await caller(request, db, needs)
        return json_response(await db.read(routes.get_route, route_id))

    @put("/routes/{route_id:str}")
    async def update_route(request: AnyRequest, route_id: str) -> Response[bytes]:
        await caller(request, db, needs)
        body = await decode_body(request, RouteBody)
        record = await db.write(routes.update_route, route_record(body, route_id))
        await publisher.config_changed()
        return json_response(record)

    @delete("/routes/{route_id:str}", status_code=204)
    async def delete_route(request: AnyRequest, route_id: str) -> None:
        await caller(request, db, needs)
        await db.write(routes.delete_route, route_id)
        await publisher.config_changed()

    return [list_routes, create_route, get_route, update_route, delete_route]
