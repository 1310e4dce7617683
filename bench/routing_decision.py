"""Routing decision cost: Router.plan for a model served by 50 deployments (target p99 <= 20 us).

Every strategy, requests with and without capability needs; the decision only (no I/O). Pin it
to one core (`taskset -c 1`) for figures comparable with the rest of the benchmark.
"""

from __future__ import annotations

import gc
import random
import statistics
import time

from ailb.config import DeploymentConfig, RoutingStrategy
from ailb.providers.mock import MockProvider
from ailb.routing.deployment import DeploymentState
from ailb.routing.router import Needs, Router

N_DEPLOYMENTS = 50
ROUNDS = 20_000


def deployments() -> list[DeploymentState]:
    rng = random.Random(1)
    out = []
    for i in range(N_DEPLOYMENTS):
        cfg = DeploymentConfig(
            name=f"d{i}",
            provider="mock",
            models=("m",),
            weight=1 + i % 5,
            priority=i % 3,
            input_cost_per_1m=rng.uniform(0.1, 5),
            output_cost_per_1m=rng.uniform(0.1, 15),
            context_window=128000,
        )
        d = DeploymentState(config=cfg, provider=MockProvider(cfg))
        for _ in range(30):
            d.record_success(rng.uniform(0.01, 0.5))
        d.in_flight = rng.randrange(0, 20)
        out.append(d)
    return out


def measure(router: Router, needs: Needs, session: bool) -> list[float]:
    samples = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(ROUNDS):
            sid = f"s{i % 1000}" if session else None
            t = clock()
            router.plan("m", needs, sid)
            samples.append((clock() - t) / 1000)
    finally:
        gc.enable()
    return samples


def main() -> None:
    plain = Needs(prompt_tokens=200, max_tokens=256)
    demanding = Needs(
        tools=True, streaming=True, json_mode=True, prompt_tokens=2000, max_tokens=1000
    )
    print(f"Router.plan, one model served by {N_DEPLOYMENTS} deployments, {ROUNDS} decisions each")
    print(f"{'strategy':20s} {'request':22s} {'p50 us':>8s} {'p99 us':>8s} {'max us':>8s}")
    worst = 0.0
    for strategy in RoutingStrategy:
        for label, needs, session in (
            ("plain", plain, False),
            ("tools+stream+json", demanding, False),
            ("plain+session", plain, True),
        ):
            router = Router(deployments(), strategy, rng=random.Random(7))
            measure(router, needs, session)  # warm-up
            s = sorted(measure(router, needs, session))
            p99 = s[int(0.99 * len(s))]
            worst = max(worst, p99)
            print(
                f"{strategy.value:20s} {label:22s} {statistics.median(s):8.2f} {p99:8.2f} "
                f"{s[-1]:8.1f}"
            )
    print(f"\nworst p99: {worst:.2f} us  (target <= 20 us): {'ok' if worst <= 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
