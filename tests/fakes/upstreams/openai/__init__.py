"""A fake OpenAI API on loopback: strict about what it receives, fast, and scriptable.

Run from the repository root:
`python -m tests.fakes.upstreams.openai --host 127.0.0.1 --port 8101 [--api-key sk-fake]
[--workers 1]`. It is a Granian RSGI application (`tests.fakes.upstreams.openai:app`, uvloop,
HTTP/1.1, no access log); the key reaches the workers through `FAKE_OPENAI_API_KEY`.

Wire behaviour, under `/v1`, checked like the real API: `Authorization: Bearer <key>` exactly
(else 401 `invalid_api_key`), a JSON object body with the required fields of the right types
(else 400 with an OpenAI error naming the `param`). Unknown fields are accepted (and recorded).

- `POST /v1/chat/completions` (`model`, non-empty `messages` of objects with a valid `role`):
  a `chat.completion`, or with `"stream": true` SSE `chat.completion.chunk` frames: one frame
  with the role and empty content, one frame per token, a finish frame (`"delta": {}`,
  `"finish_reason": "stop"`), a usage frame (`"choices": []`) only when
  `stream_options.include_usage` is true, then `data: [DONE]`.
- `POST /v1/completions` (`model`, `prompt`): a `text_completion`, or streamed the same way.
- `POST /v1/embeddings` (`model`, `input`): 8-float vectors, or base64 of little-endian
  float32 when `encoding_format` is `"base64"` (the openai SDK's default).
- `GET /v1/models`: a fixed list. Anything else: 404 `Invalid URL (METHOD /path)`.

The answer is always the same `chunks` tokens (`"tok0 tok1 ... "`, default 20): streamed one
token per frame, or concatenated in the plain answer, so the same request gives the same text
and the same usage both ways: `completion_tokens` = `chunks`, `prompt_tokens` = characters of
the text in the request // 4 + 1 (plus one per token id when token arrays are sent).

Control, without auth (the state lives in the worker process, so script behaviour and read
stats only with `--workers 1`):

- `POST /_fake/behaviour` `{"model": "<name>" | "*", "status", "error_message", "delay_ms",
  "first_token_delay_ms", "chunk_delay_ms", "chunks", "cut_after_chunks", "times"}`: one
  behaviour per model, a model's own beating `"*"`. `delay_ms` waits before the response head;
  `status` >= 400 then answers that error (streams too, before any frame);
  `first_token_delay_ms` waits after a stream's head, `chunk_delay_ms` between frames;
  `cut_after_chunks` sends that many frames (the role frame counts; more frames than the
  stream has: no cut) then shuts the socket down mid-body (no `[DONE]`, no last chunk of the
  chunked encoding: the client sees a protocol error, see `Cutter`); `times` makes the
  behaviour apply to the next N matching requests only. `GET` lists behaviours, `DELETE`
  clears them. Behaviours apply to chat, completions and embeddings, not to the model list.
- `POST /_fake/reset`: clear behaviours and stats.
- `GET /_fake/stats` (of the worker that answers): `total` (every `/v1` request, refused ones
  included), `requests` (`"POST /v1/chat/completions <model>"` -> count), `disconnects`
  (clients gone before the response ended: during a delay, or mid-stream; counted at once),
  `completed_streams`, `cut_streams`, `last_body` / `last_headers` (per model: the JSON body
  exactly as received, the headers with lower-case names).

Speed: identical bodies are parsed and checked once (a small cache per route), answers are
assembled from pre-encoded pieces; one worker serves well over 10,000 small requests/s.

The package: `wire` (behaviours, stats, error bodies), `checks` (request validation),
`answers` (pre-encoded answer pieces), `cutter` (dropping a connection mid-body), `service`
(the RSGI app, loaded lazily); `__main__` serves it.
"""

from importlib import import_module
from typing import Any

from tests.fakes.upstreams.openai.wire import API_KEY_ENV, CLI

__all__ = ["API_KEY_ENV", "CLI", "FakeOpenAI", "app"]


def __getattr__(name: str) -> Any:
    """`app`, `FakeOpenAI`: loaded on first use in a worker, once `API_KEY_ENV` holds the key."""
    return getattr(import_module(f"{__name__}.service"), name)
