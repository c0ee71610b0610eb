"""The cache key of a request: a SHA-256 over its scope and every field that decides the answer.

The scope is the API key (Gandalf's rule, the default) or the organization (`cache.scope:
org`), so one tenant never receives another's answers. The fields arrive sorted by name, the
values as the client's raw JSON; names are hashed JSON-encoded too. Parts are joined with NUL
bytes, which JSON text never contains (a NUL inside a string is written `\u0000`), so
different requests can never run together into the same bytes.
"""

from __future__ import annotations

import hashlib

import msgspec

from app.domain import CacheRequest

_encode = msgspec.json.encode


def fingerprint(scope: str, request: CacheRequest) -> str:
    """Hex SHA-256 of the scope and the request's fields; equal requests give equal keys."""
    digest = hashlib.sha256(_encode(scope))
    for name, raw in request.fingerprint_fields:
        digest.update(b"\0" + _encode(name) + b"\0" + raw)
    return digest.hexdigest()
