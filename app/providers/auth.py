"""Upstream credentials as `httpx.Auth` objects: an API key header, AWS SigV4, Google OAuth.

`Transport` folds a static auth (it has `static_headers`) into the pool's fixed headers once;
any other auth runs `async_auth_flow` per request on the exact URL and body that go out, so a
signature covers what is sent. Adapters never see a credential, and no `repr`, log line or
exception here carries one.

SigV4 is hashlib/hmac rather than `aws-requests-auth`: that package reads the clock inside its
signer (no published test vector can be reproduced with it) and is built for `requests`. The
signer follows AWS's rules for non-S3 services: every path segment is URI-encoded a second
time, and Bedrock runtime calls are scoped to the service `bedrock` (the Go original used
`bedrock-runtime`, which AWS refuses).

Google tokens come from google-auth, whose loading and refreshing do blocking HTTP: it runs in
a thread, one refresh at a time, and only when the token is missing or about to expire.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import os
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote

import httpx

from app.domain import UpstreamError

if TYPE_CHECKING:
    import google.auth.credentials
    import google.auth.transport.requests

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AWS_ENV_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
AWS_SESSION_TOKEN_ENV = "AWS_SESSION_TOKEN"  # noqa: S105 - a variable name
_ALGORITHM = "AWS4-HMAC-SHA256"
_UTC = datetime.UTC


class CredentialsUnavailable(UpstreamError):
    """The gateway could not obtain credentials for an upstream (never names a secret).

    An `UpstreamError` with no provider name, so failover moves on to the next target.
    """

    def __init__(self, detail: str) -> None:
        super().__init__("", f"upstream credentials unavailable: {detail}")
        self.detail = detail


class ApiKeyAuth(httpx.Auth):
    """One fixed header (`Authorization`, `x-api-key`, `api-key`, `x-goog-api-key`...)."""

    def __init__(self, header: str, value: str) -> None:
        self.header = header
        self.static_headers: Mapping[str, str] = MappingProxyType({header: value})

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self.static_headers)
        yield request

    def __repr__(self) -> str:
        return f"ApiKeyAuth(header={self.header!r}, value=<redacted>)"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def canonical_uri(raw_path: str) -> str:
    """The path as sent, URI-encoded once more (`%3A` becomes `%253A`); `/` when empty."""
    return quote(raw_path or "/", safe="/")


def canonical_query(query: str) -> str:
    """Parameters decoded, re-encoded with AWS's unreserved set, sorted by name then value."""
    pairs = parse_qsl(query, keep_blank_values=True)
    encoded = sorted((quote(name, safe=""), quote(value, safe="")) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


class AwsSigV4Auth(httpx.Auth):
    """AWS Signature Version 4 in the `Authorization` header, signed over host and x-amz-*.

    The payload hash is part of the signature but not sent as `x-amz-content-sha256`:
    Bedrock does not ask for it (S3 would).
    """

    requires_request_body = True

    def __init__(
        self,
        *,
        region: str,
        access_key: str,
        secret_key: str,
        session_token: str = "",
        service: str = "bedrock",
    ) -> None:
        if not region or not access_key or not secret_key:
            raise ValueError("AwsSigV4Auth needs a region, an access key and a secret key")
        self.region = region
        self.service = service
        self._access_key = access_key
        self._secret_key = secret_key
        self._session_token = session_token
        self._key_day = ""
        self._key = b""

    @classmethod
    def from_environment(cls, region: str, *, service: str = "bedrock") -> AwsSigV4Auth:
        """Credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.

        Raises:
            ValueError: naming the missing variables (never a value).
        """
        # The AWS SDKs' own convention; called once from the composition root.
        env = os.environ  # noqa: TID251
        missing = [name for name in AWS_ENV_VARS if not env.get(name)]
        if missing:
            raise ValueError(f"AWS credentials missing: set {' and '.join(missing)}")
        return cls(
            region=region,
            access_key=env[AWS_ENV_VARS[0]],
            secret_key=env[AWS_ENV_VARS[1]],
            session_token=env.get(AWS_SESSION_TOKEN_ENV, ""),
            service=service,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = self.sign(
            request.method,
            request.url,
            request.content,
            host=request.headers.get("host") or request.url.netloc.decode("ascii"),
            now=datetime.datetime.now(_UTC),
        )
        request.headers.update(headers)
        yield request

    def sign(
        self,
        method: str,
        url: httpx.URL,
        body: bytes,
        *,
        host: str,
        now: datetime.datetime,
    ) -> dict[str, str]:
        """The headers that sign this request at `now`: x-amz-date, the token, Authorization."""
        amz_date = now.astimezone(_UTC).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        signed = {"host": host, "x-amz-date": amz_date}
        if self._session_token:
            signed["x-amz-security-token"] = self._session_token
        names = sorted(signed)
        raw_path, _, query = url.raw_path.decode("ascii").partition("?")
        canonical = "\n".join(
            (
                method.upper(),
                canonical_uri(raw_path),
                canonical_query(query),
                "".join(f"{name}:{' '.join(signed[name].split())}\n" for name in names),
                ";".join(names),
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join(
            (_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.new(
            self._signing_key(day), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "x-amz-date": amz_date,
            "Authorization": (
                f"{_ALGORITHM} Credential={self._access_key}/{scope}, "
                f"SignedHeaders={';'.join(names)}, Signature={signature}"
            ),
        }
        if self._session_token:
            headers["x-amz-security-token"] = self._session_token
        return headers

    def _signing_key(self, day: str) -> bytes:
        """The day's derived key (four HMACs), kept until the date changes."""
        if day != self._key_day:
            key = _hmac(f"AWS4{self._secret_key}".encode(), day)
            for part in (self.region, self.service, "aws4_request"):
                key = _hmac(key, part)
            self._key_day, self._key = day, key
        return self._key

    def __repr__(self) -> str:
        return f"AwsSigV4Auth(region={self.region!r}, service={self.service!r})"


class GoogleAuth(httpx.Auth):
    """`Authorization: Bearer <token>` from a service-account file or application defaults.

    The token is refreshed when there is none or it expires within `refresh_margin` seconds,
    in a worker thread (google-auth's refresh is blocking HTTP), one refresh at a time.
    """

    def __init__(
        self,
        credentials_file: str = "",
        scopes: Iterable[str] = (CLOUD_PLATFORM_SCOPE,),
        *,
        refresh_margin: float = 60.0,
    ) -> None:
        self.credentials_file = credentials_file
        self.scopes = tuple(scopes)
        self.refresh_margin = refresh_margin
        self._credentials: google.auth.credentials.Credentials | None = None
        self._http: google.auth.transport.requests.Request | None = None
        self._current: tuple[str, float] | None = None
        """(token, expiry as epoch seconds), replaced as a whole so readers never see a mix."""
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.token()}"
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {self._token_blocking()}"
        yield request

    async def token(self) -> str:
        """A token valid for at least `refresh_margin` seconds (refreshed off the loop)."""
        token = self._fresh_token()
        if token is not None:
            return token
        async with self._lock:
            token = self._fresh_token()
            if token is None:
                token = await asyncio.to_thread(self._token_blocking)
        return token

    def _fresh_token(self) -> str | None:
        current = self._current
        if current is None or current[1] - time.time() < self.refresh_margin:
            return None
        return current[0]

    def _token_blocking(self) -> str:
        with self._thread_lock:
            token = self._fresh_token()
            if token is None:
                token = self._refresh()
        return token

    def _refresh(self) -> str:
        """Load the credentials (first time) and fetch a new token: blocking HTTP."""
        # Imported here, in the worker thread: only Google upstreams need google-auth, and
        # its transport pulls in `requests`.
        import google.auth.exceptions  # noqa: PLC0415
        import google.auth.transport.requests  # noqa: PLC0415

        try:
            credentials = self._credentials or self._load()
            if self._http is None:
                self._http = google.auth.transport.requests.Request()
            credentials.refresh(self._http)  # type: ignore[no-untyped-call]
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
            raise CredentialsUnavailable(f"Google: {_describe(exc)}") from exc
        self._credentials = credentials
        token = credentials.token
        if not isinstance(token, str) or not token:
            raise CredentialsUnavailable("Google: the token endpoint returned no token")
        expiry = credentials.expiry
        if expiry is None:
            expires_at = float("inf")
        else:
            if expiry.tzinfo is None:  # google-auth keeps naive UTC datetimes
                expiry = expiry.replace(tzinfo=_UTC)
            expires_at = expiry.timestamp()
        self._current = (token, expires_at)
        return token

    def _load(self) -> google.auth.credentials.Credentials:
        import google.auth  # noqa: PLC0415
        from google.oauth2 import service_account  # noqa: PLC0415

        if self.credentials_file:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call,no-any-return]
                self.credentials_file, scopes=self.scopes
            )
        credentials, _project = google.auth.default(scopes=self.scopes)
        return credentials

    def __repr__(self) -> str:
        source = self.credentials_file or "application default credentials"
        return f"GoogleAuth(credentials={source!r})"


def _describe(exc: BaseException) -> str:
    """The error's type and its first argument when that is text, cut to 200 characters.

    google-auth's messages say what went wrong (`invalid_grant: Invalid JWT Signature.`,
    a missing file) and never carry the private key or a token.
    """
    first = exc.args[0] if exc.args else ""
    text = first if isinstance(first, str) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
