"""ModuleService against a running gateway: each RPC, and what it does to real traffic."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx2
import openai
import pytest
from grpc_health.v1 import health_pb2

from ailb import __version__
from ailb.control.proto import module_service_pb2 as pb
from tests.waiting import wait_for

SECRET = "sk-upstream-secret-4242"
HI = [{"role": "user", "content": "hi"}]


def two_deployments(a, b, model: str = "m") -> str:
    return f"""
deployments:
  - name: a
    provider: openai
    base_url: {a.url}/v1
    api_key_env: A_KEY
    models: [{model}]
  - name: b
    provider: openai
    base_url: {b.url}/v1
    models: [{model}]
"""


def served_by(a, b) -> tuple[int, int]:
    return len(a.calls("/v1/chat/completions")), len(b.calls("/v1/chat/completions"))


@pytest.fixture
def pair(upstreams, gateway_factory, control, client_for):
    a, b = upstreams(2)
    gw = gateway_factory(two_deployments(a, b), env={"A_KEY": SECRET, "MODULE_ID": "ailb-t1"})
    return a, b, gw, control(gw), client_for(gw)


def test_get_status_reports_identity_and_real_health(pair):
    _, _, gw, ctl, client = pair
    client.chat.completions.create(model="m", messages=HI)
    status = ctl.status()
    assert status.module_id == "ailb-t1"
    assert status.module_type == "AILB"
    assert status.version == __version__
    assert status.health == pb.HEALTHY
    assert 0 <= status.uptime_seconds <= gw.runtime.uptime() + 1
    meta = dict(status.metadata)
    assert meta["strategy"] == "load_balanced"
    assert meta["providers_up"] == "a,b"
    assert meta["providers_down"] == ""
    assert meta["weights.m"] == "a=1,b=1"
    assert SECRET.encode() not in status.SerializeToString()


def test_get_status_degraded_when_a_provider_is_down_unhealthy_when_none_serves(
    upstreams, gateway_factory, control
):
    (a,) = upstreams(1)
    dead = f"http://127.0.0.1:{_closed_port()}/v1"
    yaml = f"""
deployments:
  - {{name: a, provider: openai, base_url: "{a.url}/v1", models: [m]}}
  - {{name: dead, provider: openai, base_url: "{dead}", models: [m]}}
"""
    ctl = control(gateway_factory(yaml, env={"ENABLE_MEMORY": "false"}))
    status = wait_for(lambda: (s := ctl.status()).health == pb.DEGRADED and s, what="DEGRADED")
    assert dict(status.metadata)["providers_down"] == "dead"
    assert ctl.check().status == health_pb2.HealthCheckResponse.SERVING  # still serves

    nothing = control(gateway_factory(None, env={"ENABLE_MEMORY": "false"}))
    assert nothing.status().health == pb.UNHEALTHY
    assert nothing.check().status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert nothing.check("marchproxy.ModuleService").status == (
        health_pb2.HealthCheckResponse.NOT_SERVING
    )


def test_health_service_and_reflection(pair):
    _, _, _, ctl, _ = pair
    assert ctl.check("").status == health_pb2.HealthCheckResponse.SERVING
    assert ctl.check("marchproxy.ModuleService").status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as e:
        ctl.check("no.such.Service")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    services = ctl.listed_services()
    assert "marchproxy.ModuleService" in services
    assert "grpc.health.v1.Health" in services
    described = ctl.file_of("marchproxy.ModuleService")
    assert described.package == "marchproxy"
    assert [m.name for m in described.service[0].method] == [
        "GetStatus",
        "GetRoutes",
        "ApplyRateLimit",
        "GetMetrics",
        "SetTrafficWeight",
        "Reload",
    ]


def test_get_routes_one_route_per_model_with_hosts_and_no_credentials(
    upstreams, gateway_factory, control
):
    a, b = upstreams(2)
    yaml = f"""
deployments:
  - name: a
    provider: openai
    base_url: {a.url}/v1
    api_key_env: A_KEY
    models: [m, n]
    aliases: {{fast: n}}
  - name: b
    provider: openai
    base_url: {b.url}/v1
    models: [m]
    weight: 0
  - {{name: mock, provider: mock, models: [echo]}}
