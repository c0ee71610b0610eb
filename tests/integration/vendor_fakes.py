"""What the adapter tests against the vendor fakes share: the conversation and Google tokens.

The fixtures are registered under their pytest names (`token_dir`, `service_account`) so a
test module imports them once and asks for them by name like any other fixture.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.gcp_token import make_service_account
from tests.fakes.upstreams.harness import FakeUpstream

SYSTEM = {"role": "system", "content": "Be brief"}
HELLO = {"role": "user", "content": "Say hello"}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a thing up",
            "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}},
        },
    }
]
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()
"""A 1x1 PNG, base64: the fakes name its media type in their answers."""


@pytest.fixture(scope="module", name="token_dir")
def token_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the fake token endpoint and the fakes checking its tokens share them."""
    path = tmp_path_factory.mktemp("gcp-tokens")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GCP_FAKE_TOKEN_DIR", str(path))
        yield path


@pytest.fixture(scope="module", name="service_account")
def service_account_fixture(token_dir: Path) -> Iterator[Path]:
    """A service-account file whose tokens come from a fake Google token endpoint."""
    with FakeUpstream.start(module="tests.fakes.gcp_token") as tokens:
        path = token_dir / "service-account.json"
        make_service_account(path, f"{tokens.base}/token")
        yield path
