"""storage/routes.py: CRUD, alias uniqueness, targets as JSON, and the configuration version."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from storage import routes
from storage.db import config_version, open_connection
from storage.errors import Conflict, InvalidValue, NotFound
from storage.migrate import migrate
from storage.records import RouteRecord, RouteTarget


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = open_connection(str(tmp_path / "gandalf.db"))
    migrate(connection)
    yield connection
    connection.close()


def _route(alias: str, route_id: str = "", cache_ttl_s: int = 0) -> RouteRecord:
    targets = [
        RouteTarget(provider_id="openai", model="gpt-4o", priority=0, weight=3),
        RouteTarget(provider_id="anthropic", model="claude", priority=1),
    ]
    return RouteRecord(id=route_id, model_alias=alias, targets=targets, cache_ttl_s=cache_ttl_s)


def test_create_assigns_a_uuid7_and_round_trips_targets(conn: apsw.Connection) -> None:
    created = routes.create_route(conn, _route("chat", cache_ttl_s=60))
    assert uuid.UUID(created.id).version == 7
    assert created == routes.get_route(conn, created.id)
    assert created.targets[0] == RouteTarget(
        provider_id="openai", model="gpt-4o", priority=0, weight=3
    )
    assert created.targets[1].weight == 1
    assert (created.strategy, created.cache_ttl_s) == ("priority", 60)
    assert routes.get_route_by_alias(conn, "chat") == created
    assert routes.get_route_by_alias(conn, "nope") is None


def test_given_id_is_kept(conn: apsw.Connection) -> None:
    assert routes.create_route(conn, _route("chat", "r1")).id == "r1"


def test_alias_is_required(conn: apsw.Connection) -> None:
    with pytest.raises(InvalidValue, match="model_alias is required"):
        routes.create_route(conn, _route(""))


def test_duplicate_alias_or_id_is_a_conflict(conn: apsw.Connection) -> None:
    routes.create_route(conn, _route("chat", "r1"))
    with pytest.raises(Conflict, match="model_alias"):
        routes.create_route(conn, _route("chat"))
    with pytest.raises(Conflict, match="id"):
        routes.create_route(conn, _route("other", "r1"))


def test_list_orders_by_alias_and_pages(conn: apsw.Connection) -> None:
    for alias in ["c", "a", "b"]:
        routes.create_route(conn, _route(alias))
    rows, total = routes.list_routes(conn)
    assert ([r.model_alias for r in rows], total) == (["a", "b", "c"], 3)
    rows, total = routes.list_routes(conn, offset=2, limit=5)
    assert ([r.model_alias for r in rows], total) == (["c"], 3)
    assert [r.model_alias for r in routes.all_routes(conn)] == ["a", "b", "c"]


def test_update_replaces_and_keeps_created_at(conn: apsw.Connection) -> None:
    created = routes.create_route(conn, _route("chat", "r1"))
    replacement = RouteRecord(
        id="r1", model_alias="chat-v2", targets=[RouteTarget(provider_id="p", model="m")]
    )
    updated = routes.update_route(conn, replacement)
    assert updated.model_alias == "chat-v2"
    assert updated.targets == [RouteTarget(provider_id="p", model="m")]
    assert updated.cache_ttl_s == 0
    assert updated.created_at == created.created_at
    assert routes.get_route_by_alias(conn, "chat") is None


def test_update_to_a_taken_alias_is_a_conflict(conn: apsw.Connection) -> None:
    routes.create_route(conn, _route("a", "r1"))
    routes.create_route(conn, _route("b", "r2"))
    with pytest.raises(Conflict):
        routes.update_route(conn, _route("a", "r2"))


def test_unknown_route(conn: apsw.Connection) -> None:
    with pytest.raises(NotFound, match="route 'r9' not found"):
        routes.get_route(conn, "r9")
    with pytest.raises(NotFound):
        routes.update_route(conn, _route("x", "r9"))
    with pytest.raises(NotFound):
        routes.delete_route(conn, "r9")


def test_writes_bump_the_config_version_and_reads_do_not(conn: apsw.Connection) -> None:
    start = config_version(conn)
    created = routes.create_route(conn, _route("chat"))
    routes.list_routes(conn)
    routes.all_routes(conn)
    routes.get_route(conn, created.id)
    assert config_version(conn) == start + 1
    routes.update_route(conn, _route("chat", created.id, cache_ttl_s=5))
    assert config_version(conn) == start + 2
    routes.delete_route(conn, created.id)
    assert config_version(conn) == start + 3
    assert routes.list_routes(conn) == ([], 0)
