"""The data plane as a child process of the supervisor: start, watch, restart, drain."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

log = structlog.get_logger("gandalf.supervisor")

MAX_RESTARTS = 3
"""Restarts of the data plane within `RESTART_WINDOW` seconds before the whole gateway stops."""
RESTART_WINDOW = 60.0


class ChildFailed(Exception):
    """A child process kept dying: the gateway stops rather than run half-alive."""


class DataPlaneProcess:
    """`gandalf serve` (Granian and its workers) started by the supervisor."""

    def __init__(self, config_path: Path | None, env: Mapping[str, str], drain: float) -> None:
        self._command = [sys.executable, "-m", "workers.cli", "serve"]
        if config_path is not None:
            self._command += ["--config", str(config_path)]
        self._env = dict(env)
        self._drain = drain
        self.process: subprocess.Popen[bytes] | None = None
        self._restarts: list[float] = []
        self._stopping = False

    def start(self) -> None:
        # Its own session: a Ctrl-C in the terminal reaches only the supervisor, which then
        # sends one SIGTERM. Granian's main process can deadlock on a second signal that
        # arrives while it handles the first, so it must never get two. For the same reason
        # there is no parent-death signal here: `gandalf serve` watches its parent itself
        # (workers/lifetime.py) and signals itself once.
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            self._command,
            env=self._env,
            start_new_session=True,
        )
        log.info("data plane started", pid=self.process.pid)

    async def watch(self, interval: float = 0.2) -> None:
        """Restart the data plane when it dies; raise `ChildFailed` when it keeps dying."""
        while True:
            await asyncio.sleep(interval)
            if self._stopping or self.process is None:
                return
            code = self.process.poll()
            if code is None:
                continue
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW]
            if len(self._restarts) >= MAX_RESTARTS:
                raise ChildFailed(
                    f"the data plane exited with {code} {MAX_RESTARTS + 1} times within "
                    f"{RESTART_WINDOW:.0f}s; stopping the gateway"
                )
            self._restarts.append(now)
            log.error("data plane exited; restarting it", code=code)
            self.start()

    async def stop(self) -> None:
        """SIGTERM, then wait for in-flight requests to drain (up to the shutdown timeout)."""
        self._stopping = True
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._drain + 5
        while process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a child
            await asyncio.sleep(0.05)
        if process.poll() is None:
            log.warning("data plane did not stop in time; killing it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.to_thread(process.wait)
        log.info("data plane stopped", code=process.returncode)
