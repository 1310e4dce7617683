"""Which limits a request is checked against, and what the client is told about them.

A request touches at most: its key's requests and tokens windows, the same per end user (the
`user` field) when the key sets user limits, and its key's budget for the current period. All
of them go to the admitter in one call; a request that touches none costs nothing here. (The
control plane's route limits are token buckets of their own: ailb.ratelimit.route_bucket.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, NamedTuple

import msgspec

from ailb.auth.keys import ApiKey
from ailb.auth.principal import Principal
from ailb.errors import APIError, AuthenticationFailed, RateLimited, ServiceUnavailable
from ailb.ratelimit import (
    PER_REQUEST,
    Admission,
    AdmissionUnavailable,
    Admitter,
    Flex,
    Quota,
    RateWindow,
    Ticket,
    flex_grant,
)
from ailb.ratelimit.headers import limit_headers as window_headers
from ailb.ratelimit.local import LocalAdmitter, LocalTicket, Plan
from ailb.routing.deployment import DeploymentState
from ailb.storage import Store, StoreUnavailable

log = logging.getLogger("ailb.ratelimit")

FailureMode = Literal["open", "closed"]
SEED_TTL_S = 60.0
BREAKER_S = 1.0
GRACE_TTL_S = 3600  # a period's counter outlives the period a little: late settles still land


class Granted(msgspec.Struct):
    """An admitted request: the headers to send and what settling needs."""

    headers: list[tuple[bytes, bytes]] = []
    ticket: Ticket | None = None
    admitter: Admitter | None = None
    extra: int = 0  # completion tokens granted to a Flex request (0: none limited it)


NOTHING = Granted()
# What an admitted request holds: an in-process admission's ticket is its own grant.
Grant = Granted | LocalTicket


class _Compiled(NamedTuple):
    key: ApiKey | None  # the key version the plan was made for
    plan: Plan | None  # None: nothing to check (else it ends with the budget period)


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
        # In-process counters only: requests are admitted through plans compiled per key,
        # without awaiting (see LocalAdmitter.admit_now).
        self.local = admitter if isinstance(admitter, LocalAdmitter) and fallback is None else None
        self._plans: dict[str, _Compiled] = {}
        self._clock = clock
        self._seeds: dict[tuple[str, str], tuple[float, float, int]] = {}
        self._failing = False
        self._skip_until = 0.0
        self._periods: dict[str, tuple[float, str, float]] = {}
        self._names: dict[str, tuple[ApiKey, str, str]] = {}
        self._settling: set[asyncio.Future[None]] = set()

    def windows(self, principal: Principal, user: str | None, tokens: int) -> list[RateWindow]:
        out: list[RateWindow] = []
        key = principal.key
        kid = principal.key_id
        if key is not None:
            names = self._names.get(kid)
            if names is None or names[0] is not key:  # any change to a key is a new object
                if len(self._names) > 100_000:
                    self._names.clear()
                names = self._names[kid] = (key, f"k:{kid}:requests", f"k:{kid}:tokens")
            if key.rpm_limit:
                out.append(RateWindow(names[1], key.rpm_limit, 1))
            if key.tpm_limit:
                out.append(RateWindow(names[2], key.tpm_limit, tokens))
            if user and (key.user_rpm_limit or key.user_tpm_limit):
                u = hashlib.sha256(user.encode()).hexdigest()[:16]
                if key.user_rpm_limit:
                    out.append(RateWindow(f"u:{kid}:{u}:requests", key.user_rpm_limit, 1))
                if key.user_tpm_limit:
                    out.append(RateWindow(f"u:{kid}:{u}:tokens", key.user_tpm_limit, tokens))
        return out

    async def quota(self, key: ApiKey | None, tokens: int, usd: float) -> Quota | None:
        if key is None or (key.budget_usd is None and key.token_budget is None):
            return None
        now = self._clock()
        pid, start, ttl = self._period(key.budget_period, now)
        seed = self._seeds.get((key.id, pid))
        if seed is None or now - seed[0] >= SEED_TTL_S:
            seed = await self._seed(key.id, pid, start, now)
        return Quota(
            name=f"q:{key.id}:{pid}",
            usd_limit=key.budget_usd,
            token_limit=key.token_budget,
            usd_estimate=usd,
            token_estimate=tokens,
            ttl=ttl,
            seed_usd=seed[1],
            seed_tokens=seed[2],
        )

    def _period(self, kind: str, now: float) -> tuple[str, float, int | None]:
        """period(), remembered until the period ends (it is asked on every request)."""
        cached = self._periods.get(kind)
        if cached is None or now >= cached[0]:
            pid, start, ttl = period(kind, now)
            end = math.inf if ttl is None else now + ttl - GRACE_TTL_S
            cached = self._periods[kind] = (end, pid, start)
        end, pid, start = cached
        return pid, start, None if end == math.inf else int(end - now) + GRACE_TTL_S

    async def _seed(
        self, key_id: str, pid: str, start: float, now: float
    ) -> tuple[float, float, int]:
        """What the ledger says the key spent this period: used only where the counter does not
        exist yet (this process's first request of the period, or a Redis that lost its data).
        Asked again at most once a minute per key."""
        cached = self._seeds.get((key_id, pid))
        usd, tokens = 0.0, 0
        if self.store is not None:
            try:
                usd, tokens = (await self.store.spent_since(start, key_id)).get(key_id, (0.0, 0))
            except StoreUnavailable as e:
                log.warning("budget_seed_unavailable", extra={"key_id": key_id, "detail": str(e)})
                if cached is not None:
                    return cached
        if len(self._seeds) > 100_000:
            self._seeds.clear()
        seed = self._seeds[(key_id, pid)] = (now, usd, tokens)
        return seed

    def admit_now(
        self,
        principal: Principal,
        request_id: str,
        user: str | None,
        tokens: int,
        usd: float,
        flex: Flex | None = None,
    ) -> Grant | None:
        """`admit` without awaiting, through a plan compiled earlier for the key (the usual
        request with in-process counters); None when it takes `admit`."""
        key = principal.key
        if key is None:
            return NOTHING  # the master key or an open gateway: no key limits
        local = self.local
        if local is None or _per_user(key, user):
            return None
        compiled = self._plans.get(principal.key_id)
        if compiled is None or compiled.key is not key:  # any change to a key is a new object
            return None
        plan = compiled.plan
        if plan is None:
            return NOTHING
        extra = 0
        if flex is not None:
            room = local.room_now(plan, tokens, usd, flex)
            if room is not None:
                extra = flex_grant(room, flex)
                tokens += extra
                usd += extra * flex.usd_per_token
        got = local.admit_now(plan, request_id, tokens, usd)
        if type(got) is Admission:
            raise refusal(got, limit_headers(got))
        if got is not None:
            got.extra = extra
        return got  # type: ignore[return-value]  # a ticket, or None past the plan's period

    async def admit(
        self,
        principal: Principal,
        request_id: str,
        user: str | None,
        tokens: int,
        usd: float,
        flex: Flex | None = None,
    ) -> Grant:
        """Admit a request estimated at `tokens` and `usd` (its prompt, and its completion
        limit when it has one), or raise the refusal. `flex`: the request has no completion
        limit; the grant's `extra` is the one its tokens limits leave room for."""
        granted = self.admit_now(principal, request_id, user, tokens, usd, flex)
        if granted is not None:
            return granted
        if self.local is not None and not _per_user(principal.key, user):
            # No plan yet, or one for an earlier key version or period; compiled again should
            # the key change while the budget's seed is read.
            while granted is None:
                await self._compile(principal)
                granted = self.admit_now(principal, request_id, user, tokens, usd, flex)
            return granted
        windows = self.windows(principal, user, tokens)
        quota = await self.quota(principal.key, tokens, usd)
        if not windows and quota is None:
            return NOTHING
        revocation = principal.key_id if principal.key is not None else None
        checked = await self.check(request_id, windows, quota, revocation, flex)
        if checked is None:
            raise ServiceUnavailable(
                "Rate limits cannot be checked right now; please retry.",
                code="rate_limiter_unavailable",
                headers={"retry-after": "1"},
            )
        adm, admitter = checked
        headers = limit_headers(adm)
        if not adm.allowed:
            raise refusal(adm, headers)
        return Granted(headers, adm.ticket, admitter, adm.extra)

    async def top_up(
        self, principal: Principal, request_id: str, tokens: int, usd: float
    ) -> Granted:
        """Prompt added after admission (remembered or retrieved context) reserved against the
        key's budget as well, or the request refused: settle the grant with nothing, the
        request's own grant settles what it used."""
        key = principal.key
        if key is None or (key.budget_usd is None and key.token_budget is None):
            return NOTHING
        quota = await self.quota(key, tokens, usd)
        checked = await self.check(request_id + ":context", [], quota)
        if checked is None:
            raise ServiceUnavailable(
                "Budgets cannot be checked right now; please retry.",
                code="rate_limiter_unavailable",
                headers={"retry-after": "1"},
            )
        adm, admitter = checked
        if not adm.allowed:
            raise refusal(adm, [])
        return Granted([], adm.ticket, admitter)

    async def _compile(self, principal: Principal) -> _Compiled:
        key = principal.key
        windows = self.windows(principal, None, PER_REQUEST)
        quota = await self.quota(key, 0, 0.0)
        until = math.inf
        if quota is not None and key is not None:
            until = self._periods[key.budget_period][0]  # the period's end: a new counter
        plan = None
        if windows or quota is not None:
            plan = Plan(windows, quota, principal.key_id if key is not None else None, until)
        compiled = _Compiled(key, plan)
        if len(self._plans) > 100_000:
            self._plans.clear()
        self._plans[principal.key_id] = compiled
        return compiled

    async def check(
        self,
        request_id: str,
        windows: list[RateWindow],
        quota: Quota | None = None,
        revocation: str | None = None,
        flex: Flex | None = None,
    ) -> tuple[Admission, Admitter] | None:
        """Admission by the shared backend, or -- while it is down, in fail-open mode -- by this
        instance's own counters; None when it is down in fail-closed mode. After a failure the
        backend is left alone for BREAKER_S, so a dead Redis costs one timeout a second rather
        than one per request."""
        if self.fallback is None:  # in-process counters: nothing can be down
            adm = await self.admitter.admit(request_id, windows, quota, revocation, flex)
            return adm, self.admitter
        now = time.monotonic()
        if now >= self._skip_until:
            try:
                adm = await self.admitter.admit(request_id, windows, quota, revocation, flex)
            except AdmissionUnavailable as e:
                self._skip_until = now + BREAKER_S
                if not self._failing:
                    log.error(
                        "rate_limit_backend_unavailable",
                        extra={"detail": str(e), "failure_mode": self.failure_mode},
                    )
                    self._failing = True
            else:
                if self._failing:
                    log.info("rate_limit_backend_recovered")
                    self._failing = False
                return adm, self.admitter
        if self.failure_mode == "closed" or self.fallback is None:
            return None
        return await self.fallback.admit(request_id, windows, quota, None, flex), self.fallback

    def settle(self, granted: Grant, tokens: int, usd: float) -> None:
        """The request's actual tokens and cost replace its estimates: at once in process;
        through Redis in the background, so the request's task (and with it its keep-alive
        connection) is free a round trip sooner. The one pipelined connection keeps order: the
        settle reaches Redis before any later check this instance sends."""
        if type(granted) is LocalTicket:  # only the in-process counters hand these out
            self.local.settle_now(granted, tokens, usd)  # type: ignore[union-attr]
            return
        assert isinstance(granted, Granted)
        ticket, admitter = granted.ticket, granted.admitter
        if ticket is None or admitter is None:
            return
        if isinstance(admitter, LocalAdmitter):
            assert isinstance(ticket, LocalTicket)
            admitter.settle_now(ticket, tokens, usd)
            return
        task = asyncio.ensure_future(self._settle(granted, tokens, usd))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, granted: Granted, tokens: int, usd: float) -> None:
        assert granted.ticket is not None and granted.admitter is not None
        try:
            await granted.admitter.settle(granted.ticket, tokens, usd)
        except AdmissionUnavailable as e:
            # The estimate stays charged (conservative); the reservation expires on its own.
            log.warning("rate_limit_settle_failed", extra={"detail": str(e)})

    async def close(self) -> None:
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await self.admitter.close()


