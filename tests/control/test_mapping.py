"""The pure pieces of the ModuleService: message mapping, hosts, the rate-limit translation."""

from __future__ import annotations

import pytest

from ailb.control.proto import module_service_pb2 as pb
from ailb.control.routes import limit_config, upstream_host
from ailb.control.status import metrics_response
from ailb.observability.snapshot import LatencySummary, MetricsSnapshot, RouteFigures
from ailb.ratelimit.route_bucket import BucketLimit


def test_metrics_response_maps_every_figure():
    snapshot = MetricsSnapshot(
        timestamp=1_800_000_000,
        total_connections=41,
        active_connections=3,
        total_requests=1234,
        requests_per_second=17,
        latency=LatencySummary(p50_ms=1.5, p90_ms=9.25, p95_ms=12.0, p99_ms=80.5, avg_ms=4.75),
        status_codes={"200": 1200, "429": 30, "502": 4},
        routes={
            "m": RouteFigures(requests=1000, errors=4, avg_latency_ms=3.5),
            "n": RouteFigures(requests=234, errors=0, avg_latency_ms=8.0),
        },
    )
    answer = metrics_response(snapshot)
    assert answer == pb.MetricsResponse(
        timestamp=1_800_000_000,
        total_connections=41,
        active_connections=3,
        total_requests=1234,
        requests_per_second=17,
        latency=pb.LatencyMetrics(p50_ms=1.5, p90_ms=9.25, p95_ms=12.0, p99_ms=80.5, avg_ms=4.75),
        status_codes={"200": 1200, "429": 30, "502": 4},
        routes={
            "m": pb.RouteMetrics(requests=1000, errors=4, avg_latency_ms=3.5),
            "n": pb.RouteMetrics(requests=234, errors=0, avg_latency_ms=8.0),
        },
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://api.openai.com/v1", "api.openai.com:443"),
        ("http://10.0.0.7:8000/v1", "10.0.0.7:8000"),
        ("http://localhost/v1", "localhost:80"),
        ("http://[::1]:11434", "[::1]:11434"),
        ("https://user:secret@proxy.example:8443/v1?x=1", "proxy.example:8443"),
        (None, None),
    ],
)
def test_upstream_host_is_host_and_port_only(url, host):
    assert upstream_host(url) == host


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (None, (0, 0, False)),
        (BucketLimit(rate=1, burst=2), (1, 2, True)),  # what is enforced, as it was set
        (BucketLimit(rate=10, burst=10), (10, 10, True)),
    ],
)
def test_route_limit_as_rate_limit_config(limit, expected):
    config = limit_config(limit)
    assert (config.requests_per_second, config.burst_size, config.enabled) == expected
