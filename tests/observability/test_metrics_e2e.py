"""GET /metrics, the overhead header and GetMetrics' snapshot through a running gateway: known
traffic from the official openai SDK against fake OpenAI upstreams, then the exposition parsed
with prometheus-client's own parser and checked count by count."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ailb.observability.snapshot import MetricsSnapshot
from ailb.ratelimit.route_bucket import BucketLimit
from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply
from tests.gateway import RunningGateway
from tests.processes import free_port

GatewayFactory = Callable[..., RunningGateway]
ClientFor = Callable[..., openai.OpenAI]
MASTER = "master-key-for-metrics"
HI: Any = [{"role": "user", "content": "Hi"}]
HI_PROMPT_ESTIMATE = 5  # (2 chars + 3) // 4 + 4 per message: what a stream without usage bills
PRICES = "input_cost_per_1m: 2.0\n    output_cost_per_1m: 4.0"
FAKE_COST = (11 * 2.0 + 7 * 4.0) / 1e6  # the fakes report 11 prompt and 7 completion tokens
ERROR = {"error": {"message": "boom", "type": "server_error"}}

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def config(primary: str, backup: str) -> str:
    return f"""
deployments:
  - name: primary
    provider: openai
    base_url: {primary}/v1
    models: [m]
    priority: 0
    {PRICES}
  - name: backup
    provider: openai
    base_url: {backup}/v1
    models: [m]
    priority: 1
    {PRICES}
