"""Providers: the upstream instances the data plane routes to. Secrets never reach this table.

A provider's key stays in each data-plane process's own configuration and environment; the
row keeps at most the *name* of the environment variable (`api_key_env`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw
import msgspec

from storage.db import page, replace_row
from storage.errors import InvalidValue, NotFound, constraint_errors
from storage.records import ProviderRecord, now

_COLUMNS = (
    "id", "name", "type", "base_url", "models", "priority", "weight", "enabled", "max_rps",
    "timeout_ms", "hosting", "region", "project", "api_version", "api_key_env", "created_at",
    "updated_at",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM providers"  # noqa: S608 - constant column names
_ORDER = "ORDER BY priority, id"
_decode_models = msgspec.json.Decoder(list[str]).decode


def _record(row: Sequence[Any]) -> ProviderRecord:
    fields = dict(zip(_COLUMNS, row, strict=True))
    fields["models"] = _decode_models(fields["models"])
    fields["enabled"] = bool(fields["enabled"])
    return ProviderRecord(**fields)


def _values(record: ProviderRecord) -> dict[str, Any]:
    values = msgspec.structs.asdict(record)
    values["models"] = msgspec.json.encode(list(record.models)).decode()
    values["enabled"] = int(record.enabled)
    return values


def _completed(record: ProviderRecord, provider_id: str) -> ProviderRecord:
    """`id` defaults to `name`, `type` to `name` (Gandalf's rules)."""
    name = record.name or provider_id
    if not name:
        raise InvalidValue("name is required")
    return msgspec.structs.replace(
        record, id=provider_id or name, name=name, type=record.type or name
    )


def create_provider(conn: apsw.Connection, record: ProviderRecord) -> ProviderRecord:
    """Insert a provider; `id` and `type` default to `name`.

    Raises:
        Conflict: a provider with this id exists.
        InvalidValue: no name.
    """
    stamp = now()
    record = msgspec.structs.replace(
        _completed(record, record.id), created_at=stamp, updated_at=stamp
    )
    values = _values(record)
    marks = ", ".join(f":{c}" for c in _COLUMNS)
    with constraint_errors("provider"):
        conn.execute(f"INSERT INTO providers ({', '.join(_COLUMNS)}) VALUES ({marks})", values)  # noqa: S608
    return get_provider(conn, record.id)


def get_provider(conn: apsw.Connection, provider_id: str) -> ProviderRecord:
    row = conn.execute(f"{_SELECT} WHERE id = ?", (provider_id,)).fetchone()
    if row is None:
        raise NotFound(provider_id, "provider")
    return _record(row)


def list_providers(
    conn: apsw.Connection, offset: int = 0, limit: int | None = None
) -> tuple[list[ProviderRecord], int]:
    """A page of providers ordered by priority (then id), and the total; no limit = all."""
    rows, total = page(conn, f"{_SELECT} {_ORDER}", "providers", offset, limit)
    return [_record(r) for r in rows], total


def all_providers(conn: apsw.Connection) -> list[ProviderRecord]:
    """Every provider, ordered by priority: what the control plane publishes."""
    return [_record(r) for r in conn.execute(f"{_SELECT} {_ORDER}").fetchall()]


def update_provider(conn: apsw.Connection, record: ProviderRecord) -> ProviderRecord:
    """Replace every field of provider `record.id` but its `created_at`.

    Raises:
        NotFound: no such provider.
    """
    record = msgspec.structs.replace(_completed(record, record.id), updated_at=now())
    replace_row(conn, "providers", _values(record), "provider")
    return get_provider(conn, record.id)


def delete_provider(conn: apsw.Connection, provider_id: str) -> None:
    """Delete a provider. Routes naming it keep their targets; the data plane skips them.

    Raises:
        NotFound: no such provider.
    """
    conn.execute("DELETE FROM providers WHERE id = ?", (provider_id,))
    if conn.changes() == 0:
        raise NotFound(provider_id, "provider")
