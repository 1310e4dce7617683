"""Choosing deployments: capability matching, then a strategy, then a failover order."""

from __future__ import annotations

import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ailb.config import ModelSettings, RoutingStrategy
from ailb.errors import InvalidRequest, ModelNotFound, ServiceUnavailable
from ailb.routing.deployment import DeploymentState


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request requires of a deployment."""

    tools: bool = False
    images: bool = False
    json_mode: bool = False
    streaming: bool = False
    prompt_tokens: int = 0
    max_tokens: int = 0

    @property
    def demanding(self) -> bool:
        """Needs a capability some deployment may lack."""
        return self.tools or self.images or self.json_mode or self.streaming


@dataclass(frozen=True, slots=True)
class Target:
    deployment: DeploymentState
    upstream_model: str


class Plan:
    """Where one request may go: `first` is the strategy's choice; the failover order of the
    others is computed only when an attempt fails (most requests never need it)."""

    __slots__ = (
        "_key",
        "_pool",
        "_targets",
        "first",
        "hedging",
        "model",
        "panic",
        "prompt_tokens",
        "reason",
        "strategy",
    )

    def __init__(
        self,
        model: str,
        strategy: RoutingStrategy,
        first: DeploymentState,
        pool: list[DeploymentState],
        fallback_key: Callable[[DeploymentState], Any],
        reason: str,
        panic: bool = False,
        hedging: bool = False,
        prompt_tokens: int = 0,
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.first = Target(first, first.models[model])
        self._pool = pool
        self._key = fallback_key
        self._targets: list[Target] | None = None
        self.reason = reason
        self.panic = panic
        self.hedging = hedging
        self.prompt_tokens = prompt_tokens  # the estimate, for attempts that report no usage

    def __len__(self) -> int:
        return len(self._pool)

    def target(self, i: int) -> Target:
        if i == 0:
            return self.first
        return self.targets[i]

    @property
    def targets(self) -> list[Target]:
        if self._targets is None:
            first = self.first.deployment
            rest = sorted((d for d in self._pool if d is not first), key=self._key)
            self._targets = [self.first, *(Target(d, d.models[self.model]) for d in rest)]
        return self._targets

    def candidates(self, limit: int = 10) -> list[str]:
        return [d.name for d in self._pool[:limit]]


class Router:
    EXPLORE_SHARE = 0.06  # latency_optimized: share of traffic spread over the non-fastest

    def __init__(
        self,
        deployments: Iterable[DeploymentState],
        strategy: RoutingStrategy,
        model_settings: Mapping[str, ModelSettings] | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        affinity_size: int = 100_000,
    ) -> None:
        self.deployments: dict[str, DeploymentState] = {d.name: d for d in deployments}
        self.strategy = strategy
        self.model_settings = dict(model_settings or {})
        self._rng = rng or random.Random()
        self._clock = clock
        self._weights: dict[str, dict[str, int]] = {}  # model -> deployment -> weight override
        self._rr: dict[str, dict[str, float]] = {}  # smooth weighted round robin state
        self._affinity: OrderedDict[str, str] = OrderedDict()
        self._affinity_size = affinity_size
        self.selections: dict[str, Counter[str]] = {}
        self._index: dict[str, list[DeploymentState]] = {}
        self.rebuild_index()

    # --- model index ------------------------------------------------------------------------

    def rebuild_index(self) -> None:
        """Recompute which deployments serve which model (after discovery or reload)."""
        index: dict[str, list[DeploymentState]] = {}
        for d in self.deployments.values():
            for model in d.models:
                index.setdefault(model, []).append(d)
        self._index = index

    def models(self) -> dict[str, list[DeploymentState]]:
        return self._index

    def strategy_for(self, model: str) -> RoutingStrategy:
        ms = self.model_settings.get(model)
        return ms.strategy if ms is not None and ms.strategy is not None else self.strategy

    # --- weights ----------------------------------------------------------------------------

    def weight(self, d: DeploymentState, model: str) -> int:
        override = self._weights.get(model)
        if override is not None and d.name in override:
            return override[d.name]
        return d.config.weight

    def set_weights(self, model: str, weights: Mapping[str, int]) -> None:
        """Replace traffic weights for one model at run time; validates everything first."""
        serving = {d.name for d in self._index.get(model, ())}
        if not serving:
            raise KeyError(f"unknown model {model!r}")
        for name, w in weights.items():
            if name not in serving:
                raise KeyError(f"deployment {name!r} does not serve model {model!r}")
            if not 0 <= w <= 1000:
                raise ValueError(f"weight for {name!r} must be between 0 and 1000, got {w}")
        self._weights.setdefault(model, {}).update(weights)
        self._rr.pop(model, None)

    def weights(self, model: str) -> dict[str, int]:
        return {d.name: self.weight(d, model) for d in self._index.get(model, ())}

    # --- planning ---------------------------------------------------------------------------

    def plan(self, model: str, needs: Needs, session_id: str | None = None) -> Plan:
        serving = self._index.get(model)
        if not serving:
            raise ModelNotFound(model)
        now = self._clock()
        demanding = needs.demanding
        able = fitting = False
        weighted: list[DeploymentState] = []
        pool: list[DeploymentState] = []
        for d in serving:  # one pass: this runs for every request
            if demanding and not _capable(d, needs):
                continue
            able = True
            if not _fits(d, needs):
                continue
            fitting = True
            if self.weight(d, model) <= 0:
                continue
            weighted.append(d)
            if d.available(now):
                pool.append(d)
        if not able:
            what, param = _missing_capability(serving, needs)
            raise InvalidRequest(
                f"No deployment of model `{model}` supports {what}.",
                param=param,
                code="unsupported_feature",
            )
        if not fitting:
            raise InvalidRequest(
                f"The request needs about {needs.prompt_tokens + needs.max_tokens} tokens, more "
                f"than the context window of any deployment of `{model}`.",
                param="messages",
                code="context_length_exceeded",
            )
        if not weighted:
            raise ServiceUnavailable(f"Model `{model}` has no deployment with traffic weight.")

        panic = not pool
        if panic:
            pool = _panic_order(weighted)
        strategy = self.strategy_for(model)

        first: DeploymentState | None = None
        reason = strategy.value
        if session_id is not None:
            sticky = self._affinity.get(session_id)
            if sticky is not None:
                first = next((d for d in pool if d.name == sticky), None)
                if first is not None:
                    self._affinity.move_to_end(session_id)
                    reason = "session_affinity"
        if first is None:
            first = pool[0] if panic else self._choose(strategy, model, pool, needs)
            if session_id is not None:
                self._remember(session_id, first.name)
        if panic:
            reason = f"panic:{reason}"
        counter = self.selections.get(model)
        if counter is None:
            counter = self.selections[model] = Counter()
        counter[first.name] += 1
        ms = self.model_settings.get(model)
        return Plan(
            model,
            strategy,
            first,
            pool,
            self._fallback_key(strategy, model, needs),
            reason,
            panic,
            hedging=ms is not None and ms.hedging,
            prompt_tokens=needs.prompt_tokens,
        )

    def _remember(self, session_id: str, name: str) -> None:
        self._affinity[session_id] = name
        self._affinity.move_to_end(session_id)
        while len(self._affinity) > self._affinity_size:
            self._affinity.popitem(last=False)

    def _fallback_key(
        self, strategy: RoutingStrategy, model: str, needs: Needs
    ) -> Callable[[DeploymentState], Any]:
        if strategy is RoutingStrategy.COST_OPTIMIZED:
            return lambda d: (_cost(d, needs), _latency(d))
        if strategy is RoutingStrategy.LATENCY_OPTIMIZED:
            return _latency
        return lambda d: (d.config.priority, d.in_flight / max(1, self.weight(d, model)))

    # --- strategies -------------------------------------------------------------------------

    def _choose(
        self, strategy: RoutingStrategy, model: str, pool: list[DeploymentState], needs: Needs
    ) -> DeploymentState:
        if len(pool) == 1:
            return pool[0]
        if strategy is RoutingStrategy.ROUND_ROBIN:
            return self._round_robin(model, pool)
        if strategy is RoutingStrategy.RANDOM:
            return self._weighted_random(model, pool)
        if strategy is RoutingStrategy.LATENCY_OPTIMIZED:
            return self._latency_optimized(pool)
        if strategy is RoutingStrategy.COST_OPTIMIZED:
            return min(pool, key=lambda d: (_cost(d, needs), _latency(d)))
        if strategy is RoutingStrategy.FAILOVER:
            return min(pool, key=lambda d: d.config.priority)  # stable: config order breaks ties
        return self._least_loaded(model, pool)

    def _weighted_random(self, model: str, pool: list[DeploymentState]) -> DeploymentState:
        weights = [self.weight(d, model) for d in pool]
        return self._rng.choices(pool, weights=weights)[0]

    def _round_robin(self, model: str, pool: list[DeploymentState]) -> DeploymentState:
        # nginx's smooth weighted round robin: exact proportions, evenly interleaved.
        state = self._rr.setdefault(model, {})
        total = 0
        best: DeploymentState | None = None
        for d in pool:
            w = self.weight(d, model)
            total += w
            state[d.name] = state.get(d.name, 0.0) + w
            if best is None or state[d.name] > state[best.name]:
                best = d
        assert best is not None
        state[best.name] -= total
        return best

    def _least_loaded(self, model: str, pool: list[DeploymentState]) -> DeploymentState:
        # Power of two choices, drawn by weight, then the lower in-flight per unit of weight:
        # follows the weights when idle and steers away from a backed-up deployment under load.
        a = self._weighted_random(model, pool)
        b = self._weighted_random(model, pool)
        if a is b:
            return a
        la = (a.in_flight + 1) / self.weight(a, model)
        lb = (b.in_flight + 1) / self.weight(b, model)
        return a if la <= lb else b

    def _latency_optimized(self, pool: list[DeploymentState]) -> DeploymentState:
        unmeasured = [d for d in pool if d.speed is None]
        if unmeasured:
            return self._rng.choice(unmeasured)
        fastest = min(pool, key=_latency)
        if self._rng.random() < self.EXPLORE_SHARE:
            others = [d for d in pool if d is not fastest]
            return self._rng.choice(others)
        return fastest

    def stats(self) -> dict[str, Any]:
        return {
            model: {
                "strategy": self.strategy_for(model).value,
                "deployments": [d.name for d in deps],
                "weights": self.weights(model),
                "selections": dict(self.selections.get(model, {})),
            }
            for model, deps in sorted(self._index.items())
        }


def _latency(d: DeploymentState) -> float:
    return d.speed if d.speed is not None else 0.0


def _cost(d: DeploymentState, needs: Needs) -> float:
    out_tokens = needs.max_tokens or 256  # typical answer when the client sets no limit
    return (
        needs.prompt_tokens * d.config.input_cost_per_1m + out_tokens * d.config.output_cost_per_1m
    )


def _capable(d: DeploymentState, needs: Needs) -> bool:
    c = d.config.capabilities
    return (
        (c.tools or not needs.tools)
        and (c.images or not needs.images)
        and (c.json_mode or not needs.json_mode)
        and (c.streaming or not needs.streaming)
    )


def _missing_capability(serving: list[DeploymentState], needs: Needs) -> tuple[str, str]:
    for attr, what, param in (
        ("tools", "tools", "tools"),
        ("images", "image input", "messages"),
        ("json_mode", "JSON mode", "response_format"),
        ("streaming", "streaming", "stream"),
    ):
        if getattr(needs, attr) and not any(getattr(d.config.capabilities, attr) for d in serving):
            return what, param
    return "this combination of features", "messages"


def _fits(d: DeploymentState, needs: Needs) -> bool:
    cw = d.config.context_window
    return cw is None or needs.prompt_tokens + needs.max_tokens <= cw


def _panic_order(pool: list[DeploymentState]) -> list[DeploymentState]:
    # Every deployment is out: try the one whose ejection ends soonest first.
    return sorted(pool, key=lambda d: max(d.ejected_until, d.cooldown_until))
