"""Rows as msgspec Structs; they are also the admin API's JSON (Gandalf's field names).

A NOT NULL column is a field without a default, so it is always in the JSON; a nullable or
optional column defaults to `None` (or `""`) and is left out of the JSON when unset, as Gandalf
omits empty fields. A key's hash is never a field: it travels beside the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

import msgspec

from app.domain import ROLE_PERMISSIONS
from storage.errors import InvalidValue

T = TypeVar("T")

ROLES = frozenset(ROLE_PERMISSIONS)
"""Gandalf's roles: those the data plane knows the permissions of."""
PERIODS = frozenset({"hourly", "daily"})


def now() -> str:
    """The current time as stored: RFC3339 UTC, milliseconds, `Z` (`2026-11-22T18:30:00.123Z`)."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    """`moment` in the stored form; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalize_time(value: str) -> str:
    """Any RFC3339 timestamp in the stored form, so stored times compare correctly as text.

    Raises:
        InvalidValue: `value` is not an RFC3339 / ISO 8601 timestamp.
    """
    try:
        return format_time(datetime.fromisoformat(value))
    except ValueError as exc:
        raise InvalidValue(f"invalid timestamp {value!r}, use RFC3339") from exc


_decode_models = msgspec.json.Decoder(list[str]).decode


def models_column(models: Sequence[str] | None) -> str | None:
    """A model list as stored in a nullable column: JSON text, or NULL when empty (Gandalf)."""
    return msgspec.json.encode(list(models)).decode() if models else None


def models_value(text: str | None) -> list[str] | None:
    """The inverse of `models_column`: NULL (or an empty list) reads as None."""
    return (_decode_models(text) or None) if text else None


class Organization(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str
    allowed_models: list[str] | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget: float | None = None
    created_at: str = ""


class Team(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    org_id: str
    name: str
    allowed_models: list[str] | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget: float | None = None
    created_at: str = ""


class KeyRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An API key as the admin API shows it; `key_hash` is deliberately not a field."""

    id: str
    key_prefix: str
    org_id: str
    role: str
    blocked: bool
    budget_period: str
    created_at: str
    updated_at: str
    name: str = ""
    user_id: str | None = None
    team_id: str | None = None
    allowed_models: list[str] | None = None
    """None (stored NULL) = every model; never an empty list."""
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget: float | None = None
    expires_at: str | None = None
    last_used_at: str | None = None


class ProviderRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A provider instance; its secret never reaches the database."""

    id: str
    name: str
    type: str
    base_url: str
    models: list[str]
    priority: int
    weight: int
    enabled: bool
    max_rps: int
    timeout_ms: int
    hosting: str = ""
    region: str = ""
    project: str = ""
    api_version: str = ""
    api_key_env: str = ""
    """Name of the environment variable that holds the key in each data-plane process."""
    created_at: str = ""
    updated_at: str = ""


class RouteTarget(msgspec.Struct, kw_only=True):
    provider_id: str
    model: str
    priority: int = 0
    weight: int = 1


class RouteRecord(msgspec.Struct, kw_only=True):
    id: str
    model_alias: str
    targets: list[RouteTarget]
    strategy: str = "priority"
    cache_ttl_s: int = 0
    created_at: str = ""
    updated_at: str = ""


class UsageRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One request's usage; `id` is assigned at insert when empty, `request_id` is unique."""

    request_id: str
    key_id: str
    org_id: str
    model: str
    """The alias as the client requested it."""
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached: bool
    latency_ms: int
    status_code: int
    usage_source: str
    """`provider` (counted by the upstream) or `estimated` (counted by the gateway)."""
    created_at: str
    id: str = ""
    user_id: str = ""
    team_id: str = ""
    upstream_model: str = ""
    provider_id: str = ""
    cached_tokens: int = 0
    cost_nano: int = 0
    """Cost in nano-USD: the exact figure, summed by rollups and budgets."""
    cost_usd: float = 0.0
    """Gandalf's field, kept for its clients: written as `cost_nano / 1e9` at insert (a value
    set here is not stored)."""
    price_version: str = ""
    """The price table that priced the request; empty when unknown."""
    ttft_ms: int | None = None


class Rollup(msgspec.Struct, kw_only=True):
    org_id: str
    key_id: str
    model: str
    period: str
    """`hourly` or `daily`."""
    bucket: str
    """Start of the period, in the stored time form."""
    request_count: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    total_tokens: int
    cost_usd: float
    """Gandalf's field: `cost_nano / 1e9`."""
    cached_count: int
    cost_nano: int = 0
    """Cost in nano-USD, exact."""


class Pagination(msgspec.Struct):
    offset: int
    limit: int
    total: int


class Page(msgspec.Struct, Generic[T]):
    """The admin API's list envelope: `{"data": [...], "pagination": {offset, limit, total}}`."""

    data: list[T]
    pagination: Pagination


class Listing(msgspec.Struct, Generic[T]):
    """An unpaginated list envelope: `{"data": [...]}` (the usage summary)."""

    data: list[T]


def page(rows: list[T], offset: int, limit: int, total: int) -> Page[T]:
    return Page(rows, Pagination(offset, limit, total))
