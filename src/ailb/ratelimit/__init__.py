"""Admission: rate windows and quotas checked, and charged, in one atomic step.

Rate limits are sliding 60-second windows kept as per-second buckets. A request is admitted only
if every window it touches has room (the last 61 whole seconds are counted, so no 60-second span
ever holds more than the limit); then all of them are charged together. Quotas (budgets) hold
what was spent in the current period plus reservations of requests still running; a request is
admitted if spent + reserved + its estimate fits, and its reservation is replaced by the actual
figure when it settles. Reservations of requests that never settle (a crashed instance) expire.

Several of these values are made per request: the per-request ones are msgspec Structs (made in C,
three times faster than NamedTuples or slotted dataclasses), the compiled ones NamedTuples.

Two backends implement `Admitter` with the same semantics: in-process (`local`) and Redis
(`redis`, one Lua script per check, so many instances share exact counters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple, Protocol

import msgspec

WINDOW_SECONDS = 60
# How long an unsettled reservation counts: longer than any request deadline, so only the
# reservations of requests that will never settle (a crashed instance) run out.
RESERVATION_TTL = 900


class RateWindow(NamedTuple):
    """A limit of `limit` units per 60 s on counter `name`; this request costs `cost` units
    (1 for a requests window, the token estimate for a tokens window)."""

    name: str
    limit: int
    cost: int


# The cost of a tokens window in a compiled plan: the request's token estimate, given when it
# is admitted.
PER_REQUEST = -1


class Quota(NamedTuple):
    """A period budget on counter `name` (one per key and period, e.g. `k:<id>:2026-12`).
    A limit of None is not checked. `ttl` is how long the period's counter must live (None:
    forever); `seed_usd`/`seed_tokens` are what the ledger says was already spent, used only
    when the counter does not exist yet (first use, or a Redis that lost its data)."""

    name: str
    usd_limit: float | None
    token_limit: int | None
    usd_estimate: float
    token_estimate: int
    ttl: int | None = None
    seed_usd: float = 0.0
    seed_tokens: int = 0


class Flex(NamedTuple):
    """A request without a completion limit (`max_tokens`) whose tokens are limited (a token
    or money budget, a tokens window): it is admitted with as many extra completion tokens as
    every one of those limits still has room for, `most` at most, in multiples of `step` (one
    per choice, `n`), and refused when fewer than `least` fit. The gateway then sets the
    upstream's `max_tokens` to what was granted, so the reservation is the worst case and
    concurrent requests cannot overspend (DESIGN §8)."""

    most: int
    least: int
    step: int
    usd_per_token: float  # what an extra token may cost (the dearest deployment's price)


def flex_grant(room: int, flex: Flex) -> int:
    """The extra tokens granted from `room`: a multiple of the step, at most `most`; `least`
    when even that does not fit (the admission then refuses it)."""
    room = min(room, flex.most)
    granted = room - room % flex.step if room > 0 else 0
    return granted if granted >= flex.least else flex.least


class WindowState(msgspec.Struct):
    """A window after the check, for the x-ratelimit-* headers."""

    name: str
    limit: int
    remaining: int
    reset_s: float  # seconds until the window is empty again


class Ticket(msgspec.Struct):
    """What `settle` needs to correct an admitted request's charges; each backend makes its
    own kind (names for Redis, the counters themselves in process), ending with `settled`: set
    by the first settle, so a ticket counts once."""

    request_id: str
    second: int  # the bucket the token estimates were charged to


class NamedTicket(Ticket):
    token_windows: tuple[tuple[str, int], ...] = ()  # (window name, estimated tokens)
    quota: Quota | None = None
    settled: bool = False


class Admission(msgspec.Struct):
    allowed: bool
    windows: list[WindowState] = []
    ticket: Ticket | None = None
    denied_by: str | None = None  # the window or quota name that refused
    reason: Literal["rate", "quota", "revoked"] | None = None
    retry_after: float = 0.0  # seconds until the refused window has room (rate only)
    # The x-ratelimit-* headers, when the admitter made them as it went (else made from
    # `windows` by ratelimit.headers.limit_headers).
    headers: list[tuple[bytes, bytes]] | None = None
    extra: int = 0  # completion tokens granted to a Flex request (0: no limit applied)


class AdmissionUnavailable(Exception):
    """The shared backend (Redis) cannot be reached."""


class Admitter(Protocol):
    async def admit(
        self,
        request_id: str,
        windows: Sequence[RateWindow],
        quota: Quota | None = None,
        revocation: str | None = None,
        flex: Flex | None = None,
    ) -> Admission:
        """Check and, if everything has room, charge. `revocation`: a key id refused when
        it was revoked through `revoke` (checked in the same atomic step). `flex`: extra
        completion tokens as room allows, in the same step (Admission.extra)."""

    async def settle(self, ticket: Ticket, tokens: int, usd: float) -> None:
        """Replace the estimates with the actual figures (tokens windows and the quota)."""

    async def revoke(self, key_id: str, ttl: int) -> None:
        """Remember a revocation for `ttl` seconds (at least the key cache's refresh time)."""

    async def close(self) -> None: ...
