"""The six ModuleService RPCs, each against the live gateway (DESIGN §4).

The RPCs run on the gateway's event loop, like HTTP requests, so they read and change the same
objects without locks. Every change (rate limit, weights, reload) is logged with its outcome.
"""

from __future__ import annotations

import logging
from typing import Any

from ailb.control.proto import module_service_pb2 as pb
from ailb.control.proto import module_service_pb2_grpc as pb_grpc
from ailb.control.reload import Reloader
from ailb.control.routes import RouteVersion, apply_rate_limit, in_cluster, route_configs
from ailb.control.status import metrics_response, status_response
from ailb.control.weights import WeightLabels, set_traffic_weights
from ailb.runtime import Runtime

log = logging.getLogger("ailb.control")
SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ModuleService"].full_name


class ModuleService(pb_grpc.ModuleServiceServicer):
    def __init__(self, runtime: Runtime, reloader: Reloader) -> None:
        self.runtime = runtime
        self.reloader = reloader
        self.labels = WeightLabels()  # outlive reloads, like the weights they label
        self.route_version = RouteVersion()

    async def GetStatus(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        return status_response(self.runtime)

    async def GetRoutes(self, request: pb.RoutesRequest, context: Any) -> pb.RoutesResponse:
        routes = route_configs(self.runtime)
        version = self.route_version.of(self.runtime, routes)
        selected = routes if in_cluster(self.runtime, request.cluster_id) else []
        return pb.RoutesResponse(routes=selected, version=version)

    async def ApplyRateLimit(
        self, request: pb.RateLimitRequest, context: Any
    ) -> pb.RateLimitResponse:
        ok, message = apply_rate_limit(self.runtime, request.route_name, request.config)
        _log_change(
            "rate_limit_applied",
            ok,
            message,
            route=request.route_name,
            requests_per_second=request.config.requests_per_second,
            burst_size=request.config.burst_size,
            enabled=request.config.enabled,
        )
        return pb.RateLimitResponse(success=ok, message=message)

    async def GetMetrics(self, request: pb.MetricsRequest, context: Any) -> pb.MetricsResponse:
        # The same counts as GET /metrics (ailb.observability.metrics).
        return metrics_response(self.runtime.metrics.snapshot())

    async def SetTrafficWeight(
        self, request: pb.TrafficWeightRequest, context: Any
    ) -> pb.TrafficWeightResponse:
        response = set_traffic_weights(
            self.runtime.router, self.labels, request.route_name, request.weights
        )
        _log_change(
            "traffic_weights_set",
            response.success,
            response.message,
            route=request.route_name,
            weights={w.backend_name: w.weight for w in request.weights},
        )
        return response

    async def Reload(self, request: pb.ReloadRequest, context: Any) -> pb.ReloadResponse:
        result = await self.reloader.reload(force=request.force, source="grpc")
        return pb.ReloadResponse(
            success=result.success,
            message=result.message,
            reload_timestamp=result.reload_timestamp,
        )


def _log_change(event: str, ok: bool, message: str, **fields: Any) -> None:
    extra = {"source": "grpc", "success": ok, "detail": message, **fields}
    if ok:
        log.info(event, extra=extra)
    else:
        log.warning(event, extra=extra)
