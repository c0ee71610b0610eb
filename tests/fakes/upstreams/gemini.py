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
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import re
from typing import Any, Final
from urllib.parse import parse_qs

import msgspec

from tests.fakes.upstreams import control, server
from tests.fakes.upstreams import script as conversation
from tests.fakes.upstreams.script import Answer

API_KEY_ENV: Final = "FAKE_GEMINI_API_KEY"
CLI: Final = server.Cli("A fake Gemini API.", 8102, "fake-gemini-key", API_KEY_ENV)
EMBEDDING_SIZE: Final = 8

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_ids = itertools.count(1)

STATUS_NAMES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
BLOCKING: Final = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"})
_DIRECT = re.compile(r"^/v1beta/models/([^/:]+):([A-Za-z]+)$")
_VERTEX = re.compile(
    r"^/v1/projects/[^/]+/locations/[^/]+/publishers/google/models/([^/:]+):([A-Za-z]+)$"
)
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,63}$")
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "x-goog-api-key"})


class Behaviour(control.Behaviour):
    finish_reason: str | None = None
    block_reason: str | None = None


class Stats(control.Stats):
    """The shared stats, plus the query string of the last request per path."""

    def __init__(self) -> None:
        super().__init__()
        self.last_query: dict[str, str] = {}


def error_body(status: int, message: str) -> bytes:
    name = STATUS_NAMES.get(status, "UNKNOWN")
    return _encode({"error": {"code": status, "message": message, "status": name}})


def _unknown(name: str, where: str) -> server.Refused:
    at = f" at '{where}'" if where else ""
    return server.Refused(
        f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
    )


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> None:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise server.Refused(f"Invalid value at '{where}', {_encode(value).decode()}")
    if not isinstance(value, kind):
        raise server.Refused(f"Invalid value at '{where}', {_encode(value).decode()}")


def _known(obj: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise server.Refused(f"Invalid value at '{where}': expected an object")
    for key in obj:
        if key not in allowed:
            raise _unknown(key, where)
    return obj


# --- request checks -------------------------------------------------------------------------

TOP_FIELDS: Final = frozenset(
    {
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "generationConfig",
        "safetySettings",
        "cachedContent",
        "labels",
    }
)
PART_DATA: Final = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
PART_FIELDS: Final = frozenset({*PART_DATA, "thought", "thoughtSignature", "videoMetadata"})
GENERATION_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "temperature": (int, float),
    "topP": (int, float),
    "topK": int,
    "maxOutputTokens": int,
    "stopSequences": list,
    "candidateCount": int,
    "seed": int,
    "responseMimeType": str,
    "responseSchema": dict,
    "responseJsonSchema": dict,
    "presencePenalty": (int, float),
    "frequencyPenalty": (int, float),
    "responseLogprobs": bool,
    "logprobs": int,
    "thinkingConfig": dict,
    "responseModalities": list,
    "mediaResolution": str,
}
MIME_TYPES: Final = frozenset({"text/plain", "application/json", "text/x.enum"})
SCHEMA_FIELDS: Final = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
SCHEMA_TYPES: Final = frozenset(
    {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
)


def check_schema(schema: Any, where: str) -> None:
    """Google's `Schema` message: its fields only, a single type name, nested schemas."""
    node = _known(schema, SCHEMA_FIELDS, where)
    kind = node.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in SCHEMA_TYPES):
        raise server.Refused(f"Invalid value at '{where}.type', {_encode(kind).decode()}")
    for name, sub in (node.get("properties") or {}).items():
        check_schema(sub, f"{where}.properties[{name}].value")
    if "items" in node:
        check_schema(node["items"], f"{where}.items")
    for i, sub in enumerate(node.get("anyOf") or ()):
        check_schema(sub, f"{where}.any_of[{i}]")


