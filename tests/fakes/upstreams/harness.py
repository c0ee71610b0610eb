"""Start a fake upstream server as a subprocess and script it (tests, benchmark)."""

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

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeUpstream:
    """A running `tests.fakes.upstreams.openai` server."""

    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.process = process
        self._control = httpx.Client(base_url=self.base, timeout=5)

    @classmethod
    def start(
        cls, port: int | None = None, api_key: str = "sk-fake", workers: int = 1
    ) -> FakeUpstream:
        port = port or _free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fakes.upstreams.openai",
                "--port",
                str(port),
                "--api-key",
                api_key,
                "--workers",
                str(workers),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        fake = cls(port, process)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"fake upstream exited with {process.returncode}")
            try:
                fake.stats()
                return fake
            except httpx.TransportError:
                time.sleep(0.05)
        fake.stop()
        raise RuntimeError("fake upstream did not start")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def set_behaviour(self, **fields: Any) -> None:
        fields.setdefault("model", "*")
        self._control.post("/_fake/behaviour", json=fields).raise_for_status()

    def reset(self) -> None:
        self._control.post("/_fake/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self._control.get("/_fake/stats")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self._control.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
