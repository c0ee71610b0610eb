"""A fake Anthropic Messages API on loopback, with its Vertex AI and Bedrock hostings: strict.

Run from the repository root:
`python -m tests.fakes.upstreams.anthropic --host 127.0.0.1 --port 8102 [--api-key sk-fake]
[--workers 1]`. A plain ASGI application (`tests.fakes.upstreams.anthropic:app`) served by
Granian; the key reaches the workers through `FAKE_ANTHROPIC_API_KEY`.

Paths, each checked like the real service (auth first, then the body):

- `POST /v1/messages`: `x-api-key` must be the key (else 401 `authentication_error`) and an
  `anthropic-version` header must be there (else 400). The body needs `model`.
- `POST /v1/messages/count_tokens`: the same checks; answers `{"input_tokens": N}`.
- `POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict` and
  `:streamRawPredict`: `Authorization: Bearer <token>` checked by
  `tests.fakes.gcp_token.token_is_valid` (else 401 in Google's error shape); the body needs
  `"anthropic_version": "vertex-2023-10-16"`, no `model`, and `stream` true exactly on
  `:streamRawPredict`.
- `POST /model/{model-id}/invoke` and `/invoke-with-response-stream`: SigV4 checked by
  `tests.fakes.sigv4.verify_sigv4` (else 403 with its reason); the body needs
  `"anthropic_version": "bedrock-2023-05-31"` and neither `model` nor `stream`; errors are AWS
  shaped (`{"message": ...}` and `x-amzn-errortype`); streams are
  `application/vnd.amazon.eventstream` `chunk` events wrapping the Anthropic event JSONs.

The body checks (`check_messages`): the fields Anthropic knows (others: 400 "Extra inputs are
not permitted"), `max_tokens` an integer >= 1, `messages` alternating user/assistant from a
user turn, content strings or known blocks (text, image with a base64 or url source,
tool_use in assistant turns, tool_result in user turns answering the previous turn's
tool_use ids, and every tool_use answered), `system` a string or text blocks,
`stop_sequences` a list, tools with `input_schema`, `tool_choice` only with tools.

The conversation script (shared by every vendor fake): with tools and a last user turn that
holds no tool result, one call of the first tool with `{"echo": <last user text>}`; after a
tool result, `Tool said: <result>`; else `Hello! You said: <last user text>`, plus
` [image <media type>]` (` [image url]`) per image of that turn and ` [system: a | b]`. Input
tokens are the characters of all text // 4 + 1, plus 10 per image; with a system prompt 2 of
them are reported as `cache_read_input_tokens`. Output tokens are the answer's words (5 for a
tool call). Streams carry the same usage, one text delta per word, the tool input in three
`input_json_delta` fragments (the first empty, as Anthropic sends), and a `ping`.

Control, without auth (state lives in the worker: script it with `--workers 1`):
`POST /_fake/behaviour` `{"model": "<name>"|"*", "status", "error_message",
"cut_after_events", "unknown_events", "times"}` - `status` answers that error (in the path's
error shape), `cut_after_events` ends a stream after that many events with no
`message_stop`, `unknown_events` adds a thinking block, an unknown block, an unknown delta
and an unknown event (to answers too); `DELETE` clears, `GET` lists. `POST /_fake/reset`.
`GET /_fake/stats`: `total`, `requests` (`"POST <path>"` -> count), `last_body` and
`last_headers` by path, `completed_streams`, `cut_streams`.

The package: `wire` (settings, known fields, `Behaviour`), `checks` (request validation),
`answers` (the script, messages and stream events),
`service` (the ASGI app, loaded lazily); `__main__` serves it.
"""

from importlib import import_module
from typing import Any

from tests.fakes.upstreams.anthropic.wire import API_KEY_ENV, CLI

__all__ = ["API_KEY_ENV", "CLI", "FakeAnthropic", "app"]


def __getattr__(name: str) -> Any:
    """`app`, `FakeAnthropic`: loaded on first use in a worker, once `API_KEY_ENV` holds the key."""
    return getattr(import_module(f"{__name__}.service"), name)
