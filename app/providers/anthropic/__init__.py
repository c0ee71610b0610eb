"""Anthropic Messages API upstream: api.anthropic.com, Vertex AI and Bedrock.

Clients speak OpenAI chat completions; this package turns each request into a Messages request
and the answer (a message, or its stream of events) back into OpenAI's shapes, so a client
cannot tell which vendor answered. The translation is pure - `request` (`translate_request`),
`answer` (`translate_response`, `translate_error`) and `stream` (the `StreamTranslator` state
machine) - and kept apart from the small I/O class in `adapter`. `meter` reads the usage of
native (untranslated) Messages traffic for the `/v1/messages` passthrough.
"""

from app.providers.anthropic.adapter import (
    BEDROCK_VERSION,
    HOSTINGS,
    VERTEX_VERSION,
    AnthropicAdapter,
)
from app.providers.anthropic.answer import finish_reason, translate_error, translate_response
from app.providers.anthropic.meter import MessagesStreamMeter, messages_usage
from app.providers.anthropic.request import (
    DEFAULT_MAX_TOKENS,
    AnthropicMessage,
    AnthropicTool,
    Base64Source,
    Block,
    ImageBlock,
    MessagesRequest,
    Metadata,
    TextBlock,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
    URLSource,
    translate_request,
)
from app.providers.anthropic.stream import (
    KNOWN_EVENTS,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    ErrorEvent,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    StreamEvent,
    StreamTranslator,
    decode_event,
)
from app.providers.openai_shapes.stream import sse_data

__all__ = [
    "BEDROCK_VERSION",
    "DEFAULT_MAX_TOKENS",
    "HOSTINGS",
    "KNOWN_EVENTS",
    "VERTEX_VERSION",
    "AnthropicAdapter",
    "AnthropicMessage",
    "AnthropicTool",
    "Base64Source",
    "Block",
    "ContentBlockDelta",
    "ContentBlockStart",
    "ContentBlockStop",
    "ErrorEvent",
    "ImageBlock",
    "MessageDelta",
    "MessageStart",
    "MessageStop",
    "MessagesRequest",
    "MessagesStreamMeter",
    "Metadata",
    "Ping",
    "StreamEvent",
    "StreamTranslator",
    "TextBlock",
    "ToolChoice",
    "ToolResultBlock",
    "ToolUseBlock",
    "URLSource",
    "decode_event",
    "finish_reason",
    "messages_usage",
    "sse_data",
    "translate_error",
    "translate_request",
    "translate_response",
]
