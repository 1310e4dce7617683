"""A deployment at run time: its provider, load, latency, health and counters."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ailb.billing.prices import FREE, LOCAL_PROVIDERS, UNPRICED, Price
from ailb.config import DeploymentConfig
from ailb.providers.base import Provider, UpstreamError


class LatencyWindow:
    """The most recent samples (seconds), for percentiles, plus a decaying average."""

    __slots__ = ("_samples", "alpha", "ewma")

    def __init__(self, size: int = 512, alpha: float = 0.2) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self.alpha = alpha
        self.ewma: float | None = None

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        e = self.ewma
        self.ewma = seconds if e is None else e + self.alpha * (seconds - e)

    def percentile(self, q: float) -> float | None:
        if not self._samples:
            return None
        s = sorted(self._samples)
        return s[min(len(s) - 1, int(q * len(s)))]

    def __len__(self) -> int:
        return len(self._samples)


def configured_price(config: DeploymentConfig) -> Price:
    """A deployment's price from its configuration alone: its rates where set, nothing for a
    local provider, unknown (costing nothing, said so) otherwise."""
    base = FREE if config.provider in LOCAL_PROVIDERS else UNPRICED
    return base.with_overrides(config.input_cost_per_1m, config.output_cost_per_1m)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Passive outlier ejection (Envoy-style): `failures_to_eject` consecutive failures eject a
    deployment for `base_ejection_s` x times ejected (capped); success shrinks that count."""

    failures_to_eject: int = 3
    base_ejection_s: float = 5.0
    max_ejection_s: float = 300.0


class HealthEpoch:
    """Bumped whenever a deployment's selectability changes (ejection, cool-down, probe result),
    so the router can cache its pools and rebuild them only then."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> None:
        self.n += 1


@dataclass(eq=False)
class DeploymentState:
    config: DeploymentConfig
    provider: Provider
    policy: HealthPolicy = field(default_factory=HealthPolicy)
    clock: Callable[[], float] = time.monotonic
    # Public model name -> upstream model name; configured, plus discovered when none configured.
    models: dict[str, str] = field(default_factory=dict)
    # Which of `models` are embedding models (served on /v1/embeddings only): from the config.
    embedding: frozenset[str] = frozenset()
    in_flight: int = 0
    requests: int = 0
    successes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    ttft: LatencyWindow = field(default_factory=LatencyWindow)
    # Decaying average of time to first token (streams) or whole request: what
    # latency_optimized ranks by.
    speed: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    # Health
    probe_ok: bool | None = None  # None: never probed
    probe_error: str | None = None
    consecutive_failures: int = 0
    ejections: int = 0  # shrinks as the deployment recovers: the next ejection's multiplier
    ejected_total: int = 0  # every ejection since start (the metrics' counter)
    ejected_until: float = 0.0
    # Requests moved from this deployment to another after a failed attempt, by
    # (model, next deployment, error label): the metrics' ailb_failovers_total.
    failovers: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    cooldown_until: float = 0.0  # after a 429: not selected until then
    epoch: HealthEpoch = field(default_factory=HealthEpoch)  # shared with the router
    # Public model name -> its price, set by ailb.billing.catalog.Pricer once looked up.
    prices: dict[str, Price] = field(default_factory=dict)
    default_price: Price = UNPRICED  # a model not (yet) priced: the configuration's alone

    def __post_init__(self) -> None:
        self.models = self.config.served_models()
        self.embedding = self.config.embedding_names()
        self.default_price = configured_price(self.config)

    @property
    def name(self) -> str:
        return self.config.name

    def available(self, now: float | None = None) -> bool:
        """Selectable now: not ejected, not cooling down after a 429, not failing probes."""
        now = self.clock() if now is None else now
        return (
            now >= self.ejected_until and now >= self.cooldown_until and self.probe_ok is not False
        )

    def health(self) -> str:
        now = self.clock()
        if now < self.ejected_until:
            return "ejected"
        if now < self.cooldown_until:
            return "cooling_down"
        if self.probe_ok is False:
            return "down"
        if self.probe_ok is None and self.requests == 0:
            return "unknown"
        return "up"

    # --- bookkeeping around one attempt ---------------------------------------------------

    def begin(self) -> None:
        self.in_flight += 1
        self.requests += 1

    def end(self) -> None:
        self.in_flight -= 1

    def record_success(self, latency_s: float, ttft_s: float | None = None) -> None:
        self.successes += 1
        self.latency.add(latency_s)
        if ttft_s is not None:
            self.ttft.add(ttft_s)
        sample = latency_s if ttft_s is None else ttft_s
        self.speed = sample if self.speed is None else self.speed + 0.2 * (sample - self.speed)
        self.consecutive_failures = 0
        if self.ejections and self.clock() >= self.ejected_until:
            # Recovering: each success after an ejection shortens the next one.
            self.ejections -= 1
        if self.probe_ok is False:
            self.epoch.bump()
        self.probe_ok = True

    def price(self, model: str) -> Price:
        """What `model` (a public name) costs here: priced by ailb.billing.catalog, else what
        the configuration alone says."""
        return self.prices.get(model, self.default_price)

    def record_usage(
        self, model: str, prompt: int, completion: int, cached: int = 0, written: int = 0
    ) -> float:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        cost = self.price(model).cost(prompt, completion, cached, written)
        self.cost_usd += cost
        return cost

    def record_failure(self, err: UpstreamError) -> bool:
        """Count a failure; returns True when it ejected the deployment."""
        self.errors[err.label] += 1
        if err.client_fault:
            return False  # the client's own bad request says nothing about the provider
        now = self.clock()
        if err.kind == "status" and err.status == 429:
            self.cooldown_until = max(self.cooldown_until, now + (err.retry_after or 1.0))
            self.epoch.bump()
            return False
        if err.kind == "status" and err.status in (401, 403):
            return self._eject(now, force=True)  # bad credentials: out until they are fixed
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.policy.failures_to_eject:
            return self._eject(now)
        return False

    def _eject(self, now: float, force: bool = False) -> bool:
        if now < self.ejected_until and not force:
            return False
        self.ejections += 1
        self.ejected_total += 1
        duration = min(self.policy.base_ejection_s * self.ejections, self.policy.max_ejection_s)
        self.ejected_until = now + duration
        self.consecutive_failures = 0
        self.epoch.bump()
        return True

    def record_probe(self, ok: bool, error: str | None = None) -> None:
        if (self.probe_ok is False) != (not ok):
            self.epoch.bump()
        self.probe_ok = ok
        self.probe_error = error

    def snapshot(self) -> dict[str, Any]:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 3)

        now = self.clock()
        return {
            "provider": self.config.provider,
            "health": self.health(),
            "requests": self.requests,
            "successes": self.successes,
            "errors": dict(self.errors),
            "in_flight": self.in_flight,
            "latency_ms": {
                "p50": ms(self.latency.percentile(0.5)),
                "p95": ms(self.latency.percentile(0.95)),
                "avg": ms(self.latency.ewma),
            },
            "ttft_ms": {
                "p50": ms(self.ttft.percentile(0.5)),
                "p95": ms(self.ttft.percentile(0.95)),
            },
            "ejections": self.ejections,
            "ejected_for_s": round(max(0.0, self.ejected_until - now), 3),
            "cooldown_for_s": round(max(0.0, self.cooldown_until - now), 3),
            "probe_error": self.probe_error,
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "cost_usd": round(self.cost_usd, 6),
            "models": sorted(self.models),
            "prices": {m: self.price(m).describe() for m in sorted(self.models)},
            "unpriced_models": sorted(m for m in self.models if not self.price(m).known),
        }