def _check_part(part: Any, role: str, where: str) -> None:
    part = _known(part, PART_FIELDS, where)
    data = [key for key in PART_DATA if key in part]
    if len(data) != 1:
        raise server.Refused(f"* {where}: a part must hold exactly one of {', '.join(PART_DATA)}")
    kind = data[0]
    value = part[kind]
    if kind == "text":
        _expect(value, str, f"{where}.text")
        if not value:
            raise server.Refused("Unable to submit request because it has an empty text parameter.")
    elif kind == "inlineData":
        blob = _known(value, frozenset({"mimeType", "data"}), f"{where}.inline_data")
        if not isinstance(blob.get("mimeType"), str) or not isinstance(blob.get("data"), str):
            raise server.Refused(f"* {where}.inline_data: mimeType and data are required")
        try:
            base64.b64decode(blob["data"], validate=True)
        except binascii.Error as exc:
            raise server.Refused(
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES)"
            ) from exc
    elif kind == "fileData":
        file = _known(value, frozenset({"mimeType", "fileUri"}), f"{where}.file_data")
        if not isinstance(file.get("fileUri"), str):
            raise server.Refused(f"* {where}.file_data.file_uri: a file URI is required")
    elif kind == "functionCall":
        if role != "model":
            raise server.Refused(f"* {where}: function calls belong to model turns")
        call = _known(value, frozenset({"name", "args", "id"}), f"{where}.function_call")
        _expect(call.get("name"), str, f"{where}.function_call.name")
        _expect(call.get("args", {}), dict, f"{where}.function_call.args")
    else:
        if role != "user":
            raise server.Refused(f"* {where}: function responses belong to user turns")
        response = _known(
            value, frozenset({"name", "response", "id"}), f"{where}.function_response"
        )
        _expect(response.get("name"), str, f"{where}.function_response.name")
        _expect(response.get("response"), dict, f"{where}.function_response.response")


def _check_turns(contents: list[dict[str, Any]]) -> None:
    """Function responses come right after a model turn with exactly as many calls."""
    for i, content in enumerate(contents):
        responses = [p["functionResponse"] for p in content["parts"] if "functionResponse" in p]
        if not responses:
            continue
        previous = contents[i - 1] if i else None
        calls = [
            p["functionCall"]["name"]
            for p in (previous["parts"] if previous and previous["role"] == "model" else ())
            if "functionCall" in p
        ]
        if not calls:
            raise server.Refused(
                "Please ensure that function response turn comes immediately after a function "
                "call turn."
            )
        if len(calls) != len(responses):
            raise server.Refused(
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )
        for response in responses:
            if response["name"] not in calls:
                raise server.Refused(
                    f"* GenerateContentRequest.contents[{i}]: function response "
                    f"'{response['name']}' answers no function call of the previous turn"
                )


def _check_contents(body: dict[str, Any]) -> None:
    contents = body.get("contents")
    if not contents:
        raise server.Refused("* GenerateContentRequest.contents: contents is not specified")
    _expect(contents, list, "contents")
    for i, item in enumerate(contents):
        where = f"contents[{i}]"
        content = _known(item, frozenset({"role", "parts"}), where)
        role = content.get("role")
        if role not in ("user", "model"):
            raise server.Refused("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise server.Refused(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
            )
        for j, part in enumerate(parts):
            _check_part(part, role, f"{where}.parts[{j}]")
    _check_turns(contents)
    system = body.get("systemInstruction")
    if system is not None:
        system = _known(system, frozenset({"role", "parts"}), "system_instruction")
        parts = system.get("parts")
        if not isinstance(parts, list) or not parts:
            raise server.Refused(
                "* GenerateContentRequest.system_instruction.parts: must not be empty"
            )
        for j, part in enumerate(parts):
            _known(part, frozenset({"text"}), f"system_instruction.parts[{j}]")
            _expect(part.get("text"), str, f"system_instruction.parts[{j}].text")


