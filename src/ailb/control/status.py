"""GetStatus and GetMetrics: the gateway's state and traffic figures as ModuleService messages.

Health is the one /healthz computes (ailb.observability.health), mapped: ok -> HEALTHY,
degraded (some providers, or memory/RAG, down) -> DEGRADED, unhealthy (no provider can serve)
-> UNHEALTHY.
"""

from __future__ import annotations

from ailb import __version__
from ailb.control.proto import module_service_pb2 as pb
from ailb.observability.health import health_report
from ailb.observability.snapshot import MetricsSnapshot
from ailb.runtime import Runtime

MODULE_TYPE = "AILB"
HEALTH = {"ok": pb.HEALTHY, "degraded": pb.DEGRADED, "unhealthy": pb.UNHEALTHY}
_USABLE = ("up", "unknown")  # as /healthz counts them


def status_response(runtime: Runtime) -> pb.StatusResponse:
    report = health_report(runtime)
    router = runtime.router
    up = sorted(n for n, p in report.providers.items() if p.status in _USABLE)
    down = sorted(n for n, p in report.providers.items() if p.status not in _USABLE)
    metadata = {
        "status": report.status,
        "strategy": router.strategy.value,
        "providers_up": ",".join(up),
        "providers_down": ",".join(down),
        "models": str(len(router.models())),
        "memory": report.memory.status,
        "rag": report.rag.status,
        "auth": report.accounts.auth,
        "config_loaded_at": str(int(runtime.live.loaded_at)),
    }
    for model in sorted(router.models()):
        split = router.weights(model)
        metadata[f"weights.{model}"] = ",".join(f"{n}={w}" for n, w in sorted(split.items()))
    return pb.StatusResponse(
        module_id=report.module_id,
        module_type=MODULE_TYPE,
        version=__version__,
        health=HEALTH[report.status],
        uptime_seconds=int(runtime.uptime()),
        envoy_version="",  # AILB is not built on Envoy
        metadata=metadata,
    )


def metrics_response(snapshot: MetricsSnapshot) -> pb.MetricsResponse:
    latency = snapshot.latency
    return pb.MetricsResponse(
        timestamp=snapshot.timestamp,
        total_connections=snapshot.total_connections,
        active_connections=snapshot.active_connections,
        total_requests=snapshot.total_requests,
        requests_per_second=snapshot.requests_per_second,
        latency=pb.LatencyMetrics(
            p50_ms=latency.p50_ms,
            p90_ms=latency.p90_ms,
            p95_ms=latency.p95_ms,
            p99_ms=latency.p99_ms,
            avg_ms=latency.avg_ms,
        ),
        status_codes=dict(snapshot.status_codes),
        routes={
            name: pb.RouteMetrics(
                requests=r.requests, errors=r.errors, avg_latency_ms=r.avg_latency_ms
            )
            for name, r in snapshot.routes.items()
        },
    )
