"""The hot-path benchmark: fake OpenAI upstream + the real gateway, driven by `wrk`.

    python -m loadtests.bench [--workers N] [--duration S] [--warmup S] [--scaling] [--no-pin]
                              [--mode run|serve]

Run from the repository root (`just bench` does). It starts the fake upstream from
`tests/fakes/upstreams`, measures it alone (the baseline), then starts the gateway with N
workers in front of it (`gandalf run`, or with `--mode serve` the data plane alone) and
measures the same scenarios through the gateway: a plain chat completion and a streamed one
(SSE, 20 chunks), each at 1 and 32 connections. It prints a markdown table (also written to
`loadtests/results/latest.md`) and a one-line JSON summary.

On a machine with at least N + 1 cores the gateway is pinned to the first N cores and the fake
upstream, `wrk` and this script to the others, so the load generator does not steal the
gateway's CPU. `loadtests/README.md` defines every column.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.fakes.upstreams.harness import FakeUpstream
    from tests.integration.harness import Gateway

REPO = Path(__file__).resolve().parents[1]
WRK_SCRIPT = REPO / "loadtests" / "wrk" / "chat.lua"
RESULTS = REPO / "loadtests" / "results" / "latest.md"
UPSTREAM_KEY = "sk-fake"
MODEL = "bench-model"
CONNECTIONS = (1, 32)
STREAM_CHUNKS = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
RESULT_MARK = "BENCH_RESULT "
BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Explain the theory of relativity in one sentence, please."},
    ],
    "temperature": 0.7,
}


class WrkResult(msgspec.Struct, frozen=True):
    """What `loadtests/wrk/chat.lua` prints from wrk's `done()` (times in microseconds)."""

    duration_us: int
    requests: int
    bytes: int
    errors_connect: int
    errors_read: int
    errors_write: int
    errors_status: int
    errors_timeout: int
    lat_mean_us: float
    lat_max_us: int
    lat_p50_us: int
    lat_p90_us: int
    lat_p99_us: int
    lat_p999_us: int

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def socket_errors(self) -> int:
        return self.errors_connect + self.errors_read + self.errors_write + self.errors_timeout


WRK_DECODER = msgspec.json.Decoder(WrkResult)


@dataclass
class Row:
    """One measured scenario."""

    target: str  # "upstream" or "gateway"
    workers: int  # gateway workers; 0 for the upstream alone
    scaling: bool  # a --scaling row: nothing pinned
    stream: bool
    connections: int
    wrk: WrkResult
    cpu_us_per_request: float | None = None
    rss_mb_max: float | None = None
    added_p50_us: float | None = None

    @property
    def label(self) -> str:
        if self.target == "upstream":
            return "upstream alone"
        name = f"gateway {self.workers}w"
        return f"{name}, unpinned" if self.scaling else name

    @property
    def scenario(self) -> str:
        return f"chat stream ({STREAM_CHUNKS} chunks)" if self.stream else "chat"

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "workers": self.workers,
            "scaling": self.scaling,
            "stream": self.stream,
            "connections": self.connections,
            "requests": self.wrk.requests,
            "rps": round(self.wrk.rps, 1),
            "p50_us": self.wrk.lat_p50_us,
            "p99_us": self.wrk.lat_p99_us,
            "added_p50_us": None if self.added_p50_us is None else round(self.added_p50_us),
            "cpu_us_per_request": _round(self.cpu_us_per_request, 1),
            "rss_mb_max": _round(self.rss_mb_max, 1),
            "non_2xx": self.wrk.errors_status,
            "socket_errors": self.wrk.socket_errors,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# --- /proc: process trees, CPU time, memory, affinity -----------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (index 0 is field 3, `state`)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def process_tree(root: int, skip: frozenset[int] = frozenset()) -> list[int]:
    """`root` and all its descendants, not descending into the pids in `skip`."""
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in skip:
            continue
        tree.append(pid)
        todo.extend(children(pid))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of `root` and its live descendants, in seconds."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime
    return ticks / CLK_TCK


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def worker_pids(root: int) -> list[int]:
    """Granian's worker processes: the children of Granian's main process (`gandalf serve`,
    `root` itself or, under `gandalf run`, a child of the supervisor), not its helpers."""
    main = next((pid for pid in process_tree(root) if "workers.cli serve" in _cmdline(pid)), root)
    workers = [pid for pid in children(main) if "_tracker" not in _cmdline(pid)]
    return workers or [root]


