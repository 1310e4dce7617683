"""A ModuleService client for tests: the stubs generated from proto/, plus the standard health
and reflection services, on one channel (TLS with `credentials`; with `token`, every call
carries `authorization: Bearer <token>`, as grpcurl's -H does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ailb.control.proto import module_service_pb2 as pb
from ailb.control.proto import module_service_pb2_grpc as pb_grpc

TIMEOUT = 10.0


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the token to every call's metadata, whatever its kind."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _with_token(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self.header]
        return continuation(
            _CallDetails(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                details.wait_for_ready,
                getattr(details, "compression", None),
            ),
            request,
        )

    intercept_unary_unary = _with_token
    intercept_unary_stream = _with_token
    intercept_stream_unary = _with_token
    intercept_stream_stream = _with_token


class ControlClient:
    def __init__(
        self,
        target: str,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.channel = (
            grpc.secure_channel(target, credentials)
            if credentials is not None
            else grpc.insecure_channel(target)
        )
        if token is not None:
            self.channel = grpc.intercept_channel(self.channel, BearerToken(token))
        self.stub = pb_grpc.ModuleServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.reflection = reflection_pb2_grpc.ServerReflectionStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- ModuleService, with a deadline on every call -------------------------------------

    def status(self) -> pb.StatusResponse:
        return self.stub.GetStatus(pb.StatusRequest(), timeout=TIMEOUT)

    def routes(self, cluster_id: str = "") -> pb.RoutesResponse:
        return self.stub.GetRoutes(pb.RoutesRequest(cluster_id=cluster_id), timeout=TIMEOUT)

    def rate_limit(
        self, route: str, rps: int = 0, burst: int = 0, enabled: bool = True
    ) -> pb.RateLimitResponse:
        config = pb.RateLimitConfig(requests_per_second=rps, burst_size=burst, enabled=enabled)
        return self.stub.ApplyRateLimit(
            pb.RateLimitRequest(route_name=route, config=config), timeout=TIMEOUT
        )

    def metrics(self) -> pb.MetricsResponse:
        return self.stub.GetMetrics(pb.MetricsRequest(), timeout=TIMEOUT)

    def weights(self, route: str, **weights: int | tuple[int, str]) -> pb.TrafficWeightResponse:
        items = []
        for name, w in weights.items():
            weight, version = w if isinstance(w, tuple) else (w, "")
            items.append(pb.TrafficWeight(backend_name=name, weight=weight, version=version))
        return self.stub.SetTrafficWeight(
            pb.TrafficWeightRequest(route_name=route, weights=items), timeout=TIMEOUT
        )

    def reload(self, force: bool = False) -> pb.ReloadResponse:
        return self.stub.Reload(pb.ReloadRequest(force=force), timeout=TIMEOUT)

    # --- standard services ----------------------------------------------------------------

    def check(self, service: str = "") -> Any:
        return self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)

    def listed_services(self) -> list[str]:
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(self.reflection.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))
        return [s.name for s in answer.list_services_response.service]

    def file_of(self, symbol: str) -> descriptor_pb2.FileDescriptorProto:
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        (answer,) = list(self.reflection.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))
        raw = answer.file_descriptor_response.file_descriptor_proto[0]
        return descriptor_pb2.FileDescriptorProto.FromString(raw)
