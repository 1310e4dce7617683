"""Router.plan: strategies (seeded statistics), weights, capabilities, context windows, session
affinity, panic mode, and pools that follow health changes on the very next plan."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ailb.config import Capabilities, DeploymentConfig, ModelSettings, RoutingStrategy
from ailb.errors import InvalidRequest, ModelNotFound, ServiceUnavailable
from ailb.providers.base import UpstreamError
from ailb.providers.mock import MockProvider
from ailb.routing.deployment import DeploymentState
from ailb.routing.router import Needs, Router

N = 10_000
S = RoutingStrategy
ALL_STRATEGIES = list(RoutingStrategy)
SPLIT_STRATEGIES = [S.ROUND_ROBIN, S.RANDOM, S.LOAD_BALANCED]
HTTP_500 = UpstreamError("status", "upstream answered HTTP 500", status=500)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dep(name: str, clock: Clock, models: tuple[str, ...] = ("m",), **kw: object) -> DeploymentState:
    cfg = DeploymentConfig(name=name, provider="mock", models=models, **kw)  # type: ignore[arg-type]
    return DeploymentState(config=cfg, provider=MockProvider(cfg), clock=clock)


def router(
    deps: list[DeploymentState],
    strategy: RoutingStrategy,
    clock: Clock,
    seed: int = 7,
    **kw: object,
) -> Router:
    return Router(deps, strategy, rng=random.Random(seed), clock=clock, **kw)  # type: ignore[arg-type]


def firsts(r: Router, n: int, needs: Needs | None = None, model: str = "m") -> list[str]:
    needs = needs or Needs()
    return [r.plan(model, needs).first.deployment.name for _ in range(n)]


def split(r: Router, n: int = N, needs: Needs | None = None) -> Counter[str]:
    return Counter(firsts(r, n, needs))


def eject(d: DeploymentState) -> None:
    for _ in range(3):
        d.record_failure(HTTP_500)
    assert not d.available()


def assert_shares(counts: Counter[str], shares: dict[str, float], n: int = N) -> None:
    for name, share in shares.items():
        assert abs(counts[name] / n - share) <= 0.03, (name, counts)


# --- distributions ----------------------------------------------------------------------------


def test_round_robin_follows_weights_exactly_and_interleaves() -> None:
    clock = Clock()
    r = router(
        [dep(n, clock, weight=w) for n, w in (("a", 1), ("b", 2), ("c", 3))], S.ROUND_ROBIN, clock
    )
    seq = firsts(r, 6000)
    assert Counter(seq) == {"a": 1000, "b": 2000, "c": 3000}
    # Smooth: every cycle of six holds the exact proportions, and no one runs three in a row.
    for i in range(0, 6000, 6):
        assert Counter(seq[i : i + 6]) == {"a": 1, "b": 2, "c": 3}
    text = "".join(seq)
    assert all(name * 3 not in text for name in "abc")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("strategy", [S.RANDOM, S.LOAD_BALANCED])
def test_random_and_load_balanced_follow_the_weights_when_idle(
    strategy: RoutingStrategy, seed: int
) -> None:
    clock = Clock()
    deps = [dep(n, clock, weight=w) for n, w in (("a", 1), ("b", 2), ("c", 3))]
    counts = split(router(deps, strategy, clock, seed))
    assert_shares(counts, {"a": 1 / 6, "b": 2 / 6, "c": 3 / 6})


def test_load_balanced_steers_away_from_a_backed_up_deployment() -> None:
    clock = Clock()
    busy, idle = dep("busy", clock), dep("idle", clock)
    busy.in_flight = 10
    counts = split(router([busy, idle], S.LOAD_BALANCED, clock, 11))
    # Two draws by weight; `busy` wins only when both draws land on it (1/4).
    assert_shares(counts, {"busy": 0.25, "idle": 0.75})


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_weight_zero_gets_nothing_under_every_strategy(strategy: RoutingStrategy) -> None:
    clock = Clock()
    # The weight-0 one would be the pick of every strategy: first by priority, cheapest,
    # fastest, least loaded.
    zero = dep("zero", clock, weight=0, priority=0, input_cost_per_1m=0.01, output_cost_per_1m=0.01)
    zero.record_success(0.001)
    others = [
        dep(n, clock, weight=1, priority=1, input_cost_per_1m=5, output_cost_per_1m=5) for n in "ab"
    ]
    for d in others:
        d.record_success(0.5)
        d.in_flight = 3
    counts = split(router([zero, *others], strategy, clock), 2000)
    assert counts["zero"] == 0
    assert sum(counts.values()) == 2000


def test_weight_zero_for_every_deployment_is_503() -> None:
    clock = Clock()
    r = router([dep("a", clock), dep("b", clock)], S.RANDOM, clock)
    r.set_weights("m", {"a": 0, "b": 0})
    with pytest.raises(ServiceUnavailable) as info:
        r.plan("m", Needs())
    assert info.value.status == 503


@pytest.mark.parametrize("strategy", SPLIT_STRATEGIES)
def test_set_weights_changes_the_split_at_once(strategy: RoutingStrategy) -> None:
    clock = Clock()
    r = router([dep("a", clock), dep("b", clock)], strategy, clock, 4)
    assert_shares(split(r, 4000), {"a": 0.5, "b": 0.5}, 4000)
    r.set_weights("m", {"a": 9, "b": 1})
    after = split(r, N)
    if strategy is S.ROUND_ROBIN:
        assert abs(after["a"] - 9000) <= 9, after
    assert_shares(after, {"a": 0.9, "b": 0.1})
    r.set_weights("m", {"a": 0})
    assert set(firsts(r, 200)) == {"b"}
    assert r.weights("m") == {"a": 0, "b": 1}


@pytest.mark.parametrize(
    ("model", "weights", "exc"),
    [
        ("unknown-model", {"a": 1}, KeyError),
        ("m", {"a": 5, "nope": 1}, KeyError),
        ("m", {"a": 5, "other": 1}, KeyError),  # serves another model only
        ("m", {"a": 5, "b": 1001}, ValueError),
        ("m", {"a": 5, "b": -1}, ValueError),
    ],
)
def test_set_weights_validates_and_changes_nothing_on_error(
    model: str, weights: dict[str, int], exc: type[Exception]
) -> None:
    clock = Clock()
    deps = [dep("a", clock), dep("b", clock, weight=3), dep("other", clock, models=("n",))]
    r = router(deps, S.ROUND_ROBIN, clock)
    before = firsts(r, 8)
    with pytest.raises(exc):
        r.set_weights(model, weights)
    assert r.weights("m") == {"a": 1, "b": 3}
    assert r.weights("n") == {"other": 1}
    assert Counter(firsts(r, 8)) == Counter(before) == {"a": 2, "b": 6}


def test_set_weights_is_per_model() -> None:
    clock = Clock()
    deps = [dep("a", clock, models=("m", "n")), dep("b", clock, models=("m", "n"))]
    r = router(deps, S.ROUND_ROBIN, clock)
    r.set_weights("m", {"a": 0})
    assert set(firsts(r, 20, model="m")) == {"b"}
    assert set(firsts(r, 20, model="n")) == {"a", "b"}
    assert r.stats()["n"]["weights"] == {"a": 1, "b": 1}
    assert r.stats()["m"]["weights"] == {"a": 0, "b": 1}


# --- latency_optimized ------------------------------------------------------------------------


def warmed(clock: Clock, speeds: dict[str, float]) -> list[DeploymentState]:
    deps = [dep(name, clock) for name in speeds]
    for d in deps:
        for _ in range(20):
            d.record_success(speeds[d.name])
    return deps


@pytest.mark.parametrize("seed", [3, 8])
def test_latency_optimized_sends_most_to_the_fastest_and_explores_the_rest(seed: int) -> None:
    clock = Clock()
    deps = warmed(clock, {"slow": 0.150, "fast": 0.020, "mid": 0.060})
    counts = split(router(deps, S.LATENCY_OPTIMIZED, clock, seed))
    assert counts["fast"] / N >= 0.90
    assert counts["mid"] / N >= 0.01 and counts["slow"] / N >= 0.01


def test_latency_optimized_notices_a_deployment_that_became_fastest() -> None:
    clock = Clock()
    speeds = {"fast": 0.020, "mid": 0.060, "slow": 0.150}
    deps = {d.name: d for d in warmed(clock, speeds)}
    r = router(list(deps.values()), S.LATENCY_OPTIMIZED, clock, 5)

    def run(n: int) -> Counter[str]:
        out: Counter[str] = Counter()
        for _ in range(n):  # every request reports its real latency back
            name = r.plan("m", Needs()).first.deployment.name
            deps[name].record_success(speeds[name])
            out[name] += 1
        return out

    run(1000)
    speeds["slow"] = 0.005  # recovered and now the best: only exploring traffic can tell
    run(3000)
    assert run(2000)["slow"] / 2000 >= 0.90


def test_latency_optimized_tries_an_unmeasured_deployment_first() -> None:
    clock = Clock()
    deps = [*warmed(clock, {"a": 0.02, "b": 0.05}), dep("new", clock)]
    r = router(deps, S.LATENCY_OPTIMIZED, clock)
    assert firsts(r, 3) == ["new", "new", "new"]  # until it reports a latency
    deps[2].record_success(0.300)
    assert split(r, 2000)["new"] / 2000 < 0.06


def test_latency_optimized_ranks_streams_by_time_to_first_token() -> None:
    clock = Clock()
    a, b = dep("a", clock), dep("b", clock)
    a.record_success(0.050)
    b.record_success(5.0, ttft_s=0.010)  # long answer, quick first token
    assert split(router([a, b], S.LATENCY_OPTIMIZED, clock), 1000)["b"] >= 900


# --- cost_optimized ---------------------------------------------------------------------------


def priced(clock: Clock) -> list[DeploymentState]:
    return [
        dep("cheap-in", clock, input_cost_per_1m=0.10, output_cost_per_1m=12.0),
        dep("cheap-out", clock, input_cost_per_1m=6.00, output_cost_per_1m=0.60),
        dep("dominated", clock, input_cost_per_1m=6.50, output_cost_per_1m=12.5),
    ]


@pytest.mark.parametrize(
    ("needs", "cheapest", "order"),
    [
        (Needs(prompt_tokens=40_000, max_tokens=100), "cheap-in", ["cheap-in", "cheap-out"]),
        (Needs(prompt_tokens=100, max_tokens=8000), "cheap-out", ["cheap-out", "cheap-in"]),
    ],
    ids=["long-prompt-short-answer", "short-prompt-long-answer"],
)
def test_cost_optimized_picks_the_cheapest_for_the_token_mix(
    needs: Needs, cheapest: str, order: list[str]
) -> None:
    clock = Clock()
    r = router(priced(clock), S.COST_OPTIMIZED, clock)
    assert set(firsts(r, 50, needs)) == {cheapest}
    plan = r.plan("m", needs)
    assert [t.deployment.name for t in plan.targets] == [*order, "dominated"]


def test_cost_optimized_assumes_a_typical_answer_when_no_max_tokens() -> None:
    clock = Clock()
    r = router(priced(clock), S.COST_OPTIMIZED, clock)
    # 400 in + 256 assumed out: cheap-in 40 + 3072, cheap-out 2400 + 153.6
    assert r.plan("m", Needs(prompt_tokens=400)).first.deployment.name == "cheap-out"
    assert r.plan("m", Needs(prompt_tokens=400, max_tokens=1)).first.deployment.name == "cheap-in"
    assert r.plan("m", Needs(prompt_tokens=600)).first.deployment.name == "cheap-in"


def test_cost_ties_are_broken_by_lower_latency() -> None:
    clock = Clock()
    deps = [dep(n, clock, input_cost_per_1m=1.0, output_cost_per_1m=2.0) for n in ("x", "y", "z")]
    for d, s in zip(deps, (0.30, 0.05, 0.10), strict=True):
        d.record_success(s)
    r = router(deps, S.COST_OPTIMIZED, clock)
    assert set(firsts(r, 20, Needs(prompt_tokens=10))) == {"y"}
    assert [t.deployment.name for t in r.plan("m", Needs()).targets] == ["y", "z", "x"]


def test_cost_optimized_skips_an_ejected_cheapest() -> None:
    clock = Clock()
    deps = priced(clock)
    r = router(deps, S.COST_OPTIMIZED, clock)
    long_prompt = Needs(prompt_tokens=40_000, max_tokens=100)
    eject(deps[0])
    assert r.plan("m", long_prompt).first.deployment.name == "cheap-out"


# --- failover -----------------------------------------------------------------------------------


def test_failover_is_strict_priority_and_moves_on_only_when_earlier_ones_are_out() -> None:
    clock = Clock()
    # Config order is not priority order: priority decides.
    deps = {n: dep(n, clock, priority=p) for n, p in (("p2", 2), ("p0", 0), ("p1", 1))}
    r = router(list(deps.values()), S.FAILOVER, clock)
    assert set(firsts(r, 500)) == {"p0"}
    assert [t.deployment.name for t in r.plan("m", Needs()).targets] == ["p0", "p1", "p2"]
    deps["p1"].in_flight = 50  # load never matters under failover
    assert set(firsts(r, 100)) == {"p0"}
    eject(deps["p0"])
    assert set(firsts(r, 100)) == {"p1"}
    eject(deps["p1"])
    assert set(firsts(r, 100)) == {"p2"}
    clock.now = deps["p0"].ejected_until
    assert set(firsts(r, 100)) == {"p0"}


# --- capabilities, context windows, models ------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "needs", "param"),
    [
        ("tools", Needs(tools=True), "tools"),
        ("images", Needs(images=True), "messages"),
        ("json_mode", Needs(json_mode=True), "response_format"),
        ("streaming", Needs(streaming=True), "stream"),
    ],
)
def test_only_capable_deployments_are_chosen(flag: str, needs: Needs, param: str) -> None:
    clock = Clock()
    lacking = dep("lacking", clock, capabilities=Capabilities(**{flag: False}))
    capable = dep("capable", clock)
    r = router([lacking, capable], S.ROUND_ROBIN, clock)
    assert set(firsts(r, 40, needs)) == {"capable"}
    assert [t.deployment.name for t in r.plan("m", needs).targets] == ["capable"]
    assert set(firsts(r, 40)) == {"lacking", "capable"}  # a plain request may use either

    only_lacking = router(
        [dep("lacking", clock, capabilities=Capabilities(**{flag: False}))], S.ROUND_ROBIN, clock
    )
    with pytest.raises(InvalidRequest) as info:
        only_lacking.plan("m", needs)
    assert (info.value.status, info.value.code, info.value.param) == (
        400,
        "unsupported_feature",
        param,
    )


def test_a_long_prompt_goes_to_the_larger_context_window() -> None:
    clock = Clock()
    deps = [
        dep("small", clock, context_window=8_000),
        dep("large", clock, context_window=128_000),
    ]
    r = router(deps, S.ROUND_ROBIN, clock)
    assert set(firsts(r, 20, Needs(prompt_tokens=7_000))) == {"small", "large"}
    # The answer's room counts too: 7000 + 2000 does not fit in 8000.
    assert set(firsts(r, 20, Needs(prompt_tokens=7_000, max_tokens=2_000))) == {"large"}
    with pytest.raises(InvalidRequest) as info:
        r.plan("m", Needs(prompt_tokens=127_000, max_tokens=2_000))
    assert (info.value.status, info.value.code) == (400, "context_length_exceeded")


def test_context_window_and_capability_together() -> None:
    clock = Clock()
    deps = [
        dep("small-tools", clock, context_window=4_000),
        dep(
            "large-no-tools", clock, context_window=100_000, capabilities=Capabilities(tools=False)
        ),
    ]
    r = router(deps, S.ROUND_ROBIN, clock)
    with pytest.raises(InvalidRequest) as info:
        r.plan("m", Needs(prompt_tokens=10_000, tools=True))
    assert info.value.code == "context_length_exceeded"


def test_an_ejected_large_window_deployment_is_still_the_one_for_a_long_prompt() -> None:
    clock = Clock()
    small, large = (
        dep("small", clock, context_window=4_000),
        dep("large", clock, context_window=100_000),
    )
    r = router([small, large], S.ROUND_ROBIN, clock)
    eject(large)
    plan = r.plan("m", Needs(prompt_tokens=10_000))
    assert plan.panic and plan.first.deployment is large
    assert [t.deployment.name for t in plan.targets] == ["large"]  # never the one it cannot fit


def test_round_robin_among_the_deployments_a_long_prompt_fits() -> None:
    clock = Clock()
    deps = [
        dep("small", clock, context_window=4_000),
        dep("large1", clock, context_window=100_000),
        dep("large2", clock, context_window=100_000),
    ]
    r = router(deps, S.ROUND_ROBIN, clock)
    assert Counter(firsts(r, 100, Needs(prompt_tokens=10_000))) == {"large1": 50, "large2": 50}


def test_unknown_model_is_404_and_aliases_route_to_the_upstream_name() -> None:
    clock = Clock()
    d = dep("a", clock, models=("gpt-big",), aliases={"big": "gpt-big"})
    r = router([d], S.ROUND_ROBIN, clock)
    with pytest.raises(ModelNotFound) as info:
        r.plan("gpt-small", Needs())
    assert (info.value.status, info.value.code) == (404, "model_not_found")
    assert r.plan("big", Needs()).first.upstream_model == "gpt-big"
    assert r.plan("gpt-big", Needs()).first.upstream_model == "gpt-big"


def test_refusals_are_fresh_exceptions_and_unknown_names_are_not_remembered() -> None:
    """Raising one cached exception again and again grows its traceback by the raising frames,
    and with them every request's locals; and the names a client invents are endless."""
    clock = Clock()
    r = router([dep("a", clock, capabilities=Capabilities(tools=False))], S.ROUND_ROBIN, clock)
    for needs, kind in ((Needs(), ModelNotFound), (Needs(tools=True), InvalidRequest)):
        raised = []
        for _ in range(3):
            model = "unknown" if kind is ModelNotFound else "m"
            with pytest.raises(kind) as info:
                r.plan(model, needs)
            raised.append(info.value)
        assert len({id(e) for e in raised}) == 3
        depth = [len(list(_frames(e.__traceback__))) for e in raised]
        assert depth[0] == depth[-1], depth  # nothing added by earlier raises
    for i in range(3):
        with pytest.raises(ModelNotFound):
            r.plan(f"unknown-{i}", Needs())
    assert not any(model.startswith("unknown") for model, _ in r._pools)
    r2 = router([dep("b", clock, weight=0)], S.ROUND_ROBIN, clock)
    with pytest.raises(ServiceUnavailable) as first:
        r2.plan("m", Needs())
    with pytest.raises(ServiceUnavailable) as second:
        r2.plan("m", Needs())
    assert first.value is not second.value


