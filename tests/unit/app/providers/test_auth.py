"""Credentials: API key header, SigV4 (AWS test vectors and the fake's verifier), Google OAuth."""

from __future__ import annotations

import asyncio
import datetime
import threading
from typing import Any

import httpx
import pytest

from app.providers.auth import (
    ApiKeyAuth,
    AwsSigV4Auth,
    CredentialsUnavailable,
    GoogleAuth,
    canonical_query,
    canonical_uri,
)
from app.providers.transport import Transport
from tests.fakes.sigv4 import FAKE_AWS_ACCESS_KEY, FAKE_AWS_SECRET_KEY, verify_sigv4

UTC = datetime.UTC
VECTOR_TIME = datetime.datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
VECTOR_SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
MODEL_PATH = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"


def test_api_key_is_static_and_never_in_repr() -> None:
    auth = ApiKeyAuth("api-key", "secret-value-123")
    assert dict(auth.static_headers) == {"api-key": "secret-value-123"}
    assert "secret-value-123" not in repr(auth)
    assert "api-key" in repr(auth)
    request = httpx.Request("POST", "https://example.com/x")
    signed = next(auth.auth_flow(request))
    assert signed.headers["api-key"] == "secret-value-123"


async def test_transport_folds_a_static_auth_into_fixed_headers() -> None:
    transport = Transport(
        "azure",
        "http://127.0.0.1:9/openai",
        {},
        connect_timeout=1,
        read_timeout=1,
        auth=ApiKeyAuth("api-key", "k"),
    )
    assert await transport._sign("/x", b"{}") is None  # no per-request flow left
    await transport.aclose()


# --- SigV4: AWS's published test suite (aws-sig-v4-test-suite, credentials AKIDEXAMPLE) -------


def vector_signer() -> AwsSigV4Auth:
    return AwsSigV4Auth(
        region="us-east-1",
        access_key="AKIDEXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        service="service",
    )


@pytest.mark.parametrize(
    ("name", "method", "url", "signature"),
    [
        (
            "get-vanilla",
            "GET",
            "https://example.amazonaws.com/",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (
            "post-vanilla",
            "POST",
            "https://example.amazonaws.com/",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
    ],
)
def test_sigv4_matches_aws_test_vectors(name: str, method: str, url: str, signature: str) -> None:
    headers = vector_signer().sign(
        method, httpx.URL(url), b"", host="example.amazonaws.com", now=VECTOR_TIME
    )
    assert headers == {
        "x-amz-date": "20150830T123600Z",
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={VECTOR_SCOPE}, "
            f"SignedHeaders=host;x-amz-date, Signature={signature}"
        ),
    }, name


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        (MODEL_PATH, "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/invoke"),
        ("/model/a.b-v1:0/invoke", "/model/a.b-v1%3A0/invoke"),
        ("/a%20b/~c_d.e-f", "/a%2520b/~c_d.e-f"),
    ],
)
def test_canonical_uri_encodes_segments_again(raw: str, canonical: str) -> None:
    assert canonical_uri(raw) == canonical


def test_canonical_query_sorts_and_encodes() -> None:
    assert canonical_query("b=2&a=x%20y&a=1&c") == "a=1&a=x%20y&b=2&c="
    assert canonical_query("api-version=2024-10-21") == "api-version=2024-10-21"
    assert canonical_query("") == ""


def bedrock_signer(**overrides: Any) -> AwsSigV4Auth:
    fields: dict[str, Any] = {
        "region": "us-west-2",
        "access_key": FAKE_AWS_ACCESS_KEY,
        "secret_key": FAKE_AWS_SECRET_KEY,
    }
    return AwsSigV4Auth(**(fields | overrides))


def signed_request(
    auth: AwsSigV4Auth, path: str = MODEL_PATH, body: bytes = b'{"max_tokens":10}'
) -> httpx.Request:
    request = httpx.Request(
        "POST",
        f"https://bedrock-runtime.us-west-2.amazonaws.com{path}",
        headers={"Content-Type": "application/json"},
        content=body,
    )
    return next(auth.sync_auth_flow(request))


def verify(request: httpx.Request, body: bytes | None = None, **kwargs: Any) -> str | None:
    raw_path, _, query = request.url.raw_path.decode().partition("?")
    content = request.content if body is None else body
    return verify_sigv4(request.method, raw_path, query, request.headers, content, **kwargs)


@pytest.mark.parametrize(
    "path",
    [MODEL_PATH, "/model/anthropic.claude-v2:1/invoke", "/model/m/invoke?b=2&a=%20x&a=1"],
)
def test_signed_request_passes_the_fake_verifier(path: str) -> None:
    request = signed_request(bedrock_signer(), path)
    assert verify(request) is None
    assert "/bedrock/aws4_request" in request.headers["authorization"]


def test_session_token_is_sent_and_signed() -> None:
    request = signed_request(bedrock_signer(session_token="FwoGZXIvYXdzEXAMPLE"))
    assert request.headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLE"
    assert (
        "SignedHeaders=host;x-amz-date;x-amz-security-token," in (request.headers["authorization"])
    )
    assert verify(request) is None


def test_tampered_body_fails() -> None:
    request = signed_request(bedrock_signer())
    assert verify(request, body=b'{"max_tokens":11}') == (
        "The request signature we calculated does not match the signature you provided."
    )


def test_tampered_path_fails() -> None:
    request = signed_request(bedrock_signer())
    raw_path = request.url.raw_path.decode().replace("%3A", ":")
    reason = verify_sigv4("POST", raw_path, "", request.headers, request.content)
    assert reason is not None
    assert "signature" in reason


