"""The conversation script every vendor fake answers with, so one test table fits them all.

With tools declared and the user speaking last: one call of the first tool with
`{"echo": <last user text>}`. After a tool result: `Tool said: <result>`. Otherwise
`Hello! You said: <last user text>`, then ` [image <media type>]` (` [image url]`) per image
and ` [system: a | b]`. Input tokens are the characters of all text // 4 + 1, plus 10 per
image; output tokens are the answer's words, 5 for a tool call. Each fake reads these inputs
out of its own wire format and writes the answer back in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

CALL_TOKENS: Final = 5
CACHED_TOKENS: Final = 2
"""Input tokens reported as read from the prompt cache when there is a system prompt."""


class Answer(msgspec.Struct, kw_only=True):
    """The script's answer, for a fake whose tool call is a JSON object: text or `call`."""

    text: str = ""
    call: dict[str, Any] | None = None
    prompt_tokens: int
    cached_tokens: int = 0
    output_tokens: int


def prompt_tokens(chars: int, images: int = 0) -> int:
    return chars // 4 + 1 + 10 * images


def reply(
    *,
    tool_result: str | None,
    call: bool,
    said: str,
    images: Iterable[str] = (),
    system: Sequence[str] = (),
) -> str | None:
    """The answer's text; None when the answer is a call of the first tool (`call` is true).

    Args:
        tool_result: The text of the tool result the last turn carries, if it carries one.
        call: Tools are declared and the user spoke last.
        said: The last user text.
        images: The kind of each image to mention (`url`, or a media type).
        system: The system prompt's texts.
    """
    if tool_result is not None:
        return f"Tool said: {tool_result}"
    if call:
        return None
    text = f"Hello! You said: {said}" + "".join(f" [image {kind}]" for kind in images)
    if system:
        text += f" [system: {' | '.join(system)}]"
    return text


def output_tokens(text: str | None) -> int:
    """The words of the answer, or `CALL_TOKENS` for a tool call."""
    return CALL_TOKENS if text is None else len(text.split())
