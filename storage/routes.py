"""Routes: a model alias and the provider targets it goes to, stored as one JSON column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw
import msgspec
import uuid_utils

from storage.db import page, replace_row
from storage.errors import InvalidValue, NotFound, constraint_errors
from storage.records import RouteRecord, RouteTarget, now

_COLUMNS = ("id", "model_alias", "targets", "strategy", "cache_ttl_s", "created_at", "updated_at")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM routes"  # noqa: S608 - constant column names
_ORDER = "ORDER BY model_alias"
_decode_targets = msgspec.json.Decoder(list[RouteTarget]).decode


def _record(row: Sequence[Any]) -> RouteRecord:
    fields = dict(zip(_COLUMNS, row, strict=True))
    fields["targets"] = _decode_targets(fields["targets"])
    return RouteRecord(**fields)


def _values(record: RouteRecord) -> dict[str, Any]:
    if not record.model_alias:
        raise InvalidValue("model_alias is required")
    values = msgspec.structs.asdict(record)
    values["targets"] = msgspec.json.encode(record.targets).decode()
    return values


def create_route(conn: apsw.Connection, record: RouteRecord) -> RouteRecord:
    """Insert a route; an empty `id` becomes a new UUIDv7.

    Raises:
        Conflict: the id or the model alias is taken.
        InvalidValue: no model alias.
    """
    stamp = now()
    record = msgspec.structs.replace(
        record, id=record.id or str(uuid_utils.uuid7()), created_at=stamp, updated_at=stamp
    )
    values = _values(record)
    marks = ", ".join(f":{c}" for c in _COLUMNS)
    with constraint_errors("route"):
        conn.execute(f"INSERT INTO routes ({', '.join(_COLUMNS)}) VALUES ({marks})", values)  # noqa: S608
    return get_route(conn, record.id)


def get_route(conn: apsw.Connection, route_id: str) -> RouteRecord:
    row = conn.execute(f"{_SELECT} WHERE id = ?", (route_id,)).fetchone()
    if row is None:
        raise NotFound(route_id, "route")
    return _record(row)


def get_route_by_alias(conn: apsw.Connection, model_alias: str) -> RouteRecord | None:
    row = conn.execute(f"{_SELECT} WHERE model_alias = ?", (model_alias,)).fetchone()
    return _record(row) if row is not None else None


def list_routes(
    conn: apsw.Connection, offset: int = 0, limit: int | None = None
) -> tuple[list[RouteRecord], int]:
    """A page of routes ordered by model alias, and the total; no limit = all."""
    rows, total = page(conn, f"{_SELECT} {_ORDER}", "routes", offset, limit)
    return [_record(r) for r in rows], total


def all_routes(conn: apsw.Connection) -> list[RouteRecord]:
    """Every route, ordered by alias: what the control plane publishes."""
    return [_record(r) for r in conn.execute(f"{_SELECT} {_ORDER}").fetchall()]


def update_route(conn: apsw.Connection, record: RouteRecord) -> RouteRecord:
    """Replace every field of route `record.id` but its `created_at`.

    Raises:
        NotFound: no such route.
        Conflict: the new alias belongs to another route.
    """
    record = msgspec.structs.replace(record, updated_at=now())
    replace_row(conn, "routes", _values(record), "route")
    return get_route(conn, record.id)


def delete_route(conn: apsw.Connection, route_id: str) -> None:
    """Raises `NotFound` when there is no such route."""
    conn.execute("DELETE FROM routes WHERE id = ?", (route_id,))
    if conn.changes() == 0:
        raise NotFound(route_id, "route")
