"""Configuration reload: re-read the config file and environment, validate, swap atomically.

Triggered by the gRPC `Reload`, `POST /api/reload` and SIGHUP; one reload at a time.

- Nothing changes unless the whole new configuration is valid: any error keeps the running one
  and answers success=false with the message naming the problem (the same messages start-up
  gives, e.g. `AILB_CONFIG ailb.yaml: deployments[1].weight: Expected int >= 0`).
- Hot: deployments, per-model settings, ROUTING_STRATEGY, AILB_MAX_ATTEMPTS, the retry budget
  (AILB_RETRY_BUDGET_PERCENT, AILB_RETRY_MIN_CONCURRENCY), AILB_REQUEST_TIMEOUT,
  AILB_HEALTH_INTERVAL. Everything else (ports, data directory, stores,
  memory/RAG, keys, logging ...) is bound at start-up: when the new configuration changes one of
  them the reload is refused naming them, unless `force` asks to apply the rest (the named ones
  keep their running values, and the message says so). A running process's environment does not
  change, so in practice this concerns configurations loaded by an embedding program.
- The swap is one assignment (`runtime.live`): a request keeps the configuration it started
  with. A deployment whose configuration and credential are unchanged is carried over with its
  connections, health and latency figures; weights set at run time survive. The connections of
  replaced deployments are closed once the last request that started before the swap is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace

import msgspec

from ailb.aio import cancel_and_wait
from ailb.config import EMBEDDER_CREDENTIAL, ENV_VARS, ConfigError, EnvSettings, Settings
from ailb.live import LiveConfig, build_live
from ailb.routing.deployment import DeploymentState
from ailb.routing.health import HealthMonitor
from ailb.runtime import Runtime

log = logging.getLogger("ailb.reload")

SettingsLoader = Callable[[], Settings]
# EnvSettings fields a reload applies; every other one needs a restart.
HOT_FIELDS = frozenset(
    {
        "routing_strategy",
        "max_attempts",
        "retry_budget_percent",
        "retry_min_concurrency",
        "request_timeout",
        "health_interval",
    }
)
# Settings fields a reload applies (`env` only in HOT_FIELDS; the embedder's credential, kept in
# `credentials`, excepted). Every other field (services, tokens ...) is bound at start-up.
_HOT_SETTINGS = frozenset({"env", "deployments", "models", "credentials", "demo"})
_SETTING_VARIABLE = {
    "master_key": "AILB_MASTER_KEY",
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "metrics_token": "AILB_METRICS_TOKEN",
    "control_token": "AILB_CONTROL_TOKEN",
    "config_path": "AILB_CONFIG",
    "embedder_proxy": "HTTPS_PROXY/HTTP_PROXY/NO_PROXY (for the embedder)",
}
_RESTART_SETTINGS = tuple(f.name for f in fields(Settings) if f.name not in _HOT_SETTINGS)
_VARIABLE = {fld: var for var, (fld, _, _) in ENV_VARS.items() if fld is not None}
DRAIN_POLL_S = 0.05
DRAIN_SLACK_S = 5.0


@dataclass(frozen=True)
class ReloadResult:
    success: bool
    message: str
    reload_timestamp: int  # Unix seconds the configuration now running was loaded


def restart_only_changes(running: Settings, new: Settings) -> list[str]:
    """The variables whose new values need a restart (names only, never values)."""
    out = [
        _VARIABLE.get(f.name, f.name)
        for f in msgspec.structs.fields(EnvSettings)
        if f.name not in HOT_FIELDS and getattr(running.env, f.name) != getattr(new.env, f.name)
    ]
    out += [
        _SETTING_VARIABLE.get(name, name)
        for name in _RESTART_SETTINGS
        if getattr(running, name) != getattr(new, name)
    ]
    if running.credentials.get(EMBEDDER_CREDENTIAL) != new.credentials.get(EMBEDDER_CREDENTIAL):
        out.append("AILB_EMBEDDING_API_KEY")
    return out


def keep_restart_only(running: Settings, new: Settings) -> Settings:
    """`new` with every restart-only setting as it runs now (what a forced reload applies)."""
    env = msgspec.structs.replace(
        new.env,
        **{
            f.name: getattr(running.env, f.name)
            for f in msgspec.structs.fields(EnvSettings)
            if f.name not in HOT_FIELDS
        },
    )
    credentials = {k: v for k, v in new.credentials.items() if k != EMBEDDER_CREDENTIAL}
    if EMBEDDER_CREDENTIAL in running.credentials:
        credentials[EMBEDDER_CREDENTIAL] = running.credentials[EMBEDDER_CREDENTIAL]
    bound = {name: getattr(running, name) for name in _RESTART_SETTINGS}
    return replace(new, env=env, credentials=credentials, **bound)


def _same(a: Settings, b: Settings) -> bool:
    return all(
        getattr(a, f.name) == getattr(b, f.name) for f in fields(Settings) if f.name != "demo"
    )


def _names(items: Iterable[DeploymentState]) -> str:
    return ", ".join(sorted(d.name for d in items))


def _summary(old: LiveConfig, new: LiveConfig, restart: list[str]) -> tuple[str, dict[str, object]]:
    """What changed, as the result's message and as log fields."""
    before, after = old.deployments, new.deployments
    added = [d for n, d in after.items() if n not in before]
    removed = [d for n, d in before.items() if n not in after]
    changed = [d for n, d in after.items() if n in before and before[n] is not d]
    kept = [d for n, d in after.items() if before.get(n) is d]
    parts = [
        f"{label}: {_names(items)}"
        for label, items in (("added", added), ("changed", changed), ("removed", removed))
        if items
    ]
    message = "Configuration reloaded"
    message += f" ({'; '.join(parts)})" if parts else " (deployments unchanged)"
    message += f"; {len(kept)} deployments kept as they were"
    down = [d for d in (*added, *changed) if d.probe_ok is False]
    if down:
        message += "; not answering their probe yet: " + ", ".join(
            f"{d.name} ({d.probe_error})" for d in down
        )
    if restart:
        message += f"; needs a restart (kept as running): {', '.join(restart)}"
    return message + ".", {
        "added": sorted(d.name for d in added),
        "changed": sorted(d.name for d in changed),
        "removed": sorted(d.name for d in removed),
        "kept": sorted(d.name for d in kept),
        "strategy": new.settings.env.routing_strategy.value,
        "restart_required": restart,
    }


