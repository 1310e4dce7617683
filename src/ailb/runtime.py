"""Everything one running gateway holds, built by `create_app` and shared by its endpoints."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ailb.auth.audit import AuditLog
from ailb.auth.authenticator import Authenticator
from ailb.auth.keyring import KeyRing
from ailb.auth.manager import KeyManager
from ailb.billing.usage import UsageRecorder
from ailb.config import Settings
from ailb.live import LiveConfig
from ailb.memory.service import MemoryService
from ailb.observability.metrics import GatewayMetrics
from ailb.rag.service import RagService
from ailb.ratelimit.policy import LimitPolicy
from ailb.ratelimit.route_bucket import RouteBuckets
from ailb.routing.failover import Failover
from ailb.routing.health import HealthMonitor
from ailb.routing.router import Router
from ailb.storage import Store
from ailb.vectorstore.backend import VectorBackend
from ailb.vectorstore.chroma import VectorStore


@dataclass
class Runtime:
    live: LiveConfig  # settings, router and failover: replaced as a whole by a reload
    health: HealthMonitor
    vectors: VectorBackend[VectorStore] | None = None
    memory: MemoryService | None = None
    rag: RagService | None = None
    auth: Authenticator = field(default_factory=lambda: Authenticator(None, None, AuditLog()))
    store: Store | None = None  # keys and the usage ledger
    ring: KeyRing | None = None
    keys: KeyManager | None = None  # None: authentication is off
    limits: LimitPolicy | None = None
    # The control plane's route limits (gRPC ApplyRateLimit): they outlive reloads.
    routes: RouteBuckets = field(default_factory=RouteBuckets)
    usage: UsageRecorder | None = None
    started_at: float = field(default_factory=time.time)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)  # create_app builds it
    grpc_port: int | None = None  # the ModuleService's bound port while it serves
    draining: bool = False  # a stop has begun: in-flight requests finish, nothing new comes

    @property
    def settings(self) -> Settings:
        return self.live.settings

    @property
    def router(self) -> Router:
        return self.live.router

    @property
    def failover(self) -> Failover:
        return self.live.failover

    def uptime(self) -> float:
        return time.time() - self.started_at