def _frames(tb: object) -> list[object]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next  # type: ignore[attr-defined]
    return out


def test_rebuild_index_picks_up_discovered_models() -> None:
    clock = Clock()
    d = dep("a", clock, models=())
    r = router([d], S.ROUND_ROBIN, clock)
    with pytest.raises(ModelNotFound):
        r.plan("llama3", Needs())
    d.models = {"llama3": "llama3:8b"}
    r.rebuild_index()
    assert r.plan("llama3", Needs()).first.upstream_model == "llama3:8b"


def test_per_model_strategy_and_selection_counts() -> None:
    clock = Clock()
    deps = [dep("a", clock, models=("m", "n"), priority=1), dep("b", clock, models=("m", "n"))]
    r = router(deps, S.ROUND_ROBIN, clock, model_settings={"n": ModelSettings(strategy=S.FAILOVER)})
    firsts(r, 10, model="m")
    firsts(r, 10, model="n")
    stats = r.stats()
    assert stats["m"]["strategy"] == "round_robin" and stats["m"]["selections"] == {"a": 5, "b": 5}
    assert stats["n"]["strategy"] == "failover" and stats["n"]["selections"] == {"b": 10}
    assert r.plan("m", Needs()).reason == "round_robin"
    assert r.plan("n", Needs()).reason == "failover"


