"""The same behaviour from both backends (on a fake clock, so sliding is deterministic), plus
what only a shared Redis shows: atomic checks across instances, key expiry, failing fast."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis.asyncio

from ailb.ratelimit import (
    PER_REQUEST,
    RESERVATION_TTL,
    Admission,
    AdmissionUnavailable,
    Admitter,
    Flex,
    NamedTicket,
    Quota,
    RateWindow,
    Ticket,
)
from ailb.ratelimit.local import SWEEP_EVERY, LocalAdmitter, LocalTicket, Plan
from ailb.ratelimit.redis import RedisAdmitter

T0 = 1_000_000.0
REQUESTS = "k:1:requests"
TOKENS = "k:1:tokens"
BUDGET = "k:1:2026-12"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def at(self, offset: float) -> None:
        self.now = T0 + offset


Body = Callable[[Admitter, Clock], Awaitable[None]]


class Backend:
    """Admitters of one kind on a fake clock, made and closed inside the test's event loop."""

    def __init__(self, url: str | None = None, prefix: str = "") -> None:
        self.url = url
        self.prefix = prefix

    def make(self, clock: Clock) -> Admitter:
        if self.url is None:
            return LocalAdmitter(clock)
        return RedisAdmitter(self.url, prefix=self.prefix, clock=clock)

    def run(self, body: Body) -> None:
        async def main() -> None:
            clock = Clock()
            admitter = self.make(clock)
            try:
                await body(admitter, clock)
            finally:
                await admitter.close()

        asyncio.run(main())


async def _delete_keys(url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"ailb-test:{uuid.uuid4().hex}:"
    yield prefix
    asyncio.run(_delete_keys(redis_url, prefix))


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "local":
        return Backend()
    return Backend(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))


def requests(limit: int, name: str = REQUESTS) -> RateWindow:
    return RateWindow(name, limit, 1)


def tokens(limit: int, cost: int, name: str = TOKENS) -> RateWindow:
    return RateWindow(name, limit, cost)


def budget(
    usd_limit: float | None = None,
    token_limit: int | None = None,
    usd: float = 0.0,
    tok: int = 0,
    ttl: int | None = None,
    seed_usd: float = 0.0,
    seed_tokens: int = 0,
) -> Quota:
    return Quota(BUDGET, usd_limit, token_limit, usd, tok, ttl, seed_usd, seed_tokens)


def rid() -> str:
    return uuid.uuid4().hex


def ticket(adm: Admission) -> Ticket:
    assert adm.allowed, adm
    assert adm.ticket is not None
    return adm.ticket


# --- rate windows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "charges", "probe_at", "cost", "retry_after"),
    [
        pytest.param(3, [(0.0, 1), (10.0, 1), (20.0, 1)], 30.25, 1, 30.75, id="oldest-leaves"),
        pytest.param(5, [(0.0, 2), (10.0, 2)], 20.5, 3, 40.5, id="one-bucket-frees-enough"),
        pytest.param(4, [(0.0, 1), (5.0, 1), (10.0, 2)], 12.0, 3, 59.0, id="needs-three-buckets"),
        pytest.param(2, [(0.25, 1), (0.75, 1)], 0.875, 1, 60.125, id="current-second"),
        pytest.param(4, [], 0.0, 5, 60.0, id="cost-above-limit"),
    ],
)
def test_limit_reached_is_denied_until_retry_after(
    backend: Backend,
    limit: int,
    charges: list[tuple[float, int]],
    probe_at: float,
    cost: int,
    retry_after: float,
) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        for at, units in charges:
            clock.at(at)
            assert (await a.admit(rid(), [RateWindow(REQUESTS, limit, units)])).allowed
        clock.at(probe_at)
        probe = [RateWindow(REQUESTS, limit, cost)]
        adm = await a.admit(rid(), probe)
        assert (adm.allowed, adm.reason, adm.denied_by) == (False, "rate", REQUESTS)
        assert adm.ticket is None
        assert adm.retry_after == pytest.approx(retry_after)
        if cost > limit:
            return
        clock.at(probe_at + retry_after - 0.01)
        assert not (await a.admit(rid(), probe)).allowed
        clock.at(probe_at + retry_after)
        assert (await a.admit(rid(), probe)).allowed

    backend.run(body)


