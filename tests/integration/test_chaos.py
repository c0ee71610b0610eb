"""Chaos: kill -9 a worker, then the supervisor, under load; usage stays exact.

The Kubernetes shape (a `gandalf supervisor` and a `gandalf serve` with two workers sharing one
Redis), so the supervisor can die and come back while the data plane keeps serving.

Prices make every answer cost the same, and equal to its admission estimate: output tokens at
1000 USD per million, input free, every request asking for `max_tokens: 14` and the fake
answering exactly 14 tokens. A request whose worker dies is recorded from its intent at the
estimate (`workers/recorder.py`), so the expected total is exact whatever the kill caught.
The one request the upstream may never have seen is one the dead worker had admitted but not
yet sent (microseconds per request): it is recorded too, as a dead worker's request.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.conftest import separate_planes
from tests.integration.harness import TEST_KEY, Gateway
from workers.recorder import LOST_STATUS

pytestmark = pytest.mark.e2e

COST = 14 * 1_000_000
"""Nano-USD of every answer: 14 output tokens at 0.001 USD each."""
CLIENTS = 8
SETTLED_WITHIN = 45.0
"""A dead worker's heartbeat expires after 10 s; its requests are recorded a sweep later."""


def _chaos_config(config: dict[str, Any]) -> None:
    config["routes"].append(
        {"model_alias": "chaos", "targets": [{"provider": "fake", "model": "up-chaos"}]}
    )
    config["pricing"] = {"models": {"up-chaos": {"input": 0, "output": 1000}}}


class Load:
    """`CLIENTS` clients sending plain and streamed requests until stopped."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.outcomes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(self._client(client, n) for n in range(CLIENTS)))

    async def _client(self, client: httpx.AsyncClient, n: int) -> None:
        body: dict[str, Any] = {
            "model": "chaos",
            "messages": [{"role": "user", "content": f"client {n}"}],
            "max_tokens": 14,
            "stream": n % 2 == 1,
        }
        headers = {"authorization": f"Bearer {TEST_KEY}"}
        while not self._stop.is_set():
            try:
                answer = await client.post(
                    f"{self.base}/v1/chat/completions", json=body, headers=headers
                )
                self.outcomes[str(answer.status_code)] += 1
            except httpx.HTTPError as exc:  # the worker holding the connection was killed
                self.outcomes[type(exc).__name__] += 1
                await asyncio.sleep(0.01)


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _kill_one_worker(plane: Gateway) -> int:
    assert plane.process is not None
    workers = _children(plane.process.pid)
    assert len(workers) >= 2, workers
    os.kill(workers[0], signal.SIGKILL)
    return workers[0]


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream.start() as upstream:
        # most of a request's time is spent upstream, where a kill finds it
        upstream.set_behaviour(model="up-chaos", chunks=14, delay_ms=40, chunk_delay_ms=2)
        yield upstream


Usage = tuple[int, int, int, list[tuple[str, int, int]], list[tuple[str, int, int]]]


def _usage(db: Path) -> Usage:
    """(rows, their cost, rows recorded for a dead worker, rows per hour, hourly rollups)."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows, cost, lost = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(cost_nano), 0), "
            "COUNT(*) FILTER (WHERE status_code = ? AND usage_source = 'estimated') "
            "FROM usage_records WHERE model = 'chaos'",
            (LOST_STATUS,),
        ).fetchone()
        raw = conn.execute(
            "SELECT substr(created_at, 1, 13), COUNT(*), SUM(cost_nano) FROM usage_records "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
        rolled = conn.execute(
            "SELECT substr(bucket, 1, 13), SUM(request_count), SUM(cost_nano) "
            "FROM usage_rollups WHERE period = 'hourly' GROUP BY 1 ORDER BY 1"
        ).fetchall()
    finally:
        conn.close()
    return int(rows), int(cost), int(lost), list(raw), list(rolled)


def test_kill_9_of_a_worker_and_of_the_supervisor_loses_and_doubles_nothing(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    with separate_planes(fake, tmp_path, change=_chaos_config) as (_, control, (plane,)):
        with Load(plane.base) as load:
            time.sleep(1.5)
            _kill_one_worker(plane)
            time.sleep(1.5)
            assert control.process is not None
            control.process.kill()  # SIGKILL: no drain, a batch may be half recorded
            control.stop()  # reaps it
            time.sleep(1.0)  # the data plane keeps serving and appending usage meanwhile
            control.start()
            time.sleep(1.5)
        answered = fake.stats()["requests"].get("POST /v1/chat/completions up-chaos", 0)
        assert answered > 50, load.outcomes
        assert load.outcomes["200"] > 0

        deadline = time.monotonic() + SETTLED_WITHIN
        while (usage := _usage(tmp_path / "gandalf.db"))[0] < answered:
            assert time.monotonic() < deadline, (usage[:3], answered, dict(load.outcomes))
            time.sleep(0.25)
        time.sleep(2.0)  # two more sweeps: nothing may be recorded twice
        rows, cost, lost, raw, rolled = _usage(tmp_path / "gandalf.db")
        # every request the upstream saw has its row, exactly once; beyond those, only a
        # request the dead worker had admitted but not yet sent can have a row (charged its
        # estimate: nobody can know it never left)
        assert answered <= rows <= answered + lost, (rows, lost, answered)
        assert cost == rows * COST
        assert raw == rolled
