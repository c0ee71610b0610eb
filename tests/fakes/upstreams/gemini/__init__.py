"""A fake Gemini API (AI Studio and Vertex AI) on loopback: strict, deterministic, scriptable.

Run from the repository root: `python -m tests.fakes.upstreams.gemini --host 127.0.0.1
--port 8102 [--api-key K] [--workers 1]`. A plain ASGI app (`tests.fakes.upstreams.gemini:app`)
served by Granian; the key reaches the workers through `FAKE_GEMINI_API_KEY`.

Routes, checked like the real API (errors are Google's `{"error": {"code", "message",
"status"}}` with its status codes):

- Direct: `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (SSE with
  `?alt=sse`, else one streamed JSON array, as Google does), `:batchEmbedContents`, and
  `GET /v1beta/models`; the key in `x-goog-api-key` (or `?key=`): missing → 403
  PERMISSION_DENIED, wrong → 400 INVALID_ARGUMENT "API key not valid", as Google answers.
- Vertex AI: `POST /v1/projects/{p}/locations/{r}/publishers/google/models/{model}:
  generateContent | streamGenerateContent` with `Authorization: Bearer <token>`, the token
  checked by `tests.fakes.gcp_token.token_is_valid` (imported when first needed) → else 401
  UNAUTHENTICATED.

Request checks: known top-level fields only; `contents` non-empty, roles `user`/`model`
(stricter than Google, which lets a lone content omit it), parts non-empty and each exactly one
of text (non-empty) / inlineData (base64) / fileData / functionCall (model turns) /
functionResponse (user turns, right after a model turn with as many functionCall parts, each
naming one of them); `systemInstruction` of text parts; `generationConfig` field names and
types (unknown → 400 "Unknown name"); `tools[].functionDeclarations[]` names and schemas (only
the keys of Google's `Schema` type: `additionalProperties`, `$schema`, `strict`, `$ref` are
refused; an OBJECT without properties too); `toolConfig.functionCallingConfig`. Only camelCase
names are accepted (Google also takes snake_case: stricter on purpose).

The conversation script is the one shared by every vendor fake (see the integration tests):
a tool call to the first declared function with `{"echo": <last user text>}` when tools are
declared and the user spoke last; `Tool said: <result>` after a function response; otherwise
`Hello! You said: <text>` with ` [image <type>]` / ` [image url]` and ` [system: a | b]`.
Usage: prompt = characters of all text // 4 + 1 (+10 per image), output = words (5 for a
call), `cachedContentTokenCount: 2` when there is a system instruction; streams send a word
per event with the same final usage. `candidateCount` n answers n identical candidates.

Control (no auth; state per worker, so script it with `--workers 1`):
`POST /_fake/behaviour` `{"model": "*" | name, "status": N, "message": str,
"cut_after_events": K, "finish_reason": "SAFETY", "block_reason": "SAFETY", "times": N}`
(`DELETE` clears, `GET` lists); `POST /_fake/reset`; `GET /_fake/stats`: `total`, `requests`
("METHOD path" → count), `last_body` / `last_headers` / `last_query` per path (credential
headers shown as "***"), `completed_streams`, `cut_streams`.

The package: `wire` (settings, error body, behaviours, stats), `checks` (request validation),
`answers` (the script as candidates, embeddings),
`service` (the ASGI app, loaded lazily); `__main__` serves it.
"""

from importlib import import_module
from typing import Any

from tests.fakes.upstreams.gemini.wire import API_KEY_ENV, CLI

__all__ = ["API_KEY_ENV", "CLI", "FakeGemini", "app"]


def __getattr__(name: str) -> Any:
    """`app`, `FakeGemini`: loaded on first use in a worker, once `API_KEY_ENV` holds the key."""
    return getattr(import_module(f"{__name__}.service"), name)
