"""Start the real gateway (`gandalf serve`, Granian with N workers) on loopback for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
TEST_KEY = "gnd_test-key-0123456789abcdefghijklmnopqrstuvwxyz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    """A `gandalf serve` process and the config it runs with."""

    def __init__(self, config: dict[str, Any], workdir: Path, command: str = "serve") -> None:
        self.port = free_port()
        config.setdefault("server", {})
        config["server"].setdefault("addr", f"127.0.0.1:{self.port}")
        config["server"].setdefault("workers", 2)
        config["server"].setdefault("log_format", "json")
        self.config = config
        self.path = workdir / "gandalf.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "gateway.log"
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def start(self, timeout: float = 20.0) -> Gateway:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANDALF_")}
        self._log = self.log_path.open("ab")
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
                if httpx.get(f"{self.base}/readyz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.logs()}")

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