# --- session affinity ----------------------------------------------------------------------------


def test_session_affinity_sticks_while_healthy_and_moves_when_ejected() -> None:
    clock = Clock()
    deps = {n: dep(n, clock) for n in "abc"}
    r = router(list(deps.values()), S.ROUND_ROBIN, clock)
    first = r.plan("m", Needs(), "s1")
    home = first.first.deployment
    assert first.reason == "round_robin"
    for _ in range(30):  # round robin would rotate; the session does not
        plan = r.plan("m", Needs(), "s1")
        assert plan.first.deployment is home and plan.reason == "session_affinity"
    # Other sessions still spread out.
    assert len({r.plan("m", Needs(), f"other{i}").first.deployment.name for i in range(9)}) == 3
    eject(home)
    moved = r.plan("m", Needs(), "s1").first.deployment
    assert moved is not home
    assert {r.plan("m", Needs(), "s1").first.deployment for _ in range(10)} == {moved}
    clock.now = home.ejected_until  # the old one is back, but the session stays where it is now
    assert r.plan("m", Needs(), "s1").first.deployment is moved


def test_session_affinity_moves_off_a_cooling_down_deployment() -> None:
    clock = Clock()
    deps = [dep("a", clock), dep("b", clock)]
    r = router(deps, S.ROUND_ROBIN, clock)
    home = r.plan("m", Needs(), "s").first.deployment
    home.record_failure(UpstreamError("status", "429", status=429, retry_after=3.0))
    assert r.plan("m", Needs(), "s").first.deployment is not home


