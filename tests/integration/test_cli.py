"""The gandalf command line: version, config validation, graceful drain on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.fakes.upstreams.harness import FakeUpstream
from tests.integration.harness import REPO, TEST_KEY, Gateway, openai_provider


def _gandalf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    result = _gandalf("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("gandalf ")


def test_check_reports_every_problem_with_file_and_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "server:\n  shutdown_timeout: 3x\n"
        "providers:\n  - name: p\n    type: nosuch\n"
        "routes:\n  - model_alias: a\n    targets: [{provider: missing, model: m}]\n"
        "  - model_alias: a\n    targets: [{provider: p, model: m}]\n"
    )
    for command in ("check", "serve"):
        result = _gandalf(command, "--config", str(config))
        assert result.returncode == 2, result.stderr
        for fragment in (
            "server.shutdown_timeout",
            "providers[0].type",
            "routes[0].targets[0].provider",
            "routes[1].model_alias",
        ):
            assert f"{config}: {fragment}" in result.stderr


def test_check_accepts_the_shipped_configs() -> None:
    for path in ("configs/gandalf.yaml", "configs/default.yaml"):
        result = _gandalf("check", "--config", path)
        assert result.returncode == 0, result.stderr
    assert _gandalf("check").returncode == 0  # the embedded default


@pytest.mark.e2e
def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    with FakeUpstream.start() as upstream:
        upstream.set_behaviour(model="slow", delay_ms=1500)
        config = {
            "server": {"workers": 2, "shutdown_timeout": "10s"},
            "providers": [openai_provider("p", upstream.url, models=["slow"])],
            "keys": [{"name": "t", "key": TEST_KEY}],
        }
        gateway = Gateway(config, tmp_path).start()
        results: list[httpx.Response] = []

        def call() -> None:
            results.append(
                httpx.post(
                    f"{gateway.url}/chat/completions",
                    content=msgspec.json.encode(
                        {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}
                    ),
                    headers={"authorization": f"Bearer {TEST_KEY}"},
                    timeout=10,
                )
            )

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 5
        while upstream.stats()["total"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gateway.stop(signal.SIGTERM) == 0
        caller.join(10)
        assert [r.status_code for r in results] == [200]
