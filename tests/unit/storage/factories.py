"""Records for the storage tests, with every field a sensible default."""

from __future__ import annotations

from typing import Any

from storage.records import UsageRecord


def usage_record(request_id: str, created_at: str, **fields: Any) -> UsageRecord:
    """A successful request of key `k1` (10 prompt + 5 completion tokens); `fields` override."""
    base: dict[str, Any] = {
        "request_id": request_id,
        "key_id": "k1",
        "org_id": "default",
        "model": "chat",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cached": False,
        "latency_ms": 120,
        "status_code": 200,
        "usage_source": "provider",
        "created_at": created_at,
    }
    return UsageRecord(**{**base, **fields})
