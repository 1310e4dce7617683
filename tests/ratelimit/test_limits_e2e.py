"""Rate limits and their headers through a running gateway, official openai SDK as client."""

from __future__ import annotations

import httpx2
import openai
import pytest

from ailb.ratelimit.route_bucket import BucketLimit
from tests.gateway import create_key

MASTER = "master-key-for-tests-0123456789"
CONFIG = """
deployments:
  - name: mock
    provider: mock
    models: [mock-a, mock-b]
"""
TWO_DEPLOYMENTS = """
deployments:
  - name: small
    provider: mock
    models: [m]
    rpm: 2
    priority: 0
  - name: big
    provider: mock
    models: [m]
    rpm: 3
    priority: 1
"""


def create(gw, **fields) -> dict:
    return create_key(gw.url, MASTER, "t", **fields)


def ask(client, model: str = "mock-a", **kw):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], **kw
    )


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(CONFIG, {"AILB_MASTER_KEY": MASTER})


def test_requests_per_minute_then_429_with_headers(gw, client_for):
    made = create(gw, rpm_limit=3)
    c = client_for(gw, api_key=made["key"])
    remaining = []
    for _ in range(3):
        r = ask(c)
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(int(r.headers["x-ratelimit-remaining-requests"]))
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    assert remaining == [2, 1, 0]
    with pytest.raises(openai.RateLimitError) as e:
        ask(c)
    err = e.value
    assert err.status_code == 429 and err.body["code"] == "rate_limit_exceeded"
    assert 1 <= int(err.response.headers["retry-after"]) <= 61
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    # another key is not affected
    assert ask(client_for(gw, api_key=create(gw, rpm_limit=3)["key"])).parse().choices


def test_tokens_per_minute(gw, client_for):
    c = client_for(gw, api_key=create(gw, tpm_limit=300)["key"])
    r = ask(c, max_tokens=50)
    assert r.headers["x-ratelimit-limit-tokens"] == "300"
    left = int(r.headers["x-ratelimit-remaining-tokens"])
    assert 0 < left < 300
    with pytest.raises(openai.RateLimitError) as e:
        ask(c, max_tokens=295)  # 2 tokens used (settled), 5 + 295 > 298 left
    assert "tokens per minute" in e.value.message


def test_a_request_larger_than_the_token_limit_is_refused(gw, client_for):
    c = client_for(gw, api_key=create(gw, tpm_limit=100)["key"])
    with pytest.raises(openai.RateLimitError):
        ask(c, max_tokens=500)


def test_per_end_user_limits(gw, client_for):
    c = client_for(gw, api_key=create(gw, user_rpm_limit=2)["key"])
    ask(c, user="alice")
    ask(c, user="alice")
    with pytest.raises(openai.RateLimitError) as e:
        ask(c, user="alice")
    assert "end user" in e.value.message
    assert ask(c, user="bob").parse().choices
    assert ask(c).parse().choices  # no user field: only the key's own limits


