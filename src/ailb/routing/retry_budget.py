"""A retry budget shared by every request of one gateway, so an outage is not amplified.

Per request, failover may make several attempts; during an outage every request would, and the
failing upstreams would get several times the traffic exactly when they can least take it (one
SDK call with its own retries became 12 upstream calls). As Envoy's retry budget: retries in
progress at once may be at most `percent` of the requests in progress, and never fewer than
`min_concurrency` (so a quiet gateway may still retry). A retry that is refused ends its
request with the error it has: the client decides what next.

Which attempts are retries in this sense is failover's call (ailb.routing.failover): those into
trouble, the same deployment again or one ejected or cooling down. A retry holds its slot for
its attempt only (a Retry-After wait before it costs the upstream nothing). One object per
gateway, built with the live configuration and carried over by a reload that keeps its settings.
"""

from __future__ import annotations

from typing import Any


class RetryBudget:
    __slots__ = ("active", "denied", "granted", "min_concurrency", "percent", "retrying")

    def __init__(self, percent: float = 20.0, min_concurrency: int = 3) -> None:
        self.percent = percent
        self.min_concurrency = min_concurrency
        self.active = 0  # client requests in failover now
        self.retrying = 0  # retries holding a slot now
        self.granted = 0
        self.denied = 0

    def limit(self) -> float:
        """How many retries may be in progress now."""
        return max(float(self.min_concurrency), self.active * self.percent / 100)

    def begin(self) -> None:
        self.active += 1

    def end(self) -> None:
        self.active -= 1

    def acquire(self) -> bool:
        """A slot for one retry (True), or no room (False, counted as denied)."""
        if self.retrying >= self.limit():
            self.denied += 1
            return False
        self.retrying += 1
        self.granted += 1
        return True

    def release(self) -> None:
        self.retrying -= 1

    def same_settings(self, percent: float, min_concurrency: int) -> bool:
        return self.percent == percent and self.min_concurrency == min_concurrency

    def snapshot(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "min_concurrency": self.min_concurrency,
            "active_requests": self.active,
            "retries_in_progress": self.retrying,
            "retries_granted": self.granted,
            "retries_denied": self.denied,
        }
