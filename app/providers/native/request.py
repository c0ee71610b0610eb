"""What a native request is once checked: its vendor, its framing, and its body one level deep.

The shared vocabulary of the package: `parse` builds a `NativeRequest`, `plan` and `meter` read
it, and the handlers (`app.server.native_api`) pass it between them.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from app.domain import GatewayError, Operation, Payload

ALLOWED_HEADERS: Final = ("anthropic-version", "anthropic-beta")
"""The only client headers that reach an upstream (Anthropic's, on `/v1/messages`)."""


class Vendor(enum.Enum):
    """A native API the gateway serves, by the wire format its providers speak."""

    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    AZURE = "azure"
    OLLAMA = "ollama"


class Framing(enum.Enum):
    """How an upstream answer is cut into what the client gets."""

    JSON = "json"
    """One answer, passed on whole."""
    SSE = "sse"
    BEDROCK = "bedrock"
    """AWS's binary event stream, turned into Anthropic SSE."""
    NDJSON = "ndjson"
    JSON_ARRAY = "json-array"
    """Gemini's stream without `alt=sse`: one JSON array, element by element."""


CONTENT_TYPES: Final = {
    Framing.SSE: b"text/event-stream",
    Framing.BEDROCK: b"text/event-stream",
    Framing.NDJSON: b"application/x-ndjson",
    Framing.JSON_ARRAY: b"application/json; charset=UTF-8",
}
"""The client's content type of a stream, by framing."""


class PathNotFound(GatewayError):
    """A native path the gateway does not serve."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"

    def __init__(self) -> None:
        super().__init__("not found: no such native route")


class NativeRequest(msgspec.Struct, frozen=True):
    """A native request, checked: what it asks of which model, and its body one level deep.

    The first five fields, which every request has, may be given by position; the rest, which
    depend on the vendor, by name.
    """

    vendor: Vendor
    action: str
    """`messages` / `count_tokens`; a Gemini method; an Azure operation path; an Ollama API."""
    model: str
    """The alias the request is routed by."""
    body: bytes
    fields: dict[str, msgspec.Raw]
    stream: bool = False
    metered: bool = True
    """False for token counting: not admitted, billed or recorded."""
    embeddings: bool = False
    max_output_tokens: int | None = None
    sse: bool = False
    """Gemini: the client asked for `alt=sse`."""
    api_version: str = ""
    """Azure: the client's `api-version`."""
    headers: tuple[tuple[str, str], ...] = ()
    """The allow-listed client headers, checked."""

    def payload(self) -> Payload:
        """What admission and routing need: the alias, a ~4 characters a token estimate."""
        return Payload(
            operation=Operation.EMBEDDINGS if self.embeddings else Operation.CHAT,
            fields={},
            model=self.model,
            stream=self.stream,
            input_tokens=(len(self.body) + 3) // 4 if self.metered else 0,
            max_output_tokens=self.max_output_tokens,
        )

    @property
    def framing(self) -> Framing:
        """The framing the client gets (Bedrock's is converted to SSE before it)."""
        if not self.stream:
            return Framing.JSON
        if self.vendor is Vendor.OLLAMA:
            return Framing.NDJSON
        if self.vendor is Vendor.GEMINI and not self.sse:
            return Framing.JSON_ARRAY
        return Framing.SSE
