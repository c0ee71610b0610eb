"""storage/providers.py: CRUD, ordering, Conflict/NotFound, and the configuration version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import msgspec
import pytest

from storage import providers
from storage.db import config_version, open_connection
from storage.errors import Conflict, InvalidValue, NotFound
from storage.migrate import migrate
from storage.records import ProviderRecord


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = open_connection(str(tmp_path / "gandalf.db"))
    migrate(connection)
    yield connection
    connection.close()


def _provider(name: str, **fields: Any) -> ProviderRecord:
    base: dict[str, Any] = {
        "id": name,
        "name": name,
        "type": "openai",
        "base_url": "https://api.openai.com/v1",
        "models": ["gpt-4o"],
        "priority": 0,
        "weight": 1,
        "enabled": True,
        "max_rps": 0,
        "timeout_ms": 30_000,
    }
    return ProviderRecord(**{**base, **fields})


def test_create_then_get(conn: apsw.Connection) -> None:
    created = providers.create_provider(
        conn, _provider("azure-eu", hosting="azure", api_version="2024-10-21", api_key_env="AZ")
    )
    assert created == providers.get_provider(conn, "azure-eu")
    assert created.models == ["gpt-4o"]
    assert created.hosting == "azure"
    assert created.api_key_env == "AZ"
    assert created.created_at
    assert created.created_at == created.updated_at


def test_id_and_type_default_to_name(conn: apsw.Connection) -> None:
    created = providers.create_provider(conn, _provider("anthropic", id="", type=""))
    assert (created.id, created.type) == ("anthropic", "anthropic")


def test_name_is_required(conn: apsw.Connection) -> None:
    with pytest.raises(InvalidValue, match="name is required"):
        providers.create_provider(conn, _provider("", id=""))


def test_no_secret_column() -> None:
    columns = set(ProviderRecord.__struct_fields__)
    assert not {c for c in columns if "secret" in c or c in {"api_key", "api_key_enc"}}


def test_duplicate_id_is_a_conflict(conn: apsw.Connection) -> None:
    providers.create_provider(conn, _provider("p"))
    with pytest.raises(Conflict, match="provider with this id already exists"):
        providers.create_provider(conn, _provider("p"))


def test_list_orders_by_priority_and_pages(conn: apsw.Connection) -> None:
    for name, priority in [("c", 2), ("a", 1), ("b", 1), ("d", 0)]:
        providers.create_provider(conn, _provider(name, priority=priority))
    rows, total = providers.list_providers(conn)
    assert [r.id for r in rows] == ["d", "a", "b", "c"]
    assert total == 4
    rows, total = providers.list_providers(conn, offset=1, limit=2)
    assert ([r.id for r in rows], total) == (["a", "b"], 4)
    assert [r.id for r in providers.all_providers(conn)] == ["d", "a", "b", "c"]


def test_update_replaces_everything_but_created_at(conn: apsw.Connection) -> None:
    created = providers.create_provider(conn, _provider("p", region="x"))
    replacement = _provider("p", type="ollama", models=[], enabled=False, weight=3)
    updated = providers.update_provider(conn, replacement)
    assert updated.type == "ollama"
    assert updated.models == []
    assert updated.enabled is False
    assert updated.weight == 3
    assert updated.region == ""
    assert updated.created_at == created.created_at
    assert updated == providers.get_provider(conn, "p")


def test_update_and_delete_unknown(conn: apsw.Connection) -> None:
    with pytest.raises(NotFound, match="provider 'p' not found"):
        providers.update_provider(conn, _provider("p"))
    with pytest.raises(NotFound):
        providers.delete_provider(conn, "p")
    with pytest.raises(NotFound):
        providers.get_provider(conn, "p")


def test_delete(conn: apsw.Connection) -> None:
    providers.create_provider(conn, _provider("p"))
    providers.delete_provider(conn, "p")
    assert providers.list_providers(conn) == ([], 0)


def test_writes_bump_the_config_version_and_reads_do_not(conn: apsw.Connection) -> None:
    start = config_version(conn)
    providers.create_provider(conn, _provider("p"))
    providers.get_provider(conn, "p")
    providers.list_providers(conn)
    providers.all_providers(conn)
    assert config_version(conn) == start + 1
    providers.update_provider(conn, _provider("p", priority=5))
    assert config_version(conn) == start + 2
    providers.delete_provider(conn, "p")
    assert config_version(conn) == start + 3


def test_admin_json_round_trip(conn: apsw.Connection) -> None:
    created = providers.create_provider(conn, _provider("p"))
    assert msgspec.json.decode(msgspec.json.encode(created), type=ProviderRecord) == created
