"""storage/seed.py: insert-if-absent from the configuration, idempotent, keys only hashed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import apsw
import msgspec
import pytest

from storage import keys, orgs, providers, routes
from storage.db import config_version, open_connection
from storage.migrate import migrate
from storage.records import RouteTarget
from storage.seed import SeedReport, seed_admin_key, seed_from_config

MEMBER_KEY = "gnd_member-key-000000000000000000000000000000000"
OTHER_KEY = "gnd_other-org-key-00000000000000000000000000000"


@dataclass(frozen=True)
class Provider:
    name: str
    type: str = ""
    base_url: str = ""
    models: tuple[str, ...] = ()
    priority: int = 0
    weight: int = 1
    enabled: bool = True
    max_rps: int = 0
    timeout_ms: int = 120_000
    hosting: str = ""
    region: str = ""
    project: str = ""
    api_version: str = ""
    api_key: str = "sk-secret-never-stored"

    @property
    def resolved_type(self) -> str:
        return self.type or self.name

    @property
    def resolved_base_url(self) -> str:
        return self.base_url or f"https://{self.name}.example"


@dataclass(frozen=True)
class Target:
    provider: str
    model: str
    priority: int = 0
    weight: int = 1


@dataclass(frozen=True)
class Route:
    model_alias: str
    targets: tuple[Target, ...]
    strategy: str = "priority"
    cache_ttl_s: int = 0


@dataclass(frozen=True)
class Key:
    key: str
    name: str = ""
    org_id: str = "default"
    team_id: str = ""
    user_id: str = ""
    role: str = "member"
    allowed_models: tuple[str, ...] = field(default=())
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget: float | None = None
    expires_at: str | None = None


PROVIDERS = (
    Provider("openai", models=("gpt-4o",), priority=1),
    Provider("vertex", type="gemini", hosting="vertex", region="europe-west4", project="p1"),
)
ROUTES = (
    Route(
        "chat",
        (Target("openai", "gpt-4o", weight=2), Target("vertex", "gemini-2", 1)),
        "priority",
        30,
    ),
)
KEYS = (
    Key(MEMBER_KEY, name="member", allowed_models=("chat",), rpm_limit=60, max_budget=5.0),
    Key(OTHER_KEY, name="other", org_id="acme", team_id="ml", user_id="u1", role="admin"),
    Key("", name="unset variable"),
)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = open_connection(str(tmp_path / "gandalf.db"))
    migrate(connection)
    yield connection
    connection.close()


def _snapshot(conn: apsw.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1")]  # noqa: S608
        for table in ("providers", "routes", "api_keys", "organizations", "teams")
    }


def test_seed_inserts_everything_once(conn: apsw.Connection) -> None:
    report = seed_from_config(conn, PROVIDERS, ROUTES, KEYS)
    assert report == SeedReport(providers=2, routes=1, keys=2, existing=0, skipped_keys=1)
    vertex = providers.get_provider(conn, "vertex")
    assert (vertex.type, vertex.hosting, vertex.region, vertex.project) == (
        "gemini", "vertex", "europe-west4", "p1",
    )  # fmt: skip
    assert vertex.base_url == "https://vertex.example"
    route = routes.get_route_by_alias(conn, "chat")
    assert route is not None
    assert route.cache_ttl_s == 30
    assert route.targets == [
        RouteTarget(provider_id="openai", model="gpt-4o", priority=0, weight=2),
        RouteTarget(provider_id="vertex", model="gemini-2", priority=1, weight=1),
    ]


def test_seed_twice_gives_the_same_rows(conn: apsw.Connection) -> None:
    seed_from_config(conn, PROVIDERS, ROUTES, KEYS)
    before = _snapshot(conn)
    version = config_version(conn)
    report = seed_from_config(conn, PROVIDERS, ROUTES, KEYS)
    assert report == SeedReport(existing=5, skipped_keys=1)
    assert _snapshot(conn) == before
    assert config_version(conn) == version


def test_seeded_keys_honour_allowed_models_role_and_limits(conn: apsw.Connection) -> None:
    seed_from_config(conn, PROVIDERS, ROUTES, KEYS)
    member = keys.get_key_by_hash(conn, keys.hash_key(MEMBER_KEY))
    assert member is not None
    assert member.allowed_models == ["chat"]
    assert (member.role, member.rpm_limit, member.max_budget) == ("member", 60, 5.0)
    assert member.key_prefix == MEMBER_KEY[:12]
    assert member.name == "member"
    assert member.team_id is None
    assert member.user_id is None


def test_a_key_in_an_unknown_org_and_team_creates_them(conn: apsw.Connection) -> None:
    seed_from_config(conn, (), (), KEYS)
    other = keys.get_key_by_hash(conn, keys.hash_key(OTHER_KEY))
    assert other is not None
    assert (other.org_id, other.team_id, other.user_id, other.role) == ("acme", "ml", "u1", "admin")
    assert orgs.get_org(conn, "acme").id == "acme"
    assert orgs.get_team(conn, "ml").org_id == "acme"


def test_no_plaintext_or_provider_secret_is_stored(conn: apsw.Connection) -> None:
    seed_from_config(conn, PROVIDERS, ROUTES, KEYS)
    dump = repr(_snapshot(conn))
    assert MEMBER_KEY not in dump
    assert OTHER_KEY not in dump
    assert "sk-secret-never-stored" not in dump


def test_seed_never_overwrites_admin_changes(conn: apsw.Connection) -> None:
    seed_from_config(conn, PROVIDERS, ROUTES, KEYS)
    stored = providers.get_provider(conn, "openai")
    providers.update_provider(conn, msgspec.structs.replace(stored, priority=99))
    seed_from_config(conn, PROVIDERS, ROUTES, KEYS)
    assert providers.get_provider(conn, "openai").priority == 99


def test_admin_key_bootstrap_only_once(conn: apsw.Connection) -> None:
    plaintext = "gnd_bootstrap-admin-000000000000000000000000000"
    assert seed_admin_key(conn, plaintext) is True
    assert seed_admin_key(conn, plaintext) is False
    record = keys.get_key_by_hash(conn, keys.hash_key(plaintext))
    assert record is not None
    assert (record.role, record.org_id) == ("admin", "default")
    assert keys.list_keys(conn, "default")[1] == 1
