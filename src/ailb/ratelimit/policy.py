"""Which limits a request is checked against, and what the client is told about them.

A request touches at most: its key's requests and tokens windows, the same per end user (the
`user` field) when the key sets user limits, a model's route limit (changed at run time), and its
key's budget for the current period. All of them go to the admitter in one call; a request that
touches none costs nothing here.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ailb.auth.authenticator import AuthenticationFailed
from ailb.auth.keys import ApiKey
from ailb.auth.principal import Principal
from ailb.errors import APIError, RateLimited, ServiceUnavailable
from ailb.ratelimit import Admission, AdmissionUnavailable, Admitter, Quota, RateWindow, Ticket
from ailb.routing.deployment import DeploymentState
from ailb.storage import Store, StoreUnavailable

log = logging.getLogger("ailb.ratelimit")

FailureMode = Literal["open", "closed"]
SEED_TTL_S = 60.0
GRACE_TTL_S = 3600  # a period's counter outlives the period a little: late settles still land


@dataclass(slots=True)
class RouteLimit:
    rpm: int | None = None
    tpm: int | None = None


class RouteLimits:
    """Per-model limits applied to every key's requests for that model ("*": every model).
    Changed at run time (admin API, gRPC ApplyRateLimit); read on every request."""

    def __init__(self) -> None:
        self._limits: dict[str, RouteLimit] = {}

    def set(self, model: str, rpm: int | None, tpm: int | None) -> None:
        if rpm is None and tpm is None:
            self._limits.pop(model, None)
        else:
            self._limits[model] = RouteLimit(rpm, tpm)

    def get(self, model: str) -> RouteLimit | None:
        return self._limits.get(model) or self._limits.get("*")

    def all(self) -> dict[str, RouteLimit]:
        return dict(self._limits)


@dataclass(slots=True)
class Granted:
    """An admitted request: the headers to send and what settling needs."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    ticket: Ticket | None = None
    admitter: Admitter | None = None


NOTHING = Granted()


def period(kind: str, now: float) -> tuple[str, float, int | None]:
    """(period id, period start, counter ttl in seconds) for a budget period."""
    t = datetime.fromtimestamp(now, UTC)
    if kind == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start.timestamp() + 86400
        return start.strftime("%Y-%m-%d"), start.timestamp(), int(end - now) + GRACE_TTL_S
    if kind == "month":
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start.strftime("%Y-%m"), start.timestamp(), int(nxt.timestamp() - now) + GRACE_TTL_S
    return "total", 0.0, None