def pin_tree(root: int, cores: set[int], skip: frozenset[int] = frozenset()) -> None:
    """Set the CPU affinity of every thread of `root` and its descendants (like `taskset -a`)."""
    for pid in process_tree(root, skip):
        try:
            tasks = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            continue
        for tid in tasks:
            with contextlib.suppress(OSError):  # the thread may have exited meanwhile
                os.sched_setaffinity(tid, cores)


# --- wrk ----------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of `wrk`, installing it with apt-get when running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: wrk not found; installing it with apt-get ...", file=sys.stderr)
        install = ["apt-get", "install", "-y", "wrk"]
        if subprocess.run(install, check=False).returncode != 0:  # stale package lists?
            subprocess.run(["apt-get", "update"], check=False)
            subprocess.run(install, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "bench: `wrk` is required (a C HTTP load generator cheap enough for a 2-core machine).\n"
        "Install it, e.g. `sudo apt-get install -y wrk` or `brew install wrk`, and run again."
    )


def run_wrk(
    wrk: str, url: str, key: str, *, stream: bool, connections: int, seconds: float
) -> WrkResult:
    env = {
        **os.environ,
        "BENCH_KEY": key,
        "BENCH_MODEL": MODEL,
        "BENCH_STREAM": "1" if stream else "0",
    }
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return WRK_DECODER.decode(line[len(RESULT_MARK) :])
    raise RuntimeError(
        f"wrk failed (exit {done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}"
    )


# --- the two systems under test -----------------------------------------------------------------


