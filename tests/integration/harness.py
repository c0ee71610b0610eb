"""Start the real gateway (`gandalf serve`, Granian with N workers) on loopback for tests."""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import yaml

REPO = Path(__file__).resolve().parents[2]
TEST_KEY = "gnd_test-key-0123456789abcdefghijklmnopqrstuvwxyz"
ADMIN_KEY = "gnd_admin-bootstrap-key-000000000000000000000000"
"""Bootstrapped through GANDALF_ADMIN_KEY by the control-plane fixtures."""
MESSAGES = [{"role": "user", "content": "hello"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    """A `gandalf serve` process and the config it runs with."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        command: str = "serve",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        config = copy.deepcopy(config)
        config.setdefault("server", {})
        config["server"].setdefault("addr", f"127.0.0.1:{self.port}")
        config["server"].setdefault("admin_addr", f"127.0.0.1:{self.admin_port}")
        config["server"].setdefault("workers", 2)
        config["server"].setdefault("log_format", "json")
        self.config = config
        workdir.mkdir(parents=True, exist_ok=True)
        self.path = workdir / "gandalf.yaml"
        self.write_config()
        self.log_path = workdir / "gateway.log"
        self.command = command
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        """Write `self.config` to the file the gateway reads (again, after changing it)."""
        self.path.write_text(yaml.safe_dump(self.config))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        """The supervisor's own admin address (the data plane forwards to it too)."""
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def start(self, timeout: float = 20.0) -> Gateway:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANDALF_")}
        env.update(self.extra_env)
        self._log = self.log_path.open("ab")
        self._log_start = self._log.tell()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", self.command, "--config", str(self.path)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait_ready(timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited {self.process.returncode}:\n{self.logs()}")
            try:
                probe = self.admin if self.command == "supervisor" else self.base
                ready = httpx.get(f"{probe}/readyz", timeout=0.5).status_code == 200
            except httpx.TransportError:
                ready = False
            if ready and self._every_worker_started():
                return
            time.sleep(0.05)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.logs()}")

    def _every_worker_started(self) -> bool:
        """Every Granian worker (and the supervisor's admin server) finished starting.

        One ready worker answers /readyz while the others may still be starting; a test that
        signals the gateway then would hit Granian's lost-signal race (a worker that gets
        SIGTERM during its startup ignores it until the kill timeout).
        """
        workers = self.config["server"]["workers"]
        expected = {"serve": workers, "run": workers + 1, "supervisor": 1}[self.command]
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().count(b"] Started worker-") >= expected

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        code = self.process.returncode
        self.process = None
        return code

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def openai_provider(name: str, url: str, api_key: str = "sk-fake", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "openai", "base_url": url, "api_key": api_key, **extra}


def admin_call(
    gateway: Gateway, method: str, path: str, body: Any = None, key: str = ADMIN_KEY
) -> httpx.Response:
    """`/admin/v1{path}` through the data plane's port (forwarded to the supervisor)."""
    return httpx.request(
        method,
        f"{gateway.base}/admin/v1{path}",
        content=msgspec.json.encode(body) if body is not None else None,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def chat_status(gateway: Gateway, key: str, model: str = "chat") -> int:
    """The status of one chat completion on a new connection, so any worker may take it."""
    with httpx.Client() as fresh:
        response = fresh.post(
            f"{gateway.url}/chat/completions",
            json={"model": model, "messages": MESSAGES},
            headers={"authorization": f"Bearer {key}"},
            timeout=10,
        )
    return response.status_code
