"""What is up and what is down: the report /healthz answers and the gRPC service maps."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ailb import __version__
from ailb.runtime import Runtime


class ProviderHealth(msgspec.Struct, omit_defaults=True):
    provider: str
    status: str
    models: int
    detail: str | None = None


class FeatureHealth(msgspec.Struct, omit_defaults=True):
    enabled: bool
    status: str
    detail: str | None = None
    # Counters since start: hits, misses, degraded (answered without the feature) ...
    stats: dict[str, int] | None = None


class AccountsHealth(msgspec.Struct, omit_defaults=True):
    """Authentication, and where keys, usage and shared counters live."""

    auth: Literal["enabled", "disabled"]
    store: Literal["sqlite", "postgresql"]
    counters: Literal["in-process", "redis"]
    warning: str | None = None
    usage_ledger: Literal["ok", "buffering"] = "ok"
    # unavailable: keys cannot be read (known keys still work; others get 503 meanwhile)
    key_store: Literal["ok", "unavailable"] = "ok"


class ControlHealth(msgspec.Struct, omit_defaults=True):
    """The gRPC control service (ENABLE_GRPC): whether calls need a token, and TLS."""

    enabled: bool
    auth: Literal["enabled", "disabled"] | None = None
    tls: Literal["off", "on", "mutual"] | None = None
    warning: str | None = None


class HealthReport(msgspec.Struct):
    status: Literal["ok", "degraded", "unhealthy"]
    version: str
    module_id: str
    uptime_s: float
    demo_mode: bool
    providers: dict[str, ProviderHealth]
    memory: FeatureHealth
    rag: FeatureHealth
    accounts: AccountsHealth
    control: ControlHealth


def health_report(runtime: Runtime) -> HealthReport:
    providers: dict[str, ProviderHealth] = {}
    for d in runtime.router.deployments.values():
        state = d.health()
        providers[d.name] = ProviderHealth(
            provider=d.config.provider,
            status=state,
            models=len(d.models),
            detail=d.probe_error if state == "down" else None,
        )
    usable = [p for p in providers.values() if p.status in ("up", "unknown")]
    status: Any
    if not usable:
        status = "unhealthy"
    elif len(usable) < len(providers):
        status = "degraded"
    else:
        status = "ok"
    memory = _memory_health(runtime)
    rag = _rag_health(runtime)
    accounts = _accounts(runtime)
    if status == "ok" and (
        "degraded" in (memory.status, rag.status)
        or accounts.key_store != "ok"
        or accounts.usage_ledger != "ok"
    ):
        status = "degraded"
    s = runtime.settings
    return HealthReport(
        status=status,
        version=__version__,
        module_id=s.module_id,
        uptime_s=round(runtime.uptime(), 1),
        demo_mode=s.demo,
        providers=providers,
        memory=memory,
        rag=rag,
        accounts=accounts,
        control=_control(runtime),
    )


def _accounts(runtime: Runtime) -> AccountsHealth:
    s = runtime.settings
    enabled = runtime.auth.enabled
    return AccountsHealth(
        auth="enabled" if enabled else "disabled",
        store="postgresql" if s.database_url else "sqlite",
        counters="redis" if s.redis_url else "in-process",
        warning=None
        if enabled
        else "authentication is off (no AILB_MASTER_KEY): anyone can use this gateway",
        usage_ledger="buffering" if runtime.usage is not None and runtime.usage.failing else "ok",
        key_store="unavailable" if runtime.ring is not None and runtime.ring.failing else "ok",
    )


def _control(runtime: Runtime) -> ControlHealth:
    s = runtime.settings
    if not s.env.enable_grpc:
        return ControlHealth(False)
    if s.control_credential:
        return ControlHealth(True, "enabled", s.env.grpc_tls)
    return ControlHealth(
        True,
        "disabled",
        s.env.grpc_tls,
        "the gRPC control service is open (no AILB_CONTROL_TOKEN or AILB_MASTER_KEY): anyone "
        "who reaches it can steer all traffic",
    )


def _memory_health(runtime: Runtime) -> FeatureHealth:
    m = runtime.memory
    if m is None:
        return FeatureHealth(False, "disabled")
    return FeatureHealth(True, m.status, m.detail, dict(m.memory.stats))


def _rag_health(runtime: Runtime) -> FeatureHealth:
    if runtime.rag is None or runtime.vectors is None:
        return FeatureHealth(False, "disabled")
    return FeatureHealth(
        True, runtime.vectors.status, runtime.vectors.detail, dict(runtime.rag.stats)
    )
