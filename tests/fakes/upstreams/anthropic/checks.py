"""Request validation as strict as the Messages API: each check raises `server.Refused`."""

from __future__ import annotations

import base64
from typing import Any

from tests.fakes.upstreams import server
from tests.fakes.upstreams.anthropic.wire import (
    MEDIA_TYPES,
    MESSAGE_KEYS,
)

# --- checks -----------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_messages(body: Any, *, keys: frozenset[str] = MESSAGE_KEYS, count: bool = False) -> None:
    """Raise `Refused` where the Messages API would refuse `body` (model checked by caller)."""
    if not isinstance(body, dict):
        raise server.Refused("Input should be a valid dictionary")
    for key in body:
        if key not in keys:
            raise server.Refused(f"{key}: Extra inputs are not permitted")
    if not count:
        if "max_tokens" not in body:
            raise server.Refused("max_tokens: Field required")
        if not _is_int(body["max_tokens"]) or body["max_tokens"] < 1:
            raise server.Refused("max_tokens: Input should be a valid integer greater than 0")
    _check_turns(body.get("messages"))
    _check_system(body.get("system"))
    _check_options(body)
    _check_tools(body.get("tools"), body.get("tool_choice"), "tool_choice" in body)


def _check_options(body: dict[str, Any]) -> None:
    stop = body.get("stop_sequences")
    if "stop_sequences" in body and (
        not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)
    ):
        raise server.Refused("stop_sequences: Input should be a valid list")
    for name in ("temperature", "top_p"):
        if name in body and (not _is_number(body[name]) or not 0 <= body[name] <= 1):
            raise server.Refused(f"{name}: Input should be a number between 0 and 1")
    metadata = body.get("metadata")
    if "metadata" in body and (
        not isinstance(metadata, dict)
        or set(metadata) - {"user_id"}
        or not isinstance(metadata.get("user_id", ""), str)
    ):
        raise server.Refused("metadata: only user_id (a string) is permitted")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise server.Refused("stream: Input should be a valid boolean")


