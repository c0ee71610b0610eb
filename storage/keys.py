"""API keys: created with a random `gnd_` secret, stored only as its SHA-256 hash.

The hash never enters a `KeyRecord` (the admin API's JSON); the functions that need it return
it beside the record.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Annotated, Any

import apsw
import msgspec
import uuid_utils

from storage.db import count
from storage.errors import InvalidValue, NotFound, constraint_errors
from storage.records import ROLES, KeyRecord, models_column, models_value, normalize_time, now

KEY_PREFIX = "gnd_"
PREFIX_LENGTH = 12
"""Characters of the plaintext kept as `key_prefix` (`gnd_AbCdEfGh`), as Gandalf keeps."""

_HASH = re.compile(r"[0-9a-f]{64}")
_COLUMNS = (
    "id", "key_prefix", "org_id", "role", "blocked", "budget_period", "created_at",
    "updated_at", "name", "user_id", "team_id", "allowed_models", "rpm_limit", "tpm_limit",
    "max_budget", "expires_at", "last_used_at",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM api_keys"  # noqa: S608 - constant column names

NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


def generate_key() -> tuple[str, str, str]:
    """A new key: (plaintext, key_hash, key_prefix).

    The plaintext is `gnd_` + unpadded base64url of 32 random bytes (47 characters).
    """
    plaintext = KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return plaintext, hash_key(plaintext), plaintext[:PREFIX_LENGTH]


def hash_key(plaintext: str) -> str:
    """Lowercase hex SHA-256 of the whole plaintext: what is stored and looked up."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def key_prefix(plaintext: str) -> str:
    return plaintext[:PREFIX_LENGTH]


def _record(row: Sequence[Any]) -> KeyRecord:
    fields = dict(zip(_COLUMNS, row, strict=True))
    fields["blocked"] = bool(fields["blocked"])
    fields["allowed_models"] = models_value(fields["allowed_models"])
    return KeyRecord(**fields)


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidValue(f"invalid role {role!r}: use one of {', '.join(sorted(ROLES))}")
    return role


