"""In-process admission for a single gateway instance.

Every method runs to completion without awaiting, so on one event loop each check-and-charge is
atomic without a lock.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
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

Buckets = dict[int, int]  # second -> units charged in that second


@dataclass(slots=True)
class _Ledger:
    spent_usd: float
    spent_tokens: int
    expires_at: float | None  # end of the quota period
    reservations: dict[str, tuple[float, int, float]] = field(default_factory=dict)

    def drop_expired(self, now: float) -> None:
        stale = [rid for rid, (_, _, until) in self.reservations.items() if until <= now]
        for rid in stale:
            del self.reservations[rid]


class LocalAdmitter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, Buckets] = {}
        self._ledgers: dict[str, _Ledger] = {}
        self._revoked: dict[str, float] = {}  # key id -> until
        self._settled: OrderedDict[str, float] = OrderedDict()  # request id -> until
        self._admits = 0

    async def admit(
        self,
        request_id: str,
        windows: Sequence[RateWindow],
        quota: Quota | None = None,
        revocation: str | None = None,
    ) -> Admission:
        now = self._clock()
        second = math.floor(now)
        self._admits += 1
        if self._admits % SWEEP_EVERY == 0:
            self._sweep(now)
        live = [self._live(w.name, second) for w in windows]
        refused = self._refusal(now, windows, live, quota, revocation)
        if refused is not None:
            refused.windows = [_state(w, b, now) for w, b in zip(windows, live, strict=True)]
            return refused
        for w, buckets in zip(windows, live, strict=True):
            buckets[second] = buckets.get(second, 0) + w.cost
        if quota is not None:
            self._ledger(quota, now).reservations[request_id] = (
                quota.usd_estimate,
                quota.token_estimate,
                now + RESERVATION_TTL,
            )
        return Admission(
            allowed=True,
            windows=[_state(w, b, now) for w, b in zip(windows, live, strict=True)],
            ticket=Ticket(
                request_id,
                second,
                tuple((w.name, w.cost) for w in windows if w.name.endswith(":tokens")),
                quota,
            ),
        )

    async def settle(self, ticket: Ticket, tokens: int, usd: float) -> None:
        if not ticket.token_windows and ticket.quota is None:
            return
        now = self._clock()
        until = self._settled.get(ticket.request_id)
        if until is not None and now < until:
            return  # already settled: a repeated settle must not count twice
        self._settled[ticket.request_id] = now + RESERVATION_TTL
        self._settled.move_to_end(ticket.request_id)
        self._trim_settled(now)
        if ticket.second > math.floor(now) - SPAN:
            for name, estimate in ticket.token_windows:
                buckets = self._windows.get(name)
                if buckets is not None and ticket.second in buckets:
                    buckets[ticket.second] = max(0, buckets[ticket.second] + tokens - estimate)
        if ticket.quota is not None:
            ledger = self._existing_ledger(ticket.quota.name, now)
            # A period that has ended (or was never opened here) is not reopened by a late
            # settle; the next admit seeds the new counter from the ledger.
            if ledger is not None:
                ledger.reservations.pop(ticket.request_id, None)
                ledger.spent_usd += usd
                ledger.spent_tokens += tokens

    async def revoke(self, key_id: str, ttl: int) -> None:
        self._revoked[key_id] = self._clock() + ttl

    async def close(self) -> None:
        return None

    # --- checks -------------------------------------------------------------------------------

    def _refusal(
        self,
        now: float,
        windows: Sequence[RateWindow],
        live: list[Buckets],
        quota: Quota | None,
        revocation: str | None,
    ) -> Admission | None:
        if revocation is not None and self._revoked.get(revocation, -math.inf) > now:
            return Admission(allowed=False, denied_by=revocation, reason="revoked")
        for w, buckets in zip(windows, live, strict=True):
            count = sum(buckets.values())
            if count + w.cost > w.limit:
                return Admission(
                    allowed=False,
                    denied_by=w.name,
                    reason="rate",
                    retry_after=_retry_after(w, buckets, count, now),
                )
        if quota is not None and _over_budget(self._ledger(quota, now), quota, now):
            return Admission(allowed=False, denied_by=quota.name, reason="quota")
        return None

    def _live(self, name: str, second: int) -> Buckets:
        buckets = self._windows.setdefault(name, {})
        oldest = second - WINDOW_SECONDS
        for s in [s for s in buckets if s < oldest]:
            del buckets[s]
        return buckets

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
        self._windows = {n: b for n, b in self._windows.items() if b and max(b) >= oldest}
        for name in list(self._ledgers):
            ledger = self._existing_ledger(name, now)
            if ledger is not None:
                ledger.drop_expired(now)
        self._revoked = {k: until for k, until in self._revoked.items() if until > now}
        self._trim_settled(now)

    def _trim_settled(self, now: float) -> None:
        # Markers are appended in expiry order, so the expired ones are at the front.
        while self._settled and next(iter(self._settled.values())) <= now:
            self._settled.popitem(last=False)


def _over_budget(ledger: _Ledger, quota: Quota, now: float) -> bool:
    ledger.drop_expired(now)
    reserved = ledger.reservations.values()
    if quota.usd_limit is not None:
        usd = ledger.spent_usd + sum(r[0] for r in reserved) + quota.usd_estimate
        if usd > quota.usd_limit + USD_TOLERANCE:
            return True
    if quota.token_limit is not None:
        tokens = ledger.spent_tokens + sum(r[1] for r in reserved) + quota.token_estimate
        if tokens > quota.token_limit:
            return True
    return False


def _retry_after(w: RateWindow, buckets: Buckets, count: int, now: float) -> float:
    if w.cost > w.limit:
        return float(WINDOW_SECONDS)  # never fits; ask again after a full window
    excess = count + w.cost - w.limit
    for second in sorted(buckets):
        excess -= buckets[second]
        if excess <= 0:
            return second + SPAN - now
    return float(WINDOW_SECONDS)


def _state(w: RateWindow, buckets: Buckets, now: float) -> WindowState:
    count = sum(buckets.values())
    charged = [s for s, units in buckets.items() if units > 0]
    reset = max(charged) + SPAN - now if charged else 0.0
    return WindowState(w.name, w.limit, max(0, w.limit - count), reset)