"""
    env = {"A_KEY": SECRET, "MODULE_ID": "ailb-t2", "AILB_REQUEST_TIMEOUT": "42.5"}
    ctl = control(gateway_factory(yaml, env=env))
    answer = ctl.routes()
    routes = {r.name: r for r in answer.routes}
    assert list(routes) == ["echo", "fast", "m", "n"]
    m = routes["m"]
    assert m.prefix == "/v1/chat/completions"
    assert m.cluster_name == "ailb-t2"
    assert list(m.hosts) == [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]
    assert m.timeout_seconds == 43
    assert m.enabled
    assert not m.rate_limit.enabled
    assert list(routes["fast"].hosts) == [f"127.0.0.1:{a.port}"]
    assert list(routes["echo"].hosts) == []  # the built-in mock has no upstream
    assert SECRET.encode() not in answer.SerializeToString()
    assert answer.version >= 1
    assert ctl.routes().version == answer.version  # nothing changed
    assert list(ctl.routes("ailb-t2").routes) == list(answer.routes)
    assert list(ctl.routes("another-cluster").routes) == []


def test_set_traffic_weight_moves_the_split_at_once(pair):
    a, b, _, ctl, client = pair
    version = ctl.routes().version
    answer = ctl.weights("m", a=(80, "v2"), b=20)
    assert answer.success, answer.message
    assert [(w.backend_name, w.weight, w.version) for w in answer.applied_weights] == [
        ("a", 80, "v2"),
        ("b", 20, ""),
    ]
    assert ctl.routes().version == version + 1
    assert dict(ctl.status().metadata)["weights.m"] == "a=80,b=20"

    for _ in range(1000):
        client.chat.completions.create(model="m", messages=HI)
    to_a, to_b = served_by(a, b)
    assert to_a + to_b == 1000
    assert 750 <= to_a <= 850, (to_a, to_b)  # 80 % within +-5 points

    assert ctl.weights("m", a=0, b=100).success
    for _ in range(50):
        client.chat.completions.create(model="m", messages=HI)
    assert served_by(a, b) == (to_a, to_b + 50)


@pytest.mark.parametrize(
    ("route", "weights", "problem"),
    [
        ("nope", {"a": 10}, "Unknown route 'nope'"),
        ("m", {"a": 10, "zz": 5}, "Unknown backend 'zz'"),
        ("m", {"a": 10, "b": 101}, "between 0 and 100"),
        ("m", {"a": -1}, "between 0 and 100"),
        ("m", {}, "No weights given"),
    ],
)
def test_set_traffic_weight_refuses_bad_requests_whole(pair, route, weights, problem):
    _, _, gw, ctl, _ = pair
    before = gw.runtime.router.weights("m")
    answer = ctl.weights(route, **weights)
    assert not answer.success
    assert problem in answer.message
    assert "Nothing was changed" in answer.message
    assert gw.runtime.router.weights("m") == before  # "a" was not set either


def _call_status(client) -> tuple[int, dict[str, str], dict]:
    try:
        raw = client.chat.completions.with_raw_response.create(model="m", messages=HI)
    except openai.APIStatusError as e:
        return e.status_code, dict(e.response.headers), e.response.json()
    return raw.http_response.status_code, dict(raw.headers), {}


def _burst(client, count: int) -> tuple[list[int], float]:
    """`count` requests at once; their statuses and how long the burst took."""
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        statuses = [s for s, _, _ in pool.map(lambda _: _call_status(client), range(count))]
    return statuses, time.monotonic() - started


def test_apply_rate_limit_is_a_token_bucket_for_the_route(pair):
    """requests_per_second 1, burst_size 2: two of 60 requests at once, then one a second (it
    admitted all 60 when the limit was a per-minute window per key)."""
    _, _, _, ctl, client = pair
    answer = ctl.rate_limit("m", rps=1, burst=2)
    assert answer.success, answer.message
    limit = {r.name: r for r in ctl.routes().routes}["m"].rate_limit
    assert (limit.enabled, limit.requests_per_second, limit.burst_size) == (True, 1, 2)

    statuses, took = _burst(client, 60)
    assert 2 <= statuses.count(200) <= 2 + int(took), (statuses, took)
    assert set(statuses) == {200, 429}
    time.sleep(1.1)
    assert _call_status(client)[0] == 200  # refilled: one a second
    status, headers, body = _call_status(client)
    assert status == 429
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert body["error"]["type"] == "rate_limit_error"
    assert "model `m`" in body["error"]["message"]
    assert int(headers["retry-after"]) == 1

    off = ctl.rate_limit("m", enabled=False)
    assert off.success, off.message
    assert not {r.name: r for r in ctl.routes().routes}["m"].rate_limit.enabled
    assert _burst(client, 10)[0] == [200] * 10


def test_apply_rate_limit_to_every_route_and_refusals(pair):
    _, _, _, ctl, client = pair
    assert ctl.rate_limit("*", rps=2).success  # burst_size 0: one second's worth
    limit = {r.name: r for r in ctl.routes().routes}["m"].rate_limit
    assert (limit.enabled, limit.requests_per_second, limit.burst_size) == (True, 2, 2)
    unknown = ctl.rate_limit("gpt-nope", rps=5)
    assert not unknown.success and "Unknown route 'gpt-nope'" in unknown.message
    zero = ctl.rate_limit("m", rps=0)
    assert not zero.success and "at least 1" in zero.message
    negative = ctl.rate_limit("m", rps=3, burst=-1)
    assert not negative.success and "burst_size" in negative.message
    # The refusals left the "*" limit as it was, and it is enforced.
    assert {r.name: r for r in ctl.routes().routes}["m"].rate_limit.requests_per_second == 2
    statuses, took = _burst(client, 20)
    assert 2 <= statuses.count(200) <= 2 + 2 * int(took), (statuses, took)


def test_a_route_limit_counts_every_caller_together(
    upstreams, gateway_factory, control, client_for
):
    a, b = upstreams(2)
    master = "master-key-for-tests"
    gw = gateway_factory(two_deployments(a, b), env={"A_KEY": SECRET, "AILB_MASTER_KEY": master})
    keys = []
    for name in ("one", "two"):
        made = httpx2.post(
            f"{gw.url}/api/keys",
            json={"name": name},
            headers={"Authorization": f"Bearer {master}"},
            timeout=10,
        )
        assert made.status_code == 200, made.text
        keys.append(made.json()["key"])
    ctl = control(gw)
    assert ctl.rate_limit("m", rps=1, burst=1).success
    one, two = (client_for(gw, api_key=k) for k in keys)
    assert _call_status(one)[0] == 200
    assert _call_status(two)[0] == 429  # the route's total, not each key's


def test_rate_limit_applies_on_an_open_gateway(pair, client_for):
    _, _, gw, ctl, client = pair
    assert ctl.rate_limit("m", rps=1, burst=3).success
    assert [_call_status(client)[0] for _ in range(3)] == [200] * 3
    other = client_for(gw, api_key="sk-made-up-by-another-client")
    assert _call_status(other)[0] == 429


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
