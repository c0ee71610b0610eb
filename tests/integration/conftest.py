"""Fixtures: fake upstreams and real gateway processes on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.harness import ADMIN_KEY, TEST_KEY, Gateway, free_port, openai_provider
from workers.embedded_redis import EmbeddedRedis

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
        # Gandalf's defaults (60 RPM, 100k TPM) would throttle tests that send many requests
        # with one key; the limits have tests of their own.
        "rate_limits": {"default_rpm": 0, "default_tpm": 0},
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


@contextlib.contextmanager
def separate_planes(
    upstream: FakeUpstream,
    tmp_path: Path,
    *,
    data_planes: int = 1,
    change: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[tuple[EmbeddedRedis, Gateway, tuple[Gateway, ...]]]:
    """The Kubernetes shape: `gandalf supervisor` and `data_planes` separate `gandalf serve`
    processes (standing for pods) sharing one Redis that the test can stop and start."""
    shared = EmbeddedRedis(tmp_path / "redis")
    config = control_plane_config(upstream, tmp_path / "gandalf.db")
    config["redis"] = {"url": shared.start()}
    if change is not None:
        change(config)
    try:
        env = {"GANDALF_ADMIN_KEY": ADMIN_KEY}
        control = Gateway(config, tmp_path / "control", command="supervisor", env=env)
        planes = tuple(
            Gateway(config, tmp_path / f"data-{n}", command="serve") for n in range(data_planes)
        )
        for plane in planes:
            plane.admin_port = control.admin_port
            plane.config["server"]["admin_addr"] = control.config["server"]["admin_addr"]
            plane.write_config()
        with contextlib.ExitStack() as running:
            running.enter_context(control)
            for plane in planes:
                running.enter_context(plane)
            yield shared, control, planes
    finally:
        shared.stop()
