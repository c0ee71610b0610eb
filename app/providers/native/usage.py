"""The usage a native answer reports, read into OpenAI's `Usage` (`answer_usage`).

The vendors' usage shapes are decoded here once; `stream` reads the same shapes chunk by chunk.
"""

from __future__ import annotations

import msgspec

from app.domain import PromptTokensDetails, Usage
from app.providers.anthropic import messages_usage
from app.providers.native.request import Vendor


class _GeminiUsage(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    cached_content_token_count: int | None = None

    def usage(self) -> Usage:
        """OpenAI's usage: the prompt counts cached tokens too; thinking is completion."""
        prompt = self.prompt_token_count
        completion = self.candidates_token_count + self.thoughts_token_count
        cached = self.cached_content_token_count
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=None
            if cached is None
            else PromptTokensDetails(cached_tokens=cached),
        )


class _GeminiCandidate(msgspec.Struct, rename="camel"):
    finish_reason: str | None = None


class GeminiChunk(msgspec.Struct, rename="camel"):
    usage_metadata: _GeminiUsage | None = None
    candidates: list[_GeminiCandidate] = []
    error: msgspec.Raw = msgspec.Raw()
    """Empty when there is none."""


class _OllamaCounts(msgspec.Struct):
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    done: bool = False
    error: msgspec.Raw = msgspec.Raw()
    """Empty when there is none."""

    def usage(self) -> Usage | None:
        if self.prompt_eval_count is None and self.eval_count is None:
            return None
        prompt, completion = self.prompt_eval_count or 0, self.eval_count or 0
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


class _OpenAIAnswer(msgspec.Struct):
    usage: Usage | None = None


decode_gemini = msgspec.json.Decoder(GeminiChunk).decode
decode_gemini_array = msgspec.json.Decoder(list[GeminiChunk]).decode
decode_ollama = msgspec.json.Decoder(_OllamaCounts).decode
_decode_openai = msgspec.json.Decoder(_OpenAIAnswer).decode


def answer_usage(vendor: Vendor, body: bytes) -> Usage | None:
    """The usage a whole native answer reports, as OpenAI's `Usage`; None when it has none."""
    if vendor is Vendor.ANTHROPIC:
        return messages_usage(body)
    try:
        if vendor is Vendor.GEMINI:
            meta = decode_gemini(body).usage_metadata
            return None if meta is None else meta.usage()
        if vendor is Vendor.AZURE:
            return _decode_openai(body).usage
        return decode_ollama(body).usage()
    except msgspec.DecodeError:
        return None
