"""GET /metrics: the gateway's figures in the Prometheus exposition format.

Open by default, like /healthz: Prometheus scrapers usually carry no API key, and the figures
hold no secret (names of models and deployments, counts). With AILB_METRICS_TOKEN set, a scrape
must send `Authorization: Bearer <token>` (Prometheus: `authorization: {credentials_file: ...}`);
a wrong or missing token is a 401 in the ailb.audit log, like any other auth failure.
"""

from __future__ import annotations

import hmac

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ailb.api.openapi import Operation
from ailb.errors import AuthenticationFailed
from ailb.observability.collector import GatewayCollector
from ailb.runtime import Runtime

PATH = "/metrics"


def registry_for(runtime: Runtime) -> CollectorRegistry:
    """This gateway's own registry (never prometheus-client's global one, so several gateways
    in one process -- tests -- stay apart): AILB's figures plus process_*, python_gc_* and
    python_info (memory, CPU, open files, garbage collection)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(runtime))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def build(runtime: Runtime) -> tuple[list[Route], list[Operation]]:
    registry = registry_for(runtime)

    async def metrics(request: Request) -> Response:
        token = runtime.settings.metrics_token  # read per scrape: a reload may change it
        if token is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, b"Bearer " + token.encode()):
                runtime.auth.audit.auth_failure("invalid_metrics_token", path=PATH)
                raise AuthenticationFailed(
                    "GET /metrics needs `Authorization: Bearer <AILB_METRICS_TOKEN>`.",
                    code="invalid_metrics_token",
                    headers={"www-authenticate": "Bearer"},
                )
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), headers={"content-type": content_type})

    return (
        [Route(PATH, metrics, methods=["GET"])],
        [
            Operation(
                "GET",
                PATH,
                "Prometheus metrics: requests, latency, overhead, tokens, cost, connections, "
                "failovers, ejections, rate limits, memory and RAG",
                "Operations",
                response_media={"text/plain": {"schema": {"type": "string"}}},
                errors=(401,),
                description="Open unless AILB_METRICS_TOKEN is set (then a Bearer token).",
            )
        ],
    )
