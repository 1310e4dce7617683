"""The gRPC server: ModuleService, the standard health service and server reflection.

On GRPC_HOST (default HOST), over TLS when GRPC_TLS_CERT is set (ailb.control.tls); with a
token configured every call but health's needs it (ailb.control.auth). It runs in the
gateway's process and on its event loop (grpc.aio), started and stopped with it.
Health, for the overall service ("") and for marchproxy.ModuleService: SERVING while some
provider can serve (/healthz `ok` or `degraded`), NOT_SERVING when none can or the gateway is
stopping (from the SIGTERM on, through the whole drain: the server answers until the end).
`Check` computes it at the time of the call; `Watch` streams get changes within
HEALTH_REFRESH_S.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from ailb.aio import cancel_and_wait
from ailb.control.auth import BearerTokenInterceptor
from ailb.control.proto import module_service_pb2_grpc as pb_grpc
from ailb.control.service import SERVICE_NAME, ModuleService
from ailb.control.tls import server_tls
from ailb.observability.health import health_report
from ailb.runtime import Runtime

log = logging.getLogger("ailb.control")
HEALTH_REFRESH_S = 1.0
STOP_GRACE_S = 2.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_SERVICE: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class GatewayHealth(health_aio.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1.Health whose statuses follow the gateway's real health."""

    SERVICES = ("", SERVICE_NAME)

    def __init__(self, serving: Callable[[], bool]) -> None:
        super().__init__()
        self._serving = serving

    async def refresh(self) -> None:
        status = SERVING if self._serving() else NOT_SERVING
        for service in self.SERVICES:
            await self.set(service, status)  # ignored once shutting down

    async def Check(self, request: Any, context: Any) -> Any:
        await self.refresh()
        return await super().Check(request, context)


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ControlServer:
    def __init__(self, runtime: Runtime, service: ModuleService) -> None:
        """Reads the TLS files now: a bad one is a ConfigError before anything starts."""
        self.runtime = runtime
        self.service = service
        env = runtime.settings.env
        self.address = bind_address(env.grpc_bind_host, env.grpc_port)
        self.tls = server_tls(env)
        # Bound at start-up, like the master key: a reload does not change it.
        self.token = runtime.settings.control_credential
        self.health = GatewayHealth(
            lambda: not runtime.draining and health_report(runtime).status != "unhealthy"
        )
        self._server: Any = None
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen and serve; returns the bound port (GRPC_PORT 0: one the system chose)."""
        # SO_REUSEPORT (grpc's default on Linux) would let a second gateway share the port
        # silently and take half the calls: a port in use must be an error instead.
        interceptors = (
            [BearerTokenInterceptor(self.token, self.runtime.auth.audit)] if self.token else []
        )
        server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_ModuleServiceServicer_to_server(self.service, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, HEALTH_SERVICE, reflection.SERVICE_NAME), server
        )
        try:
            if self.tls is None:
                port = server.add_insecure_port(self.address)
            else:
                port = server.add_secure_port(self.address, self.tls.credentials)
        except RuntimeError:
            port = 0
        if not port:
            raise RuntimeError(
                f"gRPC ModuleService cannot listen on {self.address} (GRPC_PORT, GRPC_HOST or "
                "HOST): the port is in use or the address is not this machine's; "
                "ENABLE_GRPC=false turns it off"
            )
        await self.health.refresh()
        await server.start()
        self._server = server
        self._refresher = asyncio.create_task(self._refresh_loop())
        tls = self.tls.mode if self.tls is not None else "off"
        auth = "enabled" if self.token else "disabled"
        log.info(
            "grpc_listening",
            extra={"address": self.address, "port": port, "tls": tls, "auth": auth},
        )
        if not self.token:
            log.warning(
                "CONTROL PLANE IS OPEN: neither AILB_CONTROL_TOKEN nor AILB_MASTER_KEY is set, "
                f"so anyone who can reach {self.address} can set every traffic weight to 0, "
                "cap every model, reload the configuration and read the upstream hosts over "
                "gRPC. Set AILB_CONTROL_TOKEN, and bind GRPC_HOST to a private interface.",
                extra={"control_auth": "disabled"},
            )
        return int(port)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_REFRESH_S)
            try:
                await self.health.refresh()
            except Exception:  # a bug here must not end health reporting
                log.exception("grpc_health_refresh_failed")

    async def drain(self) -> None:
        """runtime.draining was just set: NOT_SERVING from now on, Watch streams told at once
        rather than at the next refresh, so a balancer sends nothing new meanwhile."""
        if self._server is not None:
            await self.health.refresh()

    async def stop(self) -> None:
        await cancel_and_wait(self._refresher)
        self._refresher = None
        if self._server is not None:
            await self.health.enter_graceful_shutdown()
            await self._server.stop(STOP_GRACE_S)
            self._server = None
