"""A fake Azure OpenAI resource on loopback: both URL styles, strict like the real service.

Run from the repository root: `python -m tests.fakes.upstreams.azure --host 127.0.0.1 --port P
[--api-key K] [--workers 1]`; an ASGI app (`tests.fakes.upstreams.azure:app`) served by Granian.
The key reaches the workers through `FAKE_AZURE_API_KEY`.

Routes (POST):
- `/openai/deployments/{deployment}/chat/completions?api-version=YYYY-MM-DD[-preview]` and
  `/openai/deployments/{deployment}/embeddings?api-version=...`: the deployment names the model;
  without a well-formed `api-version` Azure answers 404 `{"error": {"code": "404", "message":
  "Resource not found"}}`, and so does this fake.
- `/openai/v1/chat/completions`, `/openai/v1/embeddings`: the v1 API, `model` required in the
  body, no `api-version` needed.
- Every route wants the `api-key` header (else 401 in Azure's shape: `{"error": {"code": "401",
  "message": "Access denied due to invalid subscription key..."}}`); unknown paths get 404.

Bodies are checked like the OpenAI API (400 `{"error": {message, type, param, code}}`): message
roles and content shapes, a `tool` message must answer a `tool_calls` id of the assistant message
before it, `tools` entries, `stream`/`stream_options` (only with `stream`), `n` (1 only here).

Answers follow the conversation script shared by every vendor fake:
- tools declared and the last message from the user: one call of the first tool with
  arguments `{"echo": "<last user text>"}`, finish `tool_calls`;
- the last message a tool result: `Tool said: <result text>`;
- else `Hello! You said: <last user text>`, plus ` [image <media type>]` (` [image url]` for an
  http(s) URL) per image of that message, plus ` [system: <system texts joined by " | ">]`.
Usage: prompt = characters of all message text // 4 + 1 + 10 per image; completion = words of
the answer (5 for a tool call); with a system prompt 2 prompt tokens are reported as cached in
`prompt_tokens_details.cached_tokens`. Streams carry the same usage (a last `"choices": []`
chunk, only when `stream_options.include_usage` is true), one word per delta, tool arguments in
three fragments, and start like Azure's with a content-filter annotation chunk (`"choices": []`,
`prompt_filter_results`, empty id and model) before the role chunk.

Control (no auth; use `--workers 1`): `POST /_fake/behaviour` `{"model": "<deployment or
model>" | "*", "status": N, "message": "...", "cut_after_events": K, "times": T}` (an error
status for the matching requests, or a stream that ends after K events - the annotation chunk
counts - with no `[DONE]`; `times` limits it to T requests; a model's own beats `*`), `GET` /
`DELETE /_fake/behaviour`, `POST /_fake/reset`, `GET /_fake/stats`: `total`, `requests`
(`"POST <path>?<query>"` -> count), `paths` (every path with its query string, in order),
`last_body` / `last_headers` (by path), `completed_streams`, `cut_streams`.

The package: `wire` (settings, routes, errors, behaviours, stats), `checks` (request
validation), `answers` (the script as completions, chunks, embeddings), `service` (the ASGI app,
loaded lazily); `__main__` serves it.
"""

from importlib import import_module
from typing import Any

from tests.fakes.upstreams.azure.wire import API_KEY_ENV, CLI

__all__ = ["API_KEY_ENV", "CLI", "FakeAzure", "app"]


def __getattr__(name: str) -> Any:
    """`app`, `FakeAzure`: loaded on first use in a worker, once `API_KEY_ENV` holds the key."""
    return getattr(import_module(f"{__name__}.service"), name)