def _per_user(key: ApiKey | None, user: str | None) -> bool:
    """Per end-user limits apply: their counters are named per request, so not compiled."""
    return bool(user and key is not None and (key.user_rpm_limit or key.user_tpm_limit))


def limit_headers(adm: Admission) -> list[tuple[bytes, bytes]]:
    """OpenAI's x-ratelimit-* headers from the tightest requests and tokens windows."""
    return adm.headers if adm.headers is not None else window_headers(adm.windows)


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
    prefix = name.split(":", 1)[0]
    scope = {"k": "API key", "u": "end user", "d": "deployment"}.get(prefix, "API key")
    extra["retry-after"] = str(max(1, math.ceil(adm.retry_after)))
    err = RateLimited(
        f"Rate limit reached for this {scope}: {kind} per minute. "
        f"Retry after {extra['retry-after']} s.",
        code="rate_limit_exceeded",
        headers=extra,
    )
    err.reason = f"{_LIMITS.get(prefix, 'key')}_{kind}"  # the metrics' label
    return err


_LIMITS = {"k": "key", "u": "user", "d": "deployment"}


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
        checked = await self.policy.check(rid, windows)
        if checked is None:
            return None  # cannot count now: the provider's own 429 is the backstop
        adm, admitter = checked
        if not adm.allowed:
            return max(adm.retry_after, 0.05)
        self.granted.append((c.name, Granted([], adm.ticket, admitter)))
        return None

    def settle(self, deployment: str | None, tokens: int) -> None:
        """The answering deployment's tokens replace its estimate; attempts that failed used
        their request but no tokens."""
        for name, g in self.granted:
            self.policy.settle(g, tokens if name == deployment else 0, 0.0)
        self.granted.clear()