def test_session_affinity_memory_is_bounded() -> None:
    clock = Clock()
    r = router([dep("a", clock), dep("b", clock)], S.ROUND_ROBIN, clock, affinity_size=2)
    for s in ("s1", "s2", "s3"):
        r.plan("m", Needs(), s)
    assert r.plan("m", Needs(), "s3").reason == "session_affinity"
    assert r.plan("m", Needs(), "s1").reason == "round_robin"  # forgotten, oldest first


# --- panic mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_panic_mode_when_all_are_out_soonest_back_first(strategy: RoutingStrategy) -> None:
    clock = Clock()
    deps = {n: dep(n, clock) for n in ("a", "b", "c")}
    eject(deps["a"])  # until now + 5
    clock.now += 1
    eject(deps["b"])  # until now + 5 (one second later than a)
    deps["c"].record_failure(UpstreamError("status", "429", status=429, retry_after=2.0))
    r = router(list(deps.values()), strategy, clock)
    plan = r.plan("m", Needs())
    assert plan.panic is True
    assert plan.reason == f"panic:{strategy.value}"
    assert [t.deployment.name for t in plan.targets] == ["c", "a", "b"]
    clock.now += 2.0  # c's cool-down is over: no more panic, c first ...
    plan = r.plan("m", Needs())
    assert not plan.panic and plan.reason == strategy.value
    # ... and the ejected ones only as a last resort for this request, soonest back first
    assert [t.deployment.name for t in plan.targets] == ["c", "a", "b"]
    assert r.plan("m", Needs()).first.deployment.name == "c"