def _check_generation(body: dict[str, Any]) -> None:
    config = body.get("generationConfig")
    if config is None:
        return
    config = _known(config, frozenset(GENERATION_TYPES), "generation_config")
    for name, value in config.items():
        _expect(value, GENERATION_TYPES[name], f"generation_config.{name}")
    stops = config.get("stopSequences", [])
    if not all(isinstance(s, str) for s in stops) or len(stops) > 5:
        raise server.Refused("* GenerationConfig.stop_sequences: at most 5 strings")
    if config.get("candidateCount", 1) < 1:
        raise server.Refused("* GenerationConfig.candidate_count: must be positive")
    mime = config.get("responseMimeType")
    if mime is not None and mime not in MIME_TYPES:
        raise server.Refused(f"* GenerationConfig.response_mime_type: unsupported mime type {mime}")
    if "responseSchema" in config:
        if mime != "application/json":
            raise server.Refused(
                "* GenerationConfig.response_schema: only supported with response_mime_type "
                "application/json"
            )
        check_schema(config["responseSchema"], "generation_config.response_schema")


def _declared(body: dict[str, Any]) -> list[str]:
    """Check `tools` and `toolConfig`; the declared function names, in order."""
    names: list[str] = []
    tools = body.get("tools")
    if tools is not None:
        _expect(tools, list, "tools")
    for i, item in enumerate(tools or ()):
        tool = _known(
            item,
            frozenset({"functionDeclarations", "googleSearch", "codeExecution"}),
            f"tools[{i}]",
        )
        for j, entry in enumerate(tool.get("functionDeclarations") or ()):
            where = f"tools[{i}].function_declarations[{j}]"
            declaration = _known(
                entry, frozenset({"name", "description", "parameters", "response"}), where
            )
            name = declaration.get("name")
            if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
                raise server.Refused(
                    f"* GenerateContentRequest.{where}.name: Invalid function name."
                )
            parameters = declaration.get("parameters")
            if parameters is not None:
                check_schema(parameters, f"{where}.parameters")
                if str(parameters.get("type", "")).upper() == "OBJECT" and not parameters.get(
                    "properties"
                ):
                    raise server.Refused(
                        f"* GenerateContentRequest.{where}.parameters.properties: should be "
                        "non-empty for OBJECT type"
                    )
            names.append(name)
    config = body.get("toolConfig")
    if config is not None:
        config = _known(config, frozenset({"functionCallingConfig"}), "tool_config")
        calling = _known(
            config.get("functionCallingConfig"),
            frozenset({"mode", "allowedFunctionNames"}),
            "tool_config.function_calling_config",
        )
        if calling.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
            raise server.Refused("Invalid value at 'tool_config.function_calling_config.mode'")
        allowed = calling.get("allowedFunctionNames")
        if allowed is not None and (
            calling["mode"] != "ANY" or not all(name in names for name in allowed)
        ):
            raise server.Refused(
                "* GenerateContentRequest.tool_config.function_calling_config."
                "allowed_function_names: only with mode ANY, naming declared functions"
            )
    return names


def check_generate(body: Any) -> list[str]:
    """Refuse what Google refuses; return the declared function names."""
    body = _known(body, TOP_FIELDS, "")
    _check_contents(body)
    _check_generation(body)
    return _declared(body)


def check_embed(body: Any, model: str) -> list[tuple[str, int]]:
    """The texts to embed and their dimensions."""
    body = _known(body, frozenset({"requests"}), "")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise server.Refused("* BatchEmbedContentsRequest.requests: requests is not specified")
    out = []
    fields = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})
    for i, item in enumerate(requests):
        where = f"requests[{i}]"
        request = _known(item, fields, where)
        if request.get("model") != f"models/{model}":
            raise server.Refused(
                f"* BatchEmbedContentsRequest.{where}.model: the model must be models/{model}, "
                "the model in the path"
            )
        content = _known(request.get("content"), frozenset({"parts", "role"}), f"{where}.content")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise server.Refused(
                f"* BatchEmbedContentsRequest.{where}.content.parts: must not be empty"
            )
        texts = []
        for j, part in enumerate(parts):
            _known(part, frozenset({"text"}), f"{where}.content.parts[{j}]")
            _expect(part.get("text"), str, f"{where}.content.parts[{j}].text")
            texts.append(part["text"])
        size = request.get("outputDimensionality", EMBEDDING_SIZE)
        _expect(size, int, f"{where}.output_dimensionality")
        out.append((" ".join(texts), size))
    return out


