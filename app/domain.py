"""Wire and domain types, the error tree, roles, and the one shared port: `Provider`.

Imports only the standard library and msgspec, so adapters, routing, the server, the control
plane and the test fakes can agree on these types without importing each other.

Error tree (each class carries the HTTP status, the OpenAI error `type` and `code`)::

    GatewayError                         500 api_error
    ├── InvalidRequest                   400 invalid_request_error
    ├── Unauthorized                     401 invalid_request_error / invalid_api_key
    ├── Forbidden                        403 invalid_request_error / permission_denied
    ├── ModelNotFound                    404 invalid_request_error / model_not_found
    ├── MethodNotAllowed                 405 invalid_request_error
    ├── NotImplementedByGateway          501 api_error
    ├── ServiceUnavailable               503 api_error
    ├── RateLimited                      429 requests / rate_limit_exceeded (+ Retry-After)
    ├── QuotaExceeded                    429 insufficient_quota
    └── UpstreamError                    502 upstream_error (failover decides on these)
        ├── UpstreamStatus               the upstream's own status (4xx passed through)
        ├── UpstreamTimeout              504 → 502 to the client after failover
        ├── UpstreamUnreachable          connect/transport failure
        ├── UpstreamProtocolError        an answer that can't be read
        └── NoTargetAvailable            every target failed or none is reachable
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import ClassVar, Protocol

import msgspec


class GatewayError(Exception):
    """Base of every error the gateway renders as an OpenAI-shaped body."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def http_status(self) -> int:
        return self.status


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.", param="model"
        )


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"


class NotImplementedByGateway(GatewayError):
    """A feature this gateway's setup does not provide (e.g. usage without Redis)."""

    status = 501


class ServiceUnavailable(GatewayError):
    status = 503


class RateLimited(GatewayError):
    """The key's requests or tokens per minute are used up; `headers` say when to retry."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__("rate limit exceeded")
        self.headers = headers


class QuotaExceeded(GatewayError):
    """The key's budget for the period is spent (Gandalf: 429 `quota exceeded`, no Retry-After)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self) -> None:
        super().__init__("quota exceeded")


class UpstreamError(GatewayError):
    """A provider call that failed; `retryable` tells failover whether to try the next target."""

    status = 502
    type = "upstream_error"
    retryable: bool = True

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(message)
        self.provider = provider


class UpstreamStatus(UpstreamError):
    """The upstream answered with a non-2xx status.

    5xx fails over to the next target; 4xx (429 included, as in Gandalf) is the client's to see
    and is returned as it came. 401 and 403 are the exception: they say the *gateway's*
    provider credentials are wrong, so they fail over, and the client sees a 502 that names the
    provider instead of a body that may echo part of the provider key.
    """

    CREDENTIAL_STATUSES: ClassVar[tuple[int, ...]] = (401, 403)

    def __init__(self, provider: str, status: int, body: bytes, content_type: str) -> None:
        super().__init__(provider, f"upstream {provider} answered {status}")
        self.upstream_status = status
        self.body = body
        self.content_type = content_type
        self.retryable = status >= 500 or status in self.CREDENTIAL_STATUSES
        if status in self.CREDENTIAL_STATUSES:
            self.message = f"upstream {provider} rejected the gateway's credentials ({status})"

    @property
    def passes_through(self) -> bool:
        """Whether the client gets the upstream's own status and body."""
        return self.upstream_status < 500 and not self.retryable

    @property
    def http_status(self) -> int:
        return self.upstream_status if self.passes_through else 502


class UpstreamTimeout(UpstreamError):
    def __init__(self, provider: str) -> None:
        super().__init__(provider, f"upstream {provider} timed out")


class UpstreamUnreachable(UpstreamError):
    def __init__(self, provider: str, detail: str = "connection failed") -> None:
        super().__init__(provider, f"upstream {provider} is unreachable: {detail}")


class UpstreamProtocolError(UpstreamError):
    def __init__(self, provider: str, detail: str) -> None:
        super().__init__(provider, f"upstream {provider} sent an unreadable answer: {detail}")


class NoTargetAvailable(UpstreamError):
    def __init__(self, model: str, last: UpstreamError | None) -> None:
        reason = f": {last.message}" if last is not None else ""
        super().__init__("", f"no upstream could serve model '{model}'{reason}")
        self.last = last


class StreamBroken(Exception):
    """An upstream stream that broke after the first byte reached the client."""


class Permission(enum.IntFlag):
    """Gandalf's permission bitmask; the bit values are part of its data format."""

    USE_MODELS = 1
    MANAGE_OWN_KEYS = 2
    VIEW_OWN_USAGE = 4
    VIEW_ALL_USAGE = 8
    MANAGE_ALL_KEYS = 16
    MANAGE_PROVIDERS = 32
    MANAGE_ROUTES = 64
    MANAGE_ORGS = 128


