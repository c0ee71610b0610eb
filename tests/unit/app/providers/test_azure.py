"""Azure OpenAI: URL styles, error reshaping, and the annotation chunks it drops."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from app.domain import Operation, Payload
from app.providers.azure import (
    AzureOpenAIAdapter,
    base_url,
    is_annotation,
    openai_error_body,
    without_annotations,
)
from app.providers.transport import Transport

ANNOTATION = (
    b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
    b'[{"prompt_index":0,"content_filter_results":{}}]}\n\n'
)
ROLE = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
)
USAGE = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
    b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n'
)


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport(
        "azure", "http://127.0.0.1:9/openai", {}, connect_timeout=1, read_timeout=1
    )
    yield transport
    await transport.aclose()


@pytest.mark.parametrize(
    ("operation", "model", "path"),
    [
        (
            Operation.CHAT,
            "gpt-4o-prod",
            "/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
        ),
        (
            Operation.EMBEDDINGS,
            "embed-small",
            "/deployments/embed-small/embeddings?api-version=2024-10-21",
        ),
        (
            Operation.COMPLETIONS,
            "odd name/x",
            "/deployments/odd%20name%2Fx/completions?api-version=2024-10-21",
        ),
    ],
)
def test_deployment_style_paths(
    transport: Transport, operation: Operation, model: str, path: str
) -> None:
    adapter = AzureOpenAIAdapter("azure", transport, api_version="2024-10-21")
    assert adapter.path(operation, model) == path


@pytest.mark.parametrize("version", ["", "v1"])
@pytest.mark.parametrize("operation", list(Operation))
def test_v1_style_paths_put_the_model_in_the_body(
    transport: Transport, version: str, operation: Operation
) -> None:
    adapter = AzureOpenAIAdapter("azure", transport, api_version=version)
    assert adapter.path(operation, "gpt-4o") == operation.value
    payload = Payload(
        operation=operation,
        fields={"model": msgspec.Raw(b'"alias"'), "input": msgspec.Raw(b'"x"')},
        model="alias",
    )
    assert msgspec.json.decode(adapter.body(payload, "gpt-4o"))["model"] == "gpt-4o"


@pytest.mark.parametrize(
    ("version", "url"),
    [
        ("2024-10-21", "https://my-res.openai.azure.com/openai"),
        ("2025-04-01-preview", "https://my-res.openai.azure.com/openai"),
        ("", "https://my-res.openai.azure.com/openai/v1"),
        ("v1", "https://my-res.openai.azure.com/openai/v1"),
    ],
)
def test_base_url_follows_the_style(version: str, url: str) -> None:
    assert base_url("my-res", version) == url


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            b'{"error":{"code":"401","message":"Access denied due to invalid subscription key."}}',
            {
                "message": "Access denied due to invalid subscription key.",
                "type": "invalid_request_error",
                "param": None,
                "code": "401",
            },
        ),
        (
            404,
            b'{"error":{"code":"DeploymentNotFound",'
            b'"message":"The API deployment does not exist."}}',
            {
                "message": "The API deployment does not exist.",
                "type": "invalid_request_error",
                "param": None,
                "code": "DeploymentNotFound",
            },
        ),
        (
            400,
            b'{"error":{"message":"bad","type":"invalid_request_error","param":"messages",'
            b'"code":null,"status":400}}',
            {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": None},
        ),
        (
            503,
            b"<html>Service Unavailable</html>",
            {
                "message": "<html>Service Unavailable</html>",
                "type": "server_error",
                "param": None,
                "code": None,
            },
        ),
        (
            500,
            b"",
            {
                "message": "Azure OpenAI answered 500",
                "type": "server_error",
                "param": None,
                "code": None,
            },
        ),
        (
            429,
            b'{"error":{"code":429,"message":"slow down"}}',
            {"message": "slow down", "type": "invalid_request_error", "param": None, "code": "429"},
        ),
    ],
)
def test_error_bodies_become_openai_shaped(
    status: int, body: bytes, expected: dict[str, object]
) -> None:
    assert msgspec.json.decode(openai_error_body(status, body)) == {"error": expected}


@pytest.mark.parametrize(
    ("frame", "annotation"),
    [
        (ANNOTATION, True),
        (ROLE, False),
        (USAGE, False),
        (b"data: not json\n\n", False),
        (b": comment\n\n", False),
    ],
)
def test_is_annotation(frame: bytes, annotation: bool) -> None:
    assert is_annotation(frame) is annotation


async def runs(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def test_annotation_frames_are_dropped_others_kept() -> None:
    got = [f async for f in without_annotations(runs(ANNOTATION, ANNOTATION + ROLE, USAGE))]
    assert got == [ROLE, USAGE]