def create_key(
    conn: apsw.Connection,
    *,
    key_hash: str,
    key_prefix: str,
    org_id: str = "default",
    role: str = "member",
    name: str = "",
    user_id: str | None = None,
    team_id: str | None = None,
    allowed_models: Sequence[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_budget: float | None = None,
    budget_period: str = "monthly",
    expires_at: str | None = None,
    key_id: str | None = None,
) -> KeyRecord:
    """Insert a key; `id` is a new UUIDv7 unless `key_id` is given.

    Raises:
        Conflict: the hash (or id) exists.
        InvalidReference: the organization or team does not exist.
        InvalidValue: unknown role, malformed hash or `expires_at`.
    """
    if not _HASH.fullmatch(key_hash):
        raise InvalidValue("key_hash must be a lowercase hex SHA-256")
    stamp = now()
    new_id = key_id or str(uuid_utils.uuid7())
    values: dict[str, Any] = {
        "id": new_id,
        "key_hash": key_hash,
        "key_prefix": key_prefix,
        "org_id": org_id,
        "role": _check_role(role),
        "blocked": 0,
        "budget_period": budget_period,
        "created_at": stamp,
        "updated_at": stamp,
        "name": name,
        "user_id": user_id or None,
        "team_id": team_id or None,
        "allowed_models": models_column(allowed_models),
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
        "max_budget": max_budget,
        "expires_at": normalize_time(expires_at) if expires_at else None,
    }
    columns = ", ".join(values)
    marks = ", ".join(f":{c}" for c in values)
    with constraint_errors("key"):
        conn.execute(f"INSERT INTO api_keys ({columns}) VALUES ({marks})", values)  # noqa: S608
    return get_key(conn, new_id)


def get_key(conn: apsw.Connection, key_id: str) -> KeyRecord:
    row = conn.execute(f"{_SELECT} WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        raise NotFound(key_id, "key")
    return _record(row)


def get_key_by_hash(conn: apsw.Connection, key_hash: str) -> KeyRecord | None:
    """The key with this hash, or None (an unknown key is normal traffic, not an error)."""
    row = conn.execute(f"{_SELECT} WHERE key_hash = ?", (key_hash,)).fetchone()
    return _record(row) if row is not None else None


def key_hash_of(conn: apsw.Connection, key_id: str) -> str:
    row = conn.execute("SELECT key_hash FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        raise NotFound(key_id, "key")
    return str(row[0])


def list_keys(
    conn: apsw.Connection, org_id: str | None, offset: int = 0, limit: int = 50
) -> tuple[list[KeyRecord], int]:
    """A page of an organization's keys (every organization's when None), newest first."""
    where, params = ("WHERE org_id = ?", (org_id,)) if org_id is not None else ("", ())
    rows = conn.execute(
        f"{_SELECT} {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
        (*params, max(0, limit), max(0, offset)),
    ).fetchall()
    total = count(conn, f"SELECT COUNT(*) FROM api_keys {where}", params)  # noqa: S608
    return [_record(r) for r in rows], total


class KeyChanges(msgspec.Struct, kw_only=True):
    """A partial update (the admin API's PUT body).

    An absent field stays as it is (`UNSET`); `null` clears a nullable field, which Gandalf
    could not do. Unknown fields are ignored, so a client may send back a key it read.
    """

    role: str | msgspec.UnsetType = msgspec.UNSET
    name: str | msgspec.UnsetType = msgspec.UNSET
    allowed_models: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    """`[]` or null: every model."""
    rpm_limit: NonNegativeInt | msgspec.UnsetType | None = msgspec.UNSET
    tpm_limit: NonNegativeInt | msgspec.UnsetType | None = msgspec.UNSET
    max_budget: NonNegativeFloat | msgspec.UnsetType | None = msgspec.UNSET
    budget_period: str | msgspec.UnsetType = msgspec.UNSET
    expires_at: str | msgspec.UnsetType | None = msgspec.UNSET
    blocked: bool | msgspec.UnsetType = msgspec.UNSET


def _column_value(field: str, value: Any) -> Any:
    if field == "role":
        return _check_role(value)
    if field == "allowed_models":
        return models_column(value)
    if field == "expires_at":
        return normalize_time(value) if value else None
    if field == "blocked":
        return int(value)
    return value


def update_key(conn: apsw.Connection, key_id: str, changes: KeyChanges) -> KeyRecord:
    """Apply the fields `changes` sets; returns the key as it is now.

    Raises:
        NotFound: no such key.
        InvalidValue: unknown role or malformed `expires_at`.
    """
    values: dict[str, Any] = {}
    for field in changes.__struct_fields__:
        value = getattr(changes, field)
        if value is not msgspec.UNSET:
            values[field] = _column_value(field, value)
    if not values:
        return get_key(conn, key_id)
    values["updated_at"] = now()
    sets = ", ".join(f"{column} = :{column}" for column in values)
    with constraint_errors("key"):
        conn.execute(f"UPDATE api_keys SET {sets} WHERE id = :key_id", {**values, "key_id": key_id})  # noqa: S608
    if conn.changes() == 0:
        raise NotFound(key_id, "key")
    return get_key(conn, key_id)


def delete_key(conn: apsw.Connection, key_id: str) -> str:
    """Delete a key; returns its hash (the data plane drops keys by hash).

    Raises:
        NotFound: no such key.
    """
    rows = conn.execute(
        "DELETE FROM api_keys WHERE id = ? RETURNING key_hash", (key_id,)
    ).fetchall()
    if not rows:
        raise NotFound(key_id, "key")
    return str(rows[0][0])


def all_keys(conn: apsw.Connection) -> list[tuple[str, KeyRecord]]:
    """Every key with its hash: what the control plane publishes to the data plane."""
    rows = conn.execute(f"SELECT key_hash, {', '.join(_COLUMNS)} FROM api_keys").fetchall()  # noqa: S608
    return [(str(row[0]), _record(row[1:])) for row in rows]


def touch_last_used(conn: apsw.Connection, key_id: str, when: str | None = None) -> bool:
    """Record that a key was used; False when the key no longer exists.

    Does not bump the configuration version: `last_used_at` is not configuration.
    """
    conn.execute(
        "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
        (normalize_time(when) if when else now(), key_id),
    )
    return conn.changes() > 0
