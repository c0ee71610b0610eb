"""One request through the gateway, with no HTTP types: authorise → route → call with failover.

Handlers stay thin (decode, call this, encode); limits, the cache and settlement slot in here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from app.domain import Forbidden, Identity, ModelNotFound, Payload, Permission, Reply
from app.routing.failover import first_success
from app.routing.router import Route, Router, Target


class Gateway:
    """The application service of the data plane."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def resolve(self, identity: Identity, payload: Payload) -> Route:
        """Check the caller may use the model and return its route."""
        if not identity.can(Permission.USE_MODELS):
            raise Forbidden("insufficient permissions")
        if not identity.may_use(payload.model):
            raise Forbidden("model not allowed", param="model")
        route = self.router.route(payload.model)
        if route is None:
            raise ModelNotFound(payload.model)
        return route

    async def complete(self, route: Route, payload: Payload) -> tuple[Target, Reply]:
        targets = self.router.targets(route)
        return await first_success(
            payload.model, targets, lambda t: t.provider.send(payload, t.model)
        )

    async def open_stream(
        self, route: Route, payload: Payload, stack: contextlib.AsyncExitStack
    ) -> tuple[Target, AsyncIterator[bytes]]:
        """Open the first stream that answers; `stack` owns it (closing it cancels upstream)."""
        targets = self.router.targets(route)
        return await first_success(
            payload.model,
            targets,
            lambda t: stack.enter_async_context(t.provider.stream(payload, t.model)),
        )
