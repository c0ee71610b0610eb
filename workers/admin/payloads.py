"""What the admin API reads and writes: request bodies, pagination, JSON responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response

from app.domain import InvalidRequest
from storage.records import RouteTarget

AnyRequest = Request[Any, Any, Any]
MAX_BODY = 1024 * 1024
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_encode = msgspec.json.encode
T = TypeVar("T", bound=msgspec.Struct)


class KeyCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    org_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    name: str = ""
    role: str = "member"
    allowed_models: list[str] | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget: float | None = None
    budget_period: str = "monthly"
    expires_at: str | None = None


class ProviderBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A provider as the admin API takes it; there is no field for a secret on purpose."""

    id: str = ""
    name: str = ""
    type: str = ""
    base_url: str = ""
    models: list[str] = msgspec.field(default_factory=list)
    priority: int = 0
    weight: int = 1
    enabled: bool = True
    max_rps: int = 0
    timeout_ms: int = 120_000
    hosting: str = ""
    region: str = ""
    project: str = ""
    api_version: str = ""
    api_key_env: str = ""
    # read back from GET and sent again by clients that PUT what they read; ignored
    created_at: str = ""
    updated_at: str = ""


class PurgeBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: str | None = None
    """Purge only the answers cached for this requested model; None = all."""


class RouteBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str = ""
    model_alias: str = ""
    targets: list[RouteTarget] = msgspec.field(default_factory=list)
    strategy: str = "priority"
    cache_ttl_s: int = 0
    created_at: str = ""
    updated_at: str = ""


async def decode_body(request: AnyRequest, kind: type[T]) -> T:
    """The JSON body as `kind`; over 1 MiB, not JSON, or the wrong shape → 400."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise InvalidRequest("invalid request body: larger than 1 MiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise InvalidRequest("invalid request body: larger than 1 MiB")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest("invalid request body") from exc


def json_response(value: Any, status: int = 200, location: str | None = None) -> Response[bytes]:
    headers = {"location": location} if location else None
    return Response(
        _encode(value), status_code=status, media_type="application/json", headers=headers
    )


def page_params(request: AnyRequest) -> tuple[int, int]:
    """`offset` (< 0 → 0) and `limit` (≤ 0, > 100 or not a number → 50), as in Gandalf."""
    return _offset(request), _limit(request)


def optional_page_params(request: AnyRequest) -> tuple[int, int | None]:
    """Like `page_params`, but no `limit` parameter means every row.

    Gandalf's provider and route lists were never paginated; clients written for it expect
    every row.
    """
    if "limit" not in request.query_params:
        return _offset(request), None
    return _offset(request), _limit(request)


def _number(request: AnyRequest, name: str) -> int | None:
    try:
        return int(request.query_params[name])
    except (KeyError, ValueError):
        return None


def _offset(request: AnyRequest) -> int:
    return max(0, _number(request, "offset") or 0)


def _limit(request: AnyRequest) -> int:
    limit = _number(request, "limit")
    return limit if limit is not None and 0 < limit <= MAX_LIMIT else DEFAULT_LIMIT


def check_time(value: str | None, field: str) -> None:
    """400 `invalid <field> format, use RFC3339` unless `value` is None or RFC3339."""
    if value is None:
        return
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(f"invalid {field} format, use RFC3339", param=field) from exc
