"""Children of `gandalf run` die with the supervisor, so a `kill -9` never leaves them orphaned.

Two mechanisms: the kernel's parent-death signal (Linux) for the embedded Redis, and for the
data plane a watcher thread that notices the reparenting and signals its own process once.
The data plane gets no parent-death signal: with both, Granian's main process received two
SIGTERMs in a row, and its handler deadlocked on the second (a `threading.Event` set from a
signal handler that interrupted the same `set`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

import structlog

log = structlog.get_logger("gandalf.lifetime")

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for children: SIGTERM them when the process that started them dies.

    Linux only (prctl); elsewhere a no-op. Must be used from the main thread: the kernel ties
    the signal to the thread that forked.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_when_orphaned(parent: int, interval: float = 0.25) -> threading.Thread:
    """SIGTERM this process (a graceful drain) once `parent` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.error("the supervisor exited; draining and stopping the data plane", supervisor=parent)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    thread.start()
    return thread
