"""storage/errors.py: SQLite constraint failures become Conflict, InvalidReference, InvalidValue."""

from __future__ import annotations

from collections.abc import Iterator

import apsw
import pytest

from storage.db import open_connection
from storage.errors import (
    Conflict,
    InvalidReference,
    InvalidValue,
    NotFound,
    StorageError,
    constraint_errors,
)


@pytest.fixture
def conn() -> Iterator[apsw.Connection]:
    connection = open_connection(":memory:")
    connection.execute(
        "CREATE TABLE parent (id TEXT PRIMARY KEY);"
        "CREATE TABLE child (id TEXT PRIMARY KEY, alias TEXT UNIQUE,"
        " parent TEXT REFERENCES parent(id), n INTEGER NOT NULL DEFAULT 0 CHECK (n >= 0));"
        "INSERT INTO child (id, alias) VALUES ('c1', 'taken');"
    )
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        ("INSERT INTO child (id) VALUES ('c1')", Conflict, "thing with this id already exists"),
        (
            "INSERT INTO child (id, alias) VALUES ('c2', 'taken')",
            Conflict,
            "thing with this alias already exists",
        ),
        (
            "INSERT INTO child (id, parent) VALUES ('c2', 'nope')",
            InvalidReference,
            "organization or team that does not exist",
        ),
        ("INSERT INTO child (id, n) VALUES ('c2', -1)", InvalidValue, "CHECK"),
        ("INSERT INTO child (id, n) VALUES ('c2', NULL)", InvalidValue, "NOT NULL"),
    ],
)
def test_constraint_failures_are_mapped(
    conn: apsw.Connection, sql: str, error: type[StorageError], message: str
) -> None:
    with pytest.raises(error, match=message) as caught, constraint_errors("thing"):
        conn.execute(sql)
    assert isinstance(caught.value.__cause__, apsw.ConstraintError)


def test_invalid_reference_is_a_conflict() -> None:
    assert issubclass(InvalidReference, Conflict)


def test_other_errors_pass_through(conn: apsw.Connection) -> None:
    with pytest.raises(apsw.SQLError), constraint_errors("thing"):
        conn.execute("SELECT * FROM missing")


def test_not_found_names_the_entity() -> None:
    error = NotFound("k1", "key")
    assert str(error) == "key 'k1' not found"
    assert (error.item_id, error.entity) == ("k1", "key")
