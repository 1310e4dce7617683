"""In-process admission for a single gateway instance.

Every method runs to completion without awaiting, so on one event loop each check-and-charge is
atomic without a lock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ailb.ratelimit import (
    RESERVATION_TTL,
    WINDOW_SECONDS,
    Admission,
    Quota,
    RateWindow,
    Ticket,
    WindowState,
)
from ailb.ratelimit.headers import (
    REMAINING_REQUESTS,
    REMAINING_TOKENS,
    Header,
    limit_header,
    reset_header,
)

# One bucket more than the window: the current second is only partly elapsed, so counting 61
# whole seconds keeps every 60-second span within the limit.
SPAN = WINDOW_SECONDS + 1
# A window charged this second empties SPAN - (now - second) seconds from now, in (60, 61]:
# always the same header.
CHARGED_RESET_REQUESTS = reset_header(False, SPAN)
CHARGED_RESET_TOKENS = reset_header(True, SPAN)
SWEEP_EVERY = 1024  # admits between sweeps of idle counters
USD_TOLERANCE = 1e-9  # float sums like 0.1 + 0.2 must not refuse a budget spent exactly


class Buckets:
    """One window: [second, units] buckets oldest first, and their running total (a check is
    then O(1) instead of a sum over 61 buckets)."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.total = 0

    def trim(self, oldest: int) -> None:
        b = self.buckets
        while b and b[0][0] < oldest:
            self.total -= b.popleft()[1]

    def last_charged(self) -> int | None:
        for second, units in reversed(self.buckets):
            if units > 0:
                return second
        return None


@dataclass(slots=True)
class _Ledger:
    spent_usd: float
    spent_tokens: int
    expires_at: float | None  # end of the quota period
    # request id -> (usd, tokens, until); insertion order is expiry order (same TTL for all),
    # so expired ones are at the front, and the sums are kept as they change.
    reservations: dict[str, tuple[float, int, float]] = field(default_factory=dict)
    reserved_usd: float = 0.0
    reserved_tokens: int = 0
    # No reservation expires before this (the first one's expiry when last looked at; settles
    # only remove reservations, so it stays a safe lower bound): checks skip the scan till then.
    oldest_until: float = math.inf

    def reserve(self, request_id: str, usd: float, tokens: int, until: float) -> None:
        if not self.reservations:
            self.oldest_until = until
        self.reservations[request_id] = (usd, tokens, until)
        self.reserved_usd += usd
        self.reserved_tokens += tokens

    def release(self, request_id: str) -> None:
        r = self.reservations.pop(request_id, None)
        if r is not None:
            self.reserved_usd -= r[0]
            self.reserved_tokens -= r[1]
            if not self.reservations:  # no float dust left behind
                self.reserved_usd, self.reserved_tokens = 0.0, 0

    def drop_expired(self, now: float) -> None:
        res = self.reservations
        while res:
            rid, (_, _, until) = next(iter(res.items()))
            if until > now:
                self.oldest_until = until
                return
            self.release(rid)
        self.oldest_until = math.inf


class Plan:
    """Windows and a quota resolved against one admitter's counters: a key's limits, compiled
    once per version of the key, so that admitting one of its requests is a few attribute
    operations rather than building names, windows and a quota and looking each one up."""

    __slots__ = ("gen", "ledger", "quota", "revocation", "specs", "windows")

    def __init__(
        self, specs: Sequence[RateWindow], quota: Quota | None, revocation: str | None
    ) -> None:
        self.specs = tuple(specs)  # cost PER_REQUEST: the request's token estimate
        self.quota = quota  # its estimates are given per request
        self.revocation = revocation
        self.gen = -1  # the admitter generation the counters below belong to
        # (name, limit, cost, tokens?, counters, its x-ratelimit-limit-* header)
        self.windows: tuple[tuple[str, int, int, bool, Buckets, Header], ...] = ()
        self.ledger: _Ledger | None = None  # the quota's, until it expires


class LocalTicket(Ticket):
    # (counters, the bucket charged, estimated tokens)
    token_windows: list[tuple[Buckets, list[int], int]]
    ledger: _Ledger | None
    settled: bool = False


