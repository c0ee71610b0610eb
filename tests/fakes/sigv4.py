"""Check an AWS SigV4 signature the way AWS does, for the fake Bedrock upstream.

Written apart from `app.providers.auth` on purpose (shared code would share its bugs): it
rebuilds the canonical request from what arrived on the wire - the raw path, the raw query
string, the headers and the body - and recomputes the signature with the fake secret.

Accepts only `FAKE_AWS_ACCESS_KEY` / `FAKE_AWS_SECRET_KEY` (AWS's documented example pair),
any region, and the service `bedrock` (AWS refuses `bedrock-runtime` in the credential scope).
A session token, when sent, must be signed; its value is not checked.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

FAKE_AWS_ACCESS_KEY = "AKIDEXAMPLE"
FAKE_AWS_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SERVICE = "bedrock"
MAX_SKEW = datetime.timedelta(minutes=5)

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)


def _encode(text: str) -> str:
    """URI-encode everything but AWS's unreserved characters A-Z a-z 0-9 - _ . ~."""
    return quote(text, safe="-_.~")


def _canonical_path(raw_path: str) -> str:
    # Non-S3 services encode each segment of the path *as received* once more.
    return "/".join(_encode(segment) for segment in (raw_path or "/").split("/"))


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def _signature(secret: str, scope: list[str], string_to_sign: str) -> str:
    key = ("AWS4" + secret).encode()
    for part in scope:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify_sigv4(
    method: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime.datetime | None = None,
    path_is_decoded: bool = False,
) -> str | None:
    """None when the request is validly signed; otherwise why not (for a 403 body).

    Args:
        method: The request method.
        raw_path: The path exactly as it came on the wire, without the query: ASGI's
            `scope["raw_path"]` (Granian's RSGI `scope.path` is percent-decoded, `%3A`
            arrives as `:`; pass that with `path_is_decoded=True`).
        query: The raw query string (no `?`).
        headers: The request headers (any case).
        body: The request body as received.
        now: Replaces the clock (tests of the 5-minute window).
        path_is_decoded: `raw_path` was percent-decoded by the server; the wire form is
            rebuilt assuming the client encoded every character outside A-Z a-z 0-9 - _ . ~
            in each segment (as `urllib.parse.quote(model_id, safe="")` does).
    """
    if path_is_decoded:
        raw_path = "/".join(_encode(segment) for segment in raw_path.split("/"))
    lower = {name.lower(): value for name, value in headers.items()}
    match = _AUTHORIZATION.fullmatch(lower.get("authorization", "").strip())
    if match is None:
        return "missing or malformed Authorization header"
    credential = match["credential"].split("/")
    signed = match["signed"].split(";")
    problem = _check_scope(credential, lower, now) or _check_signed_headers(signed, lower)
    if problem is not None:
        return problem
    payload_hash = hashlib.sha256(body).hexdigest()
    claimed = lower.get("x-amz-content-sha256")
    if claimed is not None and claimed != payload_hash:
        return "x-amz-content-sha256 does not match the body"
    canonical_headers = "".join(f"{n}:{' '.join(lower[n].strip().split())}\n" for n in signed)
    canonical_request = (
        f"{method.upper()}\n{_canonical_path(raw_path)}\n{_canonical_query(query)}\n"
        f"{canonical_headers}\n{';'.join(signed)}\n{payload_hash}"
    )
    amz_date = lower["x-amz-date"]
    string_to_sign = (
        f"AWS4-HMAC-SHA256\n{amz_date}\n{'/'.join(credential[1:])}\n"
        + hashlib.sha256(canonical_request.encode()).hexdigest()
    )
    expected = _signature(FAKE_AWS_SECRET_KEY, credential[1:], string_to_sign)
    if not hmac.compare_digest(expected, match["signature"]):
        return "The request signature we calculated does not match the signature you provided."
    return None


def _check_scope(  # noqa: PLR0911 - one return per refusal reason
    credential: list[str], lower: Mapping[str, str], now: datetime.datetime | None
) -> str | None:
    """The credential scope (key, date, region, service) against x-amz-date and the clock."""
    if len(credential) != 5 or credential[4] != "aws4_request":
        return "malformed credential scope"
    access_key, day, _region, service, _ = credential
    if access_key != FAKE_AWS_ACCESS_KEY:
        return "The security token included in the request is invalid."
    if service != SERVICE:
        return f"Credential should be scoped to correct service: '{SERVICE}' (got '{service}')"
    amz_date = lower.get("x-amz-date", "")
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        return "missing or malformed x-amz-date"
    if abs((now or datetime.datetime.now(datetime.UTC)) - signed_at) > MAX_SKEW:
        return "Signature expired: x-amz-date is more than 5 minutes from the server's time"
    if day != amz_date[:8]:
        return "credential scope date does not match x-amz-date"
    return None


def _check_signed_headers(signed: list[str], lower: Mapping[str, str]) -> str | None:
    if signed != sorted(signed) or any(name != name.lower() for name in signed):
        return "SignedHeaders must be lower-case and sorted"
    for required in ("host", "x-amz-date"):
        if required not in signed:
            return f"SignedHeaders must include {required}"
    if "x-amz-security-token" in lower and "x-amz-security-token" not in signed:
        return "x-amz-security-token must be signed"
    missing = [name for name in signed if name not in lower]
    if missing:
        return f"signed header not sent: {missing[0]}"
    return None