def test_window_admits_again_once_buckets_age_out(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        clock.at(0.5)
        for _ in range(3):
            assert (await a.admit(rid(), [requests(3)])).allowed
        clock.at(60.999)  # second 60 still counts second 0: 61 buckets, current included
        assert not (await a.admit(rid(), [requests(3)])).allowed
        clock.at(61.0)
        assert [(await a.admit(rid(), [requests(3)])).allowed for _ in range(4)] == [
            True,
            True,
            True,
            False,
        ]

    backend.run(body)


def test_random_traffic_never_exceeds_the_limit_in_any_60_seconds(backend: Backend) -> None:
    """Three minutes of bursty traffic; every decision also matches the in-process reference,
    so the Redis script and LocalAdmitter are held to the same numbers."""
    limit = 40
    rng = random.Random(20261201)
    traffic = sorted((rng.uniform(0, 180), rng.choice([1, 1, 1, 2, 5])) for _ in range(1500))

    async def body(a: Admitter, clock: Clock) -> None:
        ref_clock = Clock()
        reference = LocalAdmitter(ref_clock)
        admitted: list[tuple[float, int]] = []
        for at, cost in traffic:
            clock.at(at)
            ref_clock.at(at)
            window = [RateWindow(REQUESTS, limit, cost)]
            adm, expected = await a.admit(rid(), window), await reference.admit(rid(), window)
            assert (adm.allowed, adm.windows[0].remaining) == (
                expected.allowed,
                expected.windows[0].remaining,
            )
            assert adm.retry_after == pytest.approx(expected.retry_after)
            assert adm.windows[0].reset_s == pytest.approx(expected.windows[0].reset_s)
            if adm.allowed:
                admitted.append((at, cost))
        for start, _ in admitted:
            assert sum(c for t, c in admitted if start <= t <= start + 60) <= limit
        assert sum(c for t, c in admitted if t >= 120) >= limit * 0.75  # it keeps sliding
        assert sum(c for _, c in admitted) >= 2.5 * limit

    backend.run(body)


def test_a_refusing_window_charges_no_other(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        first = await a.admit(rid(), [requests(10), tokens(100, 80)])
        assert [w.remaining for w in first.windows] == [9, 20]
        denied = await a.admit(rid(), [requests(10), tokens(100, 80)])
        assert (denied.allowed, denied.denied_by) == (False, TOKENS)
        assert [w.remaining for w in denied.windows] == [9, 20]
        small = await a.admit(rid(), [requests(10), tokens(100, 10)])
        assert small.allowed
        assert [w.remaining for w in small.windows] == [8, 10]
        # The quota refuses after the windows had room: they stay uncharged too.
        over = await a.admit(rid(), [requests(10)], budget(usd_limit=1.0, usd=2.0))
        assert (over.allowed, over.reason, over.retry_after) == (False, "quota", 0.0)
        assert (await a.admit(rid(), [requests(10)])).windows[0].remaining == 7

    backend.run(body)


def test_window_states_for_the_ratelimit_headers(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        clock.at(0.0)
        await a.admit(rid(), [requests(5)])
        clock.at(10.5)
        adm = await a.admit(rid(), [requests(5), tokens(100, 0)])
        assert [(w.name, w.limit, w.remaining) for w in adm.windows] == [
            (REQUESTS, 5, 3),
            (TOKENS, 100, 100),
        ]
        assert adm.windows[0].reset_s == pytest.approx(10 + 61 - 10.5)
        assert adm.windows[1].reset_s == 0.0  # nothing charged: already empty
        for _ in range(3):
            await a.admit(rid(), [requests(5)])
        clock.at(40.0)
        denied = await a.admit(rid(), [requests(5)])
        assert not denied.allowed
        assert (denied.windows[0].remaining, denied.windows[0].reset_s) == (0, 10 + 61 - 40.0)
        clock.at(71.0)
        idle = await a.admit(rid(), [RateWindow(REQUESTS, 5, 0)])
        assert (idle.windows[0].remaining, idle.windows[0].reset_s) == (5, 0.0)

    backend.run(body)


@pytest.mark.parametrize(
    ("estimates", "actual", "remaining"),
    [
        pytest.param([300], 500, 500, id="up"),
        pytest.param([300], 100, 900, id="down"),
        pytest.param([300], 300, 700, id="exact"),
        pytest.param([300, 300], 0, 1000, id="two-requests-down-to-zero"),
    ],
)
def test_settle_corrects_token_estimates(
    backend: Backend, estimates: list[int], actual: int, remaining: int
) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        tickets = [ticket(await a.admit(rid(), [requests(10), tokens(1000, e)])) for e in estimates]
        clock.at(30.0)
        for t in tickets:
            await a.settle(t, actual, 0.0)
        probe = await a.admit(rid(), [requests(10), tokens(1000, 0)])
        assert [w.remaining for w in probe.windows] == [10 - len(estimates) - 1, remaining]

    backend.run(body)


def test_settle_never_touches_a_bucket_that_left_the_window(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        late = ticket(await a.admit(rid(), [tokens(1000, 300)]))
        clock.at(61.0)
        await a.settle(late, 900, 0.0)
        probe = await a.admit(rid(), [tokens(1000, 0)])
        assert (probe.windows[0].remaining, probe.windows[0].reset_s) == (1000, 0.0)

    backend.run(body)


# --- quotas --------------------------------------------------------------------------------


def test_usd_quota_reserves_then_settles(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        q = budget(usd_limit=1.0, usd=0.4)
        first = ticket(await a.admit(rid(), [], q))
        assert (await a.admit(rid(), [], q)).allowed  # 0.8 reserved
        denied = await a.admit(rid(), [], q)
        assert (denied.allowed, denied.reason, denied.denied_by) == (False, "quota", BUDGET)
        assert denied.retry_after == 0.0
        await a.settle(first, 50, 0.1)  # 0.1 spent + 0.4 reserved
        assert (await a.admit(rid(), [], q)).allowed
        assert not (await a.admit(rid(), [], q)).allowed

    backend.run(body)


def test_token_quota_reserves_then_settles(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        q = budget(token_limit=1000, tok=400)
        first = ticket(await a.admit(rid(), [], q))
        assert (await a.admit(rid(), [], q)).allowed
        assert (await a.admit(rid(), [], q)).denied_by == BUDGET
        await a.settle(first, 100, 0.0)
        assert (await a.admit(rid(), [], q)).allowed  # 100 + 400 + 400
        assert not (await a.admit(rid(), [], q)).allowed

    backend.run(body)


def test_usd_quota_tolerates_float_rounding(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        assert (await a.admit(rid(), [], budget(usd_limit=0.3, usd=0.1))).allowed
        assert (await a.admit(rid(), [], budget(usd_limit=0.3, usd=0.2))).allowed  # 0.1 + 0.2
        assert not (await a.admit(rid(), [], budget(usd_limit=0.3, usd=1e-6))).allowed

    backend.run(body)


def test_reservations_block_concurrent_overspend(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        q = budget(usd_limit=1.0, usd=0.4)
        results = await asyncio.gather(*(a.admit(rid(), [], q) for _ in range(6)))
        assert sum(r.allowed for r in results) == 2

    backend.run(body)


# --- requests without max_tokens (Flex) -------------------------------------------------------


def test_flex_takes_what_every_limit_leaves_and_then_refuses(backend: Backend) -> None:
    """A request without max_tokens is granted the room its windows and budget share, in whole
    steps, at most `most`; below `least` it is refused by whatever is short."""

    async def body(a: Admitter, clock: Clock) -> None:
        flex = Flex(most=4096, least=64, step=1, usd_per_token=0.0)
        q = budget(token_limit=10_000, tok=100)  # 100: the prompt's ceiling
        first = await a.admit(rid(), [tokens(8_000, 100)], q, flex=flex)
        assert first.allowed and first.extra == 4096  # most, everything has room
        assert first.windows[0].remaining == 8_000 - 4196
        second = await a.admit(rid(), [tokens(8_000, 100)], q, flex=flex)
        assert second.allowed and second.extra == 8_000 - 4196 - 100  # the window is tighter
        third = await a.admit(rid(), [tokens(8_000, 100)], q, flex=flex)
        assert (third.allowed, third.reason, third.extra) == (False, "rate", 0)  # none granted
        # a budget tighter than the window refuses as a budget
        q2 = budget(token_limit=8_150, tok=100)  # 8,000 reserved: 50 left for an answer
        fourth = await a.admit(rid(), [tokens(100_000, 100, "k:1:tokens2")], q2, flex=flex)
        assert (fourth.allowed, fourth.reason) == (False, "quota")
        await a.settle(ticket(first), 150, 0.0)  # the actual: room again
        again = await a.admit(rid(), [tokens(100_000, 100, "k:1:tokens2")], q2, flex=flex)
        assert again.allowed and again.extra == min(4096, 8_150 - 150 - (100 + second.extra) - 100)

    backend.run(body)


def test_flex_in_steps_and_by_money(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        flex = Flex(most=4 * 4096, least=4 * 64, step=4, usd_per_token=1e-5)
        q = budget(usd_limit=0.05, usd=0.001)  # $0.049 left for the answer: 4,900 tokens
        got = await a.admit(rid(), [], q, flex=flex)
        assert got.allowed and got.extra == 4900  # a multiple of 4
        refused = await a.admit(rid(), [], q, flex=flex)
        assert (refused.allowed, refused.reason) == (False, "quota")
        # a window that limits no tokens does not make a Flex request limited
        free = await a.admit(rid(), [requests(10)], None, flex=flex)
        assert free.allowed and free.extra == 0

    backend.run(body)


def test_flex_requests_at_once_never_reserve_more_than_the_budget(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        flex = Flex(most=4096, least=64, step=1, usd_per_token=2e-6)
        q = budget(usd_limit=0.05, token_limit=20_000, usd=0.0002, tok=80)
        got = await asyncio.gather(*(a.admit(rid(), [], q, flex=flex) for _ in range(30)))
        allowed = [g for g in got if g.allowed]
        assert sum(80 + g.extra for g in allowed) <= 20_000
        assert sum(0.0002 + g.extra * 2e-6 for g in allowed) <= 0.05 + 1e-9
        assert len(allowed) == 5  # four of 4,096 and one of what was left
        assert all(g.reason == "quota" for g in got if not g.allowed)

    backend.run(body)


def test_double_settle_spends_once(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        q = budget(usd_limit=1.0, token_limit=1000, usd=0.5, tok=100)
        first = ticket(await a.admit(rid(), [tokens(10_000, 100)], q))
        await a.settle(first, 400, 0.3)
        await a.settle(first, 400, 0.3)
        probe = await a.admit(rid(), [tokens(10_000, 0)], budget(1.0, 1000, usd=0.7, tok=600))
        assert probe.allowed  # 0.3 + 0.7 and 400 + 600: spent once, not twice
        assert probe.windows[0].remaining == 10_000 - 400

    backend.run(body)


def test_expired_reservation_stops_counting_but_a_late_settle_still_spends(
    backend: Backend,
) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        q = budget(usd_limit=1.0, usd=0.8)
        crashed = ticket(await a.admit(rid(), [], q))
        clock.at(10.0)
        assert not (await a.admit(rid(), [], q)).allowed
        clock.at(RESERVATION_TTL - 0.001)
        assert not (await a.admit(rid(), [], q)).allowed
        clock.at(RESERVATION_TTL)
        retry = ticket(await a.admit(rid(), [], q))  # 0.8 reserved again, by this request
        await a.settle(crashed, 10, 0.3)
        assert not (await a.admit(rid(), [], budget(usd_limit=1.0, usd=0.15))).allowed
        await a.settle(retry, 0, 0.0)
        assert (await a.admit(rid(), [], budget(usd_limit=1.0, usd=0.7))).allowed
        assert not (await a.admit(rid(), [], budget(usd_limit=1.0, usd=0.01))).allowed

    backend.run(body)


def test_seed_applies_only_when_the_counter_is_created(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        assert not (await a.admit(rid(), [], budget(1.0, usd=0.2, seed_usd=0.9))).allowed
        assert (await a.admit(rid(), [], budget(1.0, usd=0.05, seed_usd=0.0))).allowed
        assert not (await a.admit(rid(), [], budget(1.0, usd=0.1, seed_usd=0.0))).allowed
        seeded = budget(token_limit=100, tok=10, seed_tokens=95)
        assert (await a.admit(rid(), [], seeded)).allowed  # the counter exists: seed ignored

    backend.run(body)


def test_quota_period_ends_after_ttl_from_creation(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        q = budget(usd_limit=1.0, usd=0.6, ttl=100)
        first = ticket(await a.admit(rid(), [], q))
        clock.at(50.0)
        await a.settle(first, 10, 0.6)  # a write later in the period does not extend it
        assert not (await a.admit(rid(), [], q)).allowed
        clock.at(99.999)
        assert not (await a.admit(rid(), [], q)).allowed
        clock.at(100.0)
        assert (await a.admit(rid(), [], q)).allowed  # a new period, from the seed
        clock.at(200.0)
        assert not (await a.admit(rid(), [], budget(1.0, usd=0.6, ttl=100, seed_usd=0.5))).allowed

    backend.run(body)


# --- revocation ----------------------------------------------------------------------------


def test_revoked_key_is_refused_until_the_revocation_expires(backend: Backend) -> None:
    async def body(a: Admitter, clock: Clock) -> None:
        await a.revoke("key-1", 30)
        clock.at(10.0)
        adm = await a.admit(rid(), [requests(1)], budget(1.0, usd=0.5), revocation="key-1")
        assert (adm.allowed, adm.reason, adm.denied_by) == (False, "revoked", "key-1")
        assert adm.windows[0].remaining == 1  # nothing was charged
        assert (await a.admit(rid(), [requests(5, "k:2:requests")], None, "key-2")).allowed
        clock.at(30.0)
        assert (await a.admit(rid(), [requests(1)], budget(1.0, usd=0.5), "key-1")).allowed
        # A revocation outranks a full window.
        await a.revoke("key-1", 30)
        assert (await a.admit(rid(), [requests(1)], None, "key-1")).reason == "revoked"

    backend.run(body)


# --- backend specifics ---------------------------------------------------------------------


def test_local_forgets_idle_counters() -> None:
    """Every request on its own window, quota and revocation, for 50 minutes: what is kept is
    bounded by what is still live (plus one sweep interval), not by what was ever seen."""
    clock = Clock()
    a = LocalAdmitter(clock)

    async def main() -> None:
        for i in range(3000):
            clock.at(float(i))
            q = Quota(f"k:{i}:period", 1.0, None, 0.1, 0, ttl=60)
            adm = await a.admit(rid(), [requests(5, f"k:{i}:requests")], q, f"key-{i}")
            await a.revoke(f"key-{i}", 10)
            await a.settle(ticket(adm), 1, 0.1)

    asyncio.run(main())
    bound = 61 + SWEEP_EVERY
    assert len(a._windows) < bound
    assert len(a._ledgers) < bound
    assert len(a._revoked) < bound


def test_local_counts_through_a_clock_that_steps_back() -> None:
    """A wall clock stepped back (NTP) charges the newest second's bucket: nothing is lost from
    the window and the buckets stay in order, so they still leave it 60 s later."""
    clock = Clock()
    a = LocalAdmitter(clock)

    async def main() -> None:
        clock.at(10.5)
        assert (await a.admit(rid(), [requests(3)])).allowed
        clock.at(8.2)  # stepped back two seconds
        assert (await a.admit(rid(), [requests(3)])).allowed
        assert (await a.admit(rid(), [requests(3)])).allowed
        assert not (await a.admit(rid(), [requests(3)])).allowed
        clock.at(70.9)  # the window still holds second 10
        assert not (await a.admit(rid(), [requests(3)])).allowed
        clock.at(71.0)  # second 10 has left it, with all three
        again = await a.admit(rid(), [requests(3)])
        assert again.allowed and again.windows[0].remaining == 2

    asyncio.run(main())


# --- Redis only ----------------------------------------------------------------------------


def test_redis_checks_are_atomic_across_instances(redis_url: str, redis_prefix: str) -> None:
    async def main() -> None:
        instances = [RedisAdmitter(redis_url, prefix=redis_prefix) for _ in range(3)]
        try:
            rate = await asyncio.gather(
                *(instances[i % 3].admit(rid(), [requests(60)]) for i in range(200))
            )
            assert sum(r.allowed for r in rate) == 60
            q = budget(usd_limit=1.0, usd=0.01)
            spend = await asyncio.gather(
                *(instances[i % 3].admit(rid(), [], q) for i in range(200))
            )
            assert sum(r.allowed for r in spend) == 100
        finally:
            for a in instances:
                await a.close()

    asyncio.run(main())


def test_redis_uses_its_own_clock_and_sets_key_expiry(redis_url: str, redis_prefix: str) -> None:
    async def main() -> None:
        a = RedisAdmitter(redis_url, prefix=redis_prefix)
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            q = budget(usd_limit=1.0, usd=0.1, ttl=100)
            adm = await a.admit(rid(), [requests(5)], q)
            assert abs(ticket(adm).second - time.time()) < 2
            assert 0 < await client.pttl(redis_prefix + REQUESTS) <= 62_000
            created = await client.pttl(redis_prefix + BUDGET)
            assert 90_000 < created <= 100_000
            await asyncio.sleep(0.05)
            await a.settle(ticket(await a.admit(rid(), [requests(5)], q)), 10, 0.1)
            assert await client.pttl(redis_prefix + BUDGET) < created  # set once, not renewed
            await a.revoke("key-1", 30)
            assert 0 < await client.ttl(redis_prefix + "revoked:key-1") <= 30
            assert (await a.admit(rid(), [], None, "key-1")).reason == "revoked"
        finally:
            await client.aclose()
            await a.close()

    asyncio.run(main())


def test_unreachable_redis_fails_fast_without_leaking_the_password() -> None:
    async def main() -> None:
        a = RedisAdmitter("redis://user:s3cret-pw@127.0.0.1:1/0")
        try:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: a.admit(rid(), [requests(5)]),
                lambda: a.settle(NamedTicket("r", 0, ((TOKENS, 5),)), 1, 0.0),
                lambda: a.revoke("key-1", 30),
            ]
            for call in calls:
                started = time.monotonic()
                with pytest.raises(AdmissionUnavailable) as caught:
                    await call()
                assert time.monotonic() - started < 1.0
                assert "127.0.0.1:1" in str(caught.value)
                assert "s3cret-pw" not in str(caught.value)
        finally:
            await a.close()

    asyncio.run(main())


@pytest.mark.parametrize("tokens_first", [False, True], ids=["rpm, tpm", "tpm, rpm"])
def test_a_keys_usual_pair_of_windows_admits_exactly_as_the_general_path(
    tokens_first: bool,
) -> None:
    """A compiled plan of one requests and one tokens window (the usual key) is checked and
    charged in straight lines; refusals go the general way. Random traffic with tight limits
    and a budget gives the same answers, headers, refusals and counters both ways."""

    def run(general: bool) -> list[object]:
        clock = Clock()
        admitter = LocalAdmitter(clock)
        windows = [RateWindow(REQUESTS, 6, 1), RateWindow(TOKENS, 400, PER_REQUEST)]
        quota = Quota(BUDGET, usd_limit=0.08, token_limit=None, usd_estimate=0.0, token_estimate=0)
        plan = Plan(windows[::-1] if tokens_first else windows, quota, "1")
        rng = random.Random(11)
        seen: list[object] = []
        for i in range(600):
            clock.now += rng.choice([0.0, 0.0, 0.4, 3.0, 11.0])
            tokens, usd = rng.randint(0, 150), rng.choice([0.0, 0.003, 0.02])
            if general:
                plan.pair = None  # before each request: the general path every time
            got = admitter.admit_now(plan, f"r{i}", tokens, usd)
            if isinstance(got, LocalTicket):
                seen.append(("admitted", got.headers))
                if rng.random() < 0.8:
                    admitter.settle_now(got, rng.randint(0, 200), usd * rng.random())
            else:
                assert isinstance(got, Admission)
                seen.append((got.reason, got.denied_by, got.retry_after, got.windows))
            seen.append([(w[4].total, list(w[4].buckets)) for w in plan.windows])
        assert (plan.pair is None) == general
        return seen

    usual, general = run(general=False), run(general=True)
    assert usual == general
    kinds = {entry[0] for entry in usual if isinstance(entry, tuple)}
    assert kinds == {"admitted", "rate", "quota"}  # every way through was taken


def test_sweeps_keep_live_counters_and_rebind_idle_plans() -> None:
    """Sweeps run from the general path only; compiled plans going the straight way in
    between must keep counting in the counters the admitter holds. Two plans of one key
    (two models) share its windows: both keep them while live, and both are bound to the same
    fresh counters after idling past a sweep."""
    clock = Clock()
    a = LocalAdmitter(clock)
    windows = [RateWindow(REQUESTS, 5, 1), RateWindow(TOKENS, 10**6, PER_REQUEST)]
    plan_a, plan_b = Plan(windows, None, "1"), Plan(windows, None, "1")
    made = 0

    def churn() -> None:
        """Other keys' first requests, enough for two sweeps."""
        nonlocal made
        for _ in range(2 * SWEEP_EVERY):
            made += 1
            other = Plan([RateWindow(f"k:o{made}:requests", 5, 1)], None, None)
            assert isinstance(a.admit_now(other, f"o{made}"), LocalTicket)

    def admitted(plan: Plan, n: int) -> list[bool]:
        return [isinstance(a.admit_now(plan, uuid.uuid4().hex, 10), LocalTicket) for _ in range(n)]

    clock.at(100.0)
    assert admitted(plan_a, 3) + admitted(plan_b, 2) == [True] * 5
    clock.at(100.5)
    churn()  # the key's counters are live: kept
    assert admitted(plan_a, 1) + admitted(plan_b, 1) == [False, False]
    assert a._windows[REQUESTS] is plan_a.windows[0][4] is plan_b.windows[0][4]

    clock.at(170.0)
    churn()  # idle for over a window: dropped
    assert REQUESTS not in a._windows
    assert admitted(plan_a, 3) + admitted(plan_b, 3) == [True] * 5 + [False]
    assert a._windows[REQUESTS] is plan_a.windows[0][4] is plan_b.windows[0][4]
    assert a._windows[REQUESTS].total == 5
    assert a._windows[TOKENS].total == 50
    assert not any(f"k:o{i}:requests" in a._windows for i in range(1, 2 * SWEEP_EVERY))


def test_a_plan_bound_to_swept_counters_rebinds_even_when_the_clock_steps_back() -> None:
    """Counters dropped by a sweep are never charged again, even by a plan whose newest second
    a clock stepped back by over a window makes current again."""
    clock = Clock()
    a = LocalAdmitter(clock)
    plan = Plan([RateWindow(REQUESTS, 5, 1), RateWindow(TOKENS, 10**6, PER_REQUEST)], None, "1")
    clock.at(100.0)
    assert all(isinstance(a.admit_now(plan, f"a{i}", 10), LocalTicket) for i in range(2))
    dropped = plan.windows[0][4]
    clock.at(200.0)
    for i in range(SWEEP_EVERY):  # others' first requests: a sweep drops the plan's counters
        other = Plan([RateWindow(f"k:o{i}:requests", 5, 1)], None, None)
        assert isinstance(a.admit_now(other, f"o{i}"), LocalTicket)
    assert REQUESTS not in a._windows
    clock.at(100.5)  # stepped back: second 100 would be current for the dropped counters
    assert all(isinstance(a.admit_now(plan, f"b{i}", 10), LocalTicket) for i in range(5))
    assert not isinstance(a.admit_now(plan, "b5", 10), LocalTicket)
    assert a._windows[REQUESTS] is plan.windows[0][4] is not dropped
    assert dropped.total == 2  # untouched since