# --- the conversation script ----------------------------------------------------------------


def _result_text(response: dict[str, Any]) -> str:
    content = response.get("content", response)
    return content if isinstance(content, str) else _encode(content).decode()


def script(body: dict[str, Any], declared: list[str]) -> Answer:
    """The shared script (`tests.fakes.upstreams.script`) over a Gemini body."""
    contents = body["contents"]
    system = [p["text"] for p in (body.get("systemInstruction") or {}).get("parts", ())]
    chars = sum(map(len, system))
    images = 0
    for content in contents:
        for part in content["parts"]:
            chars += len(part.get("text", ""))
            if "functionResponse" in part:
                chars += len(_result_text(part["functionResponse"]["response"]))
            images += "inlineData" in part or "fileData" in part
    prompt = conversation.prompt_tokens(chars, images)
    cached = conversation.CACHED_TOKENS if system else 0
    last = contents[-1]
    parts = last["parts"]
    results = [p["functionResponse"]["response"] for p in parts if "functionResponse" in p]
    said = " ".join(p["text"] for p in parts if "text" in p)
    text = conversation.reply(
        tool_result=_result_text(results[-1]) if results else None,
        call=bool(declared) and last["role"] == "user",
        said=said,
        images=_first_image(parts),
        system=system,
    )
    output = conversation.output_tokens(text)
    if text is None:
        call = {"name": declared[0], "args": {"echo": said}}
        return Answer(call=call, prompt_tokens=prompt, cached_tokens=cached, output_tokens=output)
    return Answer(text=text, prompt_tokens=prompt, cached_tokens=cached, output_tokens=output)


def _first_image(parts: list[dict[str, Any]]) -> list[str]:
    """The media type of the turn's first inline image, or `url` for a first http(s) file."""
    for part in parts:
        if "inlineData" in part:
            return [part["inlineData"]["mimeType"]]
        if "fileData" in part and part["fileData"]["fileUri"].startswith("http"):
            return ["url"]
    return []


def usage_metadata(answer: Answer, output: int) -> dict[str, int]:
    meta = {
        "promptTokenCount": answer.prompt_tokens,
        "candidatesTokenCount": output,
        "totalTokenCount": answer.prompt_tokens + output,
    }
    if answer.cached_tokens:
        meta["cachedContentTokenCount"] = answer.cached_tokens
    return meta


def _candidates(parts: list[dict[str, Any]], count: int, finish: str | None) -> list[Any]:
    out = []
    for index in range(count):
        candidate: dict[str, Any] = {"index": index}
        if parts:
            candidate["content"] = {"role": "model", "parts": parts}
        if finish is not None:
            candidate["finishReason"] = finish
        out.append(candidate)
    return out


def events(answer: Answer, model: str, count: int, behaviour: Behaviour) -> list[bytes]:
    """The answer as stream events (a whole answer is the same with one event)."""
    head = {"modelVersion": model, "responseId": f"fake-{next(_ids)}"}
    total = answer.output_tokens * count
    if behaviour.block_reason:
        usage = usage_metadata(answer, 0)
        blocked = {"promptFeedback": {"blockReason": behaviour.block_reason}}
        return [_encode({**blocked, "usageMetadata": usage, **head})]
    finish = behaviour.finish_reason or "STOP"
    if answer.call is not None:
        first = {
            "candidates": _candidates([{"functionCall": answer.call}], count, None),
            "usageMetadata": usage_metadata(answer, total),
            **head,
        }
        last = {
            "candidates": _candidates([{"text": ""}], count, finish),
            "usageMetadata": usage_metadata(answer, total),
            **head,
        }
        return [_encode(first), _encode(last)]
    words = answer.text.split(" ")
    out = []
    for i, word in enumerate(words):
        end = i == len(words) - 1
        piece = word if i == 0 else " " + word
        parts = [] if end and finish in BLOCKING else [{"text": piece}]
        done = count * (i + 1) if not end else total
        event = {
            "candidates": _candidates(parts, count, finish if end else None),
            "usageMetadata": usage_metadata(answer, done),
            **head,
        }
        out.append(_encode(event))
    return out