def test_panic_mode_includes_deployments_whose_probes_fail() -> None:
    clock = Clock()
    a, b = dep("a", clock), dep("b", clock)
    r = router([a, b], S.ROUND_ROBIN, clock)
    a.record_probe(False, "down")
    b.record_probe(False, "down")
    plan = r.plan("m", Needs())
    assert plan.panic and {t.deployment.name for t in plan.targets} == {"a", "b"}


# --- cached pools follow health on the very next plan ------------------------------------------


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_an_ejection_takes_effect_on_the_next_plan_and_ends_with_the_clock(
    strategy: RoutingStrategy,
) -> None:
    clock = Clock()
    deps = [dep(n, clock) for n in ("a", "b", "c")]
    r = router(deps, strategy, clock)
    for d in deps:
        d.record_success(0.01)
    assert "a" in firsts(r, 300)  # the pool is built and cached
    for _ in range(2):
        deps[0].record_failure(HTTP_500)
    assert "a" in firsts(r, 300)  # not ejected yet
    deps[0].record_failure(HTTP_500)
    assert "a" not in firsts(r, 300)
    clock.now = deps[0].ejected_until - 0.001
    assert "a" not in firsts(r, 300)
    clock.now += 0.001  # nothing else happens: the clock alone brings it back
    assert "a" in firsts(r, 300)


