"""Fixtures: fake upstreams and real gateway processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.harness import ADMIN_KEY, TEST_KEY, Gateway, free_port, openai_provider

OTHER_ORG_ADMIN = "gnd_other-org-admin-0000000000000000000000000000"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start() as fake:
        yield fake


@pytest.fixture(scope="module")
def backup_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _clean_upstreams(request: pytest.FixtureRequest) -> None:
    for name in ("upstream", "backup_upstream"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def base_config(primary: FakeUpstream, backup: FakeUpstream | None = None) -> dict[str, Any]:
    """Two upstreams; `chat` fails over from `primary` to `backup`; `dead` points nowhere."""
    providers = [openai_provider("primary", primary.url, models=["direct-model"])]
    routes: list[dict[str, Any]] = [
        {
            "model_alias": "chat",
            "targets": [{"provider": "primary", "model": "up-chat", "priority": 1}],
        },
        {"model_alias": "embed", "targets": [{"provider": "primary", "model": "up-embed"}]},
        {
            "model_alias": "dead",
            "targets": [{"provider": "nowhere", "model": "gone"}],
        },
    ]
    providers.append(
        openai_provider("nowhere", f"http://127.0.0.1:{free_port()}/v1", connect_timeout="1s")
    )
    if backup is not None:
        providers.append(openai_provider("backup", backup.url))
        routes[0]["targets"].append(
            {"provider": "backup", "model": "up-chat-backup", "priority": 2}
        )
        routes[2]["targets"].append({"provider": "nowhere", "model": "gone-again", "priority": 2})
    return {
        "server": {"workers": 2, "keepalive_interval": "300ms"},
        "providers": providers,
        "routes": routes,
        "keys": [
            {"name": "test", "key": TEST_KEY, "role": "member"},
            {
                "name": "limited",
                "key": TEST_KEY + "-limited",
                "role": "member",
                "allowed_models": ["embed"],
            },
            {"name": "viewer", "key": TEST_KEY + "-viewer", "role": "viewer"},
        ],
    }


@pytest.fixture(scope="module")
def gateway(
    upstream: FakeUpstream, backup_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("gateway")
    with Gateway(base_config(upstream, backup_upstream), workdir) as gw:
        yield gw


def control_plane_config(upstream: FakeUpstream, db: Path) -> dict[str, Any]:
    """`gandalf run` on the SQLite file `db`: one provider, route `chat`, three seeded keys."""
    return {
        "server": {"workers": 2},
        "database": {"dsn": str(db)},
        "providers": [openai_provider("fake", upstream.url, models=["m1"])],
        "routes": [{"model_alias": "chat", "targets": [{"provider": "fake", "model": "up-chat"}]}],
        "keys": [
            {"name": "member", "key": TEST_KEY, "role": "member"},
            {"name": "viewer", "key": TEST_KEY + "-viewer", "role": "viewer"},
            {"name": "other", "key": OTHER_ORG_ADMIN, "role": "admin", "org_id": "other"},
        ],
    }


@pytest.fixture(scope="module")
def stack(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The whole gateway (`gandalf run`) with the bootstrap admin key `ADMIN_KEY`."""
    workdir = tmp_path_factory.mktemp("run")
    gateway = Gateway(
        control_plane_config(upstream, workdir / "gandalf.db"),
        workdir,
        command="run",
        env={"GANDALF_ADMIN_KEY": ADMIN_KEY, "GANDALF_TEST_SECOND_KEY": "sk-fake"},
    )
    with gateway:
        yield gateway
