"""Who is calling the admin API, and may they: keys checked against SQLite, Gandalf's roles."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request

from app.domain import Forbidden, Identity, Permission, Unauthorized
from storage import keys
from storage.db import Database
from workers.snapshots import identity_of


async def caller(request: Request[Any, Any, Any], db: Database, needs: Permission) -> Identity:
    """The caller's identity if the key is valid and its role has `needs`.

    Raises:
        Unauthorized: missing, malformed, unknown or expired key (401).
        Forbidden: blocked key, or the role lacks the permission (403).
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith("gnd_"):
        raise Unauthorized("unauthorized")
    record = await db.read(keys.get_key_by_hash, keys.hash_key(token))
    if record is None:
        raise Unauthorized("unauthorized")
    identity = identity_of(record)
    if identity.blocked:
        raise Forbidden("api key blocked")
    if identity.expires_at is not None and identity.expires_at <= time.time():
        raise Unauthorized("api key expired")
    if not identity.can(needs):
        raise Forbidden("insufficient permissions")
    return identity
