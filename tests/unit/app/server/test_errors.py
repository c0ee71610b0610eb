import msgspec
import pytest

from app.domain import (
    Forbidden,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoTargetAvailable,
    Unauthorized,
    UpstreamStatus,
    UpstreamTimeout,
)
from app.server.errors import render


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (InvalidRequest("bad", param="model"), 400, "invalid_request_error", None),
        (Unauthorized("unauthorized"), 401, "invalid_request_error", "invalid_api_key"),
        (Forbidden("api key blocked"), 403, "invalid_request_error", "permission_denied"),
        (ModelNotFound("m"), 404, "invalid_request_error", "model_not_found"),
        (NoTargetAvailable("m", UpstreamTimeout("p")), 502, "upstream_error", None),
        (UpstreamStatus("p", 503, b"secret detail", "text/plain"), 502, "upstream_error", None),
        (
            UpstreamStatus("p", 401, b"Incorrect API key sk-abc", "application/json"),
            502,
            "upstream_error",
            None,
        ),
    ],
)
def test_errors_render_openai_shaped(
    error: GatewayError, status: int, type_: str, code: str | None
) -> None:
    got_status, body, content_type = render(error)
    assert got_status == status
    assert content_type == b"application/json"
    decoded = msgspec.json.decode(body)
    assert decoded == {
        "error": {"message": error.message, "type": type_, "param": error.param, "code": code}
    }
    assert b"secret" not in body and b"sk-abc" not in body


def test_upstream_4xx_passes_through_as_it_came() -> None:
    error = UpstreamStatus("p", 429, b'{"error":{"message":"slow down"}}', "application/json")
    assert render(error) == (429, b'{"error":{"message":"slow down"}}', b"application/json")
    assert not error.retryable
