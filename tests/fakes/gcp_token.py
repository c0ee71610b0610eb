"""A fake Google OAuth2 token endpoint (JWT-bearer grant) and the check fakes use on its tokens.

- `make_service_account(path, token_uri)` writes a service-account JSON with a fresh RSA key
  whose `token_uri` points at this fake, and registers the key's public half in the shared
  directory (below) under its `private_key_id`.
- `token_endpoint(scope, receive, send)`: an ASGI handler for `POST /token`, mountable in any
  fake. It takes `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`,
  finds the key by the JWT's `kid`, checks `iss` is that key's account, the RS256 signature,
  `iat`/`exp` (at most an hour, not expired) and that `aud` is a `/token` URL, then answers
  `{"access_token", "expires_in", "token_type": "Bearer"}`; refusals are Google's
  `{"error": "invalid_grant", "error_description": ...}` with 400.
- `token_is_valid(token)`: issued by any process using the same directory, and not expired.

Tokens and keys live in a directory shared by every process (the vendor fakes run apart from
the token endpoint): `GCP_FAKE_TOKEN_DIR`, default `<tmp>/gandalf-fake-gcp`, with `keys/<kid>.json`
and `tokens/<sha256 of the token>` (its expiry, epoch seconds). Also read per request:
`GCP_FAKE_TOKEN_TTL` (seconds, default 3600) and `GCP_FAKE_TOKEN_DELAY_MS` (a pause before
answering, default 0, to show that a refresh does not block its caller's event loop).

Standalone: `python -m tests.fakes.gcp_token --port P` (also takes the harness's `--host`,
`--api-key` (ignored), `--workers`) serves `/token`, `GET /_fake/stats` (`issued`, `refused`,
`last_error`) and `POST /_fake/reset`; usable with
`FakeUpstream.start(module="tests.fakes.gcp_token")`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.upstreams import server

TOKEN_DIR_ENV: Final = "GCP_FAKE_TOKEN_DIR"
TOKEN_TTL_ENV: Final = "GCP_FAKE_TOKEN_TTL"
TOKEN_DELAY_ENV: Final = "GCP_FAKE_TOKEN_DELAY_MS"
JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_LIFETIME: Final = 3600
CLOCK_SKEW: Final = 300
CLI: Final = server.Cli("A fake Google token endpoint.", 8190)
_KID = re.compile(r"[0-9a-f]{8,64}")
_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)
_BAD_SIGNATURE = "Invalid JWT Signature."

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class _Stats:
    def __init__(self) -> None:
        self.issued = 0
        self.refused = 0
        self.last_error = ""


_stats = _Stats()


def token_dir() -> Path:
    """The directory shared by the token endpoint and every fake that checks tokens."""
    configured = os.environ.get(TOKEN_DIR_ENV)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "gandalf-fake-gcp"


def make_service_account(path: Path, token_uri: str) -> None:
    """Write a service-account JSON (fresh RSA key) and register its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    email = f"fake-{key_id[:10]}@fake-project.iam.gserviceaccount.com"
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = {
        "type": "service_account",
        "project_id": "fake-project",
        "private_key_id": key_id,
        "private_key": private.decode(),
        "client_email": email,
        "client_id": str(int(key_id[:12], 16)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }
    keys = token_dir() / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    _write(keys / f"{key_id}.json", _encode({"client_email": email, "public_key": public.decode()}))
    path.write_bytes(_encode(info))


def _write(path: Path, data: bytes) -> None:
    """Write whole or not at all: a reader in another process never sees half a file."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    temporary.write_bytes(data)
    temporary.replace(path)


def _token_path(token: str) -> Path:
    return token_dir() / "tokens" / hashlib.sha256(token.encode()).hexdigest()


def token_is_valid(token: str) -> bool:
    """Whether the token was issued by a fake token endpoint (any process) and is unexpired."""
    if not token:
        return False
    try:
        expires_at = float(_token_path(token).read_text())
    except (OSError, ValueError):
        return False
    return time.time() < expires_at


def _issue() -> tuple[str, int]:
    ttl = int(os.environ.get(TOKEN_TTL_ENV) or MAX_LIFETIME)
    token = "ya29.fake-" + secrets.token_urlsafe(32)
    path = _token_path(token)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, repr(time.time() + ttl).encode())
    _stats.issued += 1
    if _stats.issued % 256 == 0:
        _forget_expired(path.parent)
    return token, ttl


def _forget_expired(tokens: Path) -> None:
    """Drop tokens expired for an hour, so a long load test does not fill the directory."""
    horizon = time.time() - 3600
    for path in tokens.iterdir():
        try:
            if float(path.read_text()) < horizon:
                path.unlink()
        except (OSError, ValueError):
            continue


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check_assertion(  # noqa: PLR0911 - one return per refusal reason
    assertion: str, now: float | None = None
) -> str | None:
    """None when the JWT is a valid grant; otherwise Google's `error_description`."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return "Invalid JWT: malformed"
    try:
        header, claims, signature = _decode(_b64(parts[0])), _decode(_b64(parts[1])), _b64(parts[2])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return "Invalid JWT: malformed"
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return "Invalid JWT: malformed"
    if header.get("alg") != "RS256":
        return "Invalid JWT: only RS256 is accepted"
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        return _BAD_SIGNATURE
    try:
        entry = _decode((token_dir() / "keys" / f"{kid}.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        return _BAD_SIGNATURE
    if claims.get("iss") != entry["client_email"]:
        return "Invalid JWT: iss does not match the key's service account"
    key = serialization.load_pem_public_key(entry["public_key"].encode())
    if not isinstance(key, rsa.RSAPublicKey):
        return _BAD_SIGNATURE
    try:
        key.verify(
            signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return _BAD_SIGNATURE
    return _check_claims(claims, time.time() if now is None else now)


def _check_claims(claims: dict[str, Any], now: float) -> str | None:
    issued, expires = claims.get("iat"), claims.get("exp")
    if not isinstance(issued, int | float) or not isinstance(expires, int | float):
        return _SHORT_LIVED
    if expires <= now or issued > now + CLOCK_SKEW or expires - issued > MAX_LIFETIME:
        return _SHORT_LIVED
    audience = claims.get("aud")
    if not isinstance(audience, str) or not audience.endswith("/token"):
        return "Invalid JWT: aud is not this token endpoint"
    if not isinstance(claims.get("scope"), str) or not claims["scope"]:
        return "Invalid JWT: no scope"
    return None


def _grant(body: bytes) -> tuple[int, dict[str, Any]]:
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    grant_type = form.get("grant_type", "")
    if grant_type != JWT_BEARER:
        return _refuse("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
    assertion = form.get("assertion")
    if not assertion:
        return _refuse("invalid_request", "Missing required parameter: assertion")
    problem = check_assertion(assertion)
    if problem is not None:
        return _refuse("invalid_grant", problem)
    token, ttl = _issue()
    return 200, {"access_token": token, "expires_in": ttl, "token_type": "Bearer"}


def _refuse(error: str, description: str) -> tuple[int, dict[str, Any]]:
    _stats.refused += 1
    _stats.last_error = f"{error}: {description}"
    return 400, {"error": error, "error_description": description}


_HEADERS: Final = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


async def _send_json(send: server.Send, status: int, body: Any) -> None:
    await server.respond(send, status, _encode(body), _HEADERS)


async def token_endpoint(scope: server.Scope, receive: server.Receive, send: server.Send) -> None:
    """ASGI handler for `POST /token` (the JWT-bearer grant); mount it at any path."""
    body = await server.read_body(receive)
    if scope.get("method") != "POST":
        await _send_json(send, 405, {"error": "invalid_request", "error_description": "POST only"})
        return
    delay_ms = int(os.environ.get(TOKEN_DELAY_ENV) or 0)
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    status, answer = _grant(body)
    await _send_json(send, status, answer)


async def app(scope: server.Scope, receive: server.Receive, send: server.Send) -> None:
    """The standalone fake: `/token`, `/_fake/stats`, `/_fake/reset`."""
    if scope["type"] == "server.lifespan":
        await server.lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    global _stats  # noqa: PLW0603 - a test fake's per-process counters
    path, method = scope["path"], scope["method"]
    if path == "/token":
        await token_endpoint(scope, receive, send)
        return
    await server.read_body(receive)
    if path == "/_fake/stats" and method == "GET":
        stats = {"issued": _stats.issued, "refused": _stats.refused}
        await _send_json(send, 200, {**stats, "last_error": _stats.last_error})
    elif path == "/_fake/reset" and method == "POST":
        _stats = _Stats()
        await _send_json(send, 200, {})
    else:
        await _send_json(send, 404, {"error": "not_found", "error_description": path})


def main(argv: list[str] | None = None) -> None:
    """Serve the fake with Granian until SIGINT/SIGTERM."""
    server.serve("tests.fakes.gcp_token:app", CLI, argv)


if __name__ == "__main__":
    main()