def whole(answer: Answer, model: str, count: int, behaviour: Behaviour) -> bytes:
    head = {"modelVersion": model, "responseId": f"fake-{next(_ids)}"}
    total = answer.output_tokens * count
    if behaviour.block_reason:
        blocked = {"promptFeedback": {"blockReason": behaviour.block_reason}}
        return _encode({**blocked, "usageMetadata": usage_metadata(answer, 0), **head})
    finish = behaviour.finish_reason or "STOP"
    if answer.call is not None:
        parts: list[dict[str, Any]] = [{"functionCall": answer.call}]
    else:
        parts = [] if finish in BLOCKING else [{"text": answer.text}]
    candidates = _candidates(parts, count, finish)
    return _encode(
        {"candidates": candidates, "usageMetadata": usage_metadata(answer, total), **head}
    )


def check_predict(body: Any) -> list[tuple[str, int]]:
    """Vertex AI's text-embedding `:predict` body: the texts and their dimensions."""
    body = _known(body, frozenset({"instances", "parameters"}), "")
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise server.Refused("instances must be a non-empty list")
    parameters = _known(
        body.get("parameters", {}),
        frozenset({"outputDimensionality", "autoTruncate"}),
        "parameters",
    )
    size = parameters.get("outputDimensionality", EMBEDDING_SIZE)
    _expect(size, int, "parameters.outputDimensionality")
    out = []
    for i, item in enumerate(instances):
        instance = _known(item, frozenset({"content", "task_type", "title"}), f"instances[{i}]")
        _expect(instance.get("content"), str, f"instances[{i}].content")
        out.append((instance["content"], size))
    return out


