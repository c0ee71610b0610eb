"""Ollama answers → OpenAI's: chat and text completions, embeddings, usage, errors. Pure.

Ollama reports the token counts the bill is settled on (`prompt_eval_count`, `eval_count`) in
every whole answer and in a stream's `done` line.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from app.domain import UpstreamProtocolError, Usage
from app.providers.openai_shapes.answer import (
    Choice,
    Completion,
    FunctionOut,
    MessageOut,
    TextChoice,
    ToolCallOut,
    UsageOut,
    embedding_list,
    encode,
    status_error_body,
    usage_pair,
)


class InFunction(msgspec.Struct):
    name: str
    arguments: Any = None


class InToolCall(msgspec.Struct):
    function: InFunction
    id: str | None = None


class InMessage(msgspec.Struct):
    content: str = ""
    tool_calls: list[InToolCall] | None = None
    thinking: str | None = None


class Answer(msgspec.Struct):
    """A line of `/api/chat` or `/api/generate` (a whole answer is one line with `done`)."""

    message: InMessage | None = None
    response: str = ""
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: str | None = None


class _EmbedAnswer(msgspec.Struct):
    embeddings: list[list[float]]
    prompt_eval_count: int = 0


class _ErrorAnswer(msgspec.Struct):
    error: str = ""


decode_answer = msgspec.json.Decoder(Answer).decode
_decode_embed_answer = msgspec.json.Decoder(_EmbedAnswer).decode
_decode_error = msgspec.json.Decoder(_ErrorAnswer).decode


def usage_of(answer: Answer) -> tuple[UsageOut, Usage]:
    return usage_pair(answer.prompt_eval_count, answer.eval_count)


def finish_reason(done_reason: str | None, *, called: bool) -> str:
    if done_reason == "length":
        return "length"
    return "tool_calls" if called else "stop"


def call_id(call: InToolCall, n: int) -> str:
    return call.id or f"call_{n}"


def arguments_json(call: InToolCall) -> str:
    arguments = call.function.arguments
    if isinstance(arguments, str):  # some models' templates leave the arguments as text
        return arguments
    return encode(arguments if arguments is not None else {}).decode()


def _read(provider: str, body: bytes) -> Answer:
    try:
        return decode_answer(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, f"invalid Ollama answer: {exc}") from exc


def translate_chat(provider: str, body: bytes, model: str) -> tuple[bytes, Usage]:
    """An `/api/chat` answer as an OpenAI `chat.completion`, and its usage."""
    answer = _read(provider, body)
    message = answer.message or InMessage()
    calls = [
        ToolCallOut(
            id=call_id(call, n),
            function=FunctionOut(name=call.function.name, arguments=arguments_json(call)),
        )
        for n, call in enumerate(message.tool_calls or ())
    ]
    out = MessageOut(content=message.content if message.content or not calls else None)
    if calls:
        out.tool_calls = calls
    reason = finish_reason(answer.done_reason, called=bool(calls))
    return _completion(answer, model, Choice(message=out, finish_reason=reason))


def translate_generate(provider: str, body: bytes, model: str) -> tuple[bytes, Usage]:
    """An `/api/generate` answer as an OpenAI `text_completion`, and its usage."""
    answer = _read(provider, body)
    reason = finish_reason(answer.done_reason, called=False)
    return _completion(answer, model, TextChoice(text=answer.response, finish_reason=reason))


def _completion(answer: Answer, model: str, choice: Choice | TextChoice) -> tuple[bytes, Usage]:
    chat = isinstance(choice, Choice)
    prefix, kind = ("chatcmpl", "chat.completion") if chat else ("cmpl", "text_completion")
    wire, usage = usage_of(answer)
    completion = Completion(
        id=f"{prefix}-{uuid.uuid4().hex}",
        object=kind,
        created=int(time.time()),
        model=model,
        choices=[choice],
        usage=wire,
    )
    return encode(completion), usage


def translate_embed(
    provider: str, body: bytes, model: str, *, base64_vectors: bool
) -> tuple[bytes, Usage]:
    """An `/api/embed` answer as an OpenAI embeddings list, and its usage."""
    try:
        answer = _decode_embed_answer(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(provider, f"invalid /api/embed answer: {exc}") from exc
    tokens = answer.prompt_eval_count
    translated = embedding_list(answer.embeddings, model, tokens, base64_vectors=base64_vectors)
    return translated, Usage(prompt_tokens=tokens, total_tokens=tokens)


def openai_error_body(status: int, body: bytes) -> bytes:
    """Ollama's `{"error": "..."}` as OpenAI's error object."""
    try:
        message = _decode_error(body).error
    except msgspec.DecodeError:
        message = ""
    return status_error_body("Ollama", status, message)
