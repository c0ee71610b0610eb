"""Organizations and teams: what keys belong to. No admin endpoints yet (as in Gandalf)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw

from storage.db import count
from storage.errors import NotFound, constraint_errors
from storage.records import Organization, Team, models_column, models_value, now

_ORG_COLUMNS = (
    "id", "name", "allowed_models", "rpm_limit", "tpm_limit", "max_budget", "created_at",
)  # fmt: skip
_TEAM_COLUMNS = ("id", "org_id", *_ORG_COLUMNS[1:])
_SELECT_ORG = f"SELECT {', '.join(_ORG_COLUMNS)} FROM organizations"  # noqa: S608 - constants
_SELECT_TEAM = f"SELECT {', '.join(_TEAM_COLUMNS)} FROM teams"  # noqa: S608 - constants


def _org(row: Sequence[Any]) -> Organization:
    fields = dict(zip(_ORG_COLUMNS, row, strict=True))
    fields["allowed_models"] = models_value(fields["allowed_models"])
    return Organization(**fields)


def _team(row: Sequence[Any]) -> Team:
    fields = dict(zip(_TEAM_COLUMNS, row, strict=True))
    fields["allowed_models"] = models_value(fields["allowed_models"])
    return Team(**fields)


def create_org(
    conn: apsw.Connection,
    org_id: str,
    name: str,
    *,
    allowed_models: Sequence[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_budget: float | None = None,
) -> Organization:
    """Raises `Conflict` when the id is taken."""
    with constraint_errors("organization"):
        conn.execute(
            f"INSERT INTO organizations ({', '.join(_ORG_COLUMNS)}) "  # noqa: S608 - constants
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (org_id, name, models_column(allowed_models), rpm_limit, tpm_limit, max_budget, now()),
        )
    return get_org(conn, org_id)


def get_org(conn: apsw.Connection, org_id: str) -> Organization:
    row = conn.execute(f"{_SELECT_ORG} WHERE id = ?", (org_id,)).fetchone()
    if row is None:
        raise NotFound(org_id, "organization")
    return _org(row)


def list_orgs(
    conn: apsw.Connection, offset: int = 0, limit: int | None = None
) -> tuple[list[Organization], int]:
    """A page of organizations ordered by id, and the total; no limit = all."""
    rows = conn.execute(
        f"{_SELECT_ORG} ORDER BY id LIMIT ? OFFSET ?",
        (-1 if limit is None else max(0, limit), max(0, offset)),
    ).fetchall()
    total = count(conn, "SELECT COUNT(*) FROM organizations")
    return [_org(r) for r in rows], total


def ensure_org(conn: apsw.Connection, org_id: str, name: str | None = None) -> bool:
    """Create the organization unless it exists (named after its id by default); True if created."""
    conn.execute(
        "INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO NOTHING",
        (org_id, name or org_id, now()),
    )
    return conn.changes() > 0


def create_team(
    conn: apsw.Connection,
    team_id: str,
    org_id: str,
    name: str,
    *,
    allowed_models: Sequence[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_budget: float | None = None,
) -> Team:
    """Raises `Conflict` when the id is taken, `InvalidReference` when the org does not exist."""
    with constraint_errors("team"):
        conn.execute(
            f"INSERT INTO teams ({', '.join(_TEAM_COLUMNS)}) "  # noqa: S608 - constants
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                team_id,
                org_id,
                name,
                models_column(allowed_models),
                rpm_limit,
                tpm_limit,
                max_budget,
                now(),
            ),
        )
    return get_team(conn, team_id)


def get_team(conn: apsw.Connection, team_id: str) -> Team:
    row = conn.execute(f"{_SELECT_TEAM} WHERE id = ?", (team_id,)).fetchone()
    if row is None:
        raise NotFound(team_id, "team")
    return _team(row)


def ensure_team(conn: apsw.Connection, team_id: str, org_id: str, name: str | None = None) -> bool:
    """Create the team (and its organization) unless it exists; True if the team was created."""
    ensure_org(conn, org_id)
    conn.execute(
        "INSERT INTO teams (id, org_id, name, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO NOTHING",
        (team_id, org_id, name or team_id, now()),
    )
    return conn.changes() > 0
