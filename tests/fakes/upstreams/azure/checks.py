"""Request validation like the OpenAI API's behind Azure: the first problem, named by `param`."""

from __future__ import annotations

from typing import Any

from tests.fakes.upstreams.azure.wire import (
    _TOOL_NAME,
    ROLES,
    Problem,
)

# --- validation -----------------------------------------------------------------------------


def _type_problem(param: str, expected: str) -> Problem:
    return f"Invalid type for '{param}': expected {expected}.", param


def _check_parts(content: list[Any], where: str, *, images: bool) -> Problem | None:
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if images and kind == "image_url":
            image = part.get("image_url")
            if isinstance(image, dict) and isinstance(image.get("url"), str):
                continue
            return _type_problem(f"{param}.image_url", "an object with a string 'url'")
        return f"Invalid content part at '{param}'.", param
    return None


def _check_content(message: dict[str, Any], where: str, role: str) -> Problem | None:
    content = message.get("content")
    if role == "assistant" and content is None:
        if message.get("tool_calls") or "content" in message:
            return None
        return f"Missing required parameter: '{where}.content'.", f"{where}.content"
    if isinstance(content, str):
        return None
    if isinstance(content, list):
        return _check_parts(content, where, images=role == "user")
    if content is None:
        return f"Missing required parameter: '{where}.content'.", f"{where}.content"
    return _type_problem(f"{where}.content", "a string or an array")


def _check_tool_calls(calls: Any, where: str) -> Problem | None:
    if not isinstance(calls, list) or not calls:
        return _type_problem(f"{where}.tool_calls", "a non-empty array")
    for k, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        valid = (
            isinstance(call, dict)
            and isinstance(call.get("id"), str)
            and call.get("type") == "function"
            and isinstance(function, dict)
            and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments"), str)
        )
        if not valid:
            return _type_problem(f"{where}.tool_calls[{k}]", "{id, type: function, function}")
    return None


def _check_message(  # noqa: PLR0911 - one return per rule
    message: Any, i: int, open_calls: set[str]
) -> Problem | None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        return _type_problem(where, "an object")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        supported = ", ".join(f"'{r}'" for r in sorted(ROLES))
        return f"Invalid value: '{role}'. Supported values are: {supported}.", f"{where}.role"
    problem = _check_content(message, where, role)
    if problem is not None:
        return problem
    if role == "assistant" and "tool_calls" in message:
        problem = _check_tool_calls(message["tool_calls"], where)
        if problem is not None:
            return problem
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            text = "Missing parameter 'tool_call_id': messages with role 'tool' must have a "
            return text + "'tool_call_id'.", f"{where}.tool_call_id"
        if call_id not in open_calls:
            text = "Invalid parameter: messages with role 'tool' must be a response to a "
            return text + "preceeding message with 'tool_calls'.", f"{where}.role"
    return None


def _check_messages(messages: Any) -> Problem | None:
    if messages is None:
        return "Missing required parameter: 'messages'.", "messages"
    if not isinstance(messages, list) or not messages:
        return "Invalid 'messages': expected a non-empty array.", "messages"
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        problem = _check_message(message, i, open_calls)
        if problem is not None:
            return problem
        role = message.get("role")
        if role == "assistant":
            open_calls = {call["id"] for call in message.get("tool_calls") or ()}
        elif role != "tool":
            open_calls = set()
    return None


def _check_tools(tools: Any) -> Problem | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        return _type_problem("tools", "an array")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            return _type_problem(f"tools[{i}]", "{type: function, function}")
        if not isinstance(function, dict) or not _TOOL_NAME.fullmatch(function.get("name") or ""):
            text = f"Invalid 'tools[{i}].function.name': must match ^[a-zA-Z0-9_-]{{1,64}}$."
            return text, f"tools[{i}].function.name"
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            return _type_problem(f"tools[{i}].function.parameters", "an object")
    return None


def _check_stream(body: dict[str, Any]) -> Problem | None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return _type_problem("stream", "a boolean")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            text = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            return text, "stream_options"
        if not isinstance(options, dict):
            return _type_problem("stream_options", "an object")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            return _type_problem("stream_options.include_usage", "a boolean")
    return None


def check_chat(body: dict[str, Any]) -> Problem | None:
    n = body.get("n")
    if n is not None and n != 1:
        return "This fake serves n=1 only.", "n"
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            return _type_problem(name, "a positive integer")
    return (
        _check_messages(body.get("messages"))
        or _check_tools(body.get("tools"))
        or (_check_stream(body))
    )


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) for v in value)


def check_embeddings(body: dict[str, Any]) -> Problem | None:
    value = body.get("input")
    if value is None:
        return "Missing required parameter: 'input'.", "input"
    valid = (
        (isinstance(value, str) and value != "")
        or _is_tokens(value)
        or (
            isinstance(value, list)
            and bool(value)
            and all((isinstance(v, str) and v != "") or _is_tokens(v) for v in value)
        )
    )
    if not valid:
        return "'$.input' is invalid. Please check the API reference.", "input"
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        return f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.", (
            "encoding_format"
        )
    if "stream" in body:
        return "Unrecognized request argument supplied: stream", "stream"
    return None