ROLE_PERMISSIONS: Mapping[str, Permission] = {
    "admin": Permission(255),
    "member": Permission.USE_MODELS | Permission.MANAGE_OWN_KEYS | Permission.VIEW_OWN_USAGE,
    "viewer": Permission.VIEW_OWN_USAGE | Permission.VIEW_ALL_USAGE,
    "service_account": Permission.USE_MODELS,
}


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: built from an API key, never from request data."""

    key_id: str
    key_prefix: str
    org_id: str = "default"
    team_id: str = ""
    user_id: str = ""
    role: str = "member"
    allowed_models: frozenset[str] = frozenset()
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget: float | None = None
    budget_period: str = "monthly"
    """When the budget starts again: monthly, weekly, daily, or total (never)."""
    expires_at: float | None = None
    blocked: bool = False

    @property
    def permissions(self) -> Permission:
        return ROLE_PERMISSIONS.get(self.role, Permission(0))

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def may_use(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


class Operation(enum.Enum):
    """The OpenAI operations the universal API serves; the value is the upstream path."""

    CHAT = "/chat/completions"
    COMPLETIONS = "/completions"
    EMBEDDINGS = "/embeddings"


class PromptTokensDetails(msgspec.Struct, frozen=True, kw_only=True):
    cached_tokens: int = 0
    """Prompt tokens read from the provider's prompt cache (billed at the cached price)."""


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """OpenAI's `usage` object; translating adapters produce the same shape."""

    prompt_tokens: int = 0
    """All input tokens, cached ones included."""
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        details = self.prompt_tokens_details
        return details.cached_tokens if details is not None else 0


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One request that reached an upstream or the cache.

    Workers append it to the usage stream (JSON in the field `e` of each entry); the control
    plane's recorder stores it.
    """

    request_id: str
    key_id: str
    org_id: str
    model: str
    """The alias as the client requested it."""
    created_ms: int
    """When the request arrived, Unix epoch milliseconds (UTC)."""
    status: int
    """The status the client got (499 when it went away)."""
    user_id: str = ""
    team_id: str = ""
    upstream_model: str = ""
    provider: str = ""
    """The provider instance that answered; `cache` for a cache hit."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_nano: int = 0
    """Cost in nano-USD (integer, so sums are exact)."""
    price_version: str = ""
    latency_ms: int = 0
    ttft_ms: int | None = None
    """Time to the first streamed byte, for streams."""
    cached: bool = False
    """Answered from the response cache."""
    estimated: bool = False
    """The tokens were counted by the gateway (no usage from the provider)."""


class UsageIntent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An admitted request in flight, kept in its worker's hash of intents in Redis.

    The admission round trip writes it; the settlement round trip, which appends the request's
    `UsageEvent`, deletes it. When the worker dies in between (its heartbeat key expires), the
    recorder stores it as a row of its own, charged at the admission estimate, so a request
    that may have reached a provider is never missing from usage.
    """

    request_id: str
    key_id: str
    org_id: str
    model: str
    created_ms: int
    worker: str
    """The admitting worker's id (`Keyspace.worker_heartbeat`)."""
    user_id: str = ""
    team_id: str = ""
    prompt_tokens: int = 0
    """The admission estimate of the prompt."""
    completion_tokens: int = 0
    """The most the answer may use (`max_tokens`, or the configured default)."""
    cost_nano: int = 0
    """Those tokens at the highest price among the route's targets."""
    period: str = ""
    """The key's spend period at admission (where the cost is counted)."""
    reserved: bool = False
    """Admission reserved `cost_nano` against the key's budget."""


class CacheRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What makes a chat request cacheable: Gandalf's rules, decided once at decode time."""

    fingerprint_fields: tuple[tuple[str, bytes], ...]
    """The request fields that decide the answer, sorted by name, as raw JSON."""


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """A client request on its way upstream.

    `fields` is the client's body decoded one level deep: every value stays raw JSON, so fields
    the gateway does not understand reach the upstream byte for byte.
    """

    operation: Operation
    fields: dict[str, msgspec.Raw]
    model: str
    stream: bool = False
    input_tokens: int = 0
    """Estimate of the prompt's tokens (about 4 characters a token), for admission."""
    max_output_tokens: int | None = None
    """`max_completion_tokens` or `max_tokens` when the client set one."""
    cache: CacheRequest | None = None
    """Set when the request may be answered from the cache."""


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """A complete, successful upstream answer in the OpenAI wire format."""

    body: bytes
    usage: Usage | None = None
    content_type: str = "application/json"


class Provider(Protocol):
    """One configured upstream instance (`openai-us`, `anthropic`, …) speaking OpenAI to us."""

    @property
    def name(self) -> str: ...

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        """Send a non-streaming request; raise an `UpstreamError` on failure."""
        ...

    def stream(
        self, payload: Payload, upstream_model: str
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Open a stream of complete OpenAI SSE frames (without the final `[DONE]`).

        Entering raises `UpstreamError` (failover still possible); iterating raises
        `StreamBroken` when the upstream stream breaks mid-way.
        """
        ...

    async def aclose(self) -> None: ...


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A provider instance as the data plane needs it; never holds a secret.

    Secrets stay in each process's own configuration and environment: the worker finds a
    provider's key by the provider's name in its config file, or in the environment variable
    named by `api_key_env`.
    """

    name: str
    type: str
    base_url: str
    models: tuple[str, ...] = ()
    priority: int = 0
    weight: int = 1
    enabled: bool = True
    timeout_ms: int = 120_000
    connect_timeout_ms: int = 5_000
    hosting: str = ""
    region: str = ""
    project: str = ""
    api_version: str = ""
    api_key_env: str = ""
    auth_type: str = ""
    """api_key, gcp_oauth or aws_sigv4; empty = from `hosting`."""
    credentials_file: str = ""
    """Google service-account JSON for gcp_oauth (a path, not a secret); empty = ADC."""


class TargetSettings(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    model: str
    priority: int = 0
    weight: int = 1


class RouteSettings(msgspec.Struct, frozen=True, kw_only=True):
    model_alias: str
    targets: tuple[TargetSettings, ...]
    cache_ttl_s: int = 0


class ConfigSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Routes and providers as published to the data plane, with a version that only grows."""

    version: int = 0
    providers: tuple[ProviderSettings, ...] = ()
    routes: tuple[RouteSettings, ...] = ()
