"""Native passthrough: each vendor's own API through the gateway, the client's body untouched.

`/v1/messages` (Anthropic), `/v1beta/models/{model}:{action}` (Gemini), `/openai/deployments/
{deployment}/…` (Azure OpenAI) and `/api/…` (Ollama) reach only providers of that wire format,
chosen by the same routes as the universal API. The body goes upstream as the client sent it,
but for `model` (the target's upstream model instead of the alias) and what a cloud hosting of
Anthropic needs (Vertex AI and Bedrock: no `model`, their `anthropic_version`, the model in the
path); the answer comes back as the upstream sent it, except that Bedrock's binary event stream
becomes the Anthropic SSE stream a client of `/v1/messages` expects.

This package is the pure part, no I/O, one module per job: `request` (what a checked request
is), `parse` (reading one), `plan` (which providers can answer it, and the upstream path, body
and headers for one target), `usage` (of a whole answer), `stream` (a stream's client frames,
and the meter that reads its usage as it passes), `errors` (each vendor's error shapes) and
`listings` (model lists). The handlers are `app.server.native_api`.

No path or header lets a client reach another host: the upstream URL is always the provider's
configured base URL plus a path built here from the target's configured model and from client
parts that match strict patterns (`NAME`: no `/`, `%`, `@`, `:` or `..`); client headers are not
forwarded, except `anthropic-version` and `anthropic-beta`, each checked against its pattern.
Unlike the Go original (which forwarded every non-auth header and the raw query string, and
refused Bedrock), limits, budgets, usage and failover apply as on the universal routes.
"""

from app.providers.native.errors import (
    ANTHROPIC_ERROR_TYPES,
    GOOGLE_STATUSES,
    anthropic_error,
    error_body,
    gemini_error,
    ollama_error,
    stream_error,
    upstream_error,
)
from app.providers.native.listings import gemini_models, ollama_tags
from app.providers.native.parse import (
    ANTHROPIC_VERSION,
    GEMINI_ACTIONS,
    NAME,
    OLLAMA_ACTIONS,
    VERTEX_GEMINI_ACTIONS,
    parse,
    path_name,
)
from app.providers.native.plan import Plan, plan, serves, speaks
from app.providers.native.request import (
    ALLOWED_HEADERS,
    CONTENT_TYPES,
    Framing,
    NativeRequest,
    PathNotFound,
    Vendor,
)
from app.providers.native.stream import (
    MAX_ARRAY_STREAM,
    NativeMeter,
    anthropic_event,
    client_frames,
    meter,
    sse_data,
)
from app.providers.native.usage import answer_usage

__all__ = [
    "ALLOWED_HEADERS",
    "ANTHROPIC_ERROR_TYPES",
    "ANTHROPIC_VERSION",
    "CONTENT_TYPES",
    "GEMINI_ACTIONS",
    "GOOGLE_STATUSES",
    "MAX_ARRAY_STREAM",
    "NAME",
    "OLLAMA_ACTIONS",
    "VERTEX_GEMINI_ACTIONS",
    "Framing",
    "NativeMeter",
    "NativeRequest",
    "PathNotFound",
    "Plan",
    "Vendor",
    "answer_usage",
    "anthropic_error",
    "anthropic_event",
    "client_frames",
    "error_body",
    "gemini_error",
    "gemini_models",
    "meter",
    "ollama_error",
    "ollama_tags",
    "parse",
    "path_name",
    "plan",
    "serves",
    "speaks",
    "sse_data",
    "stream_error",
    "upstream_error",
]