"""


def scrape(gw: RunningGateway, **headers: str) -> Samples:
    r = httpx2.get(f"{gw.url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample with exactly these labels (0 when absent)."""
    return samples.get(name, {}).get(frozenset(labels.items()), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over the samples carrying at least these labels."""
    want = set(labels.items())
    return sum(v for k, v in samples.get(name, {}).items() if want <= k)


def snapshot(gw: RunningGateway) -> MetricsSnapshot:
    async def take() -> MetricsSnapshot:
        snap: MetricsSnapshot = gw.runtime.metrics.snapshot()
        return snap

    return gw.call(take())  # type: ignore[no-any-return]


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeServer, FakeServer]]:
    primary, backup = fake_openai().start(), fake_openai().start()
    yield primary, backup
    primary.stop()
    backup.stop()


def overhead_ms(headers: Any) -> float:
    v = float(headers["x-ailb-overhead-ms"])
    assert v >= 0
    return v


def test_known_traffic_gives_exact_counts(
    upstreams: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    primary, backup = upstreams
    gw = gateway_factory(
        config(primary.url, backup.url),
        {"AILB_MASTER_KEY": MASTER, "ROUTING_STRATEGY": "failover"},
    )
    client = client_for(gw, api_key=MASTER)
    chat = client.chat.completions

    # Two plain answers and a stream from `primary` (the failover strategy's first choice).
    for _ in range(2):
        raw = chat.with_raw_response.create(model="m", messages=HI)
        assert raw.parse().choices[0].message.content
        overhead_ms(raw.headers)
    stream = chat.with_raw_response.create(
        model="m", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    overhead_ms(stream.headers)
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    # Two with memory: the first finds nothing remembered, the second the first exchange.
    for outcome in ("miss", "hit"):
        raw = chat.with_raw_response.create(
            model="m", messages=HI, extra_body={"session_id": "metrics-session"}
        )
        assert raw.headers["x-ailb-memory"] == outcome
    # `primary` fails three times in a row: failovers to `backup`, then its ejection; `backup`
    # also fails the second time, so that request is a 502.
    primary.script(*[Reply(status=500, error=ERROR)] * 3)
    backup.script(Reply(), Reply(status=500, error=ERROR), Reply())
    chat.create(model="m", messages=HI)
    with pytest.raises(openai.InternalServerError) as failed:
        chat.create(model="m", messages=HI)
    assert failed.value.status_code == 502
    overhead_ms(failed.value.response.headers)
    chat.create(model="m", messages=HI)
    # A stream `backup` cuts after its first byte: 200, then an SSE error.
    backup.script(Reply(cut_after=2))
    with pytest.raises(openai.APIError):
        for _ in chat.create(model="m", messages=HI, stream=True):
            pass
    # A key allowed one request a minute: its second is refused.
    made = httpx2.post(
        f"{gw.url}/api/keys",
        json={"name": "limited", "rpm_limit": 1},
        headers={"authorization": f"Bearer {MASTER}"},
    ).json()
    limited = client_for(gw, api_key=made["key"]).chat.completions
    limited.create(model="m", messages=HI)
    with pytest.raises(openai.RateLimitError) as refused:
        limited.create(model="m", messages=HI)
    overhead_ms(refused.value.response.headers)
    # A model nobody serves, and a key nobody issued.
    with pytest.raises(openai.NotFoundError):
        chat.create(model="no-such-model", messages=HI)
    with pytest.raises(openai.AuthenticationError):
        client_for(gw, api_key="sk-wrong").chat.completions.create(model="m", messages=HI)

    s = scrape(gw)
    requests = {
        tuple(dict(k)[n] for n in ("provider", "model", "deployment", "status")): v
        for k, v in s["ailb_requests_total"].items()
    }
    assert requests == {
        ("openai", "m", "primary", "200"): 5,
        ("openai", "m", "backup", "200"): 4,
        ("", "m", "", "502"): 1,
        ("", "m", "", "429"): 1,
        ("", "", "", "404"): 1,  # the unknown model's name is not a label value
    }
    route = {"provider": "openai", "model": "m"}
    p = {**route, "deployment": "primary"}
    b = {**route, "deployment": "backup"}
    assert value(s, "ailb_tokens_total", **p, type="prompt") == 5 * 11
    assert value(s, "ailb_tokens_total", **p, type="completion") == 5 * 7
    assert value(s, "ailb_cost_usd_total", **p) == pytest.approx(5 * FAKE_COST)
    # `backup`: three answers with the provider's usage, and the cut stream's estimate (the
    # prompt's, and the 10 characters "Hello from" delivered before the cut: 3 tokens).
    assert value(s, "ailb_tokens_total", **b, type="prompt") == 3 * 11 + HI_PROMPT_ESTIMATE
    assert value(s, "ailb_tokens_total", **b, type="completion") == 3 * 7 + 3
    assert value(s, "ailb_cost_usd_total", **b) == pytest.approx(
        3 * FAKE_COST + (HI_PROMPT_ESTIMATE * 2.0 + 3 * 4.0) / 1e6
    )
    assert value(s, "ailb_streams_broken_total", **b) == 1
    assert value(s, "ailb_streams_broken_total", **p) == 0
    # Histograms: every answered request once; first bytes of the two streams.
    assert value(s, "ailb_request_duration_seconds_count", **p) == 5
    assert value(s, "ailb_request_duration_seconds_count", **b) == 4
    assert value(s, "ailb_request_duration_seconds_bucket", **p, le="+Inf") == 5
    assert 0 < value(s, "ailb_request_duration_seconds_sum", **p) < 5 * 5.0
    assert value(s, "ailb_time_to_first_token_seconds_count", **p) == 1
    assert value(s, "ailb_time_to_first_token_seconds_count", **b) == 1
    assert value(s, "ailb_gateway_overhead_seconds_count", stream="true") == 2
    assert value(s, "ailb_gateway_overhead_seconds_count", stream="false") == 10
    assert value(s, "ailb_requests_in_flight") == 0
    # Failovers, ejections, upstream errors, deployment state.
    assert s["ailb_failovers_total"] == {
        frozenset(
            {
                "model": "m",
                "from_deployment": "primary",
                "to_deployment": "backup",
                "error": "http_5xx",
            }.items()
        ): 3
    }
    assert value(s, "ailb_deployment_ejections_total", deployment="primary", provider="openai") == 1
    assert value(s, "ailb_deployment_ejections_total", deployment="backup", provider="openai") == 0
    assert value(s, "ailb_deployment_up", deployment="primary", provider="openai") == 0
    assert value(s, "ailb_deployment_up", deployment="backup", provider="openai") == 1
    upstream_errors = {dict(k)["deployment"] + "/" + dict(k)["error"]: v
                       for k, v in s["ailb_upstream_errors_total"].items()}  # fmt: skip
    assert upstream_errors == {"primary/http_5xx": 3, "backup/http_5xx": 1, "backup/protocol": 1}
    assert value(s, "ailb_upstream_attempts_total", deployment="primary", provider="openai") == 8
    assert value(s, "ailb_upstream_attempts_total", deployment="backup", provider="openai") == 5
    # Refusals, memory, auth.
    limited_reasons = {
        dict(k)["reason"]: v for k, v in s["ailb_rate_limited_requests_total"].items()
    }
    assert limited_reasons["key_requests"] == 1
    assert sum(limited_reasons.values()) == 1
    assert value(s, "ailb_memory_requests_total", outcome="miss") == 1
    assert value(s, "ailb_memory_requests_total", outcome="hit") == 1
    assert value(s, "ailb_memory_requests_total", outcome="degraded") == 0
    assert value(s, "ailb_auth_failures_total", reason="malformed_key") == 1
    assert value(s, "ailb_http_connections_total") >= 1
    assert value(s, "ailb_http_connections_active") >= 1  # this scrape's own, at least
    assert total(s, "ailb_info") == 1
    assert "process_resident_memory_bytes" in s  # the process collector is registered

    snap = snapshot(gw)
    assert snap.total_requests == 12
    assert snap.status_codes == {"200": 9, "502": 1, "429": 1, "404": 1}
    assert set(snap.routes) == {"m"}
    # errors: the 502 and the broken stream (a 429 is the client's limit, not a failure)
    assert (snap.routes["m"].requests, snap.routes["m"].errors) == (11, 2)


def test_snapshot_latency_rate_and_overhead_header(
    upstreams: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    primary, backup = upstreams
    primary.default = Reply(delay=0.05)
    gw = gateway_factory(config(primary.url, backup.url), {"ROUTING_STRATEGY": "failover"})
    chat = client_for(gw).chat.completions
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        raw = chat.with_raw_response.create(model="m", messages=HI)
        latencies.append(time.perf_counter() - started)
        assert overhead_ms(raw.headers) < 45  # the 50 ms upstream wait is not in it
    first = snapshot(gw)
    assert first.total_requests == 20 and first.status_codes == {"200": 20}
    lat = first.latency
    # Every request took 50 ms and a little more: most in the (50, 75] ms bucket, and the
    # median interpolated inside it; the average is exact (and the client saw a little more).
    assert 50 <= lat.p50_ms <= 75
    assert lat.p50_ms <= lat.p90_ms <= lat.p95_ms <= lat.p99_ms
    assert 50 <= lat.avg_ms <= sum(latencies) / len(latencies) * 1000
    route = first.routes["m"]
    assert (route.requests, route.errors) == (20, 0)
    assert route.avg_latency_ms == pytest.approx(lat.avg_ms, abs=0.01)
    # requests_per_second: the last ten whole seconds, so these count once their second is over.
    time.sleep(1.1)
    assert snapshot(gw).requests_per_second == 2  # 20 requests / 10 s


def test_streams_carry_the_overhead_to_their_first_byte(
    upstreams: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    primary, backup = upstreams
    primary.default = Reply(delay=0.05, chunk_delay=0.05, pieces=4)
    gw = gateway_factory(config(primary.url, backup.url), {"ROUTING_STRATEGY": "failover"})
    started = time.perf_counter()
    raw = client_for(gw).chat.completions.with_raw_response.create(
        model="m", messages=HI, stream=True
    )
    assert overhead_ms(raw.headers) < 45  # the 50 ms upstream wait is not in it
    for _ in raw.parse():
        pass
    assert time.perf_counter() - started > 0.25  # the stream's own pacing: not in the overhead
    s = scrape(gw)
    labels = {"provider": "openai", "model": "m", "deployment": "primary"}
    ttft = value(s, "ailb_time_to_first_token_seconds_sum", **labels)
    whole = value(s, "ailb_request_duration_seconds_sum", **labels)
    assert 0.05 <= ttft < 0.2 < 0.25 <= whole


def test_connections_are_counted_open_and_closed(
    upstreams: tuple[FakeServer, FakeServer], gateway_factory: GatewayFactory
) -> None:
    primary, backup = upstreams
    gw = gateway_factory(config(primary.url, backup.url))
    clients = [httpx2.Client(base_url=gw.url, timeout=10) for _ in range(3)]
    try:
        for c in clients:
            for _ in range(2):  # keep-alive: two requests, one connection
                assert c.get("/livez").status_code == 200
        snap = snapshot(gw)
        assert (snap.active_connections, snap.total_connections) == (3, 3)
    finally:
        for c in clients:
            c.close()
    deadline = time.monotonic() + 5
    while snapshot(gw).active_connections and time.monotonic() < deadline:
        time.sleep(0.02)
    snap = snapshot(gw)
    assert (snap.active_connections, snap.total_connections) == (0, 3)


def test_metrics_token_protects_the_endpoint(
    upstreams: tuple[FakeServer, FakeServer], gateway_factory: GatewayFactory
) -> None:
    primary, backup = upstreams
    token = "scrape-token-0123456789"
    gw = gateway_factory(config(primary.url, backup.url), {"AILB_METRICS_TOKEN": token})
    for headers in ({}, {"authorization": "Bearer wrong-token"}, {"authorization": token}):
        r = httpx2.get(f"{gw.url}/metrics", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_metrics_token"
        assert r.headers["www-authenticate"] == "Bearer"
    s = scrape(gw, authorization=f"Bearer {token}")
    assert value(s, "ailb_auth_failures_total", reason="invalid_metrics_token") == 3


def test_metrics_are_open_by_default_even_with_keys(
    upstreams: tuple[FakeServer, FakeServer], gateway_factory: GatewayFactory
) -> None:
    primary, backup = upstreams
    gw = gateway_factory(config(primary.url, backup.url), {"AILB_MASTER_KEY": MASTER})
    s = scrape(gw)  # no key: Prometheus scrapers carry none
    assert value(s, "ailb_requests_in_flight") == 0
    assert value(s, "ailb_rate_limited_requests_total", reason="budget") == 0  # known from start


def test_gateways_in_one_process_keep_their_own_figures(
    upstreams: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    primary, backup = upstreams
    one = gateway_factory(config(primary.url, backup.url))
    two = gateway_factory(config(primary.url, backup.url))
    client_for(one).chat.completions.create(model="m", messages=HI)
    assert total(scrape(one), "ailb_requests_total") == 1
    assert total(scrape(two), "ailb_requests_total") == 0


def test_a_reload_moves_the_loaded_timestamp(
    upstreams: tuple[FakeServer, FakeServer], gateway_factory: GatewayFactory, tmp_path: Any
) -> None:
    primary, backup = upstreams
    gw = gateway_factory(config(primary.url, backup.url), {"AILB_MASTER_KEY": MASTER})
    loaded = value(scrape(gw), "ailb_config_loaded_timestamp_seconds")
    assert loaded == pytest.approx(time.time(), abs=30)
    time.sleep(0.05)
    (tmp_path / "ailb.yaml").write_text(config(primary.url, backup.url).replace("m]", "m, m2]"))
    r = httpx2.post(
        f"{gw.url}/api/reload", json={}, headers={"authorization": f"Bearer {MASTER}"}, timeout=30
    )
    assert r.status_code == 200 and r.json()["success"], r.text
    assert value(scrape(gw), "ailb_config_loaded_timestamp_seconds") > loaded


def test_a_model_limit_and_a_budget_are_told_apart(
    upstreams: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    primary, backup = upstreams
    gw = gateway_factory(config(primary.url, backup.url), {"AILB_MASTER_KEY": MASTER})

    async def limit_model() -> None:  # what gRPC ApplyRateLimit does
        gw.runtime.routes.set("m", BucketLimit(rate=1, burst=1))

    gw.call(limit_model())
    chat = client_for(gw, api_key=MASTER).chat.completions
    chat.create(model="m", messages=HI)
    with pytest.raises(openai.RateLimitError):
        chat.create(model="m", messages=HI)

    async def unlimit_model() -> None:  # the route's bucket counts every caller
        gw.runtime.routes.set("m", None)

    gw.call(unlimit_model())
    made = httpx2.post(
        f"{gw.url}/api/keys",
        json={"name": "poor", "budget_usd": 0.000001},
        headers={"authorization": f"Bearer {MASTER}"},
    ).json()
    with pytest.raises(openai.RateLimitError) as refused:
        client_for(gw, api_key=made["key"]).chat.completions.create(model="m", messages=HI)
    assert refused.value.code == "budget_exceeded"
    s = scrape(gw)
    reasons = {dict(k)["reason"]: v for k, v in s["ailb_rate_limited_requests_total"].items() if v}
    assert reasons == {"route_requests": 1, "budget": 1}
    assert (
        value(
            s,
            "ailb_requests_total",
            api="chat",
            provider="",
            model="m",
            deployment="",
            status="429",
        )
        == 2
    )


def test_memory_and_rag_degradations_are_counted(
    upstreams: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    primary, backup = upstreams
    port = free_port()  # nothing listens here: the Chroma server is down
    gw = gateway_factory(
        config(primary.url, backup.url),
        {"ENABLE_RAG": "true", "CHROMA_URL": f"http://127.0.0.1:{port}"},
    )
    chat = client_for(gw).chat.completions
    raw = chat.with_raw_response.create(
        model="m", messages=HI, extra_body={"session_id": "s", "rag_collection": "docs"}
    )
    assert (raw.headers["x-ailb-memory"], raw.headers["x-ailb-rag"]) == ("degraded", "degraded")
    samples = scrape(gw)
    assert value(samples, "ailb_memory_requests_total", outcome="degraded") == 1
    assert value(samples, "ailb_rag_requests_total", outcome="degraded") == 1
    assert value(samples, "ailb_rag_requests_total", outcome="hit") == 0
    assert value(samples, "ailb_vector_store_degraded") == 1
    assert total(samples, "ailb_requests_total", status="200") == 1


def test_memory_degraded_on_its_own_store_shows_in_the_gauge(
    upstreams: tuple[FakeServer, FakeServer],
    gateway_factory: GatewayFactory,
    client_for: ClientFor,
) -> None:
    """RAG off, memory in its embedded SQLite store: the gauge follows memory's own backend
    (here its embedder cannot be reached)."""
    primary, backup = upstreams
    port = free_port()  # nothing listens here: the embeddings endpoint is down
    gw = gateway_factory(
        config(primary.url, backup.url),
        {
            "AILB_EMBEDDER": "openai",
            "AILB_EMBEDDING_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "AILB_EMBEDDING_API_KEY": "sk-embeddings-0123456789",
        },
    )
    assert gw.runtime.vectors is None  # no Chroma: memory keeps turns in SQLite
    raw = client_for(gw).chat.completions.with_raw_response.create(
        model="m", messages=HI, extra_body={"session_id": "s"}
    )
    assert raw.headers["x-ailb-memory"] == "degraded"
    assert value(scrape(gw), "ailb_vector_store_degraded") == 1
