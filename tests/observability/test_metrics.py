"""GatewayMetrics on its own: what finish() counts and what snapshot() reports, on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ailb.observability.metrics import MAX_SERIES, OVERFLOW, GatewayMetrics


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Done:
    """A finished request, as the chat endpoint's Exchange presents it."""

    started: float
    api: str = "chat"
    model: str | None = "m"
    plan: object = True
    provider: str | None = "openai"
    deployment: str | None = "d1"
    status: int = 200
    error: str | None = None
    stream: bool = False
    ttft: float | None = None
    overhead: float | None = 0.0002
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cost: float = 0.001
    memory: str | None = None
    rag: str | None = None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(clock: Clock) -> GatewayMetrics:
    return GatewayMetrics(served_models=lambda: {"m", "n"}, clock=clock, wall=lambda: 1.7e9)


def finish(metrics: GatewayMetrics, clock: Clock, seconds: float, **kw: object) -> None:
    metrics.in_flight += 1
    metrics.finish(Done(started=clock.now - seconds, **kw))  # type: ignore[arg-type]


def test_a_request_is_counted_under_its_labels(metrics: GatewayMetrics, clock: Clock) -> None:
    finish(metrics, clock, 0.05)
    finish(metrics, clock, 0.07, status=502, provider=None, deployment=None, plan=True)
    finish(
        metrics, clock, 0.01, model="typo", plan=None, status=404, provider=None, deployment=None
    )
    finish(metrics, clock, 0.01, model="n", plan=None, status=429, provider=None, deployment=None)
    assert metrics.in_flight == 0
    assert {k: o.count for k, o in metrics.outcomes.items()} == {
        ("chat", "openai", "m", "d1", 200): 1,
        ("chat", "", "m", "", 502): 1,
        ("chat", "", "", "", 404): 1,  # an unknown model is never a label value
        ("chat", "", "n", "", 429): 1,  # a served model refused before routing keeps its name
    }
    route = metrics.routes[("openai", "m", "d1")]
    assert route.duration.count == 1
    assert route.duration.sum == pytest.approx(0.05)
    assert (route.prompt_tokens, route.completion_tokens) == (10, 5)
    assert route.cost == pytest.approx(0.001)
    assert metrics.overhead.count == 4 and metrics.overhead_stream.count == 0


def test_streams_ttft_overhead_broken_memory_rag(metrics: GatewayMetrics, clock: Clock) -> None:
    finish(metrics, clock, 0.5, stream=True, ttft=0.1, overhead=0.0004, memory="hit")
    finish(metrics, clock, 0.5, stream=True, ttft=0.2, error="upstream_stream_error", rag="miss")
    finish(metrics, clock, 0.5, stream=True, ttft=None, overhead=None, error="client_disconnected")
    route = metrics.routes[("openai", "m", "d1")]
    assert route.ttft.count == 2 and route.ttft.sum == pytest.approx(0.3)
    assert route.broken == 1
    assert metrics.overhead_stream.count == 2 and metrics.overhead.count == 0
    assert metrics.memory == {"hit": 1, "miss": 0, "degraded": 0}
    assert metrics.rag == {"hit": 0, "miss": 1, "degraded": 0}


def test_rate_limited_reasons(metrics: GatewayMetrics) -> None:
    metrics.rate_limited_by("rate_limit_exceeded", "user_tokens")
    metrics.rate_limited_by("budget_exceeded", None)
    metrics.rate_limited_by("deployment_rate_limited", None)
    metrics.rate_limited_by("upstream_rate_limited", None)
    metrics.rate_limited_by("something_new", None)
    counted = {k: v for k, v in metrics.rate_limited.items() if v}
    assert counted == {
        "user_tokens": 1,
        "budget": 1,
        "deployment": 1,
        "upstream": 1,
        "other": 1,
    }
    assert metrics.rate_limited["key_requests"] == 0  # every known reason exists from start


def test_snapshot_totals_statuses_and_routes(metrics: GatewayMetrics, clock: Clock) -> None:
    for _ in range(3):
        finish(metrics, clock, 0.1)
    finish(metrics, clock, 0.3, status=502, provider=None, deployment=None)
    finish(metrics, clock, 0.2, stream=True, ttft=0.05, error="upstream_stream_error")
    finish(metrics, clock, 0.2, model="n", deployment="d2", status=429)
    finish(metrics, clock, 0.01, model=None, plan=None, status=400, provider=None, deployment=None)
    metrics.connections.total, metrics.connections.active = 5, 2
    snap = metrics.snapshot()
    assert snap.timestamp == 1_700_000_000
    assert (snap.total_connections, snap.active_connections) == (5, 2)
    assert snap.total_requests == 7
    assert snap.status_codes == {"200": 4, "502": 1, "429": 1, "400": 1}
    assert set(snap.routes) == {"m", "n"}  # no route for requests without a served model
    m = snap.routes["m"]
    assert (m.requests, m.errors) == (5, 2)  # the 502 and the broken stream; not the 429
    assert m.avg_latency_ms == pytest.approx((3 * 0.1 + 0.3 + 0.2) / 5 * 1000, abs=0.01)
    assert (snap.routes["n"].requests, snap.routes["n"].errors) == (1, 0)
    assert snap.latency.avg_ms == pytest.approx(1.01 / 7 * 1000, abs=0.01)


def test_requests_per_second_counts_the_last_ten_whole_seconds(
    metrics: GatewayMetrics, clock: Clock
) -> None:
    for _ in range(12):  # 12 s ago: outside the window
        finish(metrics, clock, 0.01)
    clock.now += 3
    for _ in range(10):
        for _ in range(5):
            finish(metrics, clock, 0.01)
        clock.now += 1
    for _ in range(100):  # the current, unfinished second: not yet in the rate
        finish(metrics, clock, 0.01)
    assert metrics.snapshot().requests_per_second == 5
    clock.now += 1  # that second is over
    assert metrics.snapshot().requests_per_second == 15  # (9 x 5 + 100) / 10 = 14.5, rounded
    clock.now += 100
    assert metrics.snapshot().requests_per_second == 0
    assert metrics.snapshot().total_requests == 162


def test_latency_percentiles_follow_the_last_minute(metrics: GatewayMetrics, clock: Clock) -> None:
    for _ in range(100):
        finish(metrics, clock, 5.0)  # an old slow spell
    clock.now += 61
    for i in range(100):
        finish(metrics, clock, 0.04 if i < 90 else 0.4)
    lat = metrics.snapshot().latency
    assert 30 <= lat.p50_ms <= 50  # all fifty in (30, 50] ms
    assert 30 <= lat.p90_ms <= 50
    assert 300 <= lat.p95_ms <= 500
    assert 300 <= lat.p99_ms <= 500
    assert lat.avg_ms == pytest.approx(0.9 * 40 + 0.1 * 400, abs=0.01)
    clock.now += 60
    assert metrics.snapshot().latency.avg_ms == 0.0  # nothing finished in the last minute


def test_label_sets_are_capped(metrics: GatewayMetrics, clock: Clock) -> None:
    served = {f"m{i}" for i in range(MAX_SERIES + 10)}
    metrics._served = lambda: served
    for name in sorted(served):
        finish(metrics, clock, 0.01, model=name)
    assert len(metrics.outcomes) == MAX_SERIES + 1
    assert metrics.outcomes[("chat", OVERFLOW, OVERFLOW, OVERFLOW, 200)].count == 10
    assert metrics.snapshot().total_requests == MAX_SERIES + 10
