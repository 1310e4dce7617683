"""Redis down and back, with two gateways sharing it: the configured failure mode holds while it
is down (open: answered, counted per instance; closed: 503 rate_limiter_unavailable), never a
500, and once it is back the shared counters are exact again."""

from __future__ import annotations

import logging
import time

import httpx2
import openai
import pytest

from ailb.ratelimit.policy import BREAKER_S
from tests.faults.services import RedisServer
from tests.gateway import create_key

MASTER = "master-key-for-fault-tests-0123456789"
CONFIG = """
deployments:
  - name: mock
    provider: mock
    models: [mock-a]
"""
LIMIT = 4  # requests per minute of the test key


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


def pair(gateway_factory, redis_server, mode: str):
    """Two gateways sharing the throwaway Redis (and one key store)."""
    env = {
        "AILB_MASTER_KEY": MASTER,
        "REDIS_URL": redis_server.url,
        "AILB_REDIS_FAILURE_MODE": mode,
        "ENABLE_MEMORY": "false",
    }
    one = gateway_factory(CONFIG, env)
    two = gateway_factory(CONFIG, {**env, "AILB_DATA_DIR": one.settings.env.data_dir})
    return one, two


def new_key(gw, **fields) -> str:
    return create_key(gw.url, MASTER, "faults", **fields)["key"]


def call(client: openai.OpenAI) -> tuple[int, httpx2.Headers, str | None, float]:
    """(status, headers, error code, seconds) of one chat completion made with the SDK."""
    started = time.monotonic()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="mock-a", messages=[{"role": "user", "content": "hi"}]
        )
    except openai.APIStatusError as e:
        code = e.body.get("code") if isinstance(e.body, dict) else None
        return e.status_code, e.response.headers, code, time.monotonic() - started
    assert raw.parse().choices[0].message.content
    return raw.status_code, raw.headers, None, time.monotonic() - started


def remaining(headers: httpx2.Headers) -> int:
    return int(headers["x-ratelimit-remaining-requests"])


def clients_for(client_for, gateways, key):
    return [client_for(gw, api_key=key) for gw in gateways]


def back_up(redis_server: RedisServer) -> None:
    """Redis again, empty (a crashed cache), and the breaker's interval run out."""
    redis_server.start()
    time.sleep(BREAKER_S + 0.2)


def assert_exact_shared_counts(a, b) -> None:
    """Alternating over both gateways: remaining LIMIT-1 ... 0 in one sequence (one counter,
    not one per instance), then a 429 from each."""
    got = []
    for i in range(LIMIT):
        status, headers, code, _ = call((a, b)[i % 2])
        assert (status, code) == (200, None)
        got.append(remaining(headers))
    assert got == list(range(LIMIT - 1, -1, -1))
    for c in (a, b):
        status, headers, code, _ = call(c)
        assert (status, code) == (429, "rate_limit_exceeded")
        assert remaining(headers) == 0
        assert int(headers["retry-after"]) >= 1


def test_fail_open_answers_meanwhile_and_counts_exactly_after(
    gateway_factory, client_for, redis_server, caplog
):
    caplog.set_level(logging.INFO, "ailb.ratelimit")
    one, two = pair(gateway_factory, redis_server, "open")
    a, b = clients_for(client_for, (one, two), new_key(one, rpm_limit=LIMIT))
    assert remaining(call(a)[1]) == LIMIT - 1
    assert remaining(call(b)[1]) == LIMIT - 2  # shared through Redis

    redis_server.kill()
    outcomes = {id(a): [], id(b): []}
    for i in range(2 * (LIMIT + 1)):
        c = (a, b)[i % 2]
        status, headers, code, took = call(c)
        assert status < 500, (status, code)
        assert took < 2.0  # a dead Redis costs at most a connect attempt, never a hang
        outcomes[id(c)].append((status, remaining(headers)))
    # Meanwhile each instance counts on its own, from zero: the limit still holds per instance.
    expected = [(200, n) for n in range(LIMIT - 1, -1, -1)] + [(429, 0)]
    assert outcomes[id(a)] == expected
    assert outcomes[id(b)] == expected
    messages = [r.getMessage() for r in caplog.records]
    assert "rate_limit_backend_unavailable" in messages

    back_up(redis_server)
    assert_exact_shared_counts(a, b)
    assert "rate_limit_backend_recovered" in [r.getMessage() for r in caplog.records]


def test_fail_closed_is_503_meanwhile_never_500_and_exact_after(
    gateway_factory, client_for, redis_server
):
    one, two = pair(gateway_factory, redis_server, "closed")
    limited = new_key(one, rpm_limit=LIMIT)
    unlimited = new_key(one)
    a, b = clients_for(client_for, (one, two), limited)
    free = client_for(one, api_key=unlimited)
    assert call(a)[0] == 200

    redis_server.kill()
    for i in range(2 * LIMIT):
        status, headers, code, took = call((a, b)[i % 2])
        assert (status, code) == (503, "rate_limiter_unavailable")
        assert headers["retry-after"] == "1"
        assert took < 2.0
    # Nothing to count for a key without limits: served all along.
    assert [call(free)[:1] for _ in range(3)] == [(200,)] * 3

    back_up(redis_server)
    assert_exact_shared_counts(a, b)


def test_a_hung_redis_costs_one_timeout_not_a_hang(gateway_factory, client_for, redis_server):
    """SIGSTOP: connections stay open and nothing answers. Requests are answered in open mode
    (the first after the client's 0.25 s timeout, then at once for a second), and after SIGCONT
    the counters are shared again."""
    one, two = pair(gateway_factory, redis_server, "open")
    a, b = clients_for(client_for, (one, two), new_key(one, rpm_limit=100))
    assert remaining(call(a)[1]) == 99

    redis_server.pause()
    try:
        took = []
        for i in range(6):
            status, _, code, seconds = call((a, b)[i % 2])
            assert (status, code) == (200, None)
            took.append(seconds)
        assert max(took) < 1.5, took
    finally:
        redis_server.resume()
    time.sleep(BREAKER_S + 0.2)
    first = remaining(call(a)[1])
    second = remaining(call(b)[1])
    assert second == first - 1  # one shared counter again
    # The requests sent into the hung Redis ran when it woke up; each was also admitted by the
    # instance's own counters, so at most one request per instance is counted twice.
    assert 99 - 1 - 2 <= first <= 99 - 1, first