def check_endpoint(url: str, key: str) -> None:
    """One plain and one streamed request, so a broken setup fails loudly before measuring."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=10) as client:
        reply = client.post(url, json=BODY, headers=headers)
        if reply.status_code != 200 or "choices" not in reply.json():
            raise RuntimeError(f"POST {url} -> {reply.status_code}: {reply.text[:500]}")
        with client.stream("POST", url, json={**BODY, "stream": True}, headers=headers) as sse:
            body = sse.read().decode()
        if sse.status_code != 200:
            raise RuntimeError(f"POST {url} (stream) -> {sse.status_code}: {body[:500]}")
        events = [line for line in body.splitlines() if line.startswith("data:")]
        if not events or events[-1].strip() != "data: [DONE]":
            raise RuntimeError(f"POST {url} (stream): no `data: [DONE]` at the end:\n{body[-500:]}")
        if len(events) - 1 < STREAM_CHUNKS:
            raise RuntimeError(
                f"POST {url} (stream): {len(events) - 1} events, expected >= {STREAM_CHUNKS}"
            )


@contextmanager
def gateway(upstream_url: str, workers: int, workdir: Path, mode: str) -> Iterator[Gateway]:
    from tests.integration.harness import TEST_KEY, Gateway  # noqa: PLC0415

    config: dict[str, Any] = {
        "server": {"workers": workers, "log_level": "warning", "log_format": "json"},
        "providers": [
            {"name": "fake", "type": "openai", "base_url": upstream_url, "api_key": UPSTREAM_KEY}
        ],
        "routes": [
            {"model_alias": MODEL, "targets": [{"provider": "fake", "model": "fake-model"}]}
        ],
        # limits on, and never reached: every request pays for admission and settlement
        "keys": [
            {
                "name": "bench",
                "key": TEST_KEY,
                "role": "admin",
                "rpm_limit": 1_000_000_000,
                "tpm_limit": 1_000_000_000_000,
                "max_budget": 1_000_000_000,
            }
        ],
        "pricing": {"models": {"fake-model": {"input": 1, "output": 2}}},
        "database": {"dsn": str(workdir / "gandalf.db")},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    gw = Gateway(config, workdir, command=mode)
    try:
        gw.start(timeout=60)
    except RuntimeError as exc:
        sys.exit(f"bench: the gateway did not start:\n{exc}")
    try:
        yield gw
    finally:
        gw.stop()
        errors = [line for line in gw.logs().splitlines() if '"level":"error"' in line]
        if errors:
            print(
                f"bench: warning: the gateway ({workers}w) logged {len(errors)} errors, first:\n"
                f"  {errors[0][:400]}",
                file=sys.stderr,
            )


@dataclass
class Bench:
    """Options and placement shared by every scenario."""

    wrk: str
    duration: float
    warmup: float
    gateway_cores: set[int] | None  # None: no pinning
    load_cores: set[int] | None
    all_cores: set[int]

    def measure(
        self, url: str, key: str, *, stream: bool, connections: int, server_pid: int, rss: bool
    ) -> tuple[WrkResult, float | None, float | None]:
        """Warm up, then one timed wrk run; also the server's CPU µs/request and max worker RSS.

        `server_pid` is the main process of the server measured (the gateway, or the fake
        upstream for the baseline): its CPU time is summed over it and all its descendants.
        """
        tag = f"{'stream' if stream else 'chat'} c={connections}"
        print(f"  {tag}: warm-up {self.warmup:g}s, then {self.duration:g}s ...", file=sys.stderr)
        if self.warmup > 0:
            run_wrk(self.wrk, url, key, stream=stream, connections=connections, seconds=self.warmup)
        before = tree_cpu_seconds(server_pid)
        result = run_wrk(
            self.wrk, url, key, stream=stream, connections=connections, seconds=self.duration
        )
        cpu = tree_cpu_seconds(server_pid) - before
        per_request = cpu / result.requests * 1e6 if result.requests else None
        worker_rss = max(rss_mb(pid) for pid in worker_pids(server_pid)) if rss else None
        return result, per_request, worker_rss

    def scenarios(self, target: str, workers: int, url: str, key: str, pid: int) -> list[Row]:
        rows = []
        for stream in (False, True):
            for connections in CONNECTIONS:
                result, cpu, rss = self.measure(
                    url,
                    key,
                    stream=stream,
                    connections=connections,
                    server_pid=pid,
                    rss=target == "gateway",
                )
                rows.append(Row(target, workers, False, stream, connections, result, cpu, rss))
        return rows

    def place(self, gateway_pid: int | None, *, pinned: bool) -> None:
        """Pin the gateway to its cores and this process (fake upstream, wrk) to the others."""
        me = os.getpid()
        if not pinned or self.gateway_cores is None or self.load_cores is None:
            pin_tree(me, self.all_cores)  # includes the gateway: it is our child
            return
        skip = frozenset() if gateway_pid is None else frozenset({gateway_pid})
        pin_tree(me, self.load_cores, skip)
        if gateway_pid is not None:
            pin_tree(gateway_pid, self.gateway_cores)


def run_gateway(
    bench: Bench, fake: FakeUpstream, workers: int, workdir: Path, *, scaling: bool, mode: str
) -> list[Row]:
    """All scenarios through a gateway with `workers` workers (`scaling`: unpinned, plain chat
    at 32 connections only)."""
    from tests.integration.harness import TEST_KEY  # noqa: PLC0415

    print(f"gateway, {workers} worker(s){', unpinned' if scaling else ''}:", file=sys.stderr)
    with gateway(fake.url, workers, workdir / f"gateway-{workers}w-{int(scaling)}", mode) as gw:
        assert gw.process is not None
        pid = gw.process.pid
        bench.place(pid, pinned=not scaling)
        url = f"{gw.url}/chat/completions"
        check_endpoint(url, TEST_KEY)
        if not scaling:
            return bench.scenarios("gateway", workers, url, TEST_KEY, pid)
        conns = max(CONNECTIONS)
        result, cpu, rss = bench.measure(
            url, TEST_KEY, stream=False, connections=conns, server_pid=pid, rss=True
        )
        return [Row("gateway", workers, True, False, conns, result, cpu, rss)]


# --- report -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release()}


def versions(wrk: str) -> dict[str, str]:
    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    wrk_version = (out.stdout or out.stderr).split(" [", 1)[0].removeprefix("wrk ").strip()
    return {
        "python": platform.python_version(),
        "granian": pkg("granian"),
        "gandalf": pkg("gandalf-gateway"),
        "wrk": wrk_version,
    }


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def _added(us: float | None) -> str:
    return "—" if us is None else f"{'+' if us >= 0 else '-'}{abs(us) / 1000:.2f} ms"


def _errors(row: Row) -> str:
    parts = []
    if row.wrk.errors_status:
        parts.append(f"{row.wrk.errors_status} non-2xx")
    if row.wrk.socket_errors:
        parts.append(f"{row.wrk.socket_errors} socket errors")
    return f"**⚠ {', '.join(parts)} ⚠**" if parts else "0"


def table(rows: list[Row]) -> str:
    head = (
        "| target | scenario | conns | req/s | p50 | p99 | added p50 | CPU/req | RSS/worker (max) "
        "| errors |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for r in rows:
        cpu = "—" if r.cpu_us_per_request is None else f"{r.cpu_us_per_request:.0f} µs"
        rss = "—" if r.rss_mb_max is None else f"{r.rss_mb_max:.1f} MB"
        lines.append(
            f"| {r.label} | {r.scenario} | {r.connections} | {r.wrk.rps:,.0f} "
            f"| {_ms(r.wrk.lat_p50_us)} | {_ms(r.wrk.lat_p99_us)} | {_added(r.added_p50_us)} "
            f"| {cpu} | {rss} | {_errors(r)} |"
        )
    return head + "\n".join(lines) + "\n"


def report(rows: list[Row], meta: dict[str, Any], placement: str, args: argparse.Namespace) -> str:
    mach, ver = meta["machine"], meta["versions"]
    out = [
        "# Gandalf hot-path benchmark",
        "",
        f"- date: {meta['date']}",
        f"- machine: {mach['nproc']} CPUs, {mach['cpu']}, Linux {mach['kernel']}",
        f"- versions: Python {ver['python']}, Granian {ver['granian']}, "
        f"gandalf {ver['gandalf']}, wrk {ver['wrk']}",
        f"- load: wrk -t1, {args.duration:g} s per scenario after a {args.warmup:g} s warm-up; "
        "~200-byte chat request; the stream scenario returns "
        f"{STREAM_CHUNKS} SSE chunks + `[DONE]`",
        f"- placement: {placement}",
        f"- gateway: `gandalf {args.mode}`"
        + (
            " (supervisor, embedded Redis, Granian workers; keys and routes published via Redis;"
            " the key has RPM, TPM and budget limits it never reaches, so every request runs"
            " the admission and settlement scripts)"
            if args.mode == "run"
            else " (the data plane alone, keys and routes from its YAML file)"
        ),
        "- added p50 = gateway p50 - upstream-alone p50 (same scenario and connections); "
        "CPU/req = CPU seconds of all gateway processes ÷ completed requests (in the "
        "upstream-alone rows: of the fake upstream's processes)",
        "",
        table(rows),
    ]
    scaled = [r for r in rows if r.scaling]
    if len(scaled) == 2 and scaled[0].wrk.rps > 0:
        out.append(
            f"Scaling (plain chat, 32 connections, nothing pinned): {scaled[1].workers} workers "
            f"give {scaled[1].wrk.rps / scaled[0].wrk.rps:.2f}x the requests/s of "
            f"{scaled[0].workers}.\n"
        )
    bad = [r for r in rows if r.wrk.errors_status or r.wrk.socket_errors]
    if bad:
        out.append(
            f"**WARNING: {len(bad)} scenario(s) had errors; their figures are not valid.**\n"
        )
    return "\n".join(out)


def fill_added(rows: list[Row]) -> None:
    base = {(r.stream, r.connections): r for r in rows if r.target == "upstream"}
    for r in rows:
        up = base.get((r.stream, r.connections))
        if r.target == "gateway" and up is not None:
            r.added_p50_us = r.wrk.lat_p50_us - up.wrk.lat_p50_us


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__)
    parser.add_argument("--workers", type=int, default=1, help="gateway workers (default 1)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 2)")
    parser.add_argument(
        "--scaling", action="store_true", help="also plain chat at 32 conns with 1 and 2 workers"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--mode",
        choices=("run", "serve"),
        default="run",
        help="run: the whole gateway (supervisor, embedded Redis, workers; keys from Redis); "
        "serve: the data plane alone on its YAML file (default run)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.duration < 1:
        parser.error("--workers and --duration must be at least 1")
    if args.warmup is None:
        args.warmup = min(2.0, args.duration / 2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from tests.fakes.upstreams.harness import FakeUpstream  # noqa: PLC0415
    except ImportError as exc:
        sys.exit(f"bench: cannot import the fake upstream ({exc}); run from the repository root")

    wrk = ensure_wrk()
    cores = os.sched_getaffinity(0)
    ordered = sorted(cores)
    pinning = not args.no_pin and len(ordered) > args.workers
    bench = Bench(
        wrk=wrk,
        duration=args.duration,
        warmup=args.warmup,
        gateway_cores=set(ordered[: args.workers]) if pinning else None,
        load_cores=set(ordered[args.workers :]) if pinning else None,
        all_cores=set(cores),
    )
    if pinning:
        assert bench.gateway_cores is not None and bench.load_cores is not None
        placement = (
            f"gateway on core(s) {_cores(bench.gateway_cores)}; fake upstream, wrk and the bench "
            f"on core(s) {_cores(bench.load_cores)} (sched_setaffinity, like `taskset`)"
        )
        pin_tree(os.getpid(), bench.load_cores)  # what we start from now on inherits it
    else:
        why = "--no-pin" if args.no_pin else f"{len(ordered)} CPU(s) for {args.workers} worker(s)"
        placement = f"nothing pinned ({why})"
    if args.scaling:
        placement += "; the scaling rows run with nothing pinned"

    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine(),
        "versions": versions(wrk),
    }
    rows: list[Row] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="gandalf-bench-") as tmp,
        FakeUpstream.start(api_key=UPSTREAM_KEY) as fake,
    ):
        up_url = f"{fake.url}/chat/completions"
        check_endpoint(up_url, UPSTREAM_KEY)
        print(f"upstream alone ({fake.url}):", file=sys.stderr)
        bench.place(None, pinned=pinning)
        rows += bench.scenarios("upstream", 0, up_url, UPSTREAM_KEY, fake.process.pid)
        rows += run_gateway(bench, fake, args.workers, Path(tmp), scaling=False, mode=args.mode)
        if args.scaling:
            for workers in (1, 2):
                rows += run_gateway(bench, fake, workers, Path(tmp), scaling=True, mode=args.mode)
    fill_added(rows)

    text = report(rows, meta, placement, args)
    print()
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(f"(written to {RESULTS}; took {time.monotonic() - started:.0f} s)")
    summary = {**meta, "placement": placement, "results": [r.summary() for r in rows]}
    print(msgspec.json.encode(summary).decode())
    return 1 if any(r.wrk.errors_status or r.wrk.socket_errors for r in rows) else 0


def _cores(cores: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cores))


if __name__ == "__main__":
    sys.exit(main())
