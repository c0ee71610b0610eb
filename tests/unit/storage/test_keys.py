"""storage/keys.py: key generation, CRUD, partial updates, and the configuration version."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import msgspec
import pytest

from storage import keys, orgs
from storage.db import config_version, open_connection
from storage.errors import Conflict, InvalidReference, InvalidValue, NotFound
from storage.keys import KeyChanges
from storage.migrate import migrate
from storage.records import KeyRecord


@pytest.fixture(params=["file", "memory"])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[apsw.Connection]:
    dsn = str(tmp_path / "gandalf.db") if request.param == "file" else ":memory:"
    connection = open_connection(dsn)
    migrate(connection)
    yield connection
    connection.close()


def _new(conn: apsw.Connection, **fields: Any) -> tuple[str, KeyRecord]:
    _, key_hash, prefix = keys.generate_key()
    return key_hash, keys.create_key(conn, key_hash=key_hash, key_prefix=prefix, **fields)


def test_generate_key_format() -> None:
    plaintext, key_hash, prefix = keys.generate_key()
    assert re.fullmatch(r"gnd_[A-Za-z0-9_-]{43}", plaintext)
    assert key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", key_hash)
    assert prefix == plaintext[:12]
    assert keys.generate_key()[0] != plaintext


def test_create_then_get(conn: apsw.Connection) -> None:
    key_hash, record = _new(
        conn,
        name="ci",
        role="viewer",
        user_id="u1",
        allowed_models=["chat", "embed"],
        rpm_limit=10,
        tpm_limit=1000,
        max_budget=2.5,
        budget_period="daily",
        expires_at="2030-01-01T02:00:00+02:00",
    )
    assert record == keys.get_key(conn, record.id)
    assert record.org_id == "default"
    assert record.role == "viewer"
    assert record.allowed_models == ["chat", "embed"]
    assert (record.rpm_limit, record.tpm_limit, record.max_budget) == (10, 1000, 2.5)
    assert record.budget_period == "daily"
    assert record.expires_at == "2030-01-01T00:00:00.000Z"
    assert record.blocked is False
    assert record.last_used_at is None
    assert record.created_at == record.updated_at
    assert keys.get_key_by_hash(conn, key_hash) == record
    assert keys.key_hash_of(conn, record.id) == key_hash


def test_defaults(conn: apsw.Connection) -> None:
    _, record = _new(conn)
    assert (record.org_id, record.role, record.budget_period) == ("default", "member", "monthly")
    assert record.allowed_models is None
    assert record.name == ""
    assert record.user_id is None
    assert record.team_id is None


def test_empty_allowed_models_means_all_and_is_stored_as_null(conn: apsw.Connection) -> None:
    _, record = _new(conn, allowed_models=[])
    assert record.allowed_models is None
    stored = conn.execute("SELECT allowed_models FROM api_keys WHERE id = ?", (record.id,))
    assert stored.fetchall() == [(None,)]


def test_the_hash_is_never_in_the_record_json(conn: apsw.Connection) -> None:
    key_hash, record = _new(conn)
    assert key_hash not in msgspec.json.encode(record).decode()


def test_same_hash_twice_is_a_conflict(conn: apsw.Connection) -> None:
    key_hash, _ = _new(conn)
    with pytest.raises(Conflict, match="key_hash"):
        keys.create_key(conn, key_hash=key_hash, key_prefix="gnd_x")


def test_unknown_org_or_team_is_an_invalid_reference(conn: apsw.Connection) -> None:
    with pytest.raises(InvalidReference):
        _new(conn, org_id="nope")
    with pytest.raises(InvalidReference):
        _new(conn, team_id="nope")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"role": "root"}, "invalid role"),
        ({"expires_at": "soon"}, "RFC3339"),
    ],
)
def test_invalid_values_are_refused(
    conn: apsw.Connection, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidValue, match=message):
        _new(conn, **fields)


def test_malformed_hash_is_refused(conn: apsw.Connection) -> None:
    with pytest.raises(InvalidValue, match="SHA-256"):
        keys.create_key(conn, key_hash="not-a-hash", key_prefix="gnd_")


def test_get_unknown_key(conn: apsw.Connection) -> None:
    with pytest.raises(NotFound, match="key 'nope' not found"):
        keys.get_key(conn, "nope")
    with pytest.raises(NotFound):
        keys.key_hash_of(conn, "nope")
    assert keys.get_key_by_hash(conn, "0" * 64) is None


def test_list_is_per_org_newest_first_and_paginated(conn: apsw.Connection) -> None:
    orgs.ensure_org(conn, "other")
    created = [_new(conn, name=f"k{i}")[1] for i in range(5)]
    _new(conn, org_id="other")
    rows, total = keys.list_keys(conn, "default", offset=0, limit=2)
    assert total == 5
    assert [r.id for r in rows] == [created[4].id, created[3].id]
    rows, total = keys.list_keys(conn, "default", offset=4, limit=2)
    assert [r.id for r in rows] == [created[0].id]
    assert keys.list_keys(conn, None, 0, 50)[1] == 6
    assert keys.list_keys(conn, "nobody", 0, 50) == ([], 0)


def test_partial_update_changes_only_what_is_set(conn: apsw.Connection) -> None:
    _, record = _new(conn, name="ci", rpm_limit=10, allowed_models=["a"])
    updated = keys.update_key(conn, record.id, KeyChanges(role="admin", blocked=True))
    assert updated.role == "admin"
    assert updated.blocked is True
    assert updated.rpm_limit == 10
    assert updated.allowed_models == ["a"]
    assert updated.name == "ci"
    assert updated.created_at == record.created_at
    assert updated.updated_at >= record.updated_at


def test_update_can_clear_nullable_fields_to_null(conn: apsw.Connection) -> None:
    _, record = _new(
        conn,
        allowed_models=["a"],
        rpm_limit=1,
        tpm_limit=2,
        max_budget=3.0,
        expires_at="2030-01-01T00:00:00Z",
    )
    changes = msgspec.json.decode(
        b'{"allowed_models": null, "rpm_limit": null, "tpm_limit": null,'
        b' "max_budget": null, "expires_at": null}',
        type=KeyChanges,
    )
    updated = keys.update_key(conn, record.id, changes)
    assert updated.allowed_models is None
    assert updated.rpm_limit is None
    assert updated.tpm_limit is None
    assert updated.max_budget is None
    assert updated.expires_at is None


def test_update_body_decoding() -> None:
    absent = msgspec.json.decode(b'{"id": "ignored", "blocked": true}', type=KeyChanges)
    assert absent.blocked is True
    assert absent.rpm_limit is msgspec.UNSET
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"rpm_limit": -1}', type=KeyChanges)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"blocked": null}', type=KeyChanges)


def test_update_with_nothing_set_changes_nothing(conn: apsw.Connection) -> None:
    _, record = _new(conn)
    version = config_version(conn)
    assert keys.update_key(conn, record.id, KeyChanges()) == record
    assert config_version(conn) == version


def test_update_validates(conn: apsw.Connection) -> None:
    _, record = _new(conn)
    with pytest.raises(InvalidValue, match="invalid role"):
        keys.update_key(conn, record.id, KeyChanges(role="root"))
    with pytest.raises(InvalidValue):
        keys.update_key(conn, record.id, KeyChanges(expires_at="later"))
    with pytest.raises(NotFound):
        keys.update_key(conn, "nope", KeyChanges(blocked=True))


def test_delete_returns_the_hash(conn: apsw.Connection) -> None:
    key_hash, record = _new(conn)
    assert keys.delete_key(conn, record.id) == key_hash
    with pytest.raises(NotFound):
        keys.get_key(conn, record.id)
    with pytest.raises(NotFound):
        keys.delete_key(conn, record.id)


def test_all_keys_pairs_hashes_with_records(conn: apsw.Connection) -> None:
    first = _new(conn)
    second = _new(conn)
    assert sorted(keys.all_keys(conn), key=lambda pair: pair[0]) == sorted(
        [first, second], key=lambda pair: pair[0]
    )


def test_touch_last_used_does_not_bump_the_config_version(conn: apsw.Connection) -> None:
    _, record = _new(conn)
    version = config_version(conn)
    assert keys.touch_last_used(conn, record.id, "2026-01-01T00:00:00Z") is True
    assert keys.get_key(conn, record.id).last_used_at == "2026-01-01T00:00:00.000Z"
    assert keys.touch_last_used(conn, record.id) is True
    assert keys.touch_last_used(conn, "nope") is False
    assert config_version(conn) == version


def test_every_key_write_bumps_the_config_version_and_reads_do_not(
    conn: apsw.Connection,
) -> None:
    start = config_version(conn)
    key_hash, record = _new(conn)
    assert config_version(conn) == start + 1
    keys.get_key(conn, record.id)
    keys.list_keys(conn, "default")
    keys.all_keys(conn)
    keys.get_key_by_hash(conn, key_hash)
    assert config_version(conn) == start + 1
    keys.update_key(conn, record.id, KeyChanges(blocked=True))
    assert config_version(conn) == start + 2
    keys.delete_key(conn, record.id)
    assert config_version(conn) == start + 3


def test_deleting_a_team_clears_it_from_keys(conn: apsw.Connection) -> None:
    orgs.create_team(conn, "t1", "default", "Team one")
    _, record = _new(conn, team_id="t1")
    version = config_version(conn)
    conn.execute("DELETE FROM teams WHERE id = 't1'")
    assert keys.get_key(conn, record.id).team_id is None
    assert config_version(conn) > version  # the key changed: the data plane must hear of it


def test_deleting_an_org_deletes_its_keys(conn: apsw.Connection) -> None:
    orgs.ensure_org(conn, "gone")
    _, record = _new(conn, org_id="gone")
    conn.execute("DELETE FROM organizations WHERE id = 'gone'")
    with pytest.raises(NotFound):
        keys.get_key(conn, record.id)
