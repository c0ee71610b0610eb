"""SQLite through APSW: one writer thread, a pool of reader threads, never the event loop.

`Database.write(fn, *args)` runs `fn(conn, *args)` on the one writer connection inside one
transaction (all of it commits or none of it does); `Database.read` runs on a read-only
connection of the reader pool, inside one read transaction (one consistent snapshot). WAL lets
readers work while the writer writes. Store functions are plain sync functions taking a
connection, so startup code and tests can call them directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import apsw

from storage.errors import NotFound, StorageError, constraint_errors
from storage.migrate import migrate

P = ParamSpec("P")
T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000


def memory_dsn() -> str:
    """A fresh named in-memory database that every connection of this process can open.

    SQLite's `memdb` VFS rather than `mode=memory&cache=shared`: shared cache locks whole
    tables and answers SQLITE_LOCKED at once, which the busy timeout does not retry, so a read
    during a write fails; `memdb` takes ordinary file locks that the busy timeout waits out.
    The database lives until its last connection closes (the writer keeps it).
    """
    return f"file:/gandalf-{uuid.uuid4().hex}?vfs=memdb"


def open_connection(dsn: str, *, query_only: bool = False) -> apsw.Connection:
    """A connection with the gateway's pragmas: WAL, busy timeout 5 s, NORMAL sync, foreign keys.

    Args:
        dsn: a file path, a `file:` URI, or `:memory:` (a new private in-memory database;
            `Database` shares one between its connections instead).
        query_only: refuse writes on this connection (the readers).
    """
    if dsn == ":memory:":
        dsn = memory_dsn()
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
    try:
        conn = apsw.Connection(dsn, flags=flags)
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        # in-memory databases answer "memory" and keep their journal: nothing to do there
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
    except apsw.Error as exc:
        raise StorageError(f"cannot open the database {dsn!r}: {exc}") from exc
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    if query_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


@contextlib.contextmanager
def transaction(
    conn: apsw.Connection, mode: Literal["DEFERRED", "IMMEDIATE"] = "IMMEDIATE"
) -> Iterator[apsw.Connection]:
    """Commit what the block did, or roll all of it back if it raises.

    The writer uses IMMEDIATE: it takes the write lock up front, so a transaction that reads
    and then writes never fails on the lock upgrade (SQLITE_BUSY_SNAPSHOT under WAL) when
    another process wrote in between.
    """
    conn.execute(f"BEGIN {mode}")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def count(conn: apsw.Connection, sql: str, params: apsw.Bindings = ()) -> int:
    """The single integer a `SELECT COUNT(*) …` returns."""
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row is not None else 0


def page(
    conn: apsw.Connection, query: str, table: str, offset: int, limit: int | None
) -> tuple[list[tuple[apsw.SQLiteValue, ...]], int]:
    """A page of `query`'s rows (`limit` None: all of them) and how many rows `table` has."""
    bounds = (-1 if limit is None else max(0, limit), max(0, offset))
    rows = conn.execute(f"{query} LIMIT ? OFFSET ?", bounds).fetchall()
    return rows, count(conn, f"SELECT COUNT(*) FROM {table}")  # noqa: S608


def replace_row(conn: apsw.Connection, table: str, values: dict[str, Any], entity: str) -> None:
    """Set every column of the row `values["id"]` but its `created_at`.

    Raises:
        NotFound: no such row.
        Conflict: a unique value belongs to another row.
    """
    values = {column: value for column, value in values.items() if column != "created_at"}
    sets = ", ".join(f"{column} = :{column}" for column in values if column != "id")
    with constraint_errors(entity):
        conn.execute(f"UPDATE {table} SET {sets} WHERE id = :id", values)  # noqa: S608
    if conn.changes() == 0:
        raise NotFound(str(values["id"]), entity)


def config_version(conn: apsw.Connection) -> int:
    """The configuration version; triggers bump it with every change to providers, routes, keys."""
    row = conn.execute("SELECT version FROM config_version WHERE id = 1").fetchone()
    return int(row[0]) if row is not None else 0


class Database:
    """The control plane's database: an async façade over APSW connections in threads."""

    def __init__(self, dsn: str, readers: int = 4) -> None:
        """Set up the threads; no I/O. Use `open` (or `open_sync`), which also migrates."""
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.dsn = memory_dsn() if dsn == ":memory:" else dsn
        self.applied: list[int] = []
        """Migrations applied when this process opened the database."""
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader_pool = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._writer: apsw.Connection | None = None
        self._readers: list[apsw.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    async def open(cls, dsn: str, readers: int = 4) -> Database:
        """Open the writer on its thread and bring the schema up to date.

        Raises:
            StorageError: the database cannot be opened, or `SchemaTooNew`.
        """
        db = cls(dsn, readers)
        try:
            await asyncio.get_running_loop().run_in_executor(db._writer_pool, db._start)
        except BaseException:
            await asyncio.to_thread(db.close)
            raise
        return db

    @classmethod
    def open_sync(cls, dsn: str, readers: int = 4) -> Database:
        """`open` for code without an event loop (CLI commands, tests)."""
        db = cls(dsn, readers)
        try:
            db._writer_pool.submit(db._start).result()
        except BaseException:
            db.close()
            raise
        return db

    def _start(self) -> None:
        self._writer = open_connection(self.dsn)
        self.applied = migrate(self._writer)

    async def write(
        self,
        fn: Callable[Concatenate[apsw.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `fn(writer, *args, **kwargs)` in one transaction on the writer thread."""
        self._check_open()
        call = functools.partial(self._write, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, call)

    async def read(
        self,
        fn: Callable[Concatenate[apsw.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `fn(reader, *args, **kwargs)` on a reader thread, on one snapshot."""
        self._check_open()
        call = functools.partial(self._read, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, call)

    def write_sync(
        self,
        fn: Callable[Concatenate[apsw.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`write`, blocking the caller: never call it on the event loop."""
        self._check_open()
        call = functools.partial(self._write, fn, *args, **kwargs)
        return self._writer_pool.submit(call).result()

    def read_sync(
        self,
        fn: Callable[Concatenate[apsw.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`read`, blocking the caller: never call it on the event loop."""
        self._check_open()
        call = functools.partial(self._read, fn, *args, **kwargs)
        return self._reader_pool.submit(call).result()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the database is closed")

    def _write(
        self,
        fn: Callable[Concatenate[apsw.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        if self._writer is None:
            raise StorageError("the database is closed")
        with transaction(self._writer, "IMMEDIATE") as conn:
            return fn(conn, *args, **kwargs)

    def _read(
        self,
        fn: Callable[Concatenate[apsw.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        with transaction(self._reader(), "DEFERRED") as conn:
            return fn(conn, *args, **kwargs)

    def _reader(self) -> apsw.Connection:
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                if self._closed:
                    raise StorageError("the database is closed")
                conn = open_connection(self.dsn, query_only=True)
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Wait for queued work, then close every connection (the writer last). Idempotent."""
        with self._lock:
            self._closed = True
        self._reader_pool.shutdown(wait=True)
        self._writer_pool.shutdown(wait=True)
        for conn in self._readers:
            conn.close()
        self._readers.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def aclose(self) -> None:
        """`close` off the event loop (it waits for the threads)."""
        await asyncio.to_thread(self.close)