def _check_turns(messages: Any) -> None:
    if messages is None:
        raise server.Refused("messages: Field required")
    if not isinstance(messages, list) or not messages:
        raise server.Refused("messages: at least one message is required")
    previous_uses: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise server.Refused(f"messages.{i}: a message has exactly a role and content")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise server.Refused(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise server.Refused(
                'messages: first message must use the "user" role'
                if i == 0
                else 'messages: roles must alternate between "user" and "assistant", but found '
                f'multiple "{role}" roles in a row'
            )
        content = message.get("content")
        last = i == len(messages) - 1
        if content in ("", []) and not (last and role == "assistant"):
            raise server.Refused(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        blocks = content if isinstance(content, list) else []
        if not isinstance(content, str | list):
            raise server.Refused(f"messages.{i}.content: Input should be a valid string or list")
        for j, block in enumerate(blocks):
            _check_block(block, f"messages.{i}.content.{j}", role)
        if role == "user":
            _check_answers(i, blocks, previous_uses)
        previous_uses = {b["id"] for b in blocks if b["type"] == "tool_use"}


def _check_answers(i: int, blocks: list[dict[str, Any]], uses: set[str]) -> None:
    """A user turn answers exactly the previous turn's tool_use ids with tool_result blocks."""
    answered = {b["tool_use_id"] for b in blocks if b["type"] == "tool_result"}
    if answered - uses:
        raise server.Refused(
            f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` "
            f"blocks: {', '.join(sorted(answered - uses))}. Each `tool_result` "
            "block must have a corresponding `tool_use` block in the previous message."
        )
    if uses - answered:
        raise server.Refused(
            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(sorted(uses - answered))}. Each "
            "`tool_use` block must have a corresponding `tool_result` block in the next "
            "message."
        )


def _check_block(block: Any, where: str, role: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise server.Refused(f"{where}: a content block is an object with a type")
    kind = block["type"]
    if kind == "text":
        _check_text(block, where)
    elif kind == "image":
        _check_image(block, where)
    elif kind == "tool_use" and role == "assistant":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise server.Refused(f"{where}: tool_use blocks need an id and a name")
        if not isinstance(block.get("input"), dict):
            raise server.Refused(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result" and role == "user":
        _check_tool_result(block, where)
    else:
        raise server.Refused(f"{where}: unexpected block type '{kind}' in a {role} message")


def _check_tool_result(block: dict[str, Any], where: str) -> None:
    if not isinstance(block.get("tool_use_id"), str):
        raise server.Refused(f"{where}.tool_use_id: Field required")
    content = block.get("content", "")
    if isinstance(content, list):
        for k, inner in enumerate(content):
            if not isinstance(inner, dict) or inner.get("type") not in ("text", "image"):
                raise server.Refused(f"{where}.content.{k}: text or image blocks only")
            _check_block(inner, f"{where}.content.{k}", "user")
    elif not isinstance(content, str):
        raise server.Refused(f"{where}.content: Input should be a valid string or list")


def _check_text(block: dict[str, Any], where: str) -> None:
    if set(block) - {"type", "text", "cache_control", "citations"}:
        raise server.Refused(f"{where}: Extra inputs are not permitted")
    if not isinstance(block.get("text"), str):
        raise server.Refused(f"{where}.text: Field required")
    if not block["text"]:
        raise server.Refused(f"{where}.text: text content blocks must be non-empty")


def _check_image(block: dict[str, Any], where: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise server.Refused(f"{where}.source: Field required")
    if source.get("type") == "base64":
        if source.get("media_type") not in MEDIA_TYPES:
            raise server.Refused(
                f"{where}.source.media_type: Input should be one of {sorted(MEDIA_TYPES)}"
            )
        data = source.get("data")
        if not isinstance(data, str) or not data:
            raise server.Refused(f"{where}.source.data: Field required")
        try:
            base64.b64decode(data, validate=True)
        except ValueError:
            raise server.Refused(f"{where}.source.data: invalid base64 data") from None
    elif source.get("type") == "url":
        if not isinstance(source.get("url"), str) or not source["url"].startswith("http"):
            raise server.Refused(f"{where}.source.url: Field required")
    else:
        raise server.Refused(f"{where}.source.type: Input should be 'base64' or 'url'")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise server.Refused("system: Input should be a valid string or list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise server.Refused(f"system.{i}: Input should be a text block")
        _check_text(block, f"system.{i}")


def _check_tools(tools: Any, choice: Any, has_choice: bool) -> None:
    if tools is not None:
        if not isinstance(tools, list):
            raise server.Refused("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or set(tool) - {
                "name",
                "description",
                "input_schema",
                "type",
                "cache_control",
            }:
                raise server.Refused(f"tools.{i}: Extra inputs are not permitted")
            if not isinstance(tool.get("name"), str):
                raise server.Refused(f"tools.{i}.name: Field required")
            if not isinstance(tool.get("input_schema"), dict):
                raise server.Refused(f"tools.{i}.custom.input_schema: Field required")
            if not isinstance(tool.get("description", ""), str):
                raise server.Refused(f"tools.{i}.description: Input should be a valid string")
    if has_choice:
        if not tools:
            raise server.Refused("tool_choice may only be specified while providing tools")
        _check_choice(choice)


def _check_choice(choice: Any) -> None:
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise server.Refused("tool_choice: Input tag should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        raise server.Refused("tool_choice.tool.name: Field required")
    if choice["type"] == "none" and "disable_parallel_tool_use" in choice:
        raise server.Refused(
            "tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted"
        )
    if not isinstance(choice.get("disable_parallel_tool_use", False), bool):
        raise server.Refused(
            "tool_choice.disable_parallel_tool_use: Input should be a valid boolean"
        )
