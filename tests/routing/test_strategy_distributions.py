"""Seeded statistical checks of every strategy's traffic split, plus health-driven changes."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ailb.config import Capabilities, DeploymentConfig, RoutingStrategy
from ailb.errors import InvalidRequest, ModelNotFound
from ailb.providers.base import UpstreamError
from ailb.providers.mock import MockProvider
from ailb.routing.deployment import DeploymentState
from ailb.routing.router import Needs, Router

N = 10_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deployment(name: str, clock: Clock, **kw: object) -> DeploymentState:
    cfg = DeploymentConfig(name=name, provider="mock", models=("m",), **kw)  # type: ignore[arg-type]
    return DeploymentState(config=cfg, provider=MockProvider(cfg), clock=clock)


def split(router: Router, n: int = N, needs: Needs | None = None) -> Counter[str]:
    return Counter(router.plan("m", needs or Needs()).first.deployment.name for _ in range(n))


@pytest.mark.parametrize(
    "strategy", [RoutingStrategy.ROUND_ROBIN, RoutingStrategy.RANDOM, RoutingStrategy.LOAD_BALANCED]
)
def test_split_follows_weights_and_zero_gets_nothing(strategy):
    clock = Clock()
    deps = [deployment(n, clock, weight=w) for n, w in (("a", 1), ("b", 2), ("c", 3), ("z", 0))]
    counts = split(Router(deps, strategy, rng=random.Random(5), clock=clock))
    assert counts["z"] == 0
    for name, share in (("a", 1 / 6), ("b", 2 / 6), ("c", 3 / 6)):
        assert abs(counts[name] / N - share) < 0.03, (name, counts)


def test_round_robin_is_exact_and_interleaved():
    clock = Clock()
    deps = [deployment("a", clock, weight=1), deployment("b", clock, weight=2)]
    router = Router(deps, RoutingStrategy.ROUND_ROBIN, clock=clock)
    seq = [router.plan("m", Needs()).first.deployment.name for _ in range(30)]
    assert Counter(seq) == {"a": 10, "b": 20}
    assert "aa" not in "".join(seq)  # smooth: never the light one twice in a row


def test_set_weights_changes_the_split_at_once_and_validates():
    clock = Clock()
    deps = [deployment("a", clock), deployment("b", clock)]
    router = Router(deps, RoutingStrategy.RANDOM, rng=random.Random(1), clock=clock)
    router.set_weights("m", {"a": 90, "b": 10})
    counts = split(router)
    assert abs(counts["a"] / N - 0.9) < 0.03
    for bad, exc in (({"nope": 1}, KeyError), ({"a": 1001}, ValueError)):
        with pytest.raises(exc):
            router.set_weights("m", bad)
    with pytest.raises(KeyError):
        router.set_weights("unknown-model", {"a": 1})
    assert router.weights("m") == {"a": 90, "b": 10}


def test_latency_optimized_prefers_the_fastest_but_keeps_exploring():
    clock = Clock()
    deps = [deployment(n, clock) for n in ("fast", "mid", "slow")]
    for d, seconds in zip(deps, (0.020, 0.060, 0.150), strict=True):
        for _ in range(20):
            d.record_success(seconds)
    counts = split(
        Router(deps, RoutingStrategy.LATENCY_OPTIMIZED, rng=random.Random(3), clock=clock)
    )
    assert counts["fast"] / N >= 0.90
    assert counts["mid"] / N >= 0.01 and counts["slow"] / N >= 0.01


def test_latency_optimized_tries_an_unmeasured_deployment():
    clock = Clock()
    deps = [deployment("measured", clock), deployment("new", clock)]
    deps[0].record_success(0.01)
    router = Router(deps, RoutingStrategy.LATENCY_OPTIMIZED, rng=random.Random(0), clock=clock)
    assert router.plan("m", Needs()).first.deployment.name == "new"


def test_cost_optimized_uses_the_request_token_mix():
    clock = Clock()
    deps = [
        deployment("cheap-in", clock, input_cost_per_1m=0.1, output_cost_per_1m=10.0),
        deployment("cheap-out", clock, input_cost_per_1m=5.0, output_cost_per_1m=0.5),
        deployment("dominated", clock, input_cost_per_1m=6.0, output_cost_per_1m=11.0),
    ]
    router = Router(deps, RoutingStrategy.COST_OPTIMIZED, clock=clock)
    long_prompt = Needs(prompt_tokens=50_000, max_tokens=50)
    long_answer = Needs(prompt_tokens=50, max_tokens=4000)
    assert router.plan("m", long_prompt).first.deployment.name == "cheap-in"
    assert router.plan("m", long_answer).first.deployment.name == "cheap-out"


def test_cost_ties_go_to_the_faster():
    clock = Clock()
    deps = [deployment(n, clock, input_cost_per_1m=1.0, output_cost_per_1m=1.0) for n in "ab"]
    deps[0].record_success(0.5)
    deps[1].record_success(0.1)
    router = Router(deps, RoutingStrategy.COST_OPTIMIZED, clock=clock)
    assert router.plan("m", Needs(prompt_tokens=10)).first.deployment.name == "b"


def test_failover_order_and_ejection_then_return():
    clock = Clock()
    deps = [deployment("second", clock, priority=1), deployment("first", clock, priority=0)]
    router = Router(deps, RoutingStrategy.FAILOVER, clock=clock)
    assert router.plan("m", Needs()).first.deployment.name == "first"
    boom = UpstreamError("status", "HTTP 500", status=500)
    for _ in range(3):
        deps[1].record_failure(boom)
    plan = router.plan("m", Needs())
    assert plan.first.deployment.name == "second"  # the very next plan sees the ejection
    clock.now += 6  # 5 s base ejection
    assert router.plan("m", Needs()).first.deployment.name == "first"


def test_client_faults_never_eject_and_401_ejects_at_once():
    clock = Clock()
    d = deployment("a", clock)
    for status in (400, 404, 422):
        for _ in range(5):
            assert not d.record_failure(UpstreamError("status", "x", status=status))
    assert d.available()
    assert d.record_failure(UpstreamError("status", "x", status=401))
    assert not d.available()


def test_429_cools_down_for_retry_after():
    clock = Clock()
    deps = [deployment("a", clock), deployment("b", clock)]
    router = Router(deps, RoutingStrategy.ROUND_ROBIN, clock=clock)
    deps[0].record_failure(UpstreamError("status", "429", status=429, retry_after=2.0))
    assert set(split(router, 20)) == {"b"}
    clock.now += 2.1
    assert set(split(router, 20)) == {"a", "b"}


def test_ejection_grows_and_is_capped():
    clock = Clock()
    d = deployment("a", clock)
    durations = []
    for _ in range(80):
        for _ in range(3):
            d.record_failure(UpstreamError("connect", "refused"))
        durations.append(d.ejected_until - clock.now)
        clock.now = d.ejected_until
    assert durations[:3] == [5.0, 10.0, 15.0]
    assert max(durations) == 300.0


def test_panic_mode_tries_the_soonest_back_first():
    clock = Clock()
    deps = [deployment("a", clock), deployment("b", clock)]
    router = Router(deps, RoutingStrategy.LOAD_BALANCED, clock=clock)
    err = UpstreamError("timeout", "t")
    for _ in range(3):
        deps[0].record_failure(err)
    clock.now += 1
    for _ in range(3):
        deps[1].record_failure(err)
    plan = router.plan("m", Needs())
    assert plan.panic and plan.reason.startswith("panic:")
    assert [t.deployment.name for t in plan.targets] == ["a", "b"]


def test_capabilities_and_context_windows():
    clock = Clock()
    deps = [
        deployment("small", clock, context_window=4000),
        deployment("large", clock, context_window=100_000, capabilities=Capabilities(tools=False)),
    ]
    router = Router(deps, RoutingStrategy.ROUND_ROBIN, clock=clock)
    assert set(split(router, 20, Needs(tools=True))) == {"small"}
    assert set(split(router, 20, Needs(prompt_tokens=10_000))) == {"large"}
    with pytest.raises(InvalidRequest) as info:
        router.plan("m", Needs(prompt_tokens=10_000, tools=True))
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequest) as info:
        router.plan("m", Needs(prompt_tokens=500_000))
    assert info.value.code == "context_length_exceeded"
    only_small = Router([deps[1]], RoutingStrategy.ROUND_ROBIN, clock=clock)
    with pytest.raises(InvalidRequest) as info:
        only_small.plan("m", Needs(tools=True))
    assert info.value.code == "unsupported_feature"
    with pytest.raises(ModelNotFound):
        router.plan("other", Needs())


def test_session_affinity_sticks_while_healthy():
    clock = Clock()
    deps = [deployment(n, clock) for n in "abc"]
    router = Router(deps, RoutingStrategy.ROUND_ROBIN, clock=clock)
    first = router.plan("m", Needs(), "sess").first.deployment
    assert {router.plan("m", Needs(), "sess").first.deployment.name for _ in range(10)} == {
        first.name
    }
    for _ in range(3):
        first.record_failure(UpstreamError("connect", "refused"))
    moved = router.plan("m", Needs(), "sess").first.deployment
    assert moved is not first
