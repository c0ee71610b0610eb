"""`/admin/v1/keys`: create (plaintext shown once), list, read, change, delete.

Every change is published before the response, so the data plane sees it within milliseconds.
A key of another organization does not exist for the caller (404); listing or creating in
another organization is refused (403), as in Gandalf.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, delete, get, post, put

from app.domain import ROLE_PERMISSIONS, Forbidden, Identity, InvalidRequest, Permission
from storage import keys
from storage.db import Database
from storage.errors import NotFound
from storage.records import KeyRecord, page
from workers.admin.payloads import (
    AnyRequest,
    KeyCreate,
    check_time,
    decode_body,
    json_response,
    page_params,
)
from workers.admin.rbac import caller
from workers.publisher import Publisher
from workers.snapshots import identity_of


def _check_role(role: str) -> None:
    if role not in ROLE_PERMISSIONS:
        raise InvalidRequest("invalid role", param="role")


def _org_of(identity: Identity, requested: str | None, action: str) -> str:
    org = requested or identity.org_id
    if org != identity.org_id:
        raise Forbidden(f"cannot {action} outside your organization")
    return org


def key_handlers(db: Database, publisher: Publisher) -> list[Any]:
    async def in_callers_org(identity: Identity, key_id: str) -> KeyRecord:
        record = await db.read(keys.get_key, key_id)
        if record.org_id != identity.org_id:
            raise NotFound(key_id, "key")  # other organizations' keys do not exist here
        return record

    @get("/keys")
    async def list_keys(request: AnyRequest) -> Response[bytes]:
        identity = await caller(request, db, Permission.MANAGE_ALL_KEYS)
        org = _org_of(identity, request.query_params.get("org_id"), "access resources")
        offset, limit = page_params(request)
        rows, total = await db.read(keys.list_keys, org, offset, limit)
        return json_response(page(rows, offset, limit, total))

    @post("/keys")
    async def create_key(request: AnyRequest) -> Response[bytes]:
        identity = await caller(request, db, Permission.MANAGE_ALL_KEYS)
        body = await decode_body(request, KeyCreate)
        org = _org_of(identity, body.org_id, "create keys")
        _check_role(body.role)
        check_time(body.expires_at, "expires_at")
        plaintext, key_hash, prefix = keys.generate_key()
        record = await db.write(
            keys.create_key,
            key_hash=key_hash,
            key_prefix=prefix,
            org_id=org,
            role=body.role,
            name=body.name,
            user_id=body.user_id,
            team_id=body.team_id,
            allowed_models=body.allowed_models,
            rpm_limit=body.rpm_limit,
            tpm_limit=body.tpm_limit,
            max_budget=body.max_budget,
            budget_period=body.budget_period,
            expires_at=body.expires_at,
        )
        await publisher.key_changed(key_hash, identity_of(record))
        created = {**msgspec.to_builtins(record), "key": plaintext}
        return json_response(created, 201, f"/admin/v1/keys/{record.id}")

    @get("/keys/{key_id:str}")
    async def get_key(request: AnyRequest, key_id: str) -> Response[bytes]:
        identity = await caller(request, db, Permission.MANAGE_ALL_KEYS)
        return json_response(await in_callers_org(identity, key_id))

    @put("/keys/{key_id:str}")
    async def update_key(request: AnyRequest, key_id: str) -> Response[bytes]:
        identity = await caller(request, db, Permission.MANAGE_ALL_KEYS)
        changes = await decode_body(request, keys.KeyChanges)
        if isinstance(changes.role, str):
            _check_role(changes.role)
        if isinstance(changes.expires_at, str):
            check_time(changes.expires_at, "expires_at")
        await in_callers_org(identity, key_id)
        record = await db.write(keys.update_key, key_id, changes)
        key_hash = await db.read(keys.key_hash_of, key_id)
        await publisher.key_changed(key_hash, identity_of(record))
        return json_response(record)

    @delete("/keys/{key_id:str}", status_code=204)
    async def delete_key(request: AnyRequest, key_id: str) -> None:
        identity = await caller(request, db, Permission.MANAGE_ALL_KEYS)
        await in_callers_org(identity, key_id)
        key_hash = await db.write(keys.delete_key, key_id)
        await publisher.key_changed(key_hash, None)

    return [list_keys, create_key, get_key, update_key, delete_key]
