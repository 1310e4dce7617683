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
from typing import Literal

from ailb.ratelimit import (
    RESERVATION_TTL,
    WINDOW_SECONDS,
    Admission,
    Flex,
    Quota,
    RateWindow,
    Ticket,
    WindowState,
    flex_grant,
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
SWEEP_EVERY = 1024  # admits by the general path between sweeps of idle counters
USD_TOLERANCE = 1e-9  # float sums like 0.1 + 0.2 must not refuse a budget spent exactly


class Buckets:
    """One window: [second, units] buckets oldest first, their running total (a check is then
    O(1) instead of a sum over 61 buckets), and the newest bucket. Buckets leave the window
    only when a new second starts, so they are trimmed then, not on every check."""

    __slots__ = ("buckets", "newest", "total")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.newest = [-1, 0]  # not in `buckets` until a second is charged
        self.total = 0

    def advance(self, second: int) -> list[int]:
        """Start `second`'s bucket; those older than the window go."""
        self.trim(second - WINDOW_SECONDS)
        bucket = self.newest = [second, 0]
        self.buckets.append(bucket)
        return bucket

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
    expires_at: float  # end of the quota period (inf: none)
    # request id -> its ticket (usd, tokens and until reserved); insertion order is expiry order
    # (same TTL for all), so expired ones are at the front, and the sums are kept as they change.
    reservations: dict[str, LocalTicket] = field(default_factory=dict)
    reserved_usd: float = 0.0
    reserved_tokens: int = 0
    # No reservation expires before this (the first one's expiry when last looked at; settles
    # only remove reservations, so it stays a safe lower bound): checks skip the scan till then.
    oldest_until: float = math.inf

    def release(self, ticket: LocalTicket) -> None:
        res = self.reservations
        t = res.pop(ticket.request_id, None)
        if t is not None:
            if res:
                self.reserved_usd -= t.usd
                self.reserved_tokens -= t.tokens
            else:  # no float dust left behind
                self.reserved_usd, self.reserved_tokens = 0.0, 0

    def drop_expired(self, now: float) -> None:
        res = self.reservations
        while res:
            ticket = next(iter(res.values()))
            if ticket.until > now:
                self.oldest_until = ticket.until
                return
            self.release(ticket)
        self.oldest_until = math.inf


# (name, limit, cost, tokens?, counters, its x-ratelimit-limit-* header)
BoundWindow = tuple[str, int, int, bool, Buckets, Header]
Pair = tuple[Buckets, Buckets, int, int, int, Header, Header]


class Plan:
    """Windows and a quota resolved against one admitter's counters: a key's limits, compiled
    once per version of the key, so that admitting one of its requests is a few attribute
    operations rather than building names, windows and a quota and looking each one up."""

    __slots__ = (
        "gen",
        "ledger",
        "pair",
        "quota",
        "revocation",
        "specs",
        "token_cap",
        "until",
        "usd_cap",
        "windows",
    )

    def __init__(
        self,
        specs: Sequence[RateWindow],
        quota: Quota | None,
        revocation: str | None,
        until: float = math.inf,
    ) -> None:
        self.specs = tuple(specs)  # cost PER_REQUEST: the request's token estimate
        self.quota = quota  # its estimates are given per request
        self.revocation = revocation
        self.until = until  # admit_now declines the plan from then on (a new budget period)
        # The quota's limits as plain numbers (no None checks per request).
        usd_limit = quota.usd_limit if quota is not None else None
        token_limit = quota.token_limit if quota is not None else None
        self.usd_cap = math.inf if usd_limit is None else usd_limit + USD_TOLERANCE
        self.token_cap = math.inf if token_limit is None else token_limit
        self.gen = -1  # the admitter generation the counters below belong to
        self.windows: tuple[BoundWindow, ...] = ()
        # The windows when they are one of requests and one of tokens (the usual key), laid
        # out flat for admit_now: (requests' counters, tokens' counters, requests' limit,
        # tokens' limit, a request's cost, the two x-ratelimit-limit-* headers).
        self.pair: Pair | None = None
        self.ledger: _Ledger | None = None  # the quota's, until it expires


class LocalTicket(Ticket):
    """An admitted request: what settling needs, and the x-ratelimit-* headers (handed to the
    endpoint as they are, the grant of an in-process admission)."""

    # (counters, the bucket charged, estimated tokens)
    token_windows: list[tuple[Buckets, list[int], int]]
    ledger: _Ledger | None
    usd: float  # reserved in the ledger ...
    tokens: int
    until: float  # ... until then
    headers: list[Header]
    extra: int = 0  # completion tokens granted to a Flex request (counted in `tokens`)
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
        flex: Flex | None = None,
    ) -> Admission:
        plan = Plan(windows, quota, revocation)
        extra = 0
        if flex is not None:
            # The windows carry their own costs; `tokens` is the quota's estimate.
            estimate = (quota.token_estimate, quota.usd_estimate) if quota else (0, 0.0)
            room = self.room_now(plan, estimate[0], estimate[1], flex)
            if room is not None:
                extra = flex_grant(room, flex)
                # The same check and charge with the extra tokens in every tokens window and
                # in the quota's estimates (nothing was charged by room_now).
                windows = [
                    RateWindow(w.name, w.limit, w.cost + extra) if w.name.endswith(":tokens") else w
                    for w in windows
                ]
                if quota is not None:
                    quota = quota._replace(
                        token_estimate=quota.token_estimate + extra,
                        usd_estimate=quota.usd_estimate + extra * flex.usd_per_token,
                    )
                plan = Plan(windows, quota, revocation)
        if quota is None:
            got = self.admit_now(plan, request_id)
        else:
            got = self.admit_now(plan, request_id, quota.token_estimate, quota.usd_estimate)
        assert got is not None  # a plan without an end
        if isinstance(got, Admission):
            return got
        got.extra = extra
        now = self._clock()
        states = [_state(n, lim, b, now) for n, lim, _, _, b, _ in plan.windows]
        return Admission(True, states, got, headers=got.headers, extra=extra)

    def room_now(self, plan: Plan, tokens: int, usd: float, flex: Flex) -> int | None:
        """How many extra tokens every tokens window and the quota of `plan` still have room
        for, beyond this request's own `tokens` and `usd` (`tokens` is the cost of its
        PER_REQUEST windows; other windows carry theirs); None when the plan limits no
        tokens (a Flex request is then not limited). Charges nothing: with admit_now right
        after it, without awaiting in between, the two are one atomic step."""
        now = self._clock()
        if now >= plan.until:
            return None
        if plan.gen != self._gen:
            self._bind(plan, now)
        room = flex.most
        limited = False
        second = int(now)
        for w in plan.windows:
            _, limit, cost, is_tokens, buckets, _ = w
            if not is_tokens:
                continue
            if buckets.newest[0] < second:
                buckets.trim(second - WINDOW_SECONDS)  # what a new bucket would drop first
            room = min(room, limit - buckets.total - (tokens if cost < 0 else cost))
            limited = True
        quota = plan.quota
        if quota is not None:
            ledger = plan.ledger
            if ledger is None or ledger.expires_at <= now:
                ledger = plan.ledger = self._ledger(quota, now)
            if ledger.oldest_until <= now:
                ledger.drop_expired(now)
            if quota.token_limit is not None:
                used = ledger.spent_tokens + ledger.reserved_tokens + tokens
                room = min(room, quota.token_limit - used)
                limited = True
            if quota.usd_limit is not None:
                limited = True
                if flex.usd_per_token > 0:
                    money = plan.usd_cap - ledger.spent_usd - ledger.reserved_usd - usd
                    room = min(room, math.floor(money / flex.usd_per_token) if money > 0 else 0)
        return room if limited else None

    def admit_now(
        self, plan: Plan, request_id: str, tokens: int = 0, usd: float = 0.0
    ) -> LocalTicket | Admission | None:
        """Check and charge through a plan, without awaiting (atomic on the event loop).
        `tokens` and `usd` are the request's estimates for PER_REQUEST windows and the quota.
        Returns the ticket of an admitted request (with its x-ratelimit-* headers), the
        Admission of a refused one (with its window states), or None once the plan's `until`
        has passed (nothing charged)."""
        # Written flat, checking and charging in one pass (undone on a refusal): it runs on
        # every limited request.
        now = self._clock()
        if now >= plan.until:
            return None
        second = int(now)  # clocks are positive: int() is floor()
        revocation = plan.revocation
        if revocation is not None and self._revoked and self._revoked.get(revocation, 0.0) > now:
            return self._refused(plan, now, tokens, "revoked")
        ledger = None
        if plan.quota is not None:
            ledger = plan.ledger
            if ledger is None or ledger.expires_at <= now:
                ledger = plan.ledger = self._ledger(plan.quota, now)
            if ledger.oldest_until <= now:
                ledger.drop_expired(now)
        # Whether the budget has room for the estimates (nothing below changes the ledger).
        quota_fits = ledger is None or (
            ledger.spent_usd + ledger.reserved_usd + usd <= plan.usd_cap
            and ledger.spent_tokens + ledger.reserved_tokens + tokens <= plan.token_cap
        )
        headers: list[Header] | None = None
        pair = plan.pair
        if pair is not None and quota_fits:
            # A key's usual limits, an rpm and a tpm window: checked, then charged, in
            # straight lines (half the steps of the loop below) while both are in the same
            # second as their newest bucket. A new second, or anything that does not fit,
            # goes the general way, which starts buckets and refuses as it always has.
            rb, tb, r_limit, t_limit, r_cost, r_header, t_header = pair
            r_bucket, t_bucket = rb.newest, tb.newest
            r_total, t_total = rb.total + r_cost, tb.total + tokens
            if (
                r_bucket[0] >= second
                and t_bucket[0] >= second
                and r_total <= r_limit
                and t_total <= t_limit
            ):
                rb.total, tb.total = r_total, t_total
                r_bucket[1] += r_cost
                t_bucket[1] += tokens
                token_windows = [(tb, t_bucket, tokens)]
                headers = [
                    r_header,
                    (REMAINING_REQUESTS, b"%d" % (r_limit - r_total)),
                    CHARGED_RESET_REQUESTS if r_bucket[1] else _reset(rb, r_limit, False, now),
                    t_header,
                    (REMAINING_TOKENS, b"%d" % (t_limit - t_total)),
                    CHARGED_RESET_TOKENS if t_bucket[1] else _reset(tb, t_limit, True, now),
                ]
        if headers is None:
            # Sweeps and rebinding are left to this path: a plan's first request, and the first
            # of each second, come this way, and counters a sweep drops have no newest bucket
            # left, so the straight lines above never charge them. Sweeps keep pace with the
            # counters being made.
            self._admits += 1
            if not self._admits % SWEEP_EVERY:
                self._sweep(now)
            if plan.gen != self._gen:
                self._bind(plan, now)
            token_windows = []
            # The tightest window of each kind, for the headers.
            req: BoundWindow | None = None
            tok: BoundWindow | None = None
            req_left = tok_left = 0
            req_bucket = tok_bucket = None
            for i, w in enumerate(plan.windows):
                _, limit, cost, is_tokens, buckets, _ = w
                if cost < 0:
                    cost = tokens
                bucket = buckets.newest
                if bucket[0] < second:  # (a clock stepped back charges the newest bucket)
                    bucket = buckets.advance(second)
                total = buckets.total + cost
                if total > limit:
                    return self._refused(plan, now, tokens, "rate", refused_at=i)
                buckets.total = total
                bucket[1] += cost
                left = limit - total
                if is_tokens:
                    token_windows.append((buckets, bucket, cost))
                    if tok is None or left < tok_left:
                        tok, tok_left, tok_bucket = w, left, bucket
                elif req is None or left < req_left:
                    req, req_left, req_bucket = w, left, bucket
            if not quota_fits:
                return self._refused(plan, now, tokens, "quota")
            headers = []
            if req is not None:
                headers = [
                    req[5],
                    (REMAINING_REQUESTS, b"%d" % req_left),
                    CHARGED_RESET_REQUESTS if req_bucket[1] else _reset(req[4], req[1], False, now),  # type: ignore[index]
                ]
            if tok is not None:
                headers += (
                    tok[5],
                    (REMAINING_TOKENS, b"%d" % tok_left),
                    CHARGED_RESET_TOKENS if tok_bucket[1] else _reset(tok[4], tok[1], True, now),  # type: ignore[index]
                )
        until = now + RESERVATION_TTL
        ticket = LocalTicket(request_id, second, token_windows, ledger, usd, tokens, until, headers)
        if ledger is not None:
            res = ledger.reservations
            if not res:
                ledger.oldest_until = until
            res[request_id] = ticket
            ledger.reserved_usd += usd
            ledger.reserved_tokens += tokens
        return ticket

    def _refused(
        self,
        plan: Plan,
        now: float,
        tokens: int,
        reason: Literal["rate", "quota", "revoked"],
        refused_at: int | None = None,
    ) -> Admission:
        """A refusal. The windows this request charged are uncharged: none for a revoked key
        (checked first), those before the full one (`refused_at`, its index) for a full window,
        all for a quota. The admission carries their states."""
        if plan.gen != self._gen:  # a revoked key's plan, refused before the general path
            self._bind(plan, now)
        windows = plan.windows
        if reason != "revoked":
            for w in windows if refused_at is None else windows[:refused_at]:
                _, _, cost, _, buckets, _ = w
                if cost < 0:
                    cost = tokens
                buckets.newest[1] -= cost  # the bucket this request charged
                buckets.total -= cost
        retry = 0.0
        if refused_at is not None:
            name, limit, cost, _, buckets, _ = windows[refused_at]
            cost = tokens if cost < 0 else cost
            retry = _retry_after(RateWindow(name, limit, cost), buckets, buckets.total, now)
            denied_by = name
        elif reason == "quota":
            assert plan.quota is not None
            denied_by = plan.quota.name
        else:
            assert plan.revocation is not None
            denied_by = plan.revocation
        oldest = int(now) - WINDOW_SECONDS
        for w in windows:
            w[4].trim(oldest)  # those after the refusing one were not looked at
        adm = Admission(False, denied_by=denied_by, reason=reason, retry_after=retry)
        adm.windows = [_state(n, lim, b, now) for n, lim, _, _, b, _ in windows]
        return adm

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
        per_request = [w for w in bound if not w[3] and w[2] >= 0]
        per_token = [w for w in bound if w[3] and w[2] < 0]  # charged the request's estimate
        usual = len(bound) == 2 and len(per_request) == 1 and len(per_token) == 1
        if usual:
            (_, r_limit, r_cost, _, rb, r_header), (_, t_limit, _, _, tb, t_header) = (
                per_request[0],
                per_token[0],
            )
            plan.pair = (rb, tb, r_limit, t_limit, r_cost, r_header, t_header)
        else:
            plan.pair = None
        plan.ledger = None  # looked up again too: a sweep may have dropped it
        plan.gen = self._gen

    async def settle(self, ticket: Ticket, tokens: int, usd: float) -> None:
        assert isinstance(ticket, LocalTicket), "a ticket from another admitter"
        self.settle_now(ticket, tokens, usd)

    def settle_now(self, ticket: LocalTicket, tokens: int, usd: float) -> None:
        if ticket.settled:
            return
        ticket.settled = True  # a repeated settle must not count twice
        ledger = ticket.ledger
        token_windows = ticket.token_windows
        if not token_windows and ledger is None:
            return
        now = self._clock()
        # Its buckets are still counted (second + SPAN is whole: int(now) < it iff now < it).
        if token_windows and ticket.second + SPAN > now:
            for buckets, bucket, estimate in token_windows:
                new = bucket[1] + tokens - estimate
                if new < 0:
                    new = 0
                buckets.total += new - bucket[1]
                bucket[1] = new
        # A period that has ended is not reopened by a late settle; the next admit seeds the
        # new counter from the ledger.
        if ledger is not None and ledger.expires_at > now:
            ledger.release(ticket)
            ledger.spent_usd += usd
            ledger.spent_tokens += tokens

    async def revoke(self, key_id: str, ttl: int) -> None:
        self._revoked[key_id] = self._clock() + ttl

    async def close(self) -> None:
        return None

    # --- checks -------------------------------------------------------------------------------

    def _existing_ledger(self, name: str, now: float) -> _Ledger | None:
        ledger = self._ledgers.get(name)
        if ledger is not None and ledger.expires_at <= now:
            del self._ledgers[name]
            return None
        return ledger

    def _ledger(self, quota: Quota, now: float) -> _Ledger:
        ledger = self._existing_ledger(quota.name, now)
        if ledger is None:
            expires_at = math.inf if quota.ttl is None else now + quota.ttl
            ledger = _Ledger(quota.seed_usd, quota.seed_tokens, expires_at)
            self._ledgers[quota.name] = ledger
        return ledger

    # --- memory -------------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        oldest = math.floor(now) - WINDOW_SECONDS
        self._gen += 1
        kept = {}
        for name, b in self._windows.items():
            if b.buckets and b.buckets[-1][0] >= oldest:
                kept[name] = b
            else:
                # A plan still bound to these takes the general path next (its newest bucket
                # is never current), and is bound to the admitter's counters there: even if a
                # clock stepped back by over a window makes that bucket current again.
                b.newest = [-1, 0]
        self._windows = kept
        for name in list(self._ledgers):
            ledger = self._existing_ledger(name, now)
            if ledger is not None:
                ledger.drop_expired(now)
        self._revoked = {k: until for k, until in self._revoked.items() if until > now}


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


def _reset(buckets: Buckets, limit: int, tokens: bool, now: float) -> Header:
    """The reset header of a window whose newest bucket holds nothing (a zero-cost request):
    its age is its older buckets'."""
    return reset_header(tokens, _state("", limit, buckets, now).reset_s)