def predictions(texts: list[tuple[str, int]]) -> bytes:
    """The `:predict` answer: the same vectors as `batchEmbedContents`, with token counts."""
    vectors = msgspec.json.decode(embeddings(texts))["embeddings"]
    return _encode(
        {
            "predictions": [
                {
                    "embeddings": {
                        "values": vector["values"],
                        "statistics": {"token_count": len(text) // 4 + 1, "truncated": False},
                    }
                }
                for vector, (text, _) in zip(vectors, texts, strict=True)
            ],
            "metadata": {"billableCharacterCount": sum(len(text) for text, _ in texts)},
        }
    )


def embeddings(requests: list[tuple[str, int]]) -> bytes:
    out = []
    for text, size in requests:
        seed = sum(text.encode()) % 97
        out.append({"values": [round((seed + i) / 100, 4) for i in range(size)]})
    return _encode({"embeddings": out})


MODELS: Final = _encode(
    {
        "models": [
            {
                "name": "models/gemini-2.0-flash",
                "displayName": "Gemini 2.0 Flash",
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            },
            {
                "name": "models/gemini-2.5-pro",
                "displayName": "Gemini 2.5 Pro",
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            },
            {
                "name": "models/text-embedding-004",
                "displayName": "Text Embedding 004",
                "supportedGenerationMethods": ["embedContent", "batchEmbedContents"],
            },
        ]
    }
)


# --- the ASGI application -------------------------------------------------------------------

JSON: Final = [(b"content-type", b"application/json; charset=UTF-8")]


def token_is_valid(token: str) -> bool:
    """The shared fake token store's verdict (another module; imported only when needed)."""
    from tests.fakes.gcp_token import token_is_valid as valid  # noqa: PLC0415

    return bool(valid(token))


class FakeGemini(server.AsgiFake):
    json_headers = JSON

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.control = control.Control(Behaviour(), Stats, error_body)

    async def api(self, scope: server.Scope, raw: bytes, send: server.Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            await self._serve(scope, method, path, raw, send)
        except server.Refused as exc:
            await server.respond(send, exc.status, error_body(exc.status, exc.message), JSON)

    def _record(self, scope: server.Scope, method: str, path: str, raw: bytes) -> dict[str, str]:
        stats = self.control.stats
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        shown = {k: "***" if k in _CREDENTIAL_HEADERS else v for k, v in headers.items()}
        stats.count(f"{method} {path}", path, shown)
        stats.last_query[path] = scope["query_string"].decode("latin-1")
        if raw:
            stats.last_body[path] = msgspec.Raw(raw)
        return headers

    async def _serve(
        self, scope: server.Scope, method: str, path: str, raw: bytes, send: server.Send
    ) -> None:
        headers = self._record(scope, method, path, raw)
        query = parse_qs(scope["query_string"].decode("latin-1"))
        direct, vertex = _DIRECT.match(path), _VERTEX.match(path)
        if method == "GET" and path == "/v1beta/models":
            self._check_key(headers, query)
            await server.respond(send, 200, MODELS, JSON)
            return
        match = direct or vertex
        if method != "POST" or match is None:
            raise server.Refused(f"The requested URL {path} was not found on this server.", 404)
        if direct:
            self._check_key(headers, query)
        else:
            _check_token(headers)
        model, action = match.group(1), match.group(2)
        try:
            body = _decode(raw)
        except msgspec.DecodeError as exc:
            raise server.Refused(f"Invalid JSON payload received. {exc}") from exc
        if action == "batchEmbedContents" and direct:
            vectors = embeddings(check_embed(body, model))
            self._behaviour(model)  # embeddings take scripted statuses too
            await server.respond(send, 200, vectors, JSON)
            return
        if action == "predict" and vertex:
            texts = check_predict(body)
            self._behaviour(model)
            await server.respond(send, 200, predictions(texts), JSON)
            return
        if action not in ("generateContent", "streamGenerateContent"):
            raise server.Refused(f"Method {action} not found for models/{model}.", 404)
        declared = check_generate(body)
        behaviour = self._behaviour(model)
        answer = script(body, declared)
        count = body.get("generationConfig", {}).get("candidateCount", 1)
        if action == "generateContent":
            await server.respond(send, 200, whole(answer, model, count, behaviour), JSON)
            return
        sse = query.get("alt") == ["sse"]
        await self._stream(send, events(answer, model, count, behaviour), behaviour, sse=sse)

    def _check_key(self, headers: dict[str, str], query: dict[str, list[str]]) -> None:
        key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
        if not key:
            raise server.Refused(
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
                403,
            )
        if key != self.api_key:
            raise server.Refused("API key not valid. Please pass a valid API key.", 400)

    def _behaviour(self, model: str) -> Behaviour:
        behaviour = self.control.take(model)
        if behaviour.status is not None and behaviour.status >= 400:
            message = behaviour.message or f"Fake upstream error {behaviour.status}"
            raise server.Refused(message, behaviour.status)
        return behaviour

    async def _stream(
        self, send: server.Send, frames: list[bytes], behaviour: Behaviour, *, sse: bool
    ) -> None:
        if sse:
            pieces = [b"data: " + frame + b"\r\n\r\n" for frame in frames]
            kind = b"text/event-stream"
        else:  # without alt=sse Google streams one JSON array, element by element
            pieces = [(b"[" if i == 0 else b",\r\n") + f for i, f in enumerate(frames)]
            pieces.append(b"]")
            kind = b"application/json; charset=UTF-8"
        headers = [(b"content-type", kind)]
        await server.stream_or_cut(
            send, headers, pieces, behaviour.cut_after_events, self.control.stats
        )


def _check_token(headers: dict[str, str]) -> None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme != "Bearer" or not token or not token_is_valid(token):
        raise server.Refused(
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential.",
            401,
        )


app = FakeGemini(os.environ.get(API_KEY_ENV, "fake-gemini-key"))


def main(argv: list[str] | None = None) -> None:
    """Serve the fake with Granian until SIGINT/SIGTERM."""
    server.serve("tests.fakes.upstreams.gemini:app", CLI, argv)


if __name__ == "__main__":
    main()
