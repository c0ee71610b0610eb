"""The limiter scripts on a real three-node Redis Cluster: each script's keys share one slot."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from app.keyspace import Keyspace
from app.limits.limiter import Admission, Limiter, Limits, Pipe
from workers.embedded_redis import find_server_binary
from workers.lifetime import die_with_parent

PERIOD = "d:2026-11-26"
SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.ConnectionError):  # a node still starting
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"cluster: {what} not reached within {timeout}s")


@pytest.fixture(scope="module")
def cluster_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three primaries from the embedded binary, one slot range each, met and `ok`."""
    workdir: Path = tmp_path_factory.mktemp("cluster")
    binary = find_server_binary()
    ports = [free_port() for _ in SLOT_RANGES]
    bus_ports = [free_port() for _ in SLOT_RANGES]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for i, (port, bus) in enumerate(zip(ports, bus_ports, strict=True)):
            log = (workdir / f"node-{i}.log").open("ab")
            processes.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(workdir / f"nodes-{i}.conf"),
                        "--cluster-port",
                        str(bus),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(workdir),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,  # noqa: PLW1509 - no orphan nodes
                )
            )
            log.close()
        nodes = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
        for node in nodes:
            wait_until(node.ping, "PING")
        for node, (first, last) in zip(nodes, SLOT_RANGES, strict=True):
            node.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        for port, bus in zip(ports[1:], bus_ports[1:], strict=True):
            nodes[0].execute_command("CLUSTER MEET", "127.0.0.1", port, bus)
        for node in nodes:
            wait_until(
                lambda n=node: (
                    n.cluster("INFO")["cluster_state"] == "ok"
                    and int(n.cluster("INFO")["cluster_known_nodes"]) == len(nodes)
                    and len(n.execute_command("CLUSTER SLOTS")) == len(SLOT_RANGES)
                ),
                "cluster_state:ok on every node",
            )
        for node in nodes:
            node.close()
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def cluster(cluster_ports: list[int]) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0])
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def keyspace() -> Keyspace:
    return Keyspace("gandalf")


def key_ids_on_each_node(keyspace: Keyspace) -> list[str]:
    """One API key id per node: the slot of its hash tag falls in that node's range."""
    found: dict[int, str] = {}
    for n in itertools.count():
        key_id = f"key-{n}"
        slot = key_slot(keyspace.rate(key_id).encode())
        node = next(i for i, (lo, hi) in enumerate(SLOT_RANGES) if lo <= slot <= hi)
        found.setdefault(node, key_id)
        if len(found) == len(SLOT_RANGES):
            return [found[i] for i in range(len(SLOT_RANGES))]
    raise AssertionError("unreachable")


def queue_admit(limiter: Limiter, pipe: Pipe, key_id: str, request_id: str, limits: Limits) -> None:
    limiter.queue_admit(
        pipe,
        key_id=key_id,
        request_id=request_id,
        limits=limits,
        tokens=40,
        cost_nano=300,
        period=PERIOD,
    )


LIMITS = Limits(rpm=2, tpm=100, budget_nano=800)


async def test_admit_and_settle_on_keys_of_every_node(
    cluster: RedisCluster, cluster_ports: list[int], keyspace: Keyspace
) -> None:
    limiter = Limiter(keyspace)
    await limiter.load(cluster)
    key_ids = key_ids_on_each_node(keyspace)

    # one pipeline over all three nodes: redis-py splits it per node, each script stays whole
    def build(pipe: Pipe) -> None:
        for key_id in key_ids:
            queue_admit(limiter, pipe, key_id, f"{key_id}-a", LIMITS)
            queue_admit(limiter, pipe, key_id, f"{key_id}-b", LIMITS)
            queue_admit(limiter, pipe, key_id, f"{key_id}-c", LIMITS)

    results = [limiter.read_admit(r, LIMITS) for r in await limiter.run(cluster, build)]

    for i in range(len(key_ids)):
        first, second, third = results[3 * i : 3 * i + 3]
        assert (first.allowed, first.rpm_remaining, first.tpm_remaining) == (True, 1, 60)
        assert (second.allowed, second.rpm_remaining, second.tpm_remaining) == (True, 0, 20)
        assert third.refused == "budget"  # 300 + 300 reserved: 300 more would pass 800
    for key_id, port in zip(key_ids, cluster_ports, strict=True):
        with redis.Redis(host="127.0.0.1", port=port) as node:
            assert node.exists(keyspace.rate(key_id), f"{keyspace.reserved(key_id)}:z") == 2

    def settle(pipe: Pipe) -> None:
        for key_id in key_ids:
            for suffix in ("a", "b"):
                limiter.queue_settle(
                    pipe,
                    key_id=key_id,
                    request_id=f"{key_id}-{suffix}",
                    limits=LIMITS,
                    estimated_tokens=40,
                    real_tokens=10,
                    cost_nano=100,
                    period=PERIOD,
                )

    settled = await limiter.run(cluster, settle)

    assert [spent for _, spent in settled] == [100, 200] * len(key_ids)
    for key_id in key_ids:
        assert int(await cluster.get(keyspace.spend(key_id, PERIOD))) == 200
        reserved = keyspace.reserved(key_id)
        assert await cluster.exists(reserved) == 0
        (raw,) = await limiter.run(
            cluster, lambda p, k=key_id: queue_admit(limiter, p, k, f"{k}-d", LIMITS)
        )
        # 200 spent and nothing reserved: the budget has room again (the RPM may not)
        assert limiter.read_admit(raw, LIMITS).refused != "budget"


async def test_lost_scripts_are_reloaded_on_every_node(
    cluster: RedisCluster, keyspace: Keyspace
) -> None:
    limiter = Limiter(keyspace)
    await limiter.load(cluster)
    await cluster.script_flush()
    key_ids = key_ids_on_each_node(keyspace)

    def build(pipe: Pipe) -> None:
        for key_id in key_ids:
            queue_admit(limiter, pipe, key_id, f"{key_id}-x", LIMITS)

    results = [limiter.read_admit(r, LIMITS) for r in await limiter.run(cluster, build)]

    assert all(a.allowed for a in results)


async def test_rpm_is_exact_on_a_cluster(cluster: RedisCluster, keyspace: Keyspace) -> None:
    limiter = Limiter(keyspace)
    await limiter.load(cluster)
    limits = Limits(rpm=10)

    async def one(n: int) -> Admission:
        (raw,) = await limiter.run(
            cluster, lambda p: queue_admit(limiter, p, "busy", f"r{n}", limits)
        )
        return limiter.read_admit(raw, limits)

    start = await cluster.time()
    results = await asyncio.gather(*(one(n) for n in range(40)))
    end = await cluster.time()

    # 10 per minute: a token comes back every 6 s, so the slack is 0 unless the machine stalled
    elapsed_us = (end[0] - start[0]) * 1_000_000 + end[1] - start[1]
    slack = math.ceil(elapsed_us * 10 / 60_000_000)
    assert 10 <= sum(a.allowed for a in results) <= 10 + slack