def test_limits_change_at_run_time(gw, client_for):
    made = create(gw, rpm_limit=1)
    c = client_for(gw, api_key=made["key"])
    ask(c)
    with pytest.raises(openai.RateLimitError):
        ask(c)
    r = httpx2.patch(
        gw.url + f"/api/keys/{made['id']}",
        json={"rpm_limit": 5},
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 200 and r.json()["rpm_limit"] == 5
    assert ask(c).headers["x-ratelimit-limit-requests"] == "5"
    httpx2.patch(
        gw.url + f"/api/keys/{made['id']}",
        json={"rpm_limit": None},
        headers={"authorization": f"Bearer {MASTER}"},
    )
    for _ in range(6):
        assert "x-ratelimit-limit-requests" not in ask(c).headers


def test_route_limits_hold_every_caller_together(gw, client_for):
    """The control plane's limit on a model (gRPC ApplyRateLimit) is a token bucket for the
    model's total on this instance: whoever asks, keys' own limits aside."""

    async def limit(rate: int, burst: int) -> None:
        gw.runtime.routes.set("mock-b", BucketLimit(rate=rate, burst=burst))

    gw.call(limit(1, 2))
    a = client_for(gw, api_key=create(gw)["key"])
    b = client_for(gw, api_key=create(gw)["key"])
    master = client_for(gw, api_key=MASTER)
    assert ask(a, "mock-b").parse().choices
    assert ask(b, "mock-b").parse().choices
    for c in (a, b, master):
        with pytest.raises(openai.RateLimitError) as e:
            ask(c, "mock-b")
        assert "model" in e.value.message and e.value.body["code"] == "rate_limit_exceeded"
        assert e.value.response.headers["retry-after"] == "1"
    assert ask(a, "mock-a").parse().choices  # another model is not limited
    with pytest.raises(openai.NotFoundError):
        ask(a, "made-up")  # names nobody serves get no bucket, and stay 404s

    async def unlimit() -> None:
        gw.runtime.routes.set("mock-b", None)

    gw.call(unlimit())
    assert ask(a, "mock-b").parse().choices


def test_deployment_rpm_routes_elsewhere_then_429(gateway_factory, client_for):
    gw = gateway_factory(TWO_DEPLOYMENTS, {"ROUTING_STRATEGY": "failover"})
    c = client_for(gw)
    for _ in range(5):
        assert ask(c, "m").parse().choices
    stats = httpx2.get(gw.url + "/api/routing/stats").json()["deployments"]
    assert stats["small"]["requests"] == 2 and stats["big"]["requests"] == 3
    with pytest.raises(openai.RateLimitError) as e:
        ask(c, "m")
    assert e.value.body["code"] == "deployment_rate_limited"
    assert int(e.value.response.headers["retry-after"]) >= 1
    stats = httpx2.get(gw.url + "/api/routing/stats").json()["deployments"]
    assert stats["small"]["requests"] == 2 and stats["big"]["requests"] == 3


DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_redis_down_fail_open_counts_in_process_and_logs(gateway_factory, client_for, caplog):
    gw = gateway_factory(
        CONFIG,
        {"AILB_MASTER_KEY": MASTER, "REDIS_URL": DEAD_REDIS, "AILB_REDIS_FAILURE_MODE": "open"},
    )
    c = client_for(gw, api_key=create(gw, rpm_limit=2)["key"])
    assert ask(c).parse().choices
    assert ask(c).parse().choices
    with pytest.raises(openai.RateLimitError):
        ask(c)  # the instance's own counters still hold the limit meanwhile
    assert any(r.getMessage() == "rate_limit_backend_unavailable" for r in caplog.records)


def test_redis_down_fail_closed_is_503_never_500(gateway_factory, client_for):
    gw = gateway_factory(
        CONFIG,
        {"AILB_MASTER_KEY": MASTER, "REDIS_URL": DEAD_REDIS, "AILB_REDIS_FAILURE_MODE": "closed"},
    )
    made = create(gw, rpm_limit=2)
    c = client_for(gw, api_key=made["key"])
    with pytest.raises(openai.InternalServerError) as e:
        ask(c)
    assert e.value.status_code == 503
    assert e.value.body["code"] == "rate_limiter_unavailable"
    assert e.value.response.headers["retry-after"] == "1"
    # a key with no limits needs no counters: it is served
    assert ask(client_for(gw, api_key=create(gw)["key"])).parse().choices


def test_limits_shared_through_redis_by_two_gateways(gateway_factory, client_for, redis_url):
    prefix = f"ailb-test-{id(object())}:"
    env = {"AILB_MASTER_KEY": MASTER, "REDIS_URL": redis_url, "AILB_REDIS_PREFIX": prefix}
    one = gateway_factory(CONFIG, env)
    two = gateway_factory(CONFIG, {**env, "AILB_DATA_DIR": one.settings.env.data_dir})
    made = create(one, rpm_limit=4)
    a, b = client_for(one, api_key=made["key"]), client_for(two, api_key=made["key"])
    assert [int(ask(x).headers["x-ratelimit-remaining-requests"]) for x in (a, b, a, b)] == [
        3,
        2,
        1,
        0,
    ]
    for x in (a, b):
        with pytest.raises(openai.RateLimitError):
            ask(x)