class LocalAdmitter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, Buckets] = {}
        self._ledgers: dict[str, _Ledger] = {}
        self._revoked: dict[str, float] = {}  # key id -> until
        self._admits = 0
        self._gen = 0  # bumped when counters are dropped: plans then look theirs up again

    async def admit(
        self,
        request_id: str,
        windows: Sequence[RateWindow],
        quota: Quota | None = None,
        revocation: str | None = None,
    ) -> Admission:
        plan = Plan(windows, quota, revocation)
        if quota is None:
            return self.admit_now(plan, request_id)
        return self.admit_now(plan, request_id, quota.token_estimate, quota.usd_estimate)

    def admit_now(
        self,
        plan: Plan,
        request_id: str,
        tokens: int = 0,
        usd: float = 0.0,
        states: bool = True,
    ) -> Admission:
        """Check and charge through a plan, without awaiting (atomic on the event loop).
        `tokens` and `usd` are the request's estimates for PER_REQUEST windows and the quota.
        The admission carries its x-ratelimit-* headers; its window states too unless
        `states` is false (the hot path needs only the headers)."""
        # Written flat: it runs on every limited request (no helper calls on the usual path).
        now = self._clock()
        second = int(now)  # clocks are positive: int() is floor()
        self._admits += 1
        if not self._admits % SWEEP_EVERY:
            self._sweep(now)
        if plan.gen != self._gen:
            self._bind(plan, now)
        refused: Admission | None = None
        revocation = plan.revocation
        if revocation is not None and self._revoked and self._revoked.get(revocation, 0.0) > now:
            refused = Admission(False, denied_by=revocation, reason="revoked")
        oldest = second - WINDOW_SECONDS
        windows = plan.windows
        for name, limit, cost, _, buckets, _ in windows:
            if buckets.buckets and buckets.buckets[0][0] < oldest:
                buckets.trim(oldest)
            if refused is None and buckets.total + (tokens if cost < 0 else cost) > limit:
                w = RateWindow(name, limit, tokens if cost < 0 else cost)
                retry = _retry_after(w, buckets, buckets.total, now)
                refused = Admission(False, denied_by=name, reason="rate", retry_after=retry)
        ledger = None
        quota = plan.quota
        if quota is not None and refused is None:
            ledger = plan.ledger
            if ledger is None or (ledger.expires_at is not None and ledger.expires_at <= now):
                ledger = plan.ledger = self._ledger(quota, now)
            if _over_budget(ledger, quota, now, usd, tokens):
                refused = Admission(False, denied_by=quota.name, reason="quota")
        if refused is not None:
            refused.windows = [_state(n, lim, b, now) for n, lim, _, _, b, _ in windows]
            return refused
        window_states: list[WindowState] | None = [] if states else None
        token_windows = []
        reset = SPAN - now + second  # the bucket just charged is the window's newest
        # The tightest window of each kind, for the headers: (limit header, remaining, reset).
        req: tuple[Header, int, float] | None = None
        tok: tuple[Header, int, float] | None = None
        for name, limit, cost, is_tokens, buckets, limit_hdr in windows:
            if cost < 0:
                cost = tokens
            b = buckets.buckets
            if b and b[-1][0] == second:
                bucket = b[-1]
                bucket[1] += cost
            else:
                bucket = [second, cost]
                b.append(bucket)
            buckets.total += cost
            remaining = limit - buckets.total
            if remaining < 0:
                remaining = 0
            # A zero-cost probe leaves the window's age to older buckets.
            window_reset = reset if bucket[1] > 0 else _state(name, limit, buckets, now).reset_s
            if window_states is not None:
                window_states.append(WindowState(name, limit, remaining, window_reset))
            if is_tokens:
                token_windows.append((buckets, bucket, cost))
                if tok is None or remaining < tok[1]:
                    tok = (limit_hdr, remaining, window_reset)
            elif req is None or remaining < req[1]:
                req = (limit_hdr, remaining, window_reset)
        if ledger is not None:
            ledger.reserve(request_id, usd, tokens, now + RESERVATION_TTL)
        headers: list[Header] = []
        if req is not None:
            headers += (
                req[0],
                (REMAINING_REQUESTS, b"%d" % req[1]),
                CHARGED_RESET_REQUESTS if req[2] == reset else reset_header(False, req[2]),
            )
        if tok is not None:
            headers += (
                tok[0],
                (REMAINING_TOKENS, b"%d" % tok[1]),
                CHARGED_RESET_TOKENS if tok[2] == reset else reset_header(True, tok[2]),
            )
        ticket = LocalTicket(request_id, second, token_windows, ledger)
        return Admission(True, window_states or [], ticket, headers=headers)

    def _bind(self, plan: Plan, now: float) -> None:
        counters = self._windows
        bound = []
        for w in plan.specs:
            buckets = counters.get(w.name)
            if buckets is None:
                buckets = counters[w.name] = Buckets()
            tokens = w.name.endswith(":tokens")
            bound.append((w.name, w.limit, w.cost, tokens, buckets, limit_header(tokens, w.limit)))
        plan.windows = tuple(bound)
        plan.ledger = None  # looked up again too: a sweep may have dropped it
        plan.gen = self._gen

    async def settle(self, ticket: Ticket, tokens: int, usd: float) -> None:
        self.settle_now(ticket, tokens, usd)

    def settle_now(self, ticket: Ticket, tokens: int, usd: float) -> None:
        assert isinstance(ticket, LocalTicket), "a ticket from another admitter"
        if ticket.settled:
            return
        ticket.settled = True  # a repeated settle must not count twice
        ledger = ticket.ledger
        if not ticket.token_windows and ledger is None:
            return
        now = self._clock()
        if ticket.second > int(now) - SPAN:  # its buckets are still counted
            for buckets, bucket, estimate in ticket.token_windows:
                new = bucket[1] + tokens - estimate
                if new < 0:
                    new = 0
                buckets.total += new - bucket[1]
                bucket[1] = new
        # A period that has ended is not reopened by a late settle; the next admit seeds the
        # new counter from the ledger.
        if ledger is not None and (ledger.expires_at is None or ledger.expires_at > now):
            ledger.release(ticket.request_id)
            ledger.spent_usd += usd
            ledger.spent_tokens += tokens

    async def revoke(self, key_id: str, ttl: int) -> None:
        self._revoked[key_id] = self._clock() + ttl

    async def close(self) -> None:
        return None

    # --- checks -------------------------------------------------------------------------------

    def _existing_ledger(self, name: str, now: float) -> _Ledger | None:
        ledger = self._ledgers.get(name)
        if ledger is not None and ledger.expires_at is not None and ledger.expires_at <= now:
            del self._ledgers[name]
            return None
        return ledger

    def _ledger(self, quota: Quota, now: float) -> _Ledger:
        ledger = self._existing_ledger(quota.name, now)
        if ledger is None:
            expires_at = None if quota.ttl is None else now + quota.ttl
            ledger = _Ledger(quota.seed_usd, quota.seed_tokens, expires_at)
            self._ledgers[quota.name] = ledger
        return ledger

    # --- memory -------------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        oldest = math.floor(now) - WINDOW_SECONDS
        self._gen += 1
        self._windows = {
            n: b for n, b in self._windows.items() if b.buckets and b.buckets[-1][0] >= oldest
        }
        for name in list(self._ledgers):
            ledger = self._existing_ledger(name, now)
            if ledger is not None:
                ledger.drop_expired(now)
        self._revoked = {k: until for k, until in self._revoked.items() if until > now}


def _over_budget(ledger: _Ledger, quota: Quota, now: float, usd: float, tokens: int) -> bool:
    if ledger.oldest_until <= now:
        ledger.drop_expired(now)
    if (
        quota.usd_limit is not None
        and ledger.spent_usd + ledger.reserved_usd + usd > quota.usd_limit + USD_TOLERANCE
    ):
        return True
    return (
        quota.token_limit is not None
        and ledger.spent_tokens + ledger.reserved_tokens + tokens > quota.token_limit
    )


def _retry_after(w: RateWindow, buckets: Buckets, count: int, now: float) -> float:
    if w.cost > w.limit:
        return float(WINDOW_SECONDS)  # never fits; ask again after a full window
    excess = count + w.cost - w.limit
    for second, units in buckets.buckets:
        excess -= units
        if excess <= 0:
            return second + SPAN - now
    return float(WINDOW_SECONDS)


def _state(name: str, limit: int, buckets: Buckets, now: float) -> WindowState:
    b = buckets.buckets
    last = b[-1][0] if b and b[-1][1] > 0 else buckets.last_charged()
    reset = last + SPAN - now if last is not None else 0.0
    return WindowState(name, limit, max(0, limit - buckets.total), reset)