def test_429_cool_down_lasts_exactly_retry_after() -> None:
    clock = Clock()
    deps = [dep("a", clock), dep("b", clock)]
    r = router(deps, S.ROUND_ROBIN, clock)
    firsts(r, 4)
    deps[0].record_failure(UpstreamError("status", "429", status=429, retry_after=2.5))
    assert set(firsts(r, 20)) == {"b"}
    clock.now += 2.499
    assert set(firsts(r, 20)) == {"b"}
    clock.now += 0.001
    assert set(firsts(r, 20)) == {"a", "b"}


@pytest.mark.parametrize("code", [401, 403])
def test_bad_credentials_leave_the_pool_at_once(code: int) -> None:
    clock = Clock()
    deps = [dep("a", clock), dep("b", clock)]
    r = router(deps, S.ROUND_ROBIN, clock)
    firsts(r, 4)
    deps[0].record_failure(UpstreamError("status", str(code), status=code))
    assert set(firsts(r, 20)) == {"b"}


@pytest.mark.parametrize("code", [400, 404, 413, 422])
def test_client_faults_never_remove_a_deployment(code: int) -> None:
    clock = Clock()
    deps = [dep("a", clock), dep("b", clock)]
    r = router(deps, S.ROUND_ROBIN, clock)
    for _ in range(50):
        deps[0].record_failure(UpstreamError("status", str(code), status=code))
    assert Counter(firsts(r, 20)) == {"a": 10, "b": 10}


