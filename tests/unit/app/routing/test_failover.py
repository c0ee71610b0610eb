import pytest

from app.domain import (
    NoTargetAvailable,
    Operation,
    Payload,
    Reply,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from app.routing.failover import first_success
from app.routing.router import Target
from tests.fakes.providers import FakeProvider

PAYLOAD = Payload(operation=Operation.CHAT, fields={}, model="alias")


def _raising(error: Exception):  # type: ignore[no-untyped-def]
    def send(_payload: Payload, _model: str) -> Reply:
        raise error

    return send


async def _run(*providers: FakeProvider) -> tuple[Target, Reply]:
    targets = [Target(p, f"{p.name}-m") for p in providers]
    return await first_success("alias", targets, lambda t: t.provider.send(PAYLOAD, t.model))


@pytest.mark.parametrize(
    "error",
    [
        UpstreamStatus("a", 500, b"", ""),
        UpstreamStatus("a", 503, b"", ""),
        UpstreamStatus("a", 401, b"", ""),
        UpstreamTimeout("a"),
        UpstreamUnreachable("a"),
    ],
)
async def test_fails_over_on_server_side_errors(error: UpstreamError) -> None:
    first = FakeProvider("a", send=_raising(error))
    second = FakeProvider("b")
    target, reply = await _run(first, second)
    assert target.provider is second
    assert reply.body == b'{"model":"b-m"}'
    assert first.calls == ["a-m"]


@pytest.mark.parametrize("status", [400, 404, 413, 422, 429])
async def test_client_errors_are_returned_at_once(status: int) -> None:
    second = FakeProvider("b")
    with pytest.raises(UpstreamStatus) as caught:
        await _run(FakeProvider("a", send=_raising(UpstreamStatus("a", status, b"{}", ""))), second)
    assert caught.value.http_status == status
    assert second.calls == []


async def test_all_failing_is_no_target_with_the_last_error() -> None:
    with pytest.raises(NoTargetAvailable) as caught:
        await _run(
            FakeProvider("a", send=_raising(UpstreamTimeout("a"))),
            FakeProvider("b", send=_raising(UpstreamUnreachable("b"))),
        )
    assert caught.value.http_status == 502
    assert isinstance(caught.value.last, UpstreamUnreachable)
    assert "alias" in caught.value.message
