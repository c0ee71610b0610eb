"""workers/processes.py: the restart policy and the drain, on tiny real Python children."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.processes import MAX_RESTARTS, RESTART_WINDOW, ChildFailed, DataPlaneProcess

WAIT = 30.0
"""Upper bound for anything awaited here; reaching it means the behaviour is missing."""

EXIT_AT_ONCE = "import sys; open(sys.argv[1], 'a').write('run\\n'); sys.exit(3)"
SLEEP = "import sys, time; open(sys.argv[1], 'w').write('ready'); time.sleep(60)"
IGNORE_SIGTERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(sys.argv[1], 'w').write('ready'); time.sleep(60)"
)


@pytest.fixture
def data_plane() -> Iterator[DataPlaneProcess]:
    process = DataPlaneProcess(None, {}, drain=0.0)
    yield process
    child = process.process
    if child is not None and child.poll() is None:
        child.kill()
        child.wait()


def _run(process: DataPlaneProcess, code: str, marker: Path) -> None:
    process._command = [sys.executable, "-c", code, str(marker)]
    process.start()


async def _wait_for(marker: Path) -> None:
    async with asyncio.timeout(WAIT):
        while not marker.exists() or not marker.read_text():
            await asyncio.sleep(0.01)


def test_the_command_is_the_serve_cli_with_the_config(tmp_path: Path) -> None:
    config = tmp_path / "gandalf.yaml"
    assert DataPlaneProcess(config, {}, 1.0)._command == [
        sys.executable,
        "-m",
        "workers.cli",
        "serve",
        "--config",
        str(config),
    ]
    assert DataPlaneProcess(None, {}, 1.0)._command[-1] == "serve"


async def test_start_gives_the_child_the_given_environment(tmp_path: Path) -> None:
    marker = tmp_path / "env"
    process = DataPlaneProcess(None, {"GANDALF_MARK": "from-supervisor"}, drain=0.0)
    code = "import os, sys; open(sys.argv[1], 'w').write(os.environ.get('GANDALF_MARK', '?'))"
    _run(process, code, marker)
    assert process.process is not None

    await asyncio.to_thread(process.process.wait, WAIT)

    assert marker.read_text() == "from-supervisor"
    assert process.process.returncode == 0


async def test_watch_restarts_a_dying_child_then_gives_up(
    data_plane: DataPlaneProcess, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    _run(data_plane, EXIT_AT_ONCE, runs)

    with pytest.raises(ChildFailed) as failed:
        async with asyncio.timeout(WAIT):
            await data_plane.watch(interval=0.01)

    assert str(failed.value) == (
        f"the data plane exited with 3 {MAX_RESTARTS + 1} times within "
        f"{RESTART_WINDOW:.0f}s; stopping the gateway"
    )
    assert runs.read_text().splitlines() == ["run"] * (MAX_RESTARTS + 1)
    assert data_plane.process is not None
    assert data_plane.process.poll() == 3  # the last one is not restarted


async def test_restarts_older_than_the_window_are_forgotten(
    data_plane: DataPlaneProcess, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    long_ago = time.monotonic() - RESTART_WINDOW - 1
    data_plane._restarts = [long_ago] * MAX_RESTARTS
    _run(data_plane, EXIT_AT_ONCE, runs)

    with pytest.raises(ChildFailed):
        async with asyncio.timeout(WAIT):
            await data_plane.watch(interval=0.01)

    # Had the old restarts counted, the first exit would have stopped the gateway.
    assert len(runs.read_text().splitlines()) == MAX_RESTARTS + 1


async def test_stop_sends_sigterm_and_waits_for_the_child(
    data_plane: DataPlaneProcess, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    _run(data_plane, SLEEP, ready)
    await _wait_for(ready)
    child = data_plane.process
    assert child is not None

    async with asyncio.timeout(WAIT):
        await data_plane.stop()

    assert child.returncode == -signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)


async def test_stop_kills_a_child_that_ignores_sigterm(
    data_plane: DataPlaneProcess, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    _run(data_plane, IGNORE_SIGTERM, ready)
    await _wait_for(ready)  # the handler is installed before the marker is written
    child = data_plane.process
    assert child is not None

    async with asyncio.timeout(WAIT):
        await data_plane.stop()  # drain 0 s + the fixed 5 s grace, then SIGKILL

    assert child.returncode == -signal.SIGKILL


async def test_watch_returns_once_stopped(data_plane: DataPlaneProcess, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    _run(data_plane, SLEEP, ready)
    await _wait_for(ready)

    async with asyncio.timeout(WAIT), asyncio.TaskGroup() as tasks:
        watcher = tasks.create_task(data_plane.watch(interval=0.01), name="data-plane-watch")
        await data_plane.stop()
    assert watcher.result() is None
    assert data_plane.process is not None
    assert data_plane.process.returncode == -signal.SIGTERM


async def test_stop_when_never_started_is_a_no_op(data_plane: DataPlaneProcess) -> None:
    await data_plane.stop()

    assert data_plane.process is None
    async with asyncio.timeout(WAIT):
        await data_plane.watch(interval=0.01)  # nothing to watch: returns at once


async def test_stop_after_the_child_exited_is_a_no_op(
    data_plane: DataPlaneProcess, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    _run(data_plane, EXIT_AT_ONCE, runs)
    assert data_plane.process is not None
    await asyncio.to_thread(data_plane.process.wait, WAIT)

    async with asyncio.timeout(WAIT):
        await data_plane.stop()

    assert data_plane.process.returncode == 3
