"""`/admin/v1/providers` and `/admin/v1/routes`: what the data plane routes to.

Every change publishes a new configuration snapshot, so workers route by it at once
(Gandalf's provider CRUD changed nothing at runtime, and its routes lagged by up to 10 s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import apsw
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
B = TypeVar("B", ProviderBody, RouteBody)
R = TypeVar("R", ProviderRecord, RouteRecord)


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


@dataclass(frozen=True, kw_only=True)
class Catalog(Generic[B, R]):
    """One CRUD collection of the admin API and the storage functions behind it."""

    path: str
    noun: str
    permission: Permission
    body: type[B]
    to_record: Callable[[B, str], R]
    list_page: Callable[[apsw.Connection, int, int | None], tuple[list[R], int]]
    create: Callable[[apsw.Connection, R], R]
    get: Callable[[apsw.Connection, str], R]
    update: Callable[[apsw.Connection, R], R]
    delete: Callable[[apsw.Connection, str], None]

    def handlers(self, db: Database, publisher: Publisher) -> list[Any]:
        """List, create, read, replace, delete; every change publishes a new snapshot."""
        path, needs, item = self.path, self.permission, f"{self.path}/{{item_id:str}}"

        @get(path, name=f"list-{self.noun}s")
        async def list_all(request: AnyRequest) -> Response[bytes]:
            await caller(request, db, needs)
            offset, limit = optional_page_params(request)
            rows, total = await db.read(self.list_page, offset, limit)
            return json_response(page(rows, offset, len(rows) if limit is None else limit, total))

        @post(path, name=f"create-{self.noun}")
        async def create(request: AnyRequest) -> Response[bytes]:
            await caller(request, db, needs)
            body = await decode_body(request, self.body)
            record = await db.write(self.create, self.to_record(body, body.id))
            await publisher.config_changed()
            return json_response(record, 201, f"/admin/v1{path}/{record.id}")

        @get(item, name=f"get-{self.noun}")
        async def read(request: AnyRequest, item_id: str) -> Response[bytes]:
            await caller(request, db, needs)
            return json_response(await db.read(self.get, item_id))

        @put(item, name=f"replace-{self.noun}")
        async def replace(request: AnyRequest, item_id: str) -> Response[bytes]:
            await caller(request, db, needs)
            body = await decode_body(request, self.body)
            record = await db.write(self.update, self.to_record(body, item_id))
            await publisher.config_changed()
            return json_response(record)

        @delete(item, status_code=204, name=f"delete-{self.noun}")
        async def remove(request: AnyRequest, item_id: str) -> None:
            await caller(request, db, needs)
            await db.write(self.delete, item_id)
            await publisher.config_changed()

        return [list_all, create, read, replace, remove]


PROVIDERS = Catalog(
    path="/providers",
    noun="provider",
    permission=Permission.MANAGE_PROVIDERS,
    body=ProviderBody,
    to_record=provider_record,
    list_page=providers.list_providers,
    create=providers.create_provider,
    get=providers.get_provider,
    update=providers.update_provider,
    delete=providers.delete_provider,
)
ROUTES = Catalog(
    path="/routes",
    noun="route",
    permission=Permission.MANAGE_ROUTES,
    body=RouteBody,
    to_record=route_record,
    list_page=routes.list_routes,
    create=routes.create_route,
    get=routes.get_route,
    update=routes.update_route,
    delete=routes.delete_route,
)