def reset_text(seconds: float) -> str:
    """OpenAI's duration style for x-ratelimit-reset-*: 20ms, 1s, 6m0s."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    s = math.ceil(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


class LimitPolicy:
    def __init__(
        self,
        admitter: Admitter,
        fallback: Admitter | None,
        store: Store | None,
        failure_mode: FailureMode = "open",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.admitter = admitter  # Redis when configured, else in-process
        self.fallback = fallback  # in-process, used while Redis is down in fail-open mode
        self.store = store
        self.failure_mode = failure_mode
        self.routes = RouteLimits()
        self.rate_limited = 0
        self.backend_failures = 0
        self._clock = clock
        self._seeds: dict[tuple[str, str], tuple[float, float, int]] = {}
        self._failing = False

    def windows(
        self, principal: Principal, model: str, user: str | None, tokens: int
    ) -> list[RateWindow]:
        out: list[RateWindow] = []
        key = principal.key
        kid = principal.key_id
        if key is not None:
            if key.rpm_limit:
                out.append(RateWindow(f"k:{kid}:requests", key.rpm_limit, 1))
            if key.tpm_limit:
                out.append(RateWindow(f"k:{kid}:tokens", key.tpm_limit, tokens))
            if user and (key.user_rpm_limit or key.user_tpm_limit):
                u = hashlib.sha256(user.encode()).hexdigest()[:16]
                if key.user_rpm_limit:
                    out.append(RateWindow(f"u:{kid}:{u}:requests", key.user_rpm_limit, 1))
                if key.user_tpm_limit:
                    out.append(RateWindow(f"u:{kid}:{u}:tokens", key.user_tpm_limit, tokens))
        route = self.routes.get(model)
        if route is not None:
            if route.rpm:
                out.append(RateWindow(f"r:{model}:{kid}:requests", route.rpm, 1))
            if route.tpm:
                out.append(RateWindow(f"r:{model}:{kid}:tokens", route.tpm, tokens))
        return out

    async def quota(self, key: ApiKey | None, tokens: int, usd: float) -> Quota | None:
        if key is None or (key.budget_usd is None and key.token_budget is None):
            return None
        now = self._clock()
        pid, start, ttl = period(key.budget_period, now)
        seed_usd, seed_tokens = await self._seed(key.id, pid, start, now)
        return Quota(
            name=f"q:{key.id}:{pid}",
            usd_limit=key.budget_usd,
            token_limit=key.token_budget,
            usd_estimate=usd,
            token_estimate=tokens,
            ttl=ttl,
            seed_usd=seed_usd,
            seed_tokens=seed_tokens,
        )

    async def _seed(self, key_id: str, pid: str, start: float, now: float) -> tuple[float, int]:
        """What the ledger says the key spent this period: used only where the counter does not
        exist yet (this process's first request of the period, or a Redis that lost its data)."""
        cached = self._seeds.get((key_id, pid))
        if cached is not None and now - cached[0] < SEED_TTL_S:
            return cached[1], cached[2]
        usd, tokens = 0.0, 0
        if self.store is not None:
            try:
                usd, tokens = (await self.store.spent_since(start, key_id)).get(key_id, (0.0, 0))
            except StoreUnavailable as e:
                log.warning("budget_seed_unavailable", extra={"key_id": key_id, "detail": str(e)})
                if cached is not None:
                    return cached[1], cached[2]
        if len(self._seeds) > 100_000:
            self._seeds.clear()
        self._seeds[(key_id, pid)] = (now, usd, tokens)
        return usd, tokens

    async def admit(
        self,
        principal: Principal,
        request_id: str,
        model: str,
        user: str | None,
        tokens: int,
        usd: float,
    ) -> Granted:
        windows = self.windows(principal, model, user, tokens)
        quota = await self.quota(principal.key, tokens, usd)
        if not windows and quota is None:
            return NOTHING
        revocation = principal.key_id if principal.key is not None else None
        admitter = self.admitter
        try:
            adm = await admitter.admit(request_id, windows, quota, revocation)
            if self._failing:
                log.info("rate_limit_backend_recovered")
                self._failing = False
        except AdmissionUnavailable as e:
            self.backend_failures += 1
            if not self._failing:
                log.error(
                    "rate_limit_backend_unavailable",
                    extra={"detail": str(e), "failure_mode": self.failure_mode},
                )
                self._failing = True
            if self.failure_mode == "closed" or self.fallback is None:
                raise ServiceUnavailable(
                    "Rate limits cannot be checked right now; please retry.",
                    code="rate_limiter_unavailable",
                    headers={"retry-after": "1"},
                ) from None
            admitter = self.fallback  # fail open: this instance's own counters meanwhile
            adm = await admitter.admit(request_id, windows, quota, None)
        headers = limit_headers(adm)
        if not adm.allowed:
            self.rate_limited += 1
            raise refusal(adm, headers)
        return Granted(headers, adm.ticket, admitter)

    async def settle(self, granted: Granted, tokens: int, usd: float) -> None:
        if granted.ticket is None or granted.admitter is None:
            return
        try:
            await granted.admitter.settle(granted.ticket, tokens, usd)
        except AdmissionUnavailable as e:
            # The estimate stays charged (conservative); the reservation expires on its own.
            log.warning("rate_limit_settle_failed", extra={"detail": str(e)})


def limit_headers(adm: Admission) -> list[tuple[bytes, bytes]]:
    """OpenAI's x-ratelimit-* headers from the tightest requests and tokens windows."""
    out: list[tuple[bytes, bytes]] = []
    for kind in ("requests", "tokens"):
        states = [w for w in adm.windows if w.name.endswith(":" + kind)]
        if not states:
            continue
        w = min(states, key=lambda s: s.remaining)
        out += [
            (f"x-ratelimit-limit-{kind}".encode(), str(w.limit).encode()),
            (f"x-ratelimit-remaining-{kind}".encode(), str(w.remaining).encode()),
            (f"x-ratelimit-reset-{kind}".encode(), reset_text(w.reset_s).encode()),
        ]
    return out


def refusal(adm: Admission, headers: list[tuple[bytes, bytes]]) -> APIError:
    extra = {k.decode(): v.decode() for k, v in headers}
    if adm.reason == "revoked":
        return AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
    if adm.reason == "quota":
        extra["retry-after"] = str(3600)
        return RateLimited(
            "This API key has exhausted its budget for the current period "
            "(see GET /api/usage); ask an administrator to raise it.",
            code="budget_exceeded",
            headers=extra,
        )
    name = adm.denied_by or ""
    kind = "tokens" if name.endswith(":tokens") else "requests"
    scope = {"k": "API key", "u": "end user", "r": "model", "d": "deployment"}.get(
        name.split(":", 1)[0], "API key"
    )
    extra["retry-after"] = str(max(1, math.ceil(adm.retry_after)))
    return RateLimited(
        f"Rate limit reached for this {scope}: {kind} per minute. "
        f"Retry after {extra['retry-after']} s.",
        code="rate_limit_exceeded",
        headers=extra,
    )


class DeploymentGate:
    """A deployment's configured rpm/tpm, checked before each attempt so AILB never sends a
    provider more than it allows (shared across instances through the same admitter)."""

    def __init__(self, policy: LimitPolicy, request_id: str, tokens: int) -> None:
        self.policy = policy
        self.request_id = request_id
        self.tokens = tokens
        self.granted: list[tuple[str, Granted]] = []

    async def __call__(self, d: DeploymentState) -> float | None:
        c = d.config
        if c.rpm is None and c.tpm is None:
            return None
        windows = []
        if c.rpm is not None:
            windows.append(RateWindow(f"d:{c.name}:requests", c.rpm, 1))
        if c.tpm is not None:
            windows.append(RateWindow(f"d:{c.name}:tokens", c.tpm, self.tokens))
        rid = f"{self.request_id}:{c.name}:{len(self.granted)}"
        admitter = self.policy.admitter
        try:
            adm = await admitter.admit(rid, windows)
        except AdmissionUnavailable:
            if self.policy.fallback is None:
                return None  # no way to count: the provider's own 429 is the backstop
            admitter = self.policy.fallback
            adm = await admitter.admit(rid, windows)
        if not adm.allowed:
            return max(adm.retry_after, 0.05)
        self.granted.append((c.name, Granted([], adm.ticket, admitter)))
        return None

    async def settle(self, deployment: str | None, tokens: int) -> None:
        """The answering deployment's tokens replace its estimate; attempts that failed used
        their request but no tokens."""
        for name, g in self.granted:
            await self.policy.settle(g, tokens if name == deployment else 0, 0.0)
        self.granted.clear()
