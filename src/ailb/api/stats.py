"""GET /api/routing/stats: per deployment and per model routing figures, for the operator.

Deployment names, upstream health and probe errors, and every tenant's traffic together: with
authentication on, only the master key and admin-scoped keys read them (403 otherwise, as
/api/keys); a key's own figures are in /api/usage."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from ailb.api.common import JSONResponse
from ailb.api.keys import require_admin
from ailb.api.openapi import Operation
from ailb.runtime import Runtime


def build(runtime: Runtime) -> tuple[list[Route], list[Operation]]:
    async def routing_stats(request: Request) -> JSONResponse:
        if runtime.auth.enabled:
            require_admin(request)
        router = runtime.router
        return JSONResponse(
            {
                "strategy": router.strategy.value,
                "deployments": {
                    name: {
                        **d.snapshot(),
                        "weights": {m: router.weight(d, m) for m in sorted(d.models)},
                    }
                    for name, d in router.deployments.items()
                },
                "models": router.stats(),
                "retry_budget": runtime.failover.budget.snapshot(),
            }
        )

    return (
        [Route("/api/routing/stats", routing_stats, methods=["GET"])],
        [
            Operation(
                "GET",
                "/api/routing/stats",
                "Requests, errors, latency, health, tokens and cost per deployment; strategy "
                "and selections per model (admin)",
                "Operations",
                errors=(403,),
            )
        ],
    )
