"""Running the gateway: uvicorn on uvloop + httptools, one event loop per process."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

import uvicorn

from ailb.app import Gateway, create_app
from ailb.config import Settings, demo_deployment

log = logging.getLogger("ailb")


def apply_demo(settings: Settings) -> Settings:
    """`make run` on a fresh machine: with nothing configured, serve the mock provider so the
    README examples answer, and say so loudly. Never applied implicitly by `ailb serve`."""
    if not settings.demo:
        return settings
    if settings.deployments:
        log.info("demo_mode_skipped", extra={"reason": "deployments are configured"})
        return replace(settings, demo=False)
    log.warning(
        "DEMO MODE: no provider is configured, serving the built-in mock provider as model "
        "'mock'. Its answers are canned, not from a language model. Set OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY, OLLAMA_BASE_URL or AILB_CONFIG to serve real models.",
        extra={"demo_mode": True},
    )
    return replace(settings, deployments=(demo_deployment(),))


def log_startup(settings: Settings) -> None:
    log.info(
        "starting",
        extra={
            "http": f"{settings.env.host}:{settings.env.http_port}",
            "strategy": settings.env.routing_strategy.value,
            "deployments": [d.redacted() for d in settings.deployments],
            "demo_mode": settings.demo,
        },
    )
    if not settings.deployments:
        log.warning("no deployments configured: every model request will answer 404")


def serve(settings: Settings, load: Callable[[], Settings] | None = None) -> None:
    """Serve until SIGINT/SIGTERM. `load` re-reads the settings for a reload (SIGHUP included);
    demo mode is decided again each time, as at start-up."""
    settings = apply_demo(settings)
    log_startup(settings)
    app = create_app(settings, (lambda: apply_demo(load())) if load is not None else None)
    config = uvicorn.Config(
        app,
        host=settings.env.host,
        port=settings.env.http_port,
        loop="none",
        http=app.http_protocol,  # httptools, counting connections for the metrics
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # client addresses are not used; skips a middleware per request
        timeout_keep_alive=75,
        backlog=4096,
        # In-flight requests and streams get this long after SIGTERM; then they are cancelled.
        timeout_graceful_shutdown=settings.env.shutdown_grace,
    )
    server = GracefulServer(config, app)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(_serve(server, app))
    else:
        uvloop.run(_serve(server, app))


class GracefulServer(uvicorn.Server):
    """uvicorn's stop (close the listeners, let in-flight requests finish within
    timeout_graceful_shutdown, then the lifespan's shutdown flushes usage and memory), with the
    gateway told first so gRPC health says NOT_SERVING meanwhile.

    A SIGTERM that ends in a completed stop exits 0: uvicorn would raise the signal again
    after shutting down, and the process would then report being killed by it."""

    def __init__(self, config: uvicorn.Config, app: Gateway) -> None:
        super().__init__(config)
        self.gateway = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM:
            self.should_exit = True  # not recorded: nothing is re-raised after the stop
            return
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        started = time.monotonic()
        log.info(
            "draining",
            extra={
                "connections": len(self.server_state.connections),
                "grace_s": self.config.timeout_graceful_shutdown,
            },
        )
        await self.gateway.drain()
        await super().shutdown(sockets)
        log.info("stopped", extra={"duration_s": round(time.monotonic() - started, 3)})


async def _serve(server: uvicorn.Server, app: Gateway) -> None:
    # SIGHUP reloads the configuration (uvicorn handles only SIGINT and SIGTERM). Installed
    # before serving: a SIGHUP's default action would end the process; one that arrives before
    # start-up is done is refused and logged by the reloader.
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is not None:
        asyncio.get_running_loop().add_signal_handler(sighup, app.reloader.reload_soon, "sighup")
    await server.serve()
