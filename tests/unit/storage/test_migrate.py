"""storage/migrate.py: versioned, idempotent, all-or-nothing, refuses a newer schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from storage.db import open_connection
from storage.errors import SchemaTooNew
from storage.migrate import Migration, available, migrate, schema_version

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(params=["file", "memory"])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[apsw.Connection]:
    dsn = str(tmp_path / "gandalf.db") if request.param == "file" else ":memory:"
    connection = open_connection(dsn)
    yield connection
    connection.close()


def _tables(conn: apsw.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(r[0]) for r in rows}


def test_shipped_migrations_are_numbered_from_one() -> None:
    versions = [m.version for m in available()]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
    assert available()[0].name == "init"


def test_first_run_applies_everything_and_records_it(conn: apsw.Connection) -> None:
    assert schema_version(conn) == 0
    assert migrate(conn) == [m.version for m in available()]
    assert schema_version(conn) == available()[-1].version
    assert {
        "organizations", "teams", "providers", "api_keys", "routes", "usage_records",
        "usage_rollups", "config_version", "schema_migrations",
    } <= _tables(conn)  # fmt: skip
    version, name, applied_at = conn.execute(
        "SELECT version, name, applied_at FROM schema_migrations WHERE version = 1"
    ).fetchall()[0]
    assert (version, name) == (1, "init")
    assert STAMP.match(str(applied_at))


def test_second_run_applies_nothing(conn: apsw.Connection) -> None:
    migrate(conn)
    before = conn.execute("SELECT * FROM schema_migrations").fetchall()
    assert migrate(conn) == []
    assert conn.execute("SELECT * FROM schema_migrations").fetchall() == before
    default_orgs = conn.execute("SELECT COUNT(*) FROM organizations").fetchall()[0][0]
    assert default_orgs == 1  # the seed row was not inserted twice


def test_default_organization_is_seeded(conn: apsw.Connection) -> None:
    migrate(conn)
    row = conn.execute("SELECT id, name, created_at FROM organizations").fetchall()
    assert [(r[0], r[1]) for r in row] == [("default", "Default Organization")]
    assert STAMP.match(str(row[0][2]))


def test_new_migrations_apply_in_order_on_top(conn: apsw.Connection) -> None:
    first = Migration(1, "one", "CREATE TABLE a (x INTEGER);")
    second = Migration(2, "two", "ALTER TABLE a ADD COLUMN y TEXT; INSERT INTO a VALUES (1, 'y');")
    assert migrate(conn, [first]) == [1]
    assert migrate(conn, [second, first]) == [2]
    assert conn.execute("SELECT x, y FROM a").fetchall() == [(1, "y")]


def test_a_failing_migration_rolls_back_entirely(conn: apsw.Connection) -> None:
    good = Migration(1, "one", "CREATE TABLE a (x INTEGER);")
    bad = Migration(2, "bad", "CREATE TABLE b (x INTEGER); INSERT INTO missing VALUES (1);")
    with pytest.raises(apsw.SQLError):
        migrate(conn, [good, bad])
    assert "a" in _tables(conn)
    assert "b" not in _tables(conn)
    assert schema_version(conn) == 1
    assert not conn.in_transaction


def test_a_database_newer_than_the_code_is_refused(conn: apsw.Connection) -> None:
    migrate(conn)
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 'x')"
    )
    with pytest.raises(SchemaTooNew, match="schema version 9999"):
        migrate(conn)
