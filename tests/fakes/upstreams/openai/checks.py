"""Request validation the way the OpenAI API does it: the first problem wins, named by `param`.

A body is parsed and checked once (`Parsed`): benchmarks repeat the same bodies, and the
service's route cache keeps the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

import msgspec

from tests.fakes.upstreams.openai.wire import (
    _BAD_JSON,
    _NOT_AN_OBJECT,
    _decode,
    error_body,
)

# --- validation -----------------------------------------------------------------------------

Problem = tuple[str, str | None]
ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
ENCODINGS: Final = frozenset({"float", "base64"})


def _type_name(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), "an unknown type")


def _bad_type(param: str, expected: str, value: Any) -> Problem:
    got = _type_name(value)
    return f"Invalid type for '{param}': expected {expected}, but got {got} instead.", param


def _missing(param: str) -> Problem:
    return f"Missing required parameter: '{param}'.", param


def _check_common(body: dict[str, Any]) -> Problem | None:
    model = body.get("model")
    if model is None:
        return "you must provide a model parameter", "model"
    if not isinstance(model, str):
        return _bad_type("model", "a string", model)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return _bad_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            return _bad_type("stream_options", "an object", options)
        if not stream:
            message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            return message, "stream_options"
    return None


def _check_chat(body: dict[str, Any]) -> Problem | None:  # noqa: PLR0911 - one per rule
    messages = body.get("messages")
    if messages is None:
        return _missing("messages")
    if not isinstance(messages, list):
        return _bad_type("messages", "an array", messages)
    if not messages:
        message = "Invalid 'messages': empty array. Expected an array with minimum length 1, "
        return message + "but got an empty array instead.", "messages"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return _bad_type(f"messages[{i}]", "an object", message)
        role = message.get("role")
        if role is None:
            return _missing(f"messages[{i}].role")
        if not isinstance(role, str):
            return _bad_type(f"messages[{i}].role", "a string", role)
        if role not in ROLES:
            supported = ", ".join(f"'{r}'" for r in sorted(ROLES))
            text = f"Invalid value: '{role}'. Supported values are: {supported}."
            return text, f"messages[{i}].role"
    return None


def _is_text_or_tokens(value: Any) -> bool:
    """A string, a list of strings, a list of token ids or a list of token-id lists."""
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    if isinstance(first, str):
        return all(isinstance(v, str) for v in value)
    if isinstance(first, list):
        return all(isinstance(v, list) and v and _is_tokens(v) for v in value)
    return _is_tokens(value)


def _is_tokens(value: list[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _check_completions(body: dict[str, Any]) -> Problem | None:
    prompt = body.get("prompt")
    if prompt is None:
        return _missing("prompt")
    if not _is_text_or_tokens(prompt):
        return "Invalid value for 'prompt': expected a string or an array.", "prompt"
    return None


def _check_embeddings(body: dict[str, Any]) -> Problem | None:
    value = body.get("input")
    if value is None:
        return _missing("input")
    if value == "" or not _is_text_or_tokens(value):
        return "'$.input' is invalid. Please check the API reference.", "input"
    if isinstance(value, list) and any(v == "" for v in value):
        return "'$.input' is invalid. Please check the API reference.", "input"
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        text = f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'."
        return text, "encoding_format"
    if body.get("stream"):
        return "Unrecognized request argument supplied: stream", "stream"
    return None


class Parsed(NamedTuple):
    """What a request body says, worked out once per distinct body (they repeat in benchmarks)."""

    body: dict[str, Any]  # {} when the body is not a JSON object
    model: str | None
    error: bytes | None  # the 400 answer, when the body is invalid
    prompt_tokens: int


Check = Callable[[dict[str, Any]], "Problem | None"]


def _parse(raw: bytes, check: Check) -> Parsed:
    body: Any
    try:
        body = _decode(raw)
    except msgspec.DecodeError:
        return Parsed({}, None, _BAD_JSON, 0)
    if not isinstance(body, dict):
        return Parsed({}, None, _NOT_AN_OBJECT, 0)
    model = body.get("model")
    problem = _check_common(body) or check(body)
    if problem is not None:
        return Parsed(body, model if isinstance(model, str) else None, error_body(*problem), 0)
    return Parsed(body, model, None, _prompt_tokens(body))


def _prompt_tokens(body: dict[str, Any]) -> int:
    """Deterministic: characters of the request's text // 4 + 1, plus one per token id."""
    chars = ids = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    chars += len(text)
    for field in ("prompt", "input"):
        value = body.get(field)
        items = value if isinstance(value, list) else (value,)
        for item in items:
            if isinstance(item, str):
                chars += len(item)
            elif isinstance(item, int):
                ids += 1
            elif isinstance(item, list):
                ids += len(item)
    return chars // 4 + 1 + ids
