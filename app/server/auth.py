"""Bearer `gnd_…` key → `Identity`, by SHA-256 hash; the plaintext is never stored or logged."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from app.config import KeyConfig
from app.domain import Forbidden, Identity, Unauthorized

KEY_PREFIX = "gnd_"
_BEARER = b"bearer "


def hash_key(plaintext: str | bytes) -> str:
    """Lower-case hex SHA-256 of a key: how keys are stored and looked up."""
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    return hashlib.sha256(data).hexdigest()


def identities_from_config(keys: Iterable[KeyConfig]) -> dict[str, Identity]:
    """Key hash → identity for the keys of the configuration file."""
    index: dict[str, Identity] = {}
    for key in keys:
        digest = hash_key(key.key)
        index[digest] = Identity(
            key_id=f"cfg-{digest[:16]}",
            key_prefix=key.key[:12],
            org_id=key.org_id,
            team_id=key.team_id,
            user_id=key.user_id,
            role=key.role,
            allowed_models=frozenset(key.allowed_models),
            rpm_limit=key.rpm_limit,
            tpm_limit=key.tpm_limit,
            max_budget=key.max_budget,
            budget_period=key.budget_period,
            expires_at=epoch(key.expires_at),
        )
    return index


def epoch(rfc3339: str | None) -> float | None:
    """An RFC3339 time as Unix seconds; None stays None."""
    if not rfc3339:
        return None
    from datetime import datetime  # noqa: PLC0415 - only for configured expiry dates

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


class KeyLookup(Protocol):
    async def lookup(self, digest: str) -> Identity | None: ...


class StaticKeys:
    """The keys of the configuration file (a data plane running without a control plane)."""

    def __init__(self, index: Mapping[str, Identity]) -> None:
        self._index = index

    async def lookup(self, digest: str) -> Identity | None:
        return self._index.get(digest)


class Authenticator:
    """Checks the `Authorization` header against the key index."""

    def __init__(self, keys: KeyLookup, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self._clock = clock

    async def authenticate(self, authorization: bytes | None) -> Identity:
        """Return the caller's identity.

        Raises:
            Unauthorized: no bearer token, not a `gnd_` key, unknown or expired key.
            Forbidden: the key is blocked.
        """
        if authorization is None or authorization[:7].lower() != _BEARER:
            raise Unauthorized("unauthorized")
        token = authorization[7:].strip()
        if not token.startswith(b"gnd_"):
            raise Unauthorized("unauthorized")
        identity = await self.keys.lookup(hash_key(token))
        if identity is None:
            raise Unauthorized("unauthorized")
        if identity.blocked:
            raise Forbidden("api key blocked")
        if identity.expires_at is not None and identity.expires_at <= self._clock():
            raise Unauthorized("api key expired")
        return identity


def same_key(stored_hash: str, digest: str) -> bool:
    """Constant-time comparison of two key hashes."""
    return hmac.compare_digest(stored_hash, digest)
