"""Try targets in order; move on only for failures that another target may not have."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

from app.domain import NoTargetAvailable, UpstreamError
from app.routing.router import Target

T = TypeVar("T")

log = structlog.get_logger("gandalf.failover")


async def first_success(
    model: str, targets: Sequence[Target], attempt: Callable[[Target], Awaitable[T]]
) -> tuple[Target, T]:
    """Return the first target whose attempt succeeds, and its result.

    Connect errors, timeouts and 5xx move on to the next target. A non-retryable upstream
    error (a 4xx: the request itself is at fault) is raised at once, as it came.

    Raises:
        NoTargetAvailable: every target failed (it carries the last failure).
    """
    last: UpstreamError | None = None
    for target in targets:
        try:
            return target, await attempt(target)
        except UpstreamError as exc:
            if not exc.retryable:
                raise
            last = exc
            log.warning(
                "upstream failed, trying next target",
                provider=target.provider.name,
                model=target.model,
                error=exc.message,
            )
    raise NoTargetAvailable(model, last)
