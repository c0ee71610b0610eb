"""storage/db.py: pragmas, the transaction helper, and the async façade's threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import apsw
import pytest

from storage.db import Database, config_version, count, memory_dsn, open_connection, transaction
from storage.errors import StorageError
from storage.migrate import available


def _pragma(conn: apsw.Connection, name: str) -> object:
    return conn.execute(f"PRAGMA {name}").fetchall()[0][0]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = open_connection(str(tmp_path / "gandalf.db"))
    yield connection
    connection.close()


@pytest.fixture(params=["file", "memory"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    dsn = str(tmp_path / "gandalf.db") if request.param == "file" else ":memory:"
    database = await Database.open(dsn, readers=4)
    yield database
    await database.aclose()


def _create_t(conn: apsw.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER UNIQUE)")


def _insert(conn: apsw.Connection, value: int) -> int:
    conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
    return threading.get_ident()


def _values(conn: apsw.Connection) -> list[int]:
    return [int(row[0]) for row in conn.execute("SELECT v FROM t ORDER BY v")]


def test_file_connection_has_the_gateway_pragmas(conn: apsw.Connection) -> None:
    assert _pragma(conn, "journal_mode") == "wal"
    assert _pragma(conn, "busy_timeout") == 5000
    assert _pragma(conn, "synchronous") == 1  # NORMAL
    assert _pragma(conn, "foreign_keys") == 1


def test_memory_connection_has_foreign_keys_and_busy_timeout() -> None:
    conn = open_connection(":memory:")
    try:
        assert _pragma(conn, "foreign_keys") == 1
        assert _pragma(conn, "busy_timeout") == 5000
    finally:
        conn.close()


def test_memory_dsn_is_shared_between_connections_of_the_process() -> None:
    dsn = memory_dsn()
    first = open_connection(dsn)
    second = open_connection(dsn)
    try:
        _create_t(first)
        _insert(first, 7)
        assert _values(second) == [7]
        assert memory_dsn() != dsn
    finally:
        second.close()
        first.close()


def test_query_only_connection_refuses_writes(tmp_path: Path) -> None:
    dsn = str(tmp_path / "gandalf.db")
    writer = open_connection(dsn)
    reader = open_connection(dsn, query_only=True)
    try:
        _create_t(writer)
        with pytest.raises(apsw.ReadOnlyError):
            _insert(reader, 1)
    finally:
        reader.close()
        writer.close()


def test_unopenable_path_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open the database"):
        open_connection(str(tmp_path / "missing-dir" / "gandalf.db"))


def test_transaction_commits_on_success(conn: apsw.Connection) -> None:
    _create_t(conn)
    with transaction(conn):
        _insert(conn, 1)
        _insert(conn, 2)
    assert not conn.in_transaction
    assert _values(conn) == [1, 2]


def test_transaction_rolls_everything_back_when_the_block_raises(conn: apsw.Connection) -> None:
    _create_t(conn)
    with pytest.raises(apsw.ConstraintError), transaction(conn):
        _insert(conn, 1)
        _insert(conn, 1)
    assert not conn.in_transaction
    assert _values(conn) == []


def test_count_returns_the_integer(conn: apsw.Connection) -> None:
    _create_t(conn)
    _insert(conn, 1)
    _insert(conn, 2)
    assert count(conn, "SELECT COUNT(*) FROM t WHERE v >= ?", (2,)) == 1


async def test_open_migrates_and_starts_at_config_version_1(db: Database) -> None:
    assert db.applied == [m.version for m in available()]
    assert await db.read(config_version) == 1
    tables = await db.read(
        lambda c: {str(r[0]) for r in c.execute("SELECT name FROM sqlite_master")}
    )
    assert {"api_keys", "providers", "routes", "usage_records", "usage_rollups"} <= tables


async def test_reopening_a_file_applies_no_migration(tmp_path: Path) -> None:
    dsn = str(tmp_path / "gandalf.db")
    first = await Database.open(dsn)
    await first.aclose()
    second = await Database.open(dsn)
    try:
        assert second.applied == []
    finally:
        await second.aclose()


async def test_writes_run_on_one_thread_that_is_not_the_loop(db: Database) -> None:
    await db.write(_create_t)
    threads = await asyncio.gather(*(db.write(_insert, v) for v in range(20)))
    assert len(set(threads)) == 1
    assert threads[0] != threading.get_ident()
    assert await db.read(_values) == list(range(20))


async def test_reads_run_concurrently_off_the_loop(db: Database) -> None:
    loop_thread = threading.get_ident()
    barrier = threading.Barrier(4, timeout=5)

    def meet(conn: apsw.Connection) -> int:
        conn.execute("SELECT 1").fetchall()
        barrier.wait()  # passes only if four reads are in flight at once
        return threading.get_ident()

    threads = await asyncio.gather(*(db.read(meet) for _ in range(4)))
    assert len(set(threads)) == 4
    assert loop_thread not in threads


async def test_a_write_that_raises_leaves_no_partial_writes(db: Database) -> None:
    await db.write(_create_t)

    def half_then_fail(conn: apsw.Connection) -> None:
        _insert(conn, 1)
        _insert(conn, 2)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.write(half_then_fail)
    assert await db.read(_values) == []
    await db.write(_insert, 3)  # the writer is still usable
    assert await db.read(_values) == [3]


async def test_reads_see_committed_writes_while_a_write_is_open(db: Database) -> None:
    await db.write(_create_t)
    await db.write(_insert, 1)
    started = threading.Event()
    release = threading.Event()

    def slow_write(conn: apsw.Connection) -> None:
        _insert(conn, 2)
        started.set()
        release.wait(5)

    pending = asyncio.ensure_future(db.write(slow_write))
    await asyncio.to_thread(started.wait, 5)
    try:
        if "memdb" not in db.dsn:  # WAL: a reader is not blocked by the open write
            assert await db.read(_values) == [1]
    finally:
        release.set()
        await pending
    assert await db.read(_values) == [1, 2]


async def test_reader_connections_refuse_writes(db: Database) -> None:
    await db.write(_create_t)
    with pytest.raises(apsw.ReadOnlyError):
        await db.read(_insert, 1)


async def test_keyword_arguments_are_passed_through(db: Database) -> None:
    def add(conn: apsw.Connection, a: int, *, b: int) -> int:
        return a + b

    assert await db.write(add, 1, b=2) == 3
    assert await db.read(add, 3, b=4) == 7


def test_sync_helpers_and_close_is_idempotent(tmp_path: Path) -> None:
    database = Database.open_sync(str(tmp_path / "gandalf.db"), readers=2)
    database.write_sync(_create_t)
    database.write_sync(_insert, 5)
    assert database.read_sync(_values) == [5]
    database.close()
    database.close()
    with pytest.raises(StorageError, match="closed"):
        database.write_sync(_insert, 6)
    with pytest.raises(StorageError, match="closed"):
        database.read_sync(_values)


async def test_async_calls_after_close_raise(tmp_path: Path) -> None:
    database = await Database.open(str(tmp_path / "gandalf.db"))
    await database.aclose()
    with pytest.raises(StorageError, match="closed"):
        await database.write(_create_t)
    with pytest.raises(StorageError, match="closed"):
        await database.read(_values)


def test_readers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="readers"):
        Database(":memory:", readers=0)
