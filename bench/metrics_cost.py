"""What the metrics add to one chat request, in process: `GatewayMetrics.finish`, the overhead
header and the in-flight count -- against the same figures kept with prometheus-client's own
labelled Counter/Histogram/Gauge objects; then the same two inside whole requests (the ASGI app
with the mock provider, no sockets), measured against stand-ins that do nothing, interleaved.
Pin it to one core (`taskset -c 1`); the machine's noise is a few tenths of a µs.

    .venv/bin/python bench/metrics_cost.py
"""

from __future__ import annotations

import asyncio
import gc
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import ailb.api.chat
from ailb.app import create_app
from ailb.config import DeploymentConfig, load_settings
from ailb.observability.histogram import DURATION_BOUNDS, OVERHEAD_BOUNDS
from ailb.observability.metrics import GatewayMetrics
from ailb.pipeline.exchange import Exchange
from ailb.pipeline.exchange import overhead as _overhead

ROUNDS = 200_000
REPEATS = 7


def exchange(i: int) -> Exchange:
    ex = Exchange(f"req_{i}")
    ex.started -= 0.05 + (i % 7) * 0.01  # a 50-110 ms request
    ex.model, ex.plan = "gpt-4o-mini", object()  # type: ignore[assignment]
    ex.provider, ex.deployment = "openai", ("primary", "secondary")[i % 2]
    ex.status = 200
    ex.prompt_tokens, ex.completion_tokens, ex.cost = 120, 40, 0.00004
    ex.upstream = 0.049
    return ex


def ours(exchanges: list[Exchange]) -> Callable[[], None]:
    metrics = GatewayMetrics()

    def run() -> None:
        for ex in exchanges:
            metrics.in_flight += 1
            _overhead(ex)
            metrics.finish(ex)

    return run


def prometheus_client_labelled(exchanges: list[Exchange]) -> Callable[[], None]:
    r = CollectorRegistry()
    route = ["provider", "model", "deployment"]
    requests = Counter("r_total", "", [*route, "status"], registry=r)
    duration = Histogram("d_seconds", "", route, buckets=DURATION_BOUNDS, registry=r)
    overhead = Histogram("o_seconds", "", ["stream"], buckets=OVERHEAD_BOUNDS, registry=r)
    tokens = Counter("t_total", "", [*route, "type"], registry=r)
    cost = Counter("c_total", "", route, registry=r)
    in_flight = Gauge("f", "", registry=r)

    def run() -> None:
        for ex in exchanges:
            in_flight.inc()
            o = _overhead(ex)
            assert ex.overhead is not None and o
            labels = (ex.provider or "", ex.model or "", ex.deployment or "")
            seconds = time.perf_counter() - ex.started
            requests.labels(*labels, str(ex.status)).inc()
            duration.labels(*labels).observe(seconds)
            overhead.labels("false").observe(ex.overhead)
            tokens.labels(*labels, "prompt").inc(ex.prompt_tokens)
            tokens.labels(*labels, "completion").inc(ex.completion_tokens)
            cost.labels(*labels).inc(ex.cost)
            in_flight.dec()

    return run


def per_request_us(run: Callable[[], None], n: int) -> float:
    times = []
    for _ in range(REPEATS):
        gc.collect()
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(times)


async def in_a_request(n: int = 3000, rounds: int = 20) -> tuple[float, float]:
    """CPU µs of a whole chat request, with the real finish + header and with no-op stand-ins."""
    data_dir = tempfile.mkdtemp(prefix="ailb-metrics-cost-")
    env = {"AILB_DATA_DIR": data_dir, "ENABLE_MEMORY": "false", "ENABLE_GRPC": "false"}
    settings = replace(
        load_settings(env),
        deployments=(DeploymentConfig(name="mock", provider="mock", models=("mock",)),),
    )
    app = create_app(settings)
    metrics = app.runtime.metrics
    real = (metrics.finish, ailb.api.chat.overhead)

    def finish(ex: Any) -> None:
        metrics.in_flight -= 1

    def header(ex: Any, elapsed: float | None = None) -> tuple[bytes, bytes]:
        return (b"x-ailb-overhead-ms", b"0.000")

    body = msgspec.json.encode({"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
    scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        pass

    times: dict[bool, list[float]] = {True: [], False: []}
    async with app.api.router.lifespan_context(app.api):
        for _ in range(n):
            await app(dict(scope), receive, send)
        for _ in range(rounds):
            for on in (True, False):
                metrics.finish, ailb.api.chat.overhead = real if on else (finish, header)  # type: ignore[method-assign]
                gc.collect()
                t = time.process_time()
                for _ in range(n):
                    await app(dict(scope), receive, send)
                times[on].append((time.process_time() - t) / n * 1e6)
    ailb.api.chat.overhead = real[1]
    return statistics.median(times[True]), statistics.median(times[False])


def main() -> None:
    # A few requests' objects reused: each request's Exchange is in the cache when it finishes.
    exchanges = [exchange(i) for i in range(64)] * (ROUNDS // 64)
    n = len(exchanges)
    for name, make in (
        ("ailb (finish + header)", ours),
        ("prometheus-client labelled", prometheus_client_labelled),
    ):
        print(f"{name:28s} {per_request_us(make(exchanges), n):6.2f} µs per request")
    logging.disable(logging.CRITICAL)  # the access log off: its own cost is not measured here
    with_metrics, without = asyncio.run(in_a_request())
    print(
        f"a whole in-process request   {with_metrics:6.2f} µs with, {without:.2f} µs without: "
        f"{with_metrics - without:.2f} µs"
    )


if __name__ == "__main__":
    main()
