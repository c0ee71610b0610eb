"""A Granian worker stops when the `gandalf serve` process it belongs to is gone.

Granian respawns a worker that dies, and a respawn can race the server's own shutdown: the
new worker then starts after its parent exited and would serve on, orphaned, for ever (seen
in the test suite: a worker killed just before SIGTERM). `gandalf serve` names itself in
`GANDALF_SERVER_PID`; each worker compares its parent with it, at start and every second.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import structlog

log = structlog.get_logger("gandalf.worker")


def exit_when_orphaned(server: int, interval: float = 1.0, grace: float = 10.0) -> threading.Thread:
    """SIGTERM this worker (a graceful stop) once `server` is not its parent; exit after `grace`."""

    def watch() -> None:
        while os.getppid() == server:
            time.sleep(interval)
        log.error("the server process is gone; this worker stops", server=server)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(1)  # the graceful stop did not end the process

    thread = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    thread.start()
    return thread
