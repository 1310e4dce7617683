"""Retries do not multiply: at most one Retry-After wait per request, and a retry budget shared
by all requests (as Envoy's: retries in progress ≤ 20 % of requests in progress, at least 3).

Through a real gateway against fake OpenAI upstreams, counting the calls they receive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest

from ailb.routing.retry_budget import RetryBudget
from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply
from tests.gateway import RunningGateway

GatewayFactory = Callable[..., RunningGateway]
MESSAGES = [{"role": "user", "content": "Hi"}]
CHAT = "/v1/chat/completions"
TIMEOUTS = "{connect: 1, first_byte: 3, idle: 3, total: 5}"


def error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "code": None}}


def rate_limited(retry_after_ms: int = 200, delay: float = 0.0) -> Reply:
    return Reply(
        status=429,
        headers={"retry-after-ms": str(retry_after_ms)},
        error=error_body("slow down"),
        delay=delay,
    )


def deployments(*urls: str) -> str:
    lines = ["deployments:"]
    for i, url in enumerate(urls):
        lines.append(
            f"  - {{name: d{i}, provider: openai, base_url: '{url}/v1', models: [m], "
            f"timeouts: {TIMEOUTS}}}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    started = [fake_openai().start(), fake_openai().start()]
    yield started
    for s in started:
        s.stop()


def calls(*servers: FakeServer) -> int:
    return sum(len(s.calls(CHAT)) for s in servers)


def post(gw: RunningGateway, stream: bool = False) -> httpx2.Response:
    body = {"model": "m", "messages": MESSAGES, "stream": stream}
    return httpx2.post(f"{gw.url}{CHAT}", json=body, timeout=20)


def budget_stats(gw: RunningGateway) -> dict[str, Any]:
    return httpx2.get(f"{gw.url}/api/routing/stats").json()["retry_budget"]  # type: ignore[no-any-return]


# --- the budget itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "percent", "minimum", "allowed"),
    [
        (0, 20, 3, 3),  # a quiet gateway may still retry
        (10, 20, 3, 3),
        (15, 20, 3, 3),
        (20, 20, 3, 4),
        (100, 20, 3, 20),
        (100, 50, 3, 50),
        (100, 0, 3, 3),
        (100, 0, 0, 0),  # never retry
    ],
)
def test_concurrent_retries_are_bounded_by_a_share_of_active_requests(
    active: int, percent: float, minimum: int, allowed: int
) -> None:
    budget = RetryBudget(percent, minimum)
    for _ in range(active):
        budget.begin()
    granted = sum(budget.acquire() for _ in range(active + 10))
    assert granted == allowed
    assert budget.denied == active + 10 - allowed
    if allowed:
        budget.release()  # a retry's end frees its slot for the next
        assert budget.acquire()
        assert not budget.acquire()


# --- one request: at most one wait-and-retry on the same deployment -----------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_one_request_against_an_always_429_deployment_makes_at_most_two_calls(
    servers: list[FakeServer], gateway_factory: GatewayFactory, stream: bool
) -> None:
    up = servers[0]
    up.default = rate_limited(200)
    gw = gateway_factory(deployments(up.url))  # AILB_MAX_ATTEMPTS is 4
    started = time.monotonic()
    r = post(gw, stream)
    took = time.monotonic() - started
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "upstream_rate_limited"
    assert r.headers["retry-after"] == "1"
    assert calls(up) == 2  # the first and one retry after Retry-After, not four
    assert 0.2 <= took < 1.5


def test_an_sdk_with_its_own_retries_is_not_multiplied(
    servers: list[FakeServer], gateway_factory: GatewayFactory
) -> None:
    """The reported case: an SDK call with 2 retries made 12 upstream calls. Now each of its
    3 attempts makes at most 2, and it sees the 429 in the end."""
    up = servers[0]
    up.default = rate_limited(100)
    gw = gateway_factory(deployments(up.url))
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-client", max_retries=2)
    try:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        client.close()
    assert calls(up) == 6


def test_a_second_deployment_is_tried_before_any_wait(
    servers: list[FakeServer], gateway_factory: GatewayFactory
) -> None:
    a, b = servers
    a.default = b.default = rate_limited(200)
    gw = gateway_factory(deployments(a.url, b.url))
    r = post(gw)
    assert r.status_code == 429 and "retry-after" in r.headers
    # Each once, then one wait-and-retry on the last: never four waits.
    assert calls(a, b) == 3


def test_a_429_waited_out_once_then_answered(
    servers: list[FakeServer], gateway_factory: GatewayFactory
) -> None:
    up = servers[0]
    up.script(rate_limited(200))
    gw = gateway_factory(deployments(up.url))
    r = post(gw)
    assert r.status_code == 200, r.text
    assert calls(up) == 2
    assert budget_stats(gw)["retries_granted"] == 1


# --- a burst: the budget bounds the retries of all requests together ----------------------------


def burst(gw: RunningGateway, n: int) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(n)

    def one() -> None:
        go.wait()
        status = post(gw).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return statuses


N = 30


def test_a_burst_against_a_rate_limited_deployment_retries_within_the_budget(
    servers: list[FakeServer], gateway_factory: GatewayFactory
) -> None:
    up = servers[0]
    # Slow 429s keep the whole burst in flight together.
    up.default = rate_limited(300, delay=0.8)
    gw = gateway_factory(deployments(up.url))
    statuses = burst(gw, N)
    retries = calls(up) - N
    assert statuses == [429] * N, (statuses, retries, budget_stats(gw))
    # Without a budget: N.
    assert 0 < retries <= max(3, 0.2 * N) + 1, (retries, budget_stats(gw))
    b = budget_stats(gw)
    assert b["retries_granted"] == retries
    assert b["retries_denied"] == N - retries
    assert (b["active_requests"], b["retries_in_progress"]) == (0, 0)
    metrics = httpx2.get(f"{gw.url}/metrics").text
    assert f'ailb_retries_total{{outcome="denied"}} {float(N - retries)}' in metrics


def test_a_burst_against_failing_deployments_fails_over_within_the_budget(
    servers: list[FakeServer], gateway_factory: GatewayFactory
) -> None:
    """An outage: every deployment fails. A failover to a deployment not yet ejected is free
    (see test_a_failover_to_a_healthy_deployment_needs_no_budget) until each has failed 3
    times in a row; from then on every retry is into trouble, and budgeted."""
    a, b = servers
    a.default = b.default = Reply(status=500, error=error_body("boom"))
    gw = gateway_factory(deployments(a.url, b.url))
    for _ in range(3):  # both ejected (panic mode still tries them)
        assert post(gw).status_code == 502
    assert httpx2.get(f"{gw.url}/api/routing/stats").json()["deployments"]["d0"]["ejections"]
    before = calls(a, b)
    a.default = b.default = Reply(status=500, error=error_body("boom"), delay=0.8)
    statuses = burst(gw, N)
    retries = calls(a, b) - before - N
    budget = budget_stats(gw)
    assert statuses == [502] * N, (statuses, retries, budget)
    # Without a budget: N (each request tries both deployments).
    assert 0 < retries <= max(3, 0.2 * N) + 1, (retries, budget)
    assert budget["retries_granted"] == retries


ZERO = {"AILB_RETRY_BUDGET_PERCENT": "0", "AILB_RETRY_MIN_CONCURRENCY": "0"}


def test_a_budget_of_zero_means_no_retry_into_trouble(
    servers: list[FakeServer], gateway_factory: GatewayFactory
) -> None:
    up = servers[0]
    up.script(rate_limited(100))  # the retry would be answered: it is not made
    gw = gateway_factory(deployments(up.url), ZERO)
    r = post(gw)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert calls(up) == 1
    assert budget_stats(gw)["retries_denied"] == 1


def test_a_failover_to_a_healthy_deployment_needs_no_budget(
    servers: list[FakeServer], gateway_factory: GatewayFactory
) -> None:
    """It adds no load to the trouble, and it is what the other deployments are for."""
    a, b = servers
    a.default = Reply(status=500, error=error_body("boom"))
    b.default = Reply(text="fine")
    config = deployments(a.url, b.url).replace("timeouts:", "priority: 0, timeouts:", 1)
    gw = gateway_factory(config.replace("d1, ", "d1, priority: 1, ") + FAILOVER, ZERO)
    assert post(gw).status_code == 200
    assert (calls(a), calls(b)) == (1, 1)
    assert budget_stats(gw)["retries_denied"] == 0


FAILOVER = "models:\n  m: {strategy: failover}\n"
