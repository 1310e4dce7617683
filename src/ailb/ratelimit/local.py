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

# One bucket more than the window: the current second is only partly elapsed, so counting 61
# whole seconds keeps every 60-second span within the limit.
SPAN = WINDOW_SECONDS + 1
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

    def charge(self, second: int, units: int) -> None:
        b = self.buckets
        if b and b[-1][0] == second:
            b[-1][1] += units
        else:
            b.append([second, units])
        self.total += units

    def adjust(self, second: int, delta: int) -> None:
        for bucket in reversed(self.buckets):  # the recent end: settles come soon after
            if bucket[0] == second:
                new = max(0, bucket[1] + delta)
                self.total += new - bucket[1]
                bucket[1] = new
                return
            if bucket[0] < second:
                return

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

    def reserve(self, request_id: str, usd: float, tokens: int, until: float) -> None:
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
                return
            self.release(rid)


class LocalAdmitter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, Buckets] = {}
        self._ledgers: dict[str, _Ledger] = {}
        self._revoked: dict[str, float] = {}  # key id -> until
        self._admits = 0

    async def admit(
        self,
        request_id: str,
        windows: Sequence[RateWindow],
        quota: Quota | None = None,
        revocation: str | None = None,
    ) -> Admission:
        # Written flat: it runs on every limited request (no helper calls on the usual path).
        now = self._clock()
        second = int(now)  # clocks are positive: int() is floor()
        self._admits += 1
        if not self._admits % SWEEP_EVERY:
            self._sweep(now)
        refused: Admission | None = None
        if revocation is not None and self._revoked and self._revoked.get(revocation, 0.0) > now:
            refused = Admission(False, denied_by=revocation, reason="revoked")
        oldest = second - WINDOW_SECONDS
        counters = self._windows
        live: list[Buckets] = []
        for w in windows:
            buckets = counters.get(w.name)
            if buckets is None:
                buckets = counters[w.name] = Buckets()
            elif buckets.buckets and buckets.buckets[0][0] < oldest:
                buckets.trim(oldest)
            live.append(buckets)
            if refused is None and buckets.total + w.cost > w.limit:
                retry = _retry_after(w, buckets, buckets.total, now)
                refused = Admission(False, denied_by=w.name, reason="rate", retry_after=retry)
        ledger = None
        if quota is not None and refused is None:
            ledger = self._ledger(quota, now)
            if _over_budget(ledger, quota, now):
                refused = Admission(False, denied_by=quota.name, reason="quota")
        if refused is not None:
            refused.windows = [_state(w, b, now) for w, b in zip(windows, live, strict=True)]
            return refused
        states = []
        token_windows = []
        reset = SPAN - now + second  # the bucket just charged is the window's newest
        for w, buckets in zip(windows, live, strict=True):
            b = buckets.buckets
            if b and b[-1][0] == second:
                b[-1][1] += w.cost
            else:
                b.append([second, w.cost])
            buckets.total += w.cost
            remaining = w.limit - buckets.total
            if b[-1][1] > 0:
                states.append(
                    WindowState(w.name, w.limit, remaining if remaining > 0 else 0, reset)
                )
            else:  # a zero-cost probe: the window's age comes from older buckets
                states.append(_state(w, buckets, now))
            if w.name.endswith(":tokens"):
                token_windows.append((w.name, w.cost))
        if ledger is not None:
            assert quota is not None
            ledger.reserve(
                request_id, quota.usd_estimate, quota.token_estimate, now + RESERVATION_TTL
            )
        return Admission(True, states, Ticket(request_id, second, tuple(token_windows), quota))

    async def settle(self, ticket: Ticket, tokens: int, usd: float) -> None:
        if ticket.settled or (not ticket.token_windows and ticket.quota is None):
            return
        ticket.settled = True  # a repeated settle must not count twice
        now = self._clock()
        if ticket.second > int(now) - SPAN:
            for name, estimate in ticket.token_windows:
                buckets = self._windows.get(name)
                if buckets is not None:
                    buckets.adjust(ticket.second, tokens - estimate)
        if ticket.quota is not None:
            ledger = self._existing_ledger(ticket.quota.name, now)
            # A period that has ended (or was never opened here) is not reopened by a late
            # settle; the next admit seeds the new counter from the ledger.
            if ledger is not None:
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
        self._windows = {
            n: b for n, b in self._windows.items() if b.buckets and b.buckets[-1][0] >= oldest
        }
        for name in list(self._ledgers):
            ledger = self._existing_ledger(name, now)
            if ledger is not None:
                ledger.drop_expired(now)
        self._revoked = {k: until for k, until in self._revoked.items() if until > now}


def _over_budget(ledger: _Ledger, quota: Quota, now: float) -> bool:
    ledger.drop_expired(now)
    if quota.usd_limit is not None:
        usd = ledger.spent_usd + ledger.reserved_usd + quota.usd_estimate
        if usd > quota.usd_limit + USD_TOLERANCE:
            return True
    if quota.token_limit is not None:
        tokens = ledger.spent_tokens + ledger.reserved_tokens + quota.token_estimate
        if tokens > quota.token_limit:
            return True
    return False


def _retry_after(w: RateWindow, buckets: Buckets, count: int, now: float) -> float:
    if w.cost > w.limit:
        return float(WINDOW_SECONDS)  # never fits; ask again after a full window
    excess = count + w.cost - w.limit
    for second, units in buckets.buckets:
        excess -= units
        if excess <= 0:
            return second + SPAN - now
    return float(WINDOW_SECONDS)


def _state(w: RateWindow, buckets: Buckets, now: float) -> WindowState:
    b = buckets.buckets
    last = b[-1][0] if b and b[-1][1] > 0 else buckets.last_charged()
    reset = last + SPAN - now if last is not None else 0.0
    return WindowState(w.name, w.limit, max(0, w.limit - buckets.total), reset)
