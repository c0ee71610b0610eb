"""Gemini's own wire: the `generateContent` and `batchEmbedContents` bodies and answers.

Bodies sent are camelCase with unset fields left out; answers are decoded only as far as the
translation reads them (thought parts, code and media are counted and skipped, not modelled).
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """Base of the bodies sent to Gemini: camelCase names, unset fields left out."""


class Blob(_Wire):
    mime_type: str
    data: str


class FileData(_Wire):
    mime_type: str
    file_uri: str


class OutFunctionCall(_Wire):
    name: str
    args: dict[str, Any]
    id: str | None = None


class OutFunctionResponse(_Wire):
    name: str
    response: dict[str, Any]
    id: str | None = None


class Part(_Wire):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: OutFunctionCall | None = None
    function_response: OutFunctionResponse | None = None
    thought_signature: str | None = None


class Content(_Wire):
    parts: list[Part]
    role: str | None = None


class Declaration(_Wire):
    name: str
    description: str | None = None
    parameters: Any = None


class Tools(_Wire):
    function_declarations: list[Declaration]


class CallingConfig(_Wire):
    mode: str
    allowed_function_names: list[str] | None = None


class ToolConfig(_Wire):
    function_calling_config: CallingConfig


class GenerationConfig(_Wire):
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    candidate_count: int | None = None
    seed: int | None = None
    response_mime_type: str | None = None
    response_schema: Any = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class GenerateRequest(_Wire):
    contents: list[Content]
    system_instruction: Content | None = None
    tools: list[Tools] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None


class EmbedOne(_Wire):
    model: str
    content: Content
    output_dimensionality: int | None = None


class BatchEmbed(_Wire):
    requests: list[EmbedOne]


class PredictInstance(_Wire):
    """One text for Vertex AI's text-embedding models (`:predict`)."""

    content: str


class PredictParameters(_Wire):
    output_dimensionality: int | None = None


class Predict(_Wire):
    instances: list[PredictInstance]
    parameters: PredictParameters | None = None


class InFunctionCall(msgspec.Struct):
    name: str
    args: Any = None
    id: str | None = None


class InPart(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    function_call: InFunctionCall | None = None
    thought_signature: str | None = None


class InContent(msgspec.Struct):
    parts: list[InPart] = []


class Candidate(msgspec.Struct, rename="camel"):
    content: InContent | None = None
    finish_reason: str | None = None
    index: int = 0


class UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    cached_content_token_count: int | None = None


class PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class ErrorDetail(msgspec.Struct):
    message: str = ""
    code: int = 0
    status: str = ""


class GenerateResponse(msgspec.Struct, rename="camel"):
    candidates: list[Candidate] = []
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: PromptFeedback | None = None
    response_id: str | None = None
    error: ErrorDetail | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorDetail


class Embedding(msgspec.Struct):
    values: list[float]


class BatchEmbedResponse(msgspec.Struct):
    embeddings: list[Embedding]


class PredictStatistics(msgspec.Struct):
    token_count: int = 0


class PredictEmbedding(msgspec.Struct):
    values: list[float]
    statistics: PredictStatistics = msgspec.field(default_factory=PredictStatistics)


class Prediction(msgspec.Struct):
    embeddings: PredictEmbedding


class PredictResponse(msgspec.Struct):
    predictions: list[Prediction]


decode_response = msgspec.json.Decoder(GenerateResponse).decode
decode_error = msgspec.json.Decoder(ErrorEnvelope | list[ErrorEnvelope]).decode
decode_embeddings = msgspec.json.Decoder(BatchEmbedResponse).decode
decode_predictions = msgspec.json.Decoder(PredictResponse).decode