def test_a_failing_probe_takes_effect_on_the_next_plan() -> None:
    clock = Clock()
    deps = [dep("a", clock), dep("b", clock)]
    r = router(deps, S.ROUND_ROBIN, clock)
    firsts(r, 4)
    deps[1].record_probe(False, "cannot connect")
    assert set(firsts(r, 20)) == {"a"}
    deps[1].record_probe(True)
    assert set(firsts(r, 20)) == {"a", "b"}


def test_pools_are_cached_per_capability_mask_and_all_follow_an_ejection() -> None:
    clock = Clock()
    deps = [dep("a", clock), dep("b", clock)]
    r = router(deps, S.ROUND_ROBIN, clock)
    kinds = [Needs(), Needs(tools=True), Needs(streaming=True, json_mode=True)]
    for needs in kinds:
        assert set(firsts(r, 10, needs)) == {"a", "b"}
    eject(deps[1])
    for needs in kinds:
        assert set(firsts(r, 10, needs)) == {"a"}


def test_plan_fallback_order_for_load_balanced_is_priority_then_relative_load() -> None:
    clock = Clock()
    deps = {
        "p1": dep("p1", clock, priority=1),
        "busy": dep("busy", clock, weight=1),
        "heavy": dep("heavy", clock, weight=4),
    }
    deps["busy"].in_flight = 4
    deps["heavy"].in_flight = 8  # 2 per unit of weight: less loaded than busy (4)
    r = router(list(deps.values()), S.LOAD_BALANCED, clock)
    plan = r.plan("m", Needs())
    rest = [t.deployment.name for t in plan.targets[1:]]
    expected = [n for n in ("heavy", "busy", "p1") if n != plan.first.deployment.name]
    assert rest == expected


# --- embedding models ---------------------------------------------------------------------------


def test_embedding_models_are_routed_only_for_embeddings_and_chat_models_only_for_chat() -> None:
    clock = Clock()
    chat = dep("chat", clock, models=("m", "both"))
    emb = dep("emb", clock, models=("m",), embedding_models=("e", "both-e"), aliases={"ea": "e"})
    r = router([chat, emb], S.ROUND_ROBIN, clock)
    embedding = Needs(embedding=True, prompt_tokens=3)
    assert set(firsts(r, 10)) == {"chat", "emb"}  # chat model m: both serve it
    assert set(firsts(r, 10, embedding, model="e")) == {"emb"}
    assert r.plan("ea", embedding).first.upstream_model == "e"  # aliases of embedding models
    assert emb.embedding == {"e", "both-e", "ea"}
    with pytest.raises(InvalidRequest) as e:
        r.plan("e", Needs())
    assert e.value.code == "model_not_supported" and e.value.param == "model"
    assert "/v1/embeddings" in e.value.message
    with pytest.raises(InvalidRequest) as e:
        r.plan("m", embedding)
    assert e.value.code == "model_not_supported" and "embedding_models" in e.value.message
    # Capabilities say nothing about embeddings: a deployment without streaming still embeds.
    with pytest.raises(ModelNotFound):
        r.plan("nope", embedding)


def test_a_batch_of_embeddings_is_not_held_to_one_context_window() -> None:
    """The window bounds each input; the estimate sums the batch."""
    clock = Clock()
    emb = dep("emb", clock, models=(), embedding_models=("e",), context_window=512)
    r = router([emb], S.ROUND_ROBIN, clock)
    assert r.plan("e", Needs(embedding=True, prompt_tokens=100_000)).first.deployment is emb


def test_embedding_models_need_no_capabilities() -> None:
    clock = Clock()
    emb = dep(
        "emb",
        clock,
        models=(),
        embedding_models=("e",),
        capabilities=Capabilities(tools=False, images=False, json_mode=False, streaming=False),
    )
    r = router([emb], S.ROUND_ROBIN, clock)
    assert r.plan("e", Needs(embedding=True)).first.deployment is emb
