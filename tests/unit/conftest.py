"""Fixtures shared by the unit tests that need a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workers.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Redis-compatible server per test module, on a private unix socket."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()
