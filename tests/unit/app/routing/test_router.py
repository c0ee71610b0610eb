import random
from collections import Counter

import pytest

from app.domain import (
    ConfigSnapshot,
    Operation,
    Payload,
    ProviderSettings,
    Reply,
    RouteSettings,
    TargetSettings,
)
from app.routing.router import (
    Router,
    RouteSpec,
    Target,
    build_route,
    build_routes,
    route_specs,
)
from tests.fakes.providers import FakeProvider


def _target(name: str, priority: int = 0, weight: int = 1) -> Target:
    return Target(FakeProvider(name), f"{name}-model", priority, weight)


def test_targets_are_ordered_by_priority() -> None:
    route = build_route("alias", [_target("c", 3), _target("a", 1), _target("b", 2)])
    router = Router({"alias": route})
    assert [t.provider.name for t in router.targets(route)] == ["a", "b", "c"]


def test_equal_priority_is_spread_by_weight() -> None:
    route = build_route("alias", [_target("heavy", 1, 9), _target("light", 1, 1)])
    router = Router({"alias": route}, rng=random.Random(7))  # noqa: S311
    firsts = Counter(router.targets(route)[0].provider.name for _ in range(2000))
    assert 0.85 < firsts["heavy"] / 2000 < 0.95
    assert all(len(router.targets(route)) == 2 for _ in range(10))


def test_unknown_model_has_no_route() -> None:
    assert Router({}).route("nope") is None


def test_provider_models_route_directly_unless_a_route_names_them() -> None:
    snapshot = ConfigSnapshot(
        routes=(
            RouteSettings(
                model_alias="gpt-4o", targets=(TargetSettings(provider="eu", model="gpt-4o-2024"),)
            ),
        ),
        providers=(
            ProviderSettings(
                name="us", type="openai", base_url="u", priority=2, models=("gpt-4o", "gpt-4o-mini")
            ),
            ProviderSettings(
                name="eu", type="openai", base_url="u", priority=1, models=("gpt-4o-mini",)
            ),
        ),
    )
    specs = route_specs(snapshot)
    routes = build_routes(specs, {"us": FakeProvider("us"), "eu": FakeProvider("eu")})
    router = Router(routes)
    assert [(t.provider.name, t.model) for t in router.targets(routes["gpt-4o"])] == [
        ("eu", "gpt-4o-2024")
    ]
    assert [t.provider.name for t in router.targets(routes["gpt-4o-mini"])] == ["eu", "us"]


def test_targets_of_unavailable_providers_are_dropped() -> None:
    specs = [
        RouteSpec("a", (("gone", "m", 0, 1), ("here", "m", 1, 1))),
        RouteSpec("b", (("gone", "m", 0, 1),)),
    ]
    routes = build_routes(specs, {"here": FakeProvider("here")})
    assert set(routes) == {"a"}


@pytest.mark.parametrize("weight", [0, -3])
def test_non_positive_weights_do_not_crash(weight: int) -> None:
    route = build_route("alias", [_target("a", 1, weight), _target("b", 1, 1)])
    assert len(Router({"alias": route}).targets(route)) == 2


async def test_fake_provider_records_calls() -> None:
    provider = FakeProvider("p", send=lambda payload, model: Reply(body=model.encode()))
    reply = await provider.send(Payload(operation=Operation.CHAT, fields={}, model="m"), "up")
    assert reply.body == b"up"
    assert provider.calls == ["up"]
