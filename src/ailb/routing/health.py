"""Active health probes and model discovery.

A probe is the upstream's model list (`/v1/models`, `/api/tags`, Anthropic's models list):
cheap, and never a billed completion. Deployments configured without a model list take
theirs from the same call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from ailb.aio import cancel_and_wait
from ailb.providers.base import UpstreamError
from ailb.routing.deployment import DeploymentState
from ailb.routing.router import Router

log = logging.getLogger("ailb.health")


class HealthMonitor:
    def __init__(
        self,
        router: Router,
        interval: float,
        probe_timeout: float = 10.0,
        pricer: Callable[[Sequence[DeploymentState]], Awaitable[None]] | None = None,
    ) -> None:
        self.router = router
        # Looks up the deployments' prices (ailb.billing.catalog.Pricer): at start, and for
        # models discovered later.
        self.pricer = pricer
        self._pricing: set[asyncio.Task[None]] = set()
        self.interval = interval
        self.probe_timeout = probe_timeout
        self._task: asyncio.Task[None] | None = None

    def _discovers(self, d: DeploymentState) -> bool:
        return not d.config.models

    async def probe(self, d: DeploymentState) -> bool:
        try:
            async with asyncio.timeout(self.probe_timeout):
                models = await d.provider.list_models()
        except (UpstreamError, TimeoutError) as e:
            detail = e.message if isinstance(e, UpstreamError) else "probe timed out"
            if d.probe_ok is not False:
                log.warning("deployment_down", extra={"deployment": d.name, "detail": detail})
            d.record_probe(False, detail)
            return False
        if d.probe_ok is False:
            log.info("deployment_up", extra={"deployment": d.name})
        d.record_probe(True)
        if self._discovers(d):
            discovered = {m: m for m in models}
            discovered.update(d.config.served_models())  # embedding models, aliases
            if discovered != d.models:
                d.models = discovered
                self.router.rebuild_index()
                if self.pricer is not None:
                    task = asyncio.create_task(self.price([d]))
                    self._pricing.add(task)
                    task.add_done_callback(self._pricing.discard)
                log.info(
                    "models_discovered", extra={"deployment": d.name, "models": len(discovered)}
                )
        return True

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(d) for d in self.router.deployments.values()))

    async def start(self, initial_wait: float = 3.0) -> None:
        """Begin probing. Waits (up to `initial_wait`) only for deployments whose models are
        discovered, so a request right after start-up finds them."""
        first = asyncio.ensure_future(self.probe_all())
        needs_discovery = any(self._discovers(d) for d in self.router.deployments.values())
        if needs_discovery:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(first), initial_wait)
        self._task = asyncio.create_task(self._loop(first))
        await self.price(list(self.router.deployments.values()))

    async def price(self, deployments: Sequence[DeploymentState]) -> None:
        """Prices for `deployments`; the router (and the budgets' terms) read them anew."""
        if self.pricer is None:
            return
        try:
            await self.pricer(deployments)
        except Exception:  # a pricing bug must not stop start-up or discovery
            log.exception("pricing_failed")
            return
        self.router.rebuild_index()

    async def _loop(self, first: asyncio.Future[None]) -> None:
        with contextlib.suppress(Exception):
            await first
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.probe_all()
            except Exception:  # a probe bug must not end health checking
                log.exception("probe_round_failed")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for task in list(self._pricing):
            await cancel_and_wait(task)
