"""storage/orgs.py: organizations and teams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from storage import orgs
from storage.db import config_version, open_connection
from storage.errors import Conflict, InvalidReference, NotFound
from storage.migrate import migrate


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = open_connection(str(tmp_path / "gandalf.db"))
    migrate(connection)
    yield connection
    connection.close()


def test_the_default_org_exists(conn: apsw.Connection) -> None:
    assert orgs.get_org(conn, "default").name == "Default Organization"


def test_create_get_list(conn: apsw.Connection) -> None:
    created = orgs.create_org(conn, "acme", "Acme", allowed_models=["chat"], rpm_limit=5)
    assert created == orgs.get_org(conn, "acme")
    assert created.allowed_models == ["chat"]
    assert created.rpm_limit == 5
    assert created.created_at
    rows, total = orgs.list_orgs(conn)
    assert ([o.id for o in rows], total) == (["acme", "default"], 2)
    assert [o.id for o in orgs.list_orgs(conn, offset=1, limit=1)[0]] == ["default"]


def test_duplicate_org_is_a_conflict(conn: apsw.Connection) -> None:
    with pytest.raises(Conflict, match="organization"):
        orgs.create_org(conn, "default", "Again")


def test_unknown_org(conn: apsw.Connection) -> None:
    with pytest.raises(NotFound, match="organization 'x' not found"):
        orgs.get_org(conn, "x")


def test_ensure_org_creates_once(conn: apsw.Connection) -> None:
    assert orgs.ensure_org(conn, "new") is True
    assert orgs.ensure_org(conn, "new", "Other name") is False
    assert orgs.get_org(conn, "new").name == "new"


def test_teams(conn: apsw.Connection) -> None:
    team = orgs.create_team(conn, "t1", "default", "Platform", tpm_limit=9)
    assert team == orgs.get_team(conn, "t1")
    assert (team.org_id, team.name, team.tpm_limit) == ("default", "Platform", 9)
    with pytest.raises(Conflict):
        orgs.create_team(conn, "t1", "default", "Again")
    with pytest.raises(InvalidReference):
        orgs.create_team(conn, "t2", "missing-org", "Orphan")
    with pytest.raises(NotFound, match="team"):
        orgs.get_team(conn, "t9")


def test_ensure_team_creates_its_org(conn: apsw.Connection) -> None:
    assert orgs.ensure_team(conn, "t1", "acme") is True
    assert orgs.ensure_team(conn, "t1", "acme") is False
    assert orgs.get_team(conn, "t1").org_id == "acme"
    assert orgs.get_org(conn, "acme").id == "acme"


def test_org_writes_do_not_bump_the_config_version(conn: apsw.Connection) -> None:
    start = config_version(conn)
    orgs.create_org(conn, "acme", "Acme")
    orgs.create_team(conn, "t1", "acme", "T")
    assert config_version(conn) == start
