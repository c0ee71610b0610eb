"""workers/embedded_redis.py: a real valkey-server child on a private unix socket."""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from workers.embedded_redis import EmbeddedRedis, find_server_binary

WAIT = 10.0


def _eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis(tmp_path / "redis")
    yield embedded
    embedded.stop()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def test_find_server_binary_is_an_executable() -> None:
    path = Path(find_server_binary())
    assert path.is_file()
    assert os.access(path, os.X_OK)


def test_start_answers_ping_on_the_unix_socket(server: EmbeddedRedis) -> None:
    url = server.start()

    assert url == f"unix://{server.socket}"
    assert server.alive()
    with _client(url) as client:
        assert client.ping() is True
        assert client.config_get("port") == {"port": "0"}  # no TCP listener at all
        assert client.config_get("save") == {"save": ""}


def test_the_socket_is_reachable_by_its_owner_only(server: EmbeddedRedis) -> None:
    server.start()

    mode = server.socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o700
    assert server.socket.stat().st_uid == os.getuid()


def test_stop_removes_the_socket_and_the_process(server: EmbeddedRedis) -> None:
    server.start()
    process = server.process
    assert process is not None

    server.stop()

    assert process.returncode is not None
    assert server.process is None
    assert not server.socket.exists()
    assert not server.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)
    server.stop()  # idempotent


def test_stop_before_start_does_nothing(server: EmbeddedRedis) -> None:
    server.stop()

    assert server.process is None
    assert not server.alive()
    assert not server.workdir.exists()


def test_alive_reflects_a_killed_server(server: EmbeddedRedis) -> None:
    server.start()
    assert server.process is not None

    os.kill(server.process.pid, signal.SIGKILL)

    _eventually(lambda: not server.alive())
    assert server.process.returncode == -signal.SIGKILL


def test_stop_after_a_kill_removes_the_stale_socket(server: EmbeddedRedis) -> None:
    server.start()
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGKILL)
    _eventually(lambda: not server.alive())
    assert server.socket.exists()  # a SIGKILL leaves the socket file behind

    server.stop()

    assert not server.socket.exists()
    assert server.process is None


def test_a_second_start_after_a_kill_serves_an_empty_server(server: EmbeddedRedis) -> None:
    url = server.start()
    with _client(url) as client:
        client.set("before", "1")
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGKILL)
    _eventually(lambda: not server.alive())
    assert server.socket.exists()  # a SIGKILL leaves the socket file behind

    assert server.start() == url

    assert server.alive()
    with _client(url) as client:
        assert client.ping() is True
        assert client.get("before") is None  # nothing is persisted


def test_start_reports_a_server_that_exits(tmp_path: Path) -> None:
    # Unix socket paths are limited to 107 bytes: the server refuses to start.
    embedded = EmbeddedRedis(tmp_path / ("x" * 120))

    with pytest.raises(RuntimeError, match="embedded redis exited with 1"):
        embedded.start()

    assert not embedded.alive()
    assert "unix socket path too long" in (embedded.workdir / "redis.log").read_text()
    embedded.stop()
