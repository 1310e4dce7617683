"""GetRoutes and ApplyRateLimit: served models as MarchProxy routes, and their request limits.

A route is a served model (aliases included). Its traffic arrives on POST /v1/chat/completions
whatever the model (the model is named in the JSON body, which a path matcher cannot see), so
every route's `prefix` is that path; `cluster_name` is this instance's MODULE_ID (the cluster
MarchProxy sends the route's traffic to); `hosts` are the upstreams of the deployments serving
the model (host:port of their base URL: never a credential, a path or a query; the built-in
mock provider has none).

Rate limits: as Envoy's local rate limit, a token bucket per route (ailb.ratelimit.route_bucket)
of `burst_size` tokens refilled at `requests_per_second`, for the route's total on this instance
(every caller together), enforced from the next request on; `burst_size` 0 means a bucket of
one second's worth. GetRoutes reports the limit each route is held to ("*" included).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from urllib.parse import urlsplit

from ailb.control.proto import module_service_pb2 as pb
from ailb.ratelimit.route_bucket import ALL_ROUTES, BucketLimit
from ailb.routing.deployment import DeploymentState
from ailb.runtime import Runtime

CHAT_PREFIX = "/v1/chat/completions"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def upstream_host(base_url: str | None) -> str | None:
    """`host:port` of an upstream URL (IPv6 in brackets); None without a URL."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    if not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)}"


def hosts_of(deployments: Iterable[DeploymentState]) -> list[str]:
    seen = dict.fromkeys(h for d in deployments if (h := upstream_host(d.config.base_url)))
    return list(seen)


def limit_config(limit: BucketLimit | None) -> pb.RateLimitConfig:
    """A route's limit as MarchProxy's RateLimitConfig: what is enforced."""
    if limit is None:
        return pb.RateLimitConfig(enabled=False)
    return pb.RateLimitConfig(requests_per_second=limit.rate, burst_size=limit.burst, enabled=True)


def in_cluster(runtime: Runtime, cluster_id: str) -> bool:
    """RoutesRequest.cluster_id: empty (every route) or this instance's MODULE_ID select this
    instance's routes; any other cluster holds none of them."""
    return not cluster_id or cluster_id == runtime.settings.module_id


def route_configs(runtime: Runtime) -> list[pb.RouteConfig]:
    """One route per served model, sorted by name."""
    module_id = runtime.settings.module_id
    router = runtime.router
    timeout = math.ceil(runtime.failover.request_timeout)
    routes = runtime.routes
    return [
        pb.RouteConfig(
            name=model,
            prefix=CHAT_PREFIX,
            cluster_name=module_id,
            hosts=hosts_of(deployments),
            timeout_seconds=min(timeout, 2**31 - 1),
            enabled=any(router.weight(d, model) > 0 for d in deployments),
            rate_limit=limit_config(routes.limit(model)),
        )
        for model, deployments in sorted(router.models().items())
    ]


class RouteVersion:
    """RoutesResponse.version: goes up by one whenever the routes, their limits or the traffic
    weights differ from what the previous GetRoutes saw."""

    def __init__(self) -> None:
        self._digest = b""
        self._version = 0

    def of(self, runtime: Runtime, routes: list[pb.RouteConfig]) -> int:
        h = hashlib.sha256()
        for route in routes:
            h.update(route.SerializeToString(deterministic=True))
        for model in sorted(runtime.router.models()):
            h.update(repr(sorted(runtime.router.weights(model).items())).encode())
        digest = h.digest()
        if digest != self._digest:
            self._digest = digest
            self._version += 1
        return self._version


def apply_rate_limit(
    runtime: Runtime, route_name: str, config: pb.RateLimitConfig
) -> tuple[bool, str]:
    """Set (or with enabled=false remove) the limit of a model or of every model ("*"):
    effective from the next request on."""
    if route_name != ALL_ROUTES and route_name not in runtime.router.models():
        served = ", ".join(sorted(runtime.router.models())) or "none"
        return False, f"Unknown route {route_name!r}: not a served model (served: {served})."
    where = "every model" if route_name == ALL_ROUTES else f"model {route_name!r}"
    if not config.enabled:
        runtime.routes.set(route_name, None)
        return True, f"Rate limit removed from {where}."
    if config.requests_per_second <= 0:
        return False, (
            "requests_per_second must be at least 1 (send enabled=false to remove the limit)."
        )
    if config.burst_size < 0:
        return False, "burst_size must not be negative."
    burst = config.burst_size or config.requests_per_second
    runtime.routes.set(route_name, BucketLimit(config.requests_per_second, burst))
    return True, (
        f"Rate limit on {where}: a token bucket of {burst} refilled at "
        f"{config.requests_per_second}/s, for all callers together on this instance."
    )
