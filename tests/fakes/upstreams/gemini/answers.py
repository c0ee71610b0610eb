"""What the fake answers: the shared conversation script as Gemini candidates, whole or streamed,
and the embeddings.

Kept apart from the service so the answer's shape can be read without the HTTP plumbing.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from tests.fakes.upstreams import script as conversation
from tests.fakes.upstreams.gemini.wire import (
    BLOCKING,
    Behaviour,
    _encode,
    _ids,
)
from tests.fakes.upstreams.script import Answer

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
