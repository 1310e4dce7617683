"""Point-in-time figures of the gateway's traffic, shared by exporters.

The Prometheus metrics collector produces a ``MetricsSnapshot``; the gRPC
``GetMetrics`` RPC and any other reader map from it.  Frozen dataclasses so a
snapshot handed to a reader cannot be altered behind the collector's back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatencySummary:
    """Request latency percentiles and mean, in milliseconds."""

    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float


@dataclass(frozen=True)
class RouteFigures:
    """Traffic figures of one route (served model)."""

    requests: int
    errors: int
    avg_latency_ms: float


@dataclass(frozen=True)
class MetricsSnapshot:
    """Gateway-wide traffic figures at ``timestamp`` (Unix seconds)."""

    timestamp: int
    total_connections: int
    active_connections: int
    total_requests: int
    requests_per_second: int
    latency: LatencySummary
    status_codes: dict[str, int]
    routes: dict[str, RouteFigures]
