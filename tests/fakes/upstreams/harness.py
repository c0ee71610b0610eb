"""Start the fake OpenAI upstream as a subprocess and script it (test fixtures, benchmark)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    """Granian binds with SO_REUSEPORT, so a second server on a busy port would start fine."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class FakeUpstream:
    """A running `python -m tests.fakes.upstreams.openai` and a client for its control API.

    Behaviours and stats live in the server's worker process: script them with `workers=1`.
    """

    def __init__(self, port: int, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        self.port = port
        self.process = process
        self._log = log
        self._control = httpx.Client(base_url=self.base, timeout=5)

    @classmethod
    def start(
        cls,
        port: int | None = None,
        api_key: str = "sk-fake",
        workers: int = 1,
        *,
        module: str = "tests.fakes.upstreams.openai",
        args: tuple[str, ...] = (),
    ) -> FakeUpstream:
        """Start a server (on a free port when `port` is None) and wait until it answers.

        `module` is the fake to run (each vendor's fake takes `--host --port --api-key
        --workers` and serves `/_fake/stats`, `/_fake/reset`); `args` are its own options.
        """
        if port is None:
            port = free_port()
        elif not _port_is_free(port):
            raise RuntimeError(f"fake upstream: port {port} is already in use")
        log = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the instance, closed in stop()
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--api-key",
                api_key,
                "--workers",
                str(workers),
                *args,
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": pythonpath},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        fake = cls(port, process, log)
        try:
            fake._wait_ready()
        except BaseException:
            fake.stop()
            raise
        return fake

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"fake upstream exited with {code}:\n{self._output()}")
            try:
                httpx.get(f"{self.base}/_fake/stats", timeout=0.5).raise_for_status()
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            return
        raise RuntimeError(f"fake upstream silent for {START_TIMEOUT} s:\n{self._output()}")

    @property
    def base(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL: `http://127.0.0.1:PORT/v1`."""
        return f"{self.base}/v1"

    def set_behaviour(self, **fields: Any) -> None:
        """Script one model (`model="*"`, the default, matches any); see the server docstring."""
        fields.setdefault("model", "*")
        self._check(self._control.post("/_fake/behaviour", json=fields))

    def clear_behaviours(self) -> None:
        self._check(self._control.delete("/_fake/behaviour"))

    def reset(self) -> None:
        """Clear the behaviours and the stats."""
        self._check(self._control.post("/_fake/reset"))

    def stats(self) -> dict[str, Any]:
        response = self._check(self._control.get("/_fake/stats"))
        stats: dict[str, Any] = response.json()
        return stats

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Poll the stats until `predicate(stats)` holds; the last stats either way."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while not predicate(stats) and time.monotonic() < deadline:
            time.sleep(0.02)
            stats = self.stats()
        return stats

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s (the workers too)."""
        self._control.close()
        process = self.process
        if process.poll() is None:
            workers = _children(process.pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                for pid in [process.pid, *workers]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait()
        self._log.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code != 200:
            raise RuntimeError(f"fake upstream control: {response.status_code} {response.text}")
        return response

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    """The direct children of `pid` (Granian's workers), from /proc on Linux."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]