def test_service_bedrock_runtime_is_refused() -> None:
    reason = verify(signed_request(bedrock_signer(service="bedrock-runtime")))
    assert reason is not None
    assert "'bedrock'" in reason
    assert "bedrock-runtime" in reason


def test_stale_date_is_refused() -> None:
    request = signed_request(bedrock_signer())
    later = datetime.datetime.now(UTC) + datetime.timedelta(minutes=6)
    reason = verify(request, now=later)
    assert reason is not None
    assert "expired" in reason
    assert verify(request, now=later - datetime.timedelta(minutes=2)) is None


def test_wrong_secret_and_unknown_key_are_refused() -> None:
    assert verify(signed_request(bedrock_signer(secret_key="wrong"))) is not None
    unknown = verify(signed_request(bedrock_signer(access_key="AKIAOTHER")))
    assert unknown == "The security token included in the request is invalid."


def test_unsigned_request_is_refused() -> None:
    request = httpx.Request("POST", "https://h/model/m/invoke", content=b"{}")
    assert verify(request) == "missing or malformed Authorization header"


def test_sigv4_repr_hides_secrets() -> None:
    text = repr(bedrock_signer(session_token="session-secret"))
    assert FAKE_AWS_SECRET_KEY not in text
    assert FAKE_AWS_ACCESS_KEY not in text
    assert "session-secret" not in text


def test_from_environment_reads_aws_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_AWS_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_AWS_SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok")
    auth = AwsSigV4Auth.from_environment("eu-central-1")
    request = signed_request(auth)
    assert request.headers["x-amz-security-token"] == "tok"
    assert "/eu-central-1/bedrock/" in request.headers["authorization"]
    assert verify(request) is None


def test_from_environment_names_missing_variables_never_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-should-not-appear")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(ValueError, match="AWS_SECRET_ACCESS_KEY") as caught:
        AwsSigV4Auth.from_environment("us-east-1")
    assert "AKIA-should-not-appear" not in str(caught.value)
    assert "AWS_ACCESS_KEY_ID" not in str(caught.value)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        AwsSigV4Auth.from_environment("us-east-1")


# --- Google: the refresh policy, with a stand-in for google-auth's credentials ---------------


class StubCredentials:
    """Looks like google.auth credentials: `refresh(request)` sets token and expiry."""

    def __init__(self, lifetime: float, fail: Exception | None = None) -> None:
        self.lifetime = lifetime
        self.fail = fail
        self.token: str | None = None
        self.expiry: datetime.datetime | None = None
        self.refreshes = 0
        self.threads: set[int] = set()

    def refresh(self, request: object) -> None:
        self.threads.add(threading.get_ident())
        if self.fail is not None:
            raise self.fail
        self.refreshes += 1
        self.token = f"token-{self.refreshes}"
        now = datetime.datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as google-auth
        self.expiry = now + datetime.timedelta(seconds=self.lifetime)


def google_auth(credentials: StubCredentials, margin: float = 60.0) -> GoogleAuth:
    auth = GoogleAuth("unused.json", refresh_margin=margin)
    auth._load = lambda: credentials  # type: ignore[method-assign,assignment,return-value]
    return auth


async def test_google_token_is_reused_while_fresh_and_set_as_bearer() -> None:
    credentials = StubCredentials(lifetime=3600)
    auth = google_auth(credentials)
    request = httpx.Request("POST", "https://aiplatform.googleapis.com/x", content=b"{}")
    flow = auth.async_auth_flow(request)
    signed = await flow.__anext__()
    await flow.aclose()
    assert signed.headers["authorization"] == "Bearer token-1"
    assert await auth.token() == "token-1"
    assert credentials.refreshes == 1
    assert threading.get_ident() not in credentials.threads


async def test_google_token_refreshes_within_the_margin() -> None:
    credentials = StubCredentials(lifetime=30)  # always within the 60 s margin
    auth = google_auth(credentials)
    assert await auth.token() == "token-1"
    assert await auth.token() == "token-2"


async def test_concurrent_callers_share_one_refresh() -> None:
    credentials = StubCredentials(lifetime=3600)
    auth = google_auth(credentials)
    tokens = await asyncio.gather(*(auth.token() for _ in range(20)))
    assert set(tokens) == {"token-1"}
    assert credentials.refreshes == 1


async def test_refresh_failure_is_credentials_unavailable_without_secrets() -> None:
    from google.auth.exceptions import RefreshError  # noqa: PLC0415

    error = RefreshError("invalid_grant: Invalid JWT Signature.", {})  # type: ignore[no-untyped-call]
    failing = StubCredentials(3600, error)
    with pytest.raises(CredentialsUnavailable) as caught:
        await google_auth(failing).token()
    assert caught.value.retryable
    assert "invalid_grant: Invalid JWT Signature." in caught.value.message


async def test_missing_credentials_file_is_credentials_unavailable(tmp_path: Any) -> None:
    auth = GoogleAuth(str(tmp_path / "absent.json"))
    with pytest.raises(CredentialsUnavailable, match="FileNotFoundError"):
        await auth.token()
    assert "absent.json" in repr(auth)


def test_verifier_rebuilds_a_decoded_path_and_still_catches_single_encoding() -> None:
    request = signed_request(bedrock_signer())  # sent with %3A, signed with %253A
    decoded = MODEL_PATH.replace("%3A", ":")
    content = request.content
    assert verify_sigv4("POST", decoded, "", request.headers, content, path_is_decoded=True) is None
    # The Go original's bug: %3A on the wire but signed as %3A (no second encoding).
    single = signed_request(bedrock_signer(), decoded)
    assert verify_sigv4("POST", MODEL_PATH, "", single.headers, content) is not None
    assert (
        verify_sigv4("POST", decoded, "", single.headers, content, path_is_decoded=True) is not None
    )
