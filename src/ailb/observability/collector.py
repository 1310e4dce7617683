"""Prometheus families built at scrape time from the gateway's own counts.

Nothing here runs per request: `GatewayMetrics` holds plain counters, and the deployments,
audit log and vector store hold their own; a scrape reads them all once. Label values are
bounded: provider and deployment names come from the configuration, models from the router,
statuses and reasons from fixed sets -- never a key id, user, session or request id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ailb import __version__
from ailb.observability.histogram import Histogram

if TYPE_CHECKING:
    from ailb.runtime import Runtime

ROUTE = ["provider", "model", "deployment"]
DEPLOYMENT = ["deployment", "provider"]


class GatewayCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime  # read at each scrape: a reload's new router is followed

    def collect(self) -> Iterator[Metric]:
        yield from self._traffic()
        yield from self._events()
        yield from self._deployments()
        yield from self._process_state()

    def _traffic(self) -> Iterator[Metric]:
        m = self.runtime.metrics
        requests = CounterMetricFamily(
            "ailb_requests",
            "Requests answered, by inbound API (chat, responses, messages, completions, "
            "embeddings), provider, model, deployment and HTTP status (provider and deployment "
            'are "" when none answered; model is "" when it is not a served model).',
            labels=["api", *ROUTE, "status"],
        )
        for (api, provider, model, deployment, status), o in list(m.outcomes.items()):
            requests.add_metric([api, provider, model, deployment, str(status)], o.count)
        yield requests

        duration = HistogramMetricFamily(
            "ailb_request_duration_seconds",
            "Whole chat completion requests, arrival to last byte (streams included).",
            labels=ROUTE,
        )
        ttft = HistogramMetricFamily(
            "ailb_time_to_first_token_seconds",
            "Streamed requests: arrival to the first byte of the answer sent to the client.",
            labels=ROUTE,
        )
        tokens = CounterMetricFamily(
            "ailb_tokens",
            "Tokens billed (the provider's usage, else the documented estimate), by type.",
            labels=[*ROUTE, "type"],
        )
        cost = CounterMetricFamily(
            "ailb_cost_usd",
            "Cost in US dollars from the deployments' per-token prices.",
            labels=ROUTE,
        )
        broken = CounterMetricFamily(
            "ailb_streams_broken",
            "Streams cut by the upstream after their first byte (ended with an SSE error).",
            labels=ROUTE,
        )
        for key, r in list(m.routes.items()):
            labels = list(key)
            _add_histogram(duration, labels, r.duration)
            if r.ttft.count:
                _add_histogram(ttft, labels, r.ttft)
            tokens.add_metric([*labels, "prompt"], r.prompt_tokens)
            tokens.add_metric([*labels, "completion"], r.completion_tokens)
            cost.add_metric(labels, r.cost)
            broken.add_metric(labels, r.broken)
        yield from (duration, ttft, tokens, cost, broken)

        overhead = HistogramMetricFamily(
            "ailb_gateway_overhead_seconds",
            "The gateway's own time per chat request: arrival to response (streams: to the "
            "first byte) minus the time spent waiting on upstream attempts.",
            labels=["stream"],
        )
        _add_histogram(overhead, ["false"], m.overhead)
        _add_histogram(overhead, ["true"], m.overhead_stream)
        yield overhead

        yield GaugeMetricFamily(
            "ailb_requests_in_flight",
            "Chat completion requests being served now.",
            value=m.in_flight,
        )
        yield GaugeMetricFamily(
            "ailb_http_connections_active",
            "HTTP connections open to the gateway now.",
            value=m.connections.active,
        )
        yield CounterMetricFamily(
            "ailb_http_connections",
            "HTTP connections accepted since start.",
            value=m.connections.total,
        )

    def _events(self) -> Iterator[Metric]:
        m = self.runtime.metrics
        yield _by(
            "ailb_rate_limited_requests",
            "Chat requests refused with 429, by the limit that refused them.",
            "reason",
            m.rate_limited,
        )
        yield _by(
            "ailb_memory_requests",
            "Chat requests with session_id, by memory outcome (x-ailb-memory).",
            "outcome",
            m.memory,
        )
        yield _by(
            "ailb_rag_requests",
            "Chat requests with rag_collection, by retrieval outcome (x-ailb-rag).",
            "outcome",
            m.rag,
        )
        yield _by(
            "ailb_config_reloads",
            "Configuration reloads (gRPC Reload, SIGHUP, POST /api/reload), by outcome.",
            "outcome",
            m.reloads,
        )
        yield GaugeMetricFamily(
            "ailb_config_loaded_timestamp_seconds",
            "When the running configuration was loaded (start-up or the last applied reload), "
            "Unix seconds.",
            value=self.runtime.live.loaded_at,
        )
        yield _by(
            "ailb_auth_failures",
            "Requests refused by authentication (HTTP 401, gRPC UNAUTHENTICATED), by reason (the "
            "ailb.audit log).",
            "reason",
            self.runtime.auth.audit.failures,
        )

    def _deployments(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "ailb_deployment_up",
            "1 when the deployment may be chosen now (not ejected, cooling down or failing "
            "probes), else 0.",
            labels=DEPLOYMENT,
        )
        in_flight = GaugeMetricFamily(
            "ailb_deployment_in_flight",
            "Upstream attempts in flight to the deployment (streams until they end).",
            labels=DEPLOYMENT,
        )
        attempts = CounterMetricFamily(
            "ailb_upstream_attempts",
            "Upstream attempts sent to the deployment (failovers and hedges included).",
            labels=DEPLOYMENT,
        )
        errors = CounterMetricFamily(
            "ailb_upstream_errors",
            "Failed upstream attempts, by error (connect, timeout, protocol, http_5xx, "
            "http_429, http_<4xx> ...).",
            labels=[*DEPLOYMENT, "error"],
        )
        ejections = CounterMetricFamily(
            "ailb_deployment_ejections",
            "Times the deployment was ejected by passive health checking.",
            labels=DEPLOYMENT,
        )
        failovers = CounterMetricFamily(
            "ailb_failovers",
            "Requests moved to another deployment after a failed attempt, by model, the "
            "deployment that failed, the next one and the error.",
            labels=["model", "from_deployment", "to_deployment", "error"],
        )
        for d in list(self.runtime.router.deployments.values()):
            labels = [d.name, d.config.provider]
            for (model, to, error), n in list(d.failovers.items()):
                failovers.add_metric([model, d.name, to, error], n)
            up.add_metric(labels, 1 if d.available() else 0)
            in_flight.add_metric(labels, d.in_flight)
            attempts.add_metric(labels, d.requests)
            ejections.add_metric(labels, d.ejected_total)
            for error, n in list(d.errors.items()):
                errors.add_metric([*labels, error], n)
        yield from (up, in_flight, attempts, errors, ejections, failovers)

    def _process_state(self) -> Iterator[Metric]:
        rt = self.runtime
        info = GaugeMetricFamily(
            "ailb_info", "This gateway: version and module id.", labels=["version", "module_id"]
        )
        info.add_metric([__version__, rt.settings.module_id], 1)
        yield info
        # RAG's Chroma backend, and memory's own (SQLite) one when it does not share it.
        backends = {id(b): b for b in (rt.vectors, rt.memory and rt.memory.backend) if b}
        if backends:
            yield GaugeMetricFamily(
                "ailb_vector_store_degraded",
                "1 while memory/RAG answer without their store or embedder (degraded), else 0.",
                value=int(any(b.status == "degraded" for b in backends.values())),
            )


def _add_histogram(family: HistogramMetricFamily, labels: list[str], h: Histogram) -> None:
    family.add_metric(labels, h.cumulative(), h.sum)


def _by(name: str, doc: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, n in sorted(counts.items()):
        family.add_metric([value], n)
    return family