class Reloader:
    def __init__(self, runtime: Runtime, load: SettingsLoader) -> None:
        self.runtime = runtime
        self._load = load
        self._lock = asyncio.Lock()
        self._serving = False
        # Replaced configurations waiting for their last requests, with what they must close.
        self._retiring: dict[asyncio.Task[None], list[DeploymentState]] = {}
        self._background: set[asyncio.Task[ReloadResult]] = set()

    def start(self) -> None:
        self._serving = True

    async def stop(self) -> None:
        """At shutdown: no more reloads; replaced deployments are closed now."""
        self._serving = False
        async with self._lock:
            for task in list(self._background):
                await cancel_and_wait(task)
            for drain, deployments in list(self._retiring.items()):
                await cancel_and_wait(drain)
                for d in deployments:
                    await d.provider.close()
            self._retiring.clear()

    def reload_soon(self, source: str) -> None:
        """Start a reload without waiting for it (a signal handler); its result is logged."""
        task = asyncio.get_running_loop().create_task(self.reload(source=source))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self, force: bool = False, source: str = "api") -> ReloadResult:
        started = time.perf_counter()
        async with self._lock:
            result, fields_ = await self._reload(force)
        extra = {
            "source": source,
            "force": force,
            "success": result.success,
            "detail": result.message,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            **fields_,
        }
        self.runtime.metrics.reloaded(result.success)
        if result.success:
            log.info("config_reloaded", extra=extra)
        else:
            log.warning("config_reload_failed", extra=extra)
        return result

    async def _reload(self, force: bool) -> tuple[ReloadResult, dict[str, object]]:
        runtime = self.runtime
        running = runtime.live

        def refused(message: str) -> tuple[ReloadResult, dict[str, object]]:
            return ReloadResult(False, message, int(running.loaded_at)), {}

        if not self._serving:
            return refused(
                "The gateway is not serving (starting or stopping); nothing was applied."
            )
        try:
            new = await asyncio.to_thread(self._load)  # reads a file: off the event loop
        except ConfigError as e:
            return refused(f"Configuration rejected, the running one is kept: {e}")
        except Exception as e:  # anything else a loader may raise must not end the gateway
            log.exception("config_load_failed")
            return refused(f"Configuration could not be loaded, the running one is kept: {e}")
        restart = restart_only_changes(running.settings, new)
        if restart and not force:
            return refused(
                f"Configuration not applied: {', '.join(restart)} only take effect after a "
                "restart. Restart the gateway, or reload with force to apply everything else "
                "and keep their running values."
            )
        if restart:
            new = keep_restart_only(running.settings, new)
        if _same(new, running.settings):
            note = f"; needs a restart (kept as running): {', '.join(restart)}" if restart else ""
            return (
                ReloadResult(True, f"Configuration unchanged{note}.", int(running.loaded_at)),
                {"changed": False, "restart_required": restart},
            )
        try:
            live = build_live(new, previous=running)
        except Exception as e:
            log.exception("config_build_failed")
            running.router.attach()
            return refused(f"Configuration could not be built, the running one is kept: {e}")
        # Until the swap, carried-over deployments keep telling the running router about
        # health changes (building the new one made them report to it).
        running.router.attach()
        monitor = HealthMonitor(
            live.router, interval=new.env.health_interval, pricer=runtime.health.pricer
        )
        try:
            # Probes (and discovers the models of) new deployments before they take traffic.
            await monitor.start()
        except Exception as e:
            log.exception("config_probe_failed")
            await monitor.stop()
            for d in live.deployments.values():
                if running.deployments.get(d.name) is not d:
                    await d.provider.close()
            return refused(f"New deployments could not be probed, the running one is kept: {e}")
        old_monitor = runtime.health
        runtime.live, runtime.health = live, monitor  # the swap: one step on the event loop
        live.router.attach()
        await old_monitor.stop()
        message, summary = _summary(running, live, restart)
        retired = [d for d in running.deployments.values() if live.deployments.get(d.name) is not d]
        if retired:
            self._retire(running, retired)
        return ReloadResult(True, message, int(live.loaded_at)), summary

    def _retire(self, live: LiveConfig, deployments: list[DeploymentState]) -> None:
        task = asyncio.get_running_loop().create_task(self._drain(live, deployments))
        self._retiring[task] = deployments
        task.add_done_callback(lambda t: self._retiring.pop(t, None))

    async def _drain(self, live: LiveConfig, deployments: list[DeploymentState]) -> None:
        """Close the replaced deployments' connections once no request that started on the
        old configuration runs any more (bounded by the longest a request may take)."""
        limit = max(
            [live.failover.request_timeout, *(d.config.timeouts.total for d in deployments)]
        )
        deadline = time.monotonic() + limit + DRAIN_SLACK_S
        while live.requests > 0 or any(d.in_flight for d in deployments):
            if time.monotonic() >= deadline:
                log.warning(
                    "retired_deployments_still_busy",
                    extra={"deployments": [d.name for d in deployments], "requests": live.requests},
                )
                break
            await asyncio.sleep(DRAIN_POLL_S)
        for d in deployments:
            await d.provider.close()
        log.info("deployments_retired", extra={"deployments": [d.name for d in deployments]})
