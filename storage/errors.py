"""Storage errors, mapped to HTTP statuses by the admin API; constraint failures mapped here.

StorageError                 base: anything else is a bug or a broken database (500)
├── NotFound                 no row with that id (404)
├── Conflict                 a unique value is taken (409; Gandalf answered 500)
│   └── InvalidReference     a referenced organization or team does not exist (409)
├── InvalidValue             a value a column refuses: unknown role, bad timestamp (400)
└── SchemaTooNew             the database was migrated by a newer gateway (refuse to start)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import apsw


class StorageError(Exception):
    """Base of the storage errors."""


class NotFound(StorageError):
    """No row with that id."""

    def __init__(self, item_id: str, entity: str = "row") -> None:
        super().__init__(f"{entity} {item_id!r} not found")
        self.item_id = item_id
        self.entity = entity


class Conflict(StorageError):
    """A unique value (id, key hash, model alias, request id) is already taken."""


class InvalidReference(Conflict):
    """The row names an organization or team that does not exist."""


class InvalidValue(StorageError):
    """A value the schema refuses (CHECK or NOT NULL), or a timestamp that is not RFC3339."""


class SchemaTooNew(StorageError):
    """The database has a schema version this code does not know."""


@contextlib.contextmanager
def constraint_errors(entity: str) -> Iterator[None]:
    """Turn SQLite constraint failures into `Conflict`, `InvalidReference` or `InvalidValue`.

    Mapped by SQLite's extended result code, which does not depend on message wording.
    """
    try:
        yield
    except apsw.ConstraintError as exc:
        raise _mapped(entity, exc) from exc


def _mapped(entity: str, exc: apsw.ConstraintError) -> StorageError:
    code = exc.extendedresult  # type: ignore[attr-defined]  # set by APSW, missing in its stub
    detail = str(exc)
    if code in (apsw.SQLITE_CONSTRAINT_UNIQUE, apsw.SQLITE_CONSTRAINT_PRIMARYKEY):
        column = detail.rpartition(": ")[2].partition(".")[2] or "id"
        return Conflict(f"{entity} with this {column} already exists")
    if code == apsw.SQLITE_CONSTRAINT_FOREIGNKEY:
        return InvalidReference(f"{entity} refers to an organization or team that does not exist")
    return InvalidValue(f"invalid {entity}: {detail}")
