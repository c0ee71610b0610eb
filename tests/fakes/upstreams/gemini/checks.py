"""Request validation as strict as Google's (stricter: camelCase only); each raises `Refused`."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from tests.fakes.upstreams import server
from tests.fakes.upstreams.gemini.wire import (
    _FUNCTION_NAME,
    EMBEDDING_SIZE,
    _encode,
    _expect,
    _known,
)

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
