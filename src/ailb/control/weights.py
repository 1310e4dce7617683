"""SetTrafficWeight: a model's traffic split among its deployments, changed at run time.

Weights are relative shares (0 = no traffic) and replace the configured ones for that model
only; deployments not named keep theirs. They hold under every routing strategy, apply to the
next request, and survive a configuration reload as long as the deployment still exists. The
request is checked whole before anything changes. `version` is AILB's addition: a free label
per backend (e.g. a release name) kept and echoed with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

from ailb.control.proto import module_service_pb2 as pb
from ailb.routing.router import Router

MAX_WEIGHT = 100


class WeightLabels:
    """The `version` labels given with weights, by (model, deployment)."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, str], str] = {}

    def set(self, model: str, deployment: str, label: str) -> None:
        self._labels[(model, deployment)] = label

    def get(self, model: str, deployment: str) -> str:
        return self._labels.get((model, deployment), "")


def applied_weights(router: Router, labels: WeightLabels, model: str) -> list[pb.TrafficWeight]:
    return [
        pb.TrafficWeight(backend_name=name, weight=weight, version=labels.get(model, name))
        for name, weight in sorted(router.weights(model).items())
    ]


def _problem(router: Router, model: str, weights: Sequence[pb.TrafficWeight]) -> str | None:
    serving = router.weights(model)
    if not serving:
        known = ", ".join(sorted(router.models())) or "none"
        return f"Unknown route {model!r}: not a served model (served: {known})."
    if not weights:
        return "No weights given."
    seen: set[str] = set()
    for w in weights:
        if w.backend_name not in serving:
            return (
                f"Unknown backend {w.backend_name!r} for route {model!r} "
                f"(its deployments: {', '.join(sorted(serving))})."
            )
        if w.backend_name in seen:
            return f"Backend {w.backend_name!r} is given twice."
        seen.add(w.backend_name)
        if not 0 <= w.weight <= MAX_WEIGHT:
            return (
                f"Weight of {w.backend_name!r} must be between 0 and {MAX_WEIGHT}, got {w.weight}."
            )
    return None


def set_traffic_weights(
    router: Router, labels: WeightLabels, model: str, weights: Sequence[pb.TrafficWeight]
) -> pb.TrafficWeightResponse:
    problem = _problem(router, model, weights)
    if problem is not None:
        return pb.TrafficWeightResponse(
            success=False,
            message=f"{problem} Nothing was changed.",
            applied_weights=applied_weights(router, labels, model),
        )
    router.set_weights(model, {w.backend_name: w.weight for w in weights})
    for w in weights:
        labels.set(model, w.backend_name, w.version)
    split = router.weights(model)
    total = sum(split.values())
    message = f"Traffic weights of route {model!r} applied: " + ", ".join(
        f"{name} {weight}" for name, weight in sorted(split.items())
    )
    if total == 0:
        message += " (every weight is 0: the route takes no traffic)"
    return pb.TrafficWeightResponse(
        success=True,
        message=message + ".",
        applied_weights=applied_weights(router, labels, model),
    )
