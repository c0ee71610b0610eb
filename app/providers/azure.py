"""Azure OpenAI: the OpenAI wire format behind Azure's two URL styles.

- Deployments (an `api_version` such as `2024-10-21`): base `https://{resource}.openai.azure.com
  /openai`, path `/deployments/{deployment}{operation}?api-version={version}`; the target's
  upstream model is the deployment name. Azure answers 404 without `api-version`, which is why
  the Go original (which never sent one) only worked with the v1 API.
- The v1 API (`api_version` empty or `v1`): base `https://{resource}.openai.azure.com/openai/v1`,
  plain OpenAI paths, the model in the body.

The key goes in an `api-key` header (`ApiKeyAuth("api-key", key)`, set by the caller). Azure's
error bodies (`{"error": {"code": "401", "message": ...}}`) are reshaped into OpenAI's, and the
stream's content-filter annotation chunks (`"choices": []` with `prompt_filter_results`, which
OpenAI never sends and which break `chunk.choices[0]` in clients) are dropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import quote

import msgspec

from app.domain import Operation, Payload, Reply, UpstreamStatus
from app.providers.openai import OpenAIAdapter
from app.providers.transport import Transport

V1 = "v1"
ERROR_MESSAGE_LIMIT = 1024
_ANNOTATION_MARK = b'"prompt_filter_results"'


def base_url(resource: str, api_version: str) -> str:
    """The base URL of an Azure OpenAI resource for the URL style that `api_version` picks."""
    root = f"https://{resource}.openai.azure.com/openai"
    return root if api_version not in ("", V1) else f"{root}/v1"


class AzureOpenAIAdapter(OpenAIAdapter):
    """`domain.Provider` over Azure OpenAI, in the deployments or the v1 URL style."""

    def __init__(self, name: str, transport: Transport, *, api_version: str) -> None:
        super().__init__(name, transport)
        self.api_version = "" if api_version == V1 else api_version

    def path(self, operation: Operation, upstream_model: str) -> str:
        if not self.api_version:
            return operation.value
        deployment = quote(upstream_model, safe="")
        version = quote(self.api_version, safe="")
        return f"/deployments/{deployment}{operation.value}?api-version={version}"

    async def send(self, payload: Payload, upstream_model: str) -> Reply:
        try:
            return await super().send(payload, upstream_model)
        except UpstreamStatus as exc:
            raise _translated(exc) from exc

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: Payload, upstream_model: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                events = await stack.enter_async_context(super().stream(payload, upstream_model))
            except UpstreamStatus as exc:
                raise _translated(exc) from exc
            yield without_annotations(events)


class _AzureError(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _AzureError | None = None


class _OpenAIError(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class _OpenAIEnvelope(msgspec.Struct):
    error: _OpenAIError


_decode_error = msgspec.json.Decoder(_ErrorEnvelope).decode
_encode = msgspec.json.encode


def openai_error_body(status: int, body: bytes) -> bytes:
    """Azure's error body (or any body) as OpenAI's `{"error": {message, type, param, code}}`."""
    error: _AzureError | None
    try:
        error = _decode_error(body).error
    except msgspec.DecodeError:
        error = None
    if error is None:
        text = body.decode("utf-8", "replace").strip()
        error = _AzureError(message=text[:ERROR_MESSAGE_LIMIT] or None)
    kind = error.type or ("server_error" if status >= 500 else "invalid_request_error")
    return _encode(
        _OpenAIEnvelope(
            _OpenAIError(
                message=error.message or f"Azure OpenAI answered {status}",
                type=kind,
                param=error.param,
                code=None if error.code is None else str(error.code),
            )
        )
    )


def _translated(exc: UpstreamStatus) -> UpstreamStatus:
    body = openai_error_body(exc.upstream_status, exc.body)
    return UpstreamStatus(exc.provider, exc.upstream_status, body, "application/json")


_NULL = msgspec.Raw(b"null")


class _Annotation(msgspec.Struct):
    choices: list[msgspec.Raw] | None = None
    usage: msgspec.Raw = _NULL
    prompt_filter_results: msgspec.Raw = _NULL


_decode_annotation = msgspec.json.Decoder(_Annotation).decode


def is_annotation(frame: bytes) -> bool:
    """Whether an SSE frame is Azure's content-filter note: no choices, no usage."""
    data = frame.strip()
    if not data.startswith(b"data:"):
        return False
    try:
        chunk = _decode_annotation(data[5:])
    except msgspec.DecodeError:
        return False
    filtered = bytes(chunk.prompt_filter_results) != b"null"
    return filtered and not chunk.choices and bytes(chunk.usage) == b"null"


async def without_annotations(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream's runs of complete SSE frames, minus the content-filter annotation frames."""
    async for frames in events:
        if _ANNOTATION_MARK not in frames:
            yield frames
            continue
        kept = b"".join(
            frame + b"\n\n" for frame in frames.split(b"\n\n") if frame and not is_annotation(frame)
        )
        if kept:
            yield kept
