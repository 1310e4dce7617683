"""Choosing deployments: capability matching, then a strategy, then a failover order."""

from __future__ import annotations

import bisect
import functools
import itertools
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ailb.config import ModelSettings, RoutingStrategy
from ailb.errors import APIError, InvalidRequest, ModelNotFound, ServiceUnavailable
from ailb.routing.deployment import DeploymentState, HealthEpoch


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request requires of a deployment."""

    tools: bool = False
    images: bool = False
    json_mode: bool = False
    streaming: bool = False
    prompt_tokens: int = 0
    max_tokens: int = 0
    embedding: bool = False  # an embeddings request: only deployments' embedding models serve

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
    others is computed only when an attempt fails (most requests never need it). After the
    pool come, as a last resort, the model's deployments that are ejected or cooling down
    (soonest back first): when every selectable one has failed this request, one of them may
    be up again, and trying it beats an error (Envoy's panic mode, per request)."""

    __slots__ = (
        "_key",
        "_pool",
        "_reserve",
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
        reserve: Sequence[DeploymentState] = (),
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.first = Target(first, first.models[model])
        self._pool = pool
        self._reserve = reserve
        self._key = fallback_key
        self._targets: list[Target] | None = None
        self.reason = reason
        self.panic = panic
        self.hedging = hedging
        self.prompt_tokens = prompt_tokens  # the estimate, for attempts that report no usage

    def __len__(self) -> int:
        return len(self._pool) + len(self._reserve)

    def target(self, i: int) -> Target:
        if i == 0:
            return self.first
        return self.targets[i]

    @property
    def targets(self) -> list[Target]:
        if self._targets is None:
            first = self.first.deployment
            rest = sorted((d for d in self._pool if d is not first), key=self._key)
            rest.extend(self._reserve)
            self._targets = [self.first, *(Target(d, d.models[self.model]) for d in rest)]
        return self._targets

    def candidates(self, limit: int = 10) -> list[str]:
        return [d.name for d in self._pool[:limit]]


class _Pool:
    """A model's deployments for one capability mask, precomputed so that a routing decision
    touches no more than it must. Valid while the health epoch is unchanged and no ejection or
    cool-down has run out (`valid_until`)."""

    __slots__ = (
        "capable",
        "cum",
        "epoch",
        "error",
        "first_by_priority",
        "frontier",
        "min_window",
        "model",
        "panic",
        "pool",
        "reserve",
        "rr",
        "total",
        "unmeasured",
        "valid_until",
        "weights",
    )

    def __init__(self) -> None:
        self.epoch = -1
        self.valid_until = 0.0
        self.model = ""
        # Why nothing can be planned, as a maker of a fresh exception: one object raised again
        # and again would grow its traceback by the raising frames each time, and with them
        # every request's body (DESIGN §8).
        self.error: Callable[[], APIError] | None = None
        self.capable: list[DeploymentState] = []
        self.pool: list[DeploymentState] = []
        self.reserve: list[DeploymentState] = []  # not selectable now: the last resort
        self.panic = False
        self.weights: list[int] = []
        self.cum: list[int] = []
        self.total = 0
        self.min_window = float("inf")
        self.rr: list[float] = []
        self.unmeasured: list[DeploymentState] = []
        self.frontier: list[DeploymentState] = []
        self.first_by_priority: DeploymentState | None = None


EMBEDDING = 16  # the capability mask's bit for embeddings requests


def wrong_kind(model: str, embedding: bool) -> InvalidRequest:
    """A chat request to an embedding model, or the other way round."""
    if embedding:
        message = (
            f"The model `{model}` is not an embedding model on this gateway (a deployment "
            "declares its embedding models in `embedding_models`); it answers on the chat "
            "endpoints."
        )
    else:
        message = (
            f"The model `{model}` is an embedding model: it answers on POST /v1/embeddings only."
        )
    return InvalidRequest(message, param="model", code="model_not_supported")


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
        self._epoch = HealthEpoch()
        self.attach()
        self.strategy = strategy
        self.model_settings = dict(model_settings or {})
        self._rng = rng or random.Random()
        self._clock = clock
        self._weights: dict[str, dict[str, int]] = {}  # model -> deployment -> weight override
        self._rr_state: dict[str, dict[str, float]] = {}  # smooth weighted round robin, by name
        self._affinity: OrderedDict[str, str] = OrderedDict()
        self._affinity_size = affinity_size
        self.selections: dict[str, Counter[str]] = {}
        self._index: dict[str, list[DeploymentState]] = {}
        self.native_responses: frozenset[str] = frozenset()
        self._pools: dict[tuple[str, int], _Pool] = {}
        # Pools for prompts too long for some deployments, keyed by the deployments that fit:
        # few distinct sets exist, and caching them keeps round-robin positions moving.
        self._fitting_pools: dict[tuple[str, int, tuple[str, ...]], _Pool] = {}
        self.rebuild_index()

    # --- model index ------------------------------------------------------------------------

    def rebuild_index(self) -> None:
        """Recompute which deployments serve which model (after discovery or reload)."""
        index: dict[str, list[DeploymentState]] = {}
        for d in self.deployments.values():
            for model in d.models:
                index.setdefault(model, []).append(d)
        self._index = index
        # Models whose every deployment speaks the Responses API itself: that face passes their
        # requests through (asked per request, so worked out here).
        self.native_responses = frozenset(
            m for m, deps in index.items() if all(d.config.responses == "native" for d in deps)
        )
        self._epoch.bump()

    def models(self) -> dict[str, list[DeploymentState]]:
        return self._index

    def context_window(self, model: str) -> int | None:
        """The smallest configured context window among the model's deployments (None: none
        configured): remembered context is sized to fit every deployment, not narrow the pool."""
        windows = [
            d.config.context_window
            for d in self._index.get(model, ())
            if d.config.context_window is not None
        ]
        return min(windows) if windows else None

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
        self._rr_state.pop(model, None)
        self._epoch.bump()

    def weights(self, model: str) -> dict[str, int]:
        return {d.name: self.weight(d, model) for d in self._index.get(model, ())}

    def attach(self) -> None:
        """Make this router the one its deployments tell about health changes (a deployment
        carried over by a reload serves one router at a time)."""
        for d in self.deployments.values():
            d.epoch = self._epoch
        self._epoch.bump()

    def carry_over(self, old: Router) -> None:
        """Take over a replaced router's run-time state (a configuration reload): weights set
        at run time, for deployments still configured (they win over the file's weights);
        session affinity, so conversations keep their deployment; selection counts. The two
        share affinity and counts: requests that started before the swap still plan on the old
        one."""
        for model, overrides in old._weights.items():
            kept = {name: w for name, w in overrides.items() if name in self.deployments}
            if kept:
                self._weights[model] = kept
        self._affinity = old._affinity
        self.selections = old.selections
        self._epoch.bump()

    # --- planning ---------------------------------------------------------------------------

    def plan(self, model: str, needs: Needs, session_id: str | None = None) -> Plan:
        mask = needs.tools | needs.images << 1 | needs.json_mode << 2 | needs.streaming << 3
        if needs.embedding:
            mask |= EMBEDDING
        now = self._clock()
        entry = self._pools.get((model, mask))
        if entry is None or entry.epoch != self._epoch.n or now >= entry.valid_until:
            entry = self._build(model, mask, needs, now)
        if entry.error is not None:
            raise entry.error()
        if needs.prompt_tokens + needs.max_tokens > entry.min_window and not needs.embedding:
            # (An embeddings request's estimate sums its inputs; a window bounds each one.)
            entry = self._build_fitting(model, mask, entry, needs, now)
        pool = entry.pool
        panic = entry.panic
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
            first = pool[0] if panic or len(pool) == 1 else self._choose(strategy, entry, needs)
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
            reserve=entry.reserve,
        )

    def _build(self, model: str, mask: int, needs: Needs, now: float) -> _Pool:
        old = self._pools.get((model, mask))
        if old is not None and old.rr:
            # Round-robin positions carry over, so the interleaving survives a rebuild.
            state = self._rr_state.setdefault(model, {})
            for d, v in zip(old.pool, old.rr, strict=True):
                state[d.name] = v
        serving = self._index.get(model)
        if not serving:
            # Not remembered: names nobody serves are the client's to invent, without end.
            self._pools.pop((model, mask), None)  # served once, perhaps, but no longer
            raise ModelNotFound(model)
        entry = _Pool()
        entry.epoch = self._epoch.n
        # A model is a chat model or an embedding model (on each deployment that serves it).
        of_kind = [d for d in serving if (model in d.embedding) is needs.embedding]
        capable = [d for d in of_kind if _capable(d, needs)] if mask & ~EMBEDDING else of_kind
        if not of_kind:
            entry.error = functools.partial(wrong_kind, model, needs.embedding)
        elif not capable:
            what, param = _missing_capability(of_kind, needs)
            entry.error = functools.partial(
                InvalidRequest,
                f"No deployment of model `{model}` supports {what}.",
                param=param,
                code="unsupported_feature",
            )
        entry.capable = capable
        windows = [d.config.context_window for d in capable]
        entry.min_window = min((w for w in windows if w is not None), default=float("inf"))
        self._fill(model, entry, capable, now)
        self._pools[(model, mask)] = entry
        return entry

    def _build_fitting(self, model: str, mask: int, base: _Pool, needs: Needs, now: float) -> _Pool:
        """The pool for a prompt too long for some deployments of the model."""
        fitting = [d for d in base.capable if _fits(d, needs)]
        if not fitting:
            raise InvalidRequest(
                f"The request needs about {needs.prompt_tokens + needs.max_tokens} tokens, more "
                f"than the context window of any deployment of `{model}`.",
                param="messages",
                code="context_length_exceeded",
            )
        key = (model, mask, tuple(d.name for d in fitting))
        old = self._fitting_pools.get(key)
        if old is not None and old.epoch == self._epoch.n and now < old.valid_until:
            if old.error is not None:
                raise old.error()
            return old
        if len(self._fitting_pools) > 1024:  # bounded: distinct fitting sets are few
            self._fitting_pools.clear()
        entry = _Pool()
        entry.epoch = self._epoch.n
        entry.capable = fitting
        self._fill(model, entry, fitting, now)
        if old is not None and old.rr and entry.rr:
            carried = dict(zip((d.name for d in old.pool), old.rr, strict=True))
            entry.rr = [carried.get(d.name, v) for d, v in zip(entry.pool, entry.rr, strict=True)]
        self._fitting_pools[key] = entry
        if entry.error is not None:
            raise entry.error()
        return entry

    def _fill(self, model: str, entry: _Pool, eligible: list[DeploymentState], now: float) -> None:
        entry.model = model
        if entry.error is not None:
            return
        weighted = [d for d in eligible if self.weight(d, model) > 0]
        if not weighted:
            entry.error = functools.partial(
                ServiceUnavailable, f"Model `{model}` has no deployment with traffic weight."
            )
            return
        pool = [d for d in weighted if d.available(now)]
        entry.panic = not pool
        entry.pool = pool or _panic_order(weighted)
        entry.reserve = _panic_order([d for d in weighted if d not in pool]) if pool else []
        ends = [t for d in weighted for t in (d.ejected_until, d.cooldown_until) if t > now]
        entry.valid_until = min(ends, default=float("inf"))
        entry.weights = [max(1, self.weight(d, model)) for d in entry.pool]
        entry.cum = list(itertools.accumulate(entry.weights))
        entry.total = entry.cum[-1]
        state = self._rr_state.setdefault(model, {})
        entry.rr = [state.get(d.name, 0.0) for d in entry.pool]
        entry.unmeasured = [d for d in entry.pool if d.speed is None]
        entry.frontier = _cost_frontier(entry.pool, model)
        entry.first_by_priority = min(entry.pool, key=_priority)  # stable: config order ties

    def _remember(self, session_id: str, name: str) -> None:
        self._affinity[session_id] = name
        self._affinity.move_to_end(session_id)
        while len(self._affinity) > self._affinity_size:
            self._affinity.popitem(last=False)

    def _fallback_key(
        self, strategy: RoutingStrategy, model: str, needs: Needs
    ) -> Callable[[DeploymentState], Any]:
        if strategy is RoutingStrategy.COST_OPTIMIZED:
            return lambda d: (_cost(d, model, needs), _latency(d))
        if strategy is RoutingStrategy.LATENCY_OPTIMIZED:
            return _latency
        return lambda d: (d.config.priority, d.in_flight / max(1, self.weight(d, model)))

    # --- strategies -------------------------------------------------------------------------

    def _choose(self, strategy: RoutingStrategy, entry: _Pool, needs: Needs) -> DeploymentState:
        if strategy is RoutingStrategy.LOAD_BALANCED:
            return self._least_loaded(entry)
        if strategy is RoutingStrategy.ROUND_ROBIN:
            return self._round_robin(entry)
        if strategy is RoutingStrategy.RANDOM:
            return self._weighted_random(entry)
        if strategy is RoutingStrategy.LATENCY_OPTIMIZED:
            return self._latency_optimized(entry)
        if strategy is RoutingStrategy.COST_OPTIMIZED:
            return min(entry.frontier, key=lambda d: (_cost(d, entry.model, needs), _latency(d)))
        assert entry.first_by_priority is not None
        return entry.first_by_priority

    def _weighted_random(self, entry: _Pool) -> DeploymentState:
        return entry.pool[bisect.bisect_right(entry.cum, self._rng.random() * entry.total)]

    def _round_robin(self, entry: _Pool) -> DeploymentState:
        # nginx's smooth weighted round robin: exact proportions, evenly interleaved.
        rr, weights = entry.rr, entry.weights
        best, best_value = 0, -1e300
        for i, w in enumerate(weights):
            v = rr[i] + w
            rr[i] = v
            if v > best_value:
                best, best_value = i, v
        rr[best] -= entry.total
        return entry.pool[best]

    def _least_loaded(self, entry: _Pool) -> DeploymentState:
        # Power of two choices, drawn by weight, then the lower in-flight per unit of weight:
        # follows the weights when idle and steers away from a backed-up deployment under load.
        pool, cum, total, rnd = entry.pool, entry.cum, entry.total, self._rng.random
        i = bisect.bisect_right(cum, rnd() * total)
        j = bisect.bisect_right(cum, rnd() * total)
        if i == j:
            return pool[i]
        a, b = pool[i], pool[j]
        # Ties (an idle pool above all) keep the first weighted draw, so the split follows the
        # weights exactly; under load, in-flight in proportion to weight is the equilibrium.
        return b if b.in_flight * entry.weights[i] < a.in_flight * entry.weights[j] else a

    def _latency_optimized(self, entry: _Pool) -> DeploymentState:
        if entry.unmeasured:
            entry.unmeasured = [d for d in entry.unmeasured if d.speed is None]
            if entry.unmeasured:
                return self._rng.choice(entry.unmeasured)
        pool = entry.pool
        fastest = min(pool, key=_latency)
        if self._rng.random() < self.EXPLORE_SHARE:
            k = self._rng.randrange(len(pool) - 1)  # any but the fastest, uniformly
            return pool[k + 1] if k >= pool.index(fastest) else pool[k]
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


def _cost(d: DeploymentState, model: str, needs: Needs) -> float:
    out_tokens = needs.max_tokens or 256  # typical answer when the client sets no limit
    return d.price(model).cost(needs.prompt_tokens, out_tokens)


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


def _cost_frontier(pool: list[DeploymentState], model: str) -> list[DeploymentState]:
    """Deployments no other beats on both input and output price (of `model`, tiers included):
    the only possible cheapest for any mix of tokens."""
    prices = [(d, d.price(model)) for d in pool]
    out = []
    for d, p in prices:
        dominated = any(
            e.input <= p.input
            and e.output <= p.output
            and (e.input < p.input or e.output < p.output)
            and not e.tiers  # one with tiers may be dearer above them: not beaten for sure
            for _, e in prices
        )
        if not dominated:
            out.append(d)
    return out


def _priority(d: DeploymentState) -> int:
    return d.config.priority


def _panic_order(pool: list[DeploymentState]) -> list[DeploymentState]:
    # Every deployment is out: try the one whose ejection ends soonest first.
    return sorted(pool, key=lambda d: max(d.ejected_until, d.cooldown_until))
