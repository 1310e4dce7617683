"""Running the gateway: uvicorn on uvloop + httptools, one event loop per process."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import uvicorn

from ailb.app import create_app
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


def serve(settings: Settings) -> None:
    settings = apply_demo(settings)
    log_startup(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.env.host,
        port=settings.env.http_port,
        loop="none",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # client addresses are not used; skips a middleware per request
        timeout_keep_alive=75,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(server.serve())
    else:
        uvloop.run(server.serve())
