"""GetMetrics against a running gateway, after known traffic."""

from __future__ import annotations

import time

import openai
import pytest

from tests.fakes.server import Reply

HI = [{"role": "user", "content": "hi"}]


def test_get_metrics_counts_the_traffic_sent(upstreams, gateway_factory, control, client_for):
    (a,) = upstreams(1)
    gw = gateway_factory(
        f"deployments:\n  - {{name: a, provider: openai, base_url: '{a.url}/v1', models: [m]}}\n",
        env={"ENABLE_MEMORY": "false"},
    )
    ctl, client = control(gw), client_for(gw)
    for _ in range(6):
        client.chat.completions.create(model="m", messages=HI)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HI)
    a.script(Reply(status=500, error={"error": {"message": "boom"}}))
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="m", messages=HI)
    bad_gateway = str(failed.value.status_code)

    metrics = ctl.metrics()
    assert abs(metrics.timestamp - time.time()) < 5
    assert metrics.total_requests == 8
    assert dict(metrics.status_codes) == {"200": 6, "404": 1, bad_gateway: 1}
    m = metrics.routes["m"]
    assert (m.requests, m.errors) == (7, 1)
    assert m.avg_latency_ms > 0
    assert "nope" not in metrics.routes  # not a served model
    lat = metrics.latency
    assert 0 < lat.p50_ms <= lat.p90_ms <= lat.p95_ms <= lat.p99_ms
    assert lat.avg_ms > 0
    assert metrics.total_connections >= 1
    assert metrics.active_connections >= 0
    # Requests per second covers whole seconds already past: it shows once one has passed.
    deadline = time.monotonic() + 5
    while (rps := ctl.metrics().requests_per_second) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rps >= 1
