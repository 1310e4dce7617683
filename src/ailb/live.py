"""The part of the running configuration that a reload replaces, as one object.

The chat endpoint takes the current `LiveConfig` once at the start of a request and uses it to
the end, so a reload never changes the configuration under a running request: it swaps in a new
object, and the old one stays whole until its last request is done (`requests` counts them;
nothing on the hot path locks). Everything else (stats, /healthz, gRPC) reads the current one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from ailb.config import Settings
from ailb.providers import build_provider
from ailb.routing.deployment import DeploymentState
from ailb.routing.failover import Failover
from ailb.routing.retry_budget import RetryBudget
from ailb.routing.router import Router


class LiveConfig:
    __slots__ = ("failover", "gated", "loaded_at", "requests", "router", "settings")

    def __init__(
        self,
        settings: Settings,
        router: Router,
        failover: Failover,
        loaded_at: float | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.failover = failover
        self.loaded_at = time.time() if loaded_at is None else loaded_at
        # Deployment gates cost an await per attempt: only built when some deployment has one.
        self.gated = any(
            d.config.rpm is not None or d.config.tpm is not None
            for d in router.deployments.values()
        )
        self.requests = 0  # chat requests running on this configuration

    @property
    def deployments(self) -> Mapping[str, DeploymentState]:
        return self.router.deployments


def build_live(settings: Settings, previous: LiveConfig | None = None) -> LiveConfig:
    """Deployments, router and failover for `settings`. With `previous`, a deployment whose
    configuration and credential are unchanged is carried over as it is (its provider and
    connections, health, latency and counters), and the router keeps its run-time state."""
    old = previous.deployments if previous is not None else {}
    old_credentials = previous.settings.credentials if previous is not None else {}
    deployments = []
    for config in settings.deployments:
        credential = settings.credentials.get(config.name)
        kept = old.get(config.name)
        if (
            kept is not None
            and kept.config == config
            and old_credentials.get(config.name) == credential
        ):
            deployments.append(kept)
        else:
            deployments.append(
                DeploymentState(config=config, provider=build_provider(config, credential))
            )
    env = settings.env
    router = Router(deployments, env.routing_strategy, settings.models)
    if previous is not None:
        router.carry_over(previous.router)
    budget = previous.failover.budget if previous is not None else None
    if budget is None or not budget.same_settings(
        env.retry_budget_percent, env.retry_min_concurrency
    ):
        # New settings, new budget: requests that started before the reload keep counting in
        # the old one (their configuration's), which goes with them.
        budget = RetryBudget(env.retry_budget_percent, env.retry_min_concurrency)
    failover = Failover(
        max_attempts=env.max_attempts, request_timeout=env.request_timeout, budget=budget
    )
    return LiveConfig(settings, router, failover)
