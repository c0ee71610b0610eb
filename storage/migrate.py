"""Versioned migrations: `migrations/NNNN_name.sql`, applied in order, each in one transaction.

`schema_migrations` records what was applied. Re-running applies nothing; a database that has a
version this code does not know is refused rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources

import apsw
import msgspec

from storage.errors import SchemaTooNew, StorageError
from storage.records import now

_NAME = re.compile(r"(\d{4})_(\w+)\.sql")


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The migrations shipped with this code, in version order."""
    found: dict[int, Migration] = {}
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise StorageError(f"two migrations with version {version}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def schema_version(conn: apsw.Connection) -> int:
    """The newest applied migration; 0 on a fresh database."""
    if not _has_table(conn):
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def migrate(conn: apsw.Connection, migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply what is missing; returns the versions applied (empty on an up-to-date database).

    Args:
        conn: a connection outside any transaction.
        migrations: what to apply instead of the shipped files (tests).

    Raises:
        SchemaTooNew: the database was migrated by a newer version of the gateway.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    known = sorted(available() if migrations is None else migrations, key=lambda m: m.version)
    newest = known[-1].version if known else 0
    current = schema_version(conn)
    if current > newest:
        raise SchemaTooNew(
            f"the database has schema version {current} but this gateway knows only up to "
            f"{newest}: run a newer gateway, or restore a backup taken before the upgrade"
        )
    done: list[int] = []
    for migration in known:
        # IMMEDIATE takes the write lock first, so two processes starting together cannot
        # both decide a migration is missing.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _applied(conn, migration.version):
                # fetchall: APSW runs a script's later statements as the cursor is consumed
                conn.execute(migration.sql).fetchall()
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now()),
                )
                done.append(migration.version)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return done


def _has_table(conn: apsw.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    return row is not None


def _applied(conn: apsw.Connection, version: int) -> bool:
    row = conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone()
    return row is not None
