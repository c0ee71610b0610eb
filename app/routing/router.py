"""Model alias → targets in the order to try them.

Targets are ordered by ascending priority; targets that share a priority are shuffled by
weight on each request, so traffic spreads across them while failover keeps its order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from app.domain import ConfigSnapshot, Provider


class Target(NamedTuple):
    provider: Provider
    model: str
    priority: int = 0
    weight: int = 1


class Route(NamedTuple):
    alias: str
    groups: tuple[tuple[Target, ...], ...]
    """Targets grouped by priority, lowest priority first."""
    cache_ttl_s: int = 0


def build_route(alias: str, targets: Iterable[Target], cache_ttl_s: int = 0) -> Route:
    by_priority: dict[int, list[Target]] = {}
    for target in targets:
        by_priority.setdefault(target.priority, []).append(target)
    groups = tuple(tuple(by_priority[p]) for p in sorted(by_priority))
    return Route(alias, groups, cache_ttl_s)


class Router:
    """Resolves a requested model to the targets to try, in order."""

    def __init__(self, routes: Mapping[str, Route], rng: random.Random | None = None) -> None:
        self._routes = dict(routes)
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security

    def route(self, model: str) -> Route | None:
        return self._routes.get(model)

    def targets(self, route: Route) -> Sequence[Target]:
        if len(route.groups) == 1 and len(route.groups[0]) == 1:
            return route.groups[0]
        ordered: list[Target] = []
        for group in route.groups:
            ordered.extend(group if len(group) == 1 else self._shuffle(group))
        return ordered

    def _shuffle(self, group: Sequence[Target]) -> list[Target]:
        # Weighted order without replacement: sort by u^(1/w) descending (Efraimidis-Spirakis).
        keyed = [(self._rng.random() ** (1.0 / max(t.weight, 1)), t) for t in group]
        keyed.sort(key=lambda pair: pair[0], reverse=True)
        return [t for _, t in keyed]

    @property
    def aliases(self) -> list[str]:
        return sorted(self._routes)


class RouteSpec(NamedTuple):
    """What configuration says about one alias, before providers are attached."""

    alias: str
    targets: tuple[tuple[str, str, int, int], ...]
    """(provider name, upstream model, priority, weight) for each target."""
    cache_ttl_s: int = 0


def build_routes(specs: Iterable[RouteSpec], providers: Mapping[str, Provider]) -> dict[str, Route]:
    """Attach providers to route specs; targets naming an unavailable provider are left out."""
    routes: dict[str, Route] = {}
    for spec in specs:
        targets = [
            Target(providers[name], model, priority, weight)
            for name, model, priority, weight in spec.targets
            if name in providers
        ]
        if targets:
            routes[spec.alias] = build_route(spec.alias, targets, spec.cache_ttl_s)
    return routes


def route_specs(snapshot: ConfigSnapshot) -> list[RouteSpec]:
    """Configured routes, plus a direct route for each model a provider lists that no route names.

    A model listed by several providers gets them all as targets, in provider priority order.
    """
    specs = [
        RouteSpec(
            route.model_alias,
            tuple((t.provider, t.model, t.priority, t.weight) for t in route.targets),
            route.cache_ttl_s,
        )
        for route in snapshot.routes
    ]
    named = {spec.alias for spec in specs}
    direct: dict[str, list[tuple[str, str, int, int]]] = {}
    for provider in snapshot.providers:
        for model in provider.models:
            if model not in named:
                direct.setdefault(model, []).append((provider.name, model, provider.priority, 1))
    specs.extend(RouteSpec(model, tuple(targets)) for model, targets in direct.items())
    return specs
