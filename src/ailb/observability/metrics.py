"""The gateway's traffic figures, counted per request in plain Python objects.

A chat request costs the gateway ~130 µs of CPU here, and prometheus-client's labelled
`.labels(...).inc()` / `.observe()` cost a lock and a few µs each -- a dozen of them would be a
tenth of the request. So a finished request is folded in once (`finish`): one dict lookup on its
(api, provider, model, deployment, status), a `bisect` per histogram and a few integer additions.
Measured by bench/metrics_cost.py on one core: 1.2-2 µs a request with the overhead header
(1.3-1.9 µs inside whole in-process requests of ~26 µs), against 12-19 µs for the same figures in
prometheus-client's labelled objects (the machine is shared: figures drift). Families are
built only when /metrics is scraped (`ailb.observability.collector`), and `snapshot()` gives the
gRPC GetMetrics figures from the same counts.

Everything here runs on the gateway's event loop; one `GatewayMetrics` per app (no global state).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Container
from typing import Protocol

from ailb.observability.histogram import DURATION_BOUNDS, OVERHEAD_BOUNDS, Histogram, quantile
from ailb.observability.snapshot import LatencySummary, MetricsSnapshot, RouteFigures

# GetMetrics' requests_per_second: requests finished in the last RATE_WINDOW_S whole seconds
# (the current, partial second excluded) divided by RATE_WINDOW_S.
RATE_WINDOW_S = 10
# GetMetrics' latency percentiles and average: requests finished in the last LATENCY_WINDOW_S
# seconds (current second included), so the figures follow the traffic rather than the uptime.
LATENCY_WINDOW_S = 60
_RING = 64  # per-second slots kept: more than either window
# A safety net on label sets. Models come from the router (unknown names are counted as ""),
# statuses from the gateway, so real traffic stays far below it.
MAX_SERIES = 4096
OVERFLOW = "_other"
STREAM_BROKEN = "upstream_stream_error"
# 429s whose error code names the limit; rate_limit_exceeded carries its own reason.
LIMIT_REASONS = {
    "budget_exceeded": "budget",
    "deployment_rate_limited": "deployment",
    "upstream_rate_limited": "upstream",
}
# Every reason and outcome starts at 0, so a dashboard's rate() has a series before the first one.
RATE_LIMIT_REASONS = (
    "key_requests",
    "key_tokens",
    "user_requests",
    "user_tokens",
    "route_requests",
    "budget",
    "deployment",
    "upstream",
)
OUTCOMES = ("hit", "miss", "degraded")


class Finished(Protocol):
    """What `finish` reads of a request (the pipeline's Exchange)."""

    @property
    def api(self) -> str: ...  # the inbound API: chat, responses, messages ...
    @property
    def started(self) -> float: ...  # perf_counter() at arrival
    @property
    def model(self) -> str | None: ...
    @property
    def plan(self) -> object: ...  # None until routed: then `model` is a served model
    @property
    def provider(self) -> str | None: ...
    @property
    def deployment(self) -> str | None: ...
    @property
    def status(self) -> int: ...
    @property
    def error(self) -> str | None: ...
    @property
    def stream(self) -> bool: ...
    @property
    def ttft(self) -> float | None: ...  # seconds to the first streamed byte
    @property
    def overhead(self) -> float | None: ...  # the gateway's own seconds (to the first byte)
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cost(self) -> float: ...
    @property
    def memory(self) -> str | None: ...
    @property
    def rag(self) -> str | None: ...


class RouteSeries:
    """One (provider, model, deployment): latency, tokens, cost, broken streams."""

    __slots__ = ("broken", "completion_tokens", "cost", "duration", "prompt_tokens", "ttft")

    def __init__(self) -> None:
        self.duration = Histogram(DURATION_BOUNDS)
        self.ttft = Histogram(DURATION_BOUNDS)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.broken = 0  # streams cut after their first byte (status 200, answer incomplete)


class Outcome:
    """One (api, provider, model, deployment, status): a count, and the route it belongs to (with
    its duration buckets at hand: one attribute less per request)."""

    __slots__ = ("count", "durations", "route")

    def __init__(self, route: RouteSeries) -> None:
        self.count = 0
        self.route = route
        self.durations = route.duration.counts


class _Second:
    """Requests finished within one second of the clock: the windows of `snapshot`."""

    __slots__ = ("count", "counts", "stamp", "sum")

    def __init__(self) -> None:
        self.stamp = -1
        self.count = 0
        self.sum = 0.0
        self.counts = [0] * (len(DURATION_BOUNDS) + 1)


class ConnectionCounter:
    """HTTP connections the server accepted (total) and holds open (active); counted by the
    uvicorn protocol wrapper in `ailb.observability.connections`."""

    __slots__ = ("active", "total")

    def __init__(self) -> None:
        self.active = 0
        self.total = 0


class GatewayMetrics:
    def __init__(
        self,
        served_models: Callable[[], Container[str]] = frozenset,
        clock: Callable[[], float] = time.perf_counter,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._served = served_models  # the router's current models (followed across reloads)
        self._clock = clock  # the clock of Exchange.started
        self._wall = wall
        self.connections = ConnectionCounter()
        self.in_flight = 0  # chat requests being served; the endpoint adds, `finish` removes
        self.outcomes: dict[tuple[str, str, str, str, int], Outcome] = {}
        self.routes: dict[tuple[str, str, str], RouteSeries] = {}
        self.overhead = Histogram(OVERHEAD_BOUNDS)
        self.overhead_stream = Histogram(OVERHEAD_BOUNDS)
        # Rare events, counted by kind when they happen.
        self.rate_limited = Counter(dict.fromkeys(RATE_LIMIT_REASONS, 0))
        self.memory = Counter(dict.fromkeys(OUTCOMES, 0))
        self.rag = Counter(dict.fromkeys(OUTCOMES, 0))
        self.reloads = Counter({"success": 0, "failure": 0})
        self._ring = [_Second() for _ in range(_RING)]
        self._sec = -1
        self._slot = self._ring[0]

    # --- per request (hot path) ---------------------------------------------------------------

    def finish(self, ex: Finished) -> None:
        """Fold one finished chat request into the counts (about 1 µs: see the module doc)."""
        end = self._clock()
        self.in_flight -= 1
        duration = end - ex.started
        model = ex.model or ""
        if ex.plan is None and model and model not in self._served():
            model = ""  # never routed and not a served model: a client's typo is not a label
        key = (ex.api, ex.provider or "", model, ex.deployment or "", ex.status)
        outcome = self.outcomes.get(key)
        if outcome is None:
            outcome = self._outcome(key)
        outcome.count += 1
        i = bisect_left(DURATION_BOUNDS, duration)
        outcome.durations[i] += 1
        route = outcome.route
        route.duration.sum += duration
        if ex.prompt_tokens or ex.completion_tokens:
            route.prompt_tokens += ex.prompt_tokens
            route.completion_tokens += ex.completion_tokens
            route.cost += ex.cost
        ttft = ex.ttft
        if ttft is not None:
            route.ttft.observe(ttft)
        overhead = ex.overhead
        if overhead is not None:  # inlined Histogram.observe: this runs for every request
            h = self.overhead_stream if ex.stream else self.overhead
            h.counts[bisect_left(OVERHEAD_BOUNDS, overhead)] += 1
            h.sum += overhead
        if ex.error == STREAM_BROKEN:
            route.broken += 1
        if ex.memory is not None:
            self.memory[ex.memory] += 1
        if ex.rag is not None:
            self.rag[ex.rag] += 1
        sec = int(end)
        if sec != self._sec:
            self._advance(sec)
        slot = self._slot
        slot.count += 1
        slot.counts[i] += 1
        slot.sum += duration

    def _outcome(self, key: tuple[str, str, str, str, int]) -> Outcome:
        if len(self.outcomes) >= MAX_SERIES:
            key = (key[0], OVERFLOW, OVERFLOW, OVERFLOW, key[4])
            if key in self.outcomes:
                return self.outcomes[key]
        rkey = (key[1], key[2], key[3])
        route = self.routes.get(rkey)
        if route is None:
            route = self.routes[rkey] = RouteSeries()
        outcome = self.outcomes[key] = Outcome(route)
        return outcome

    def _advance(self, sec: int) -> None:
        slot = self._ring[sec % _RING]
        if slot.stamp != sec:  # a slot last used _RING or more seconds ago: start it afresh
            slot.stamp = sec
            slot.count = 0
            slot.sum = 0.0
            slot.counts = [0] * (len(DURATION_BOUNDS) + 1)
        self._sec = sec
        self._slot = slot

    # --- rare events --------------------------------------------------------------------------

    def rate_limited_by(self, code: str | None, reason: str | None) -> None:
        """A 429 answered: `reason` from the limit policy, else from its error code."""
        self.rate_limited[reason or LIMIT_REASONS.get(code or "", "other")] += 1

    def reloaded(self, success: bool) -> None:
        """A configuration reload (gRPC Reload, SIGHUP, POST /api/reload) finished."""
        self.reloads["success" if success else "failure"] += 1

    # --- readers ------------------------------------------------------------------------------

    def snapshot(self) -> MetricsSnapshot:
        """Figures for gRPC GetMetrics. Totals and per-route figures count every chat request
        since start; requests_per_second and latency cover the recent windows above."""
        sec = int(self._clock())
        self._advance(sec)
        recent = 0
        window = [0] * (len(DURATION_BOUNDS) + 1)
        window_sum = 0.0
        for s in self._ring:
            age = sec - s.stamp
            if 1 <= age <= RATE_WINDOW_S:
                recent += s.count
            if 0 <= age < LATENCY_WINDOW_S:
                window_sum += s.sum
                for i, n in enumerate(s.counts):
                    window[i] += n
        count = sum(window)

        def ms(q: float) -> float:
            return round(quantile(q, DURATION_BOUNDS, window) * 1000, 3)

        latency = LatencySummary(
            p50_ms=ms(0.5),
            p90_ms=ms(0.9),
            p95_ms=ms(0.95),
            p99_ms=ms(0.99),
            avg_ms=round(window_sum / count * 1000, 3) if count else 0.0,
        )
        statuses: Counter[str] = Counter()
        per_model: dict[str, list[float]] = {}  # requests, errors, seconds
        counted: set[int] = set()
        for (_, _, model, _, status), o in list(self.outcomes.items()):
            statuses[str(status)] += o.count
            if not model or model == OVERFLOW:
                continue
            figures = per_model.setdefault(model, [0, 0, 0.0])
            figures[0] += o.count
            if status >= 500:
                figures[1] += o.count
            if id(o.route) not in counted:  # a route's seconds and broken streams once
                counted.add(id(o.route))
                figures[1] += o.route.broken
                figures[2] += o.route.duration.sum
        return MetricsSnapshot(
            timestamp=int(self._wall()),
            total_connections=self.connections.total,
            active_connections=self.connections.active,
            total_requests=sum(statuses.values()),
            requests_per_second=int(recent / RATE_WINDOW_S + 0.5),
            latency=latency,
            status_codes=dict(statuses),
            routes={
                m: RouteFigures(
                    requests=int(f[0]),
                    errors=int(f[1]),
                    avg_latency_ms=round(f[2] / f[0] * 1000, 3) if f[0] else 0.0,
                )
                for m, f in sorted(per_model.items())
            },
        )
