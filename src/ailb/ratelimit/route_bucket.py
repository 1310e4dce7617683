"""Route limits set by the control plane (gRPC ApplyRateLimit): a token bucket per route, as
Envoy's local rate limit has.

A route is a served model. Its bucket holds `burst` tokens and gains `rate` a second; every
request for the model takes one, whoever sends it, and is refused (429) when none is left. The
count is this instance's (MarchProxy spreads a route's traffic over the instances and sets each
one's share); keys' own per-minute limits are separate and unchanged. A limit on "*" is every
route's that has none of its own, each route with a bucket of its own. Only served models get
buckets: a client's made-up model names make none.

Everything runs on the event loop without awaiting, so a take is atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

ALL_ROUTES = "*"


@dataclass(frozen=True, slots=True)
class BucketLimit:
    rate: int  # tokens a second (requests_per_second)
    burst: int  # the bucket's size (burst_size)


class TokenBucket:
    __slots__ = ("limit", "stamp", "tokens")

    def __init__(self, limit: BucketLimit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)  # full at first, as Envoy's
        self.stamp = now

    def take(self, now: float) -> float:
        """0.0 when a token was taken, else the seconds until one will be there."""
        limit = self.limit
        if now > self.stamp:
            self.tokens = min(float(limit.burst), self.tokens + (now - self.stamp) * limit.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / limit.rate


class RouteBuckets:
    """The control plane's limits and their buckets; outlives configuration reloads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._limits: dict[str, BucketLimit] = {}
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def active(self) -> bool:
        return bool(self._limits)

    def set(self, route: str, limit: BucketLimit | None) -> None:
        """A route's limit (None removes it); its bucket, and for "*" every bucket that
        followed it, starts afresh and full."""
        if limit is None:
            self._limits.pop(route, None)
        else:
            self._limits[route] = limit
        if route == ALL_ROUTES:
            self._buckets = {r: b for r, b in self._buckets.items() if r in self._limits}
        else:
            self._buckets.pop(route, None)

    def limit(self, route: str) -> BucketLimit | None:
        """The limit enforced on `route`: its own, else the one on "*"."""
        return self._limits.get(route) or self._limits.get(ALL_ROUTES)

    def take(self, route: str) -> float:
        """One request for a served model: 0.0 when admitted, else seconds to wait."""
        bucket = self._buckets.get(route)
        now = self._clock()
        if bucket is None:
            limit = self.limit(route)
            if limit is None:
                return 0.0
            bucket = self._buckets[route] = TokenBucket(limit, now)
        return bucket.take(now)
