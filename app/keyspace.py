"""Redis key, stream and channel names. Pure; the control plane imports it too.

Every name starts with the configured prefix (`redis.key_prefix`, default `gandalf`). Keys that
one Lua script touches together share a hash tag (`{…}`), so the same scripts run unchanged on
Redis Cluster: the per-key limiter state is tagged by key id, the published configuration by
`{config}`.
"""

from __future__ import annotations


class Keyspace:
    """All Redis names of one gateway installation."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "gandalf") -> None:
        self.prefix = prefix

    @property
    def key_index(self) -> str:
        """Hash: API key SHA-256 → identity JSON (never the plaintext key)."""
        return f"{self.prefix}:{{config}}:keys"

    @property
    def snapshot(self) -> str:
        """String: the published configuration (routes, providers without secrets) as JSON."""
        return f"{self.prefix}:{{config}}:snapshot"

    @property
    def snapshot_version(self) -> str:
        """String: the version number of the published snapshot."""
        return f"{self.prefix}:{{config}}:version"

    @property
    def events(self) -> str:
        """Pub/sub channel on which the control plane announces changes."""
        return f"{self.prefix}:events"

    @property
    def supervisor_heartbeat(self) -> str:
        """String with a TTL that the supervisor refreshes while it is alive."""
        return f"{self.prefix}:supervisor:heartbeat"

    def limits(self, key_id: str) -> str:
        """Hash tag shared by every limiter key of one API key."""
        return f"{self.prefix}:{{k:{key_id}}}"

    def rate(self, key_id: str) -> str:
        """Hash: the key's RPM and TPM token buckets (tokens and last refill time)."""
        return f"{self.limits(key_id)}:rate"

    def spend(self, key_id: str, period: str) -> str:
        """Integer: nano-USD spent by the key in one budget period (`m:2026-11`, `d:…`, `total`).

        Quota sync rebuilds it from SQLite when Redis lost it.
        """
        return f"{self.limits(key_id)}:spend:{period}"

    def reserved(self, key_id: str) -> str:
        """Integer: nano-USD reserved by the key's requests in flight (estimated cost)."""
        return f"{self.limits(key_id)}:reserved"

    @property
    def usage_stream(self) -> str:
        """Stream: one entry per request (field `e`: a `UsageEvent` as JSON).

        The control plane's recorder reads it through the consumer group `usage_group`.
        """
        return f"{self.prefix}:usage"

    def worker_heartbeat(self, worker_id: str) -> str:
        """String with a short TTL that a live data-plane worker keeps refreshing.

        The recorder treats the intents (`domain.UsageIntent`) left in the hash of a worker
        whose heartbeat is gone as requests that will never be settled.
        """
        return f"{self.prefix}:worker:{worker_id}"

    def intents(self, worker_id: str) -> str:
        """Hash: request id → `domain.UsageIntent` JSON, the worker's requests in flight."""
        return f"{self.prefix}:intents:{worker_id}"

    @property
    def workers(self) -> str:
        """Set: the ids of the data-plane workers that have intents (see `worker_heartbeat`)."""
        return f"{self.prefix}:workers"

    @property
    def quota_marker(self) -> str:
        """String: set once the spend counters are known to be whole (`workers/quota.py`).

        Gone together with the usage stream's group means Redis lost its data: the control
        plane then rebuilds the counters from SQLite before recording again.
        """
        return f"{self.prefix}:quota:synced"

    @property
    def usage_group(self) -> str:
        return "recorder"

    @property
    def cache_prefix(self) -> str:
        """Start of every response-cache key (`SCAN MATCH <prefix>*` finds them all)."""
        return f"{self.prefix}:cache:"

    def cache(self, model: str, fingerprint: str) -> str:
        """String: one cached response, by requested model and request fingerprint."""
        return f"{self.cache_prefix}{model}:{fingerprint}"
