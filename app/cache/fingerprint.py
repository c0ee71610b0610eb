"""The cache key of a request: a SHA-256 over its scope and every field that decides the answer.

The scope is the API key (Gandalf's rule, the default) or the organization (`cache.scope:
org`), so one tenant never receives another's answers. The fields arrive sorted by name, as
the client's raw JSON. Parts are joined with NUL bytes, which valid JSON text never contains,
so different requests can never run together into the same bytes.
"""

from __future__ import annotations

import hashlib

from app.domain import CacheRequest


def fingerprint(scope: str, request: CacheRequest) -> str:
    """Hex SHA-256 of the scope and the request's fields; equal requests give equal keys."""
    digest = hashlib.sha256(scope.encode())
    for name, raw in request.fingerprint_fields:
        digest.update(b"\0" + name.encode() + b"\0" + raw)
    return digest.hexdigest()
