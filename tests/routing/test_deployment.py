"""DeploymentState: latency bookkeeping, passive ejection, 429 cool-down, probes, the epoch."""

from __future__ import annotations

import pytest

from ailb.config import DeploymentConfig
from ailb.providers.base import CLIENT_FAULT_STATUSES, UpstreamError
from ailb.providers.mock import MockProvider
from ailb.routing.deployment import DeploymentState, HealthEpoch, HealthPolicy, LatencyWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deployment(clock: Clock, policy: HealthPolicy | None = None) -> DeploymentState:
    cfg = DeploymentConfig(
        name="d", provider="mock", models=("m",), input_cost_per_1m=2.0, output_cost_per_1m=8.0
    )
    d = DeploymentState(config=cfg, provider=MockProvider(cfg), clock=clock)
    if policy is not None:
        d.policy = policy
    return d


def status(code: int, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError("status", f"HTTP {code}", status=code, retry_after=retry_after)


SERVER_FAULTS = [
    UpstreamError("connect", "refused"),
    UpstreamError("timeout", "no response within 1s"),
    UpstreamError("protocol", "not JSON"),
    status(500),
    status(502),
    status(503),
]


def fail_until_ejected(d: DeploymentState) -> None:
    ejected = [d.record_failure(status(500)) for _ in range(3)]
    assert ejected == [False, False, True]


# --- latency --------------------------------------------------------------------------------


def test_speed_is_a_decaying_average_of_ttft_when_streamed_else_whole_request() -> None:
    d = deployment(Clock())
    assert d.speed is None
    d.record_success(0.100)
    assert d.speed == pytest.approx(0.100)
    d.record_success(0.200)
    assert d.speed == pytest.approx(0.120)  # 0.1 + 0.2 * (0.2 - 0.1)
    d.record_success(2.0, ttft_s=0.020)  # a stream: its first token is what counts
    assert d.speed == pytest.approx(0.120 + 0.2 * (0.020 - 0.120))
    assert len(d.latency) == 3 and len(d.ttft) == 1


def test_latency_window_percentiles_and_bound() -> None:
    w = LatencyWindow(size=100)
    assert w.percentile(0.5) is None
    for ms in range(1, 201):  # only the last 100 samples (101..200 ms) are kept
        w.add(ms / 1000)
    assert len(w) == 100
    assert w.percentile(0.5) == pytest.approx(0.151)
    assert w.percentile(0.95) == pytest.approx(0.196)
    assert w.percentile(1.0) == pytest.approx(0.200)


def test_snapshot_reports_health_errors_latency_tokens_and_cost() -> None:
    clock = Clock()
    d = deployment(clock)
    assert d.snapshot()["health"] == "unknown"  # neither probed nor used yet
    d.begin()
    d.end()
    d.record_success(0.050)
    d.record_failure(status(500))
    d.record_failure(status(429, retry_after=7.0))
    assert d.record_usage("m", 1_000_000, 500_000) == pytest.approx(2.0 + 4.0)
    snap = d.snapshot()
    assert snap["health"] == "cooling_down"
    assert snap["cooldown_for_s"] == 7.0 and snap["ejected_for_s"] == 0.0
    assert snap["errors"] == {"http_5xx": 1, "http_429": 1}
    assert snap["requests"] == 1 and snap["successes"] == 1 and snap["in_flight"] == 0
    assert snap["latency_ms"]["p50"] == 50.0 and snap["ttft_ms"]["p50"] is None
    assert snap["tokens"] == {"prompt": 1_000_000, "completion": 500_000}
    assert snap["cost_usd"] == 6.0
    assert snap["ejections"] == 0 and snap["models"] == ["m"]
    assert snap["prices"]["m"]["source"] == "config" and snap["unpriced_models"] == []


# --- passive ejection -----------------------------------------------------------------------


@pytest.mark.parametrize("err", SERVER_FAULTS, ids=lambda e: e.label + str(e.status or ""))
def test_three_consecutive_server_faults_eject_for_the_base_time(err: UpstreamError) -> None:
    clock = Clock()
    d = deployment(clock)
    assert [d.record_failure(err) for _ in range(3)] == [False, False, True]
    assert d.ejected_until == clock.now + 5.0
    assert not d.available() and d.health() == "ejected"
    assert d.errors == {err.label: 3}
    clock.now += 4.999
    assert not d.available()
    clock.now += 0.001
    assert d.available()  # never forever: back as soon as the ejection ends


def test_a_success_resets_the_consecutive_count() -> None:
    d = deployment(Clock())
    for _ in range(10):
        assert not d.record_failure(status(500))
        assert not d.record_failure(status(503))
        d.record_success(0.01)
    assert d.available() and d.ejections == 0


@pytest.mark.parametrize("code", sorted(CLIENT_FAULT_STATUSES))
def test_client_fault_statuses_never_count_against_the_deployment(code: int) -> None:
    epoch = HealthEpoch()
    d = deployment(Clock())
    d.epoch = epoch
    for _ in range(20):
        assert not d.record_failure(status(code))
    assert d.available() and d.health() == "unknown"
    assert d.consecutive_failures == 0 and d.ejections == 0 and d.cooldown_until == 0.0
    assert d.errors == {f"http_{code}": 20}  # still visible in stats, by kind
    assert epoch.n == 0  # nothing a router would have to rebuild for


def test_client_faults_between_server_faults_do_not_add_up_to_an_ejection() -> None:
    d = deployment(Clock())
    for _ in range(2):
        d.record_failure(status(500))
    for code in (400, 404):
        d.record_failure(status(code))
    assert d.available() and d.consecutive_failures == 2


@pytest.mark.parametrize("code", [401, 403])
def test_bad_credentials_eject_at_once(code: int) -> None:
    clock = Clock()
    d = deployment(clock)
    assert d.record_failure(status(code)) is True
    assert d.health() == "ejected" and d.ejections == 1
    assert d.ejected_until == clock.now + 5.0
    assert d.errors == {f"http_{code}": 1}


def test_429_cools_down_for_retry_after_without_ejecting() -> None:
    clock = Clock()
    epoch = HealthEpoch()
    d = deployment(clock)
    d.epoch = epoch
    assert d.record_failure(status(429, retry_after=12.5)) is False
    assert epoch.n == 1
    assert d.health() == "cooling_down" and d.cooldown_until == clock.now + 12.5
    assert d.ejections == 0 and d.consecutive_failures == 0
    # A shorter Retry-After later never shortens a cool-down already promised.
    d.record_failure(status(429, retry_after=1.0))
    assert d.cooldown_until == clock.now + 12.5
    for _ in range(5):  # rate limiting is not a fault: it never adds up to an ejection
        d.record_failure(status(429, retry_after=0.5))
    assert d.ejections == 0
    clock.now += 12.4
    assert not d.available()
    clock.now += 0.1
    assert d.available() and d.health() == "unknown"


def test_429_without_retry_after_cools_down_one_second() -> None:
    clock = Clock()
    d = deployment(clock)
    d.record_failure(status(429))
    assert d.cooldown_until == clock.now + 1.0


# --- ejection time grows, shrinks, is capped --------------------------------------------------


def test_ejection_time_grows_with_each_ejection_and_is_capped() -> None:
    clock = Clock()
    d = deployment(clock, HealthPolicy(failures_to_eject=3, base_ejection_s=5.0, max_ejection_s=17))
    durations = []
    for _ in range(6):
        fail_until_ejected(d)
        durations.append(d.ejected_until - clock.now)
        clock.now = d.ejected_until
        assert d.available()
    assert durations == [5.0, 10.0, 15.0, 17.0, 17.0, 17.0]
    assert d.ejections == 6


def test_default_policy_never_ejects_beyond_max_ejection_s() -> None:
    clock = Clock()
    d = deployment(clock)
    longest = 0.0
    for _ in range(100):
        fail_until_ejected(d)
        longest = max(longest, d.ejected_until - clock.now)
        clock.now = d.ejected_until
    assert longest == d.policy.max_ejection_s == 300.0


def test_successes_after_an_ejection_shrink_the_next_one() -> None:
    clock = Clock()
    d = deployment(clock)
    for _ in range(3):
        fail_until_ejected(d)
        clock.now = d.ejected_until
    assert d.ejections == 3
    d.record_success(0.01)
    d.record_success(0.01)
    assert d.ejections == 1
    fail_until_ejected(d)
    assert d.ejected_until - clock.now == 10.0  # second ejection's length, not the fourth's
    clock.now = d.ejected_until
    for _ in range(5):
        d.record_success(0.01)
    assert d.ejections == 0  # never below zero
    fail_until_ejected(d)
    assert d.ejected_until - clock.now == 5.0


def test_a_success_while_still_ejected_does_not_shrink_the_count() -> None:
    # e.g. an attempt that started before the ejection finished after it
    clock = Clock()
    d = deployment(clock)
    fail_until_ejected(d)
    d.record_success(0.01)
    assert d.ejections == 1 and not d.available()


def test_failures_while_ejected_do_not_extend_the_ejection() -> None:
    clock = Clock()
    d = deployment(clock)
    fail_until_ejected(d)
    until = d.ejected_until
    clock.now += 1
    for _ in range(6):  # panic-mode attempts failing again
        assert d.record_failure(status(500)) is False
    assert d.ejected_until == until and d.ejections == 1


# --- probes and the health epoch ---------------------------------------------------------------


def test_probe_results_gate_availability_and_bump_the_epoch_only_on_change() -> None:
    clock = Clock()
    epoch = HealthEpoch()
    d = deployment(clock)
    d.epoch = epoch
    d.record_probe(True)
    assert d.health() == "up" and epoch.n == 0  # unknown -> up changes no selectability
    d.record_probe(False, "cannot connect")
    assert d.health() == "down" and not d.available() and epoch.n == 1
    d.record_probe(False, "cannot connect")
    assert epoch.n == 1
    assert d.snapshot()["probe_error"] == "cannot connect"
    d.record_probe(True)
    assert d.available() and d.health() == "up" and epoch.n == 2


def test_a_success_revives_a_deployment_its_probe_had_marked_down() -> None:
    epoch = HealthEpoch()
    d = deployment(Clock())
    d.epoch = epoch
    d.record_probe(False, "timeout")
    d.record_success(0.02)  # a panic-mode attempt worked: it is up
    assert d.available() and d.health() == "up" and epoch.n == 2


def test_epoch_moves_on_ejection_and_cooldown_but_not_on_ordinary_traffic() -> None:
    clock = Clock()
    epoch = HealthEpoch()
    d = deployment(clock)
    d.epoch = epoch
    for _ in range(50):
        d.record_success(0.01)
    d.record_failure(status(500))
    d.record_failure(status(500))
    assert epoch.n == 0
    d.record_failure(status(500))
    assert epoch.n == 1
    clock.now = d.ejected_until
    d.record_failure(status(429, retry_after=2))
    assert epoch.n == 2
    d.record_failure(status(401))
    assert epoch.n == 3
