"""LimitPolicy with in-process counters admits through plans compiled per key: what invalidates
a plan (a changed key, a new budget period, counters swept) must never let a request through
that the limits forbid, nor lose a charge."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from ailb.auth.keys import ApiKey
from ailb.auth.principal import Principal
from ailb.errors import RateLimited
from ailb.ratelimit.local import SWEEP_EVERY, LocalAdmitter
from ailb.ratelimit.policy import NOTHING, Granted, LimitPolicy

DAY0 = 1_764_547_200.0  # 2025-12-01T00:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = DAY0 + 3600

    def __call__(self) -> float:
        return self.now


def key(key_id: str = "0123456789abcdef", **limits: object) -> ApiKey:
    return ApiKey(id=key_id, name="k", hash="h", prefix="p", **limits)  # type: ignore[arg-type]


def principal(k: ApiKey | None) -> Principal:
    if k is None:
        return Principal("master", "master", admin=True)
    return Principal(k.id, "key_" + k.id, key=k)


def policy(clock: Clock) -> LimitPolicy:
    return LimitPolicy(LocalAdmitter(clock), None, None, clock=clock)


async def admit(p: LimitPolicy, k: ApiKey | None, tokens: int = 10, usd: float = 0.0) -> Granted:
    return await p.admit(principal(k), "r", None, tokens, usd)


async def admitted(p: LimitPolicy, k: ApiKey | None, n: int, usd: float = 0.0) -> int:
    ok = 0
    for _ in range(n):
        try:
            g = await admit(p, k, usd=usd)
        except RateLimited:
            continue
        ok += 1
        p.settle(g, 10, usd)
    return ok


def run(body: object) -> None:
    asyncio.run(body)  # type: ignore[arg-type]


def test_a_changed_key_is_checked_against_its_new_limits() -> None:
    async def body() -> None:
        clock = Clock()
        p = policy(clock)
        k1 = key(rpm_limit=2)
        assert await admitted(p, k1, 5) == 2
        k2 = msgspec.structs.replace(k1, rpm_limit=4, version=2)
        assert await admitted(p, k2, 5) == 2  # the same window: 2 used, 2 more allowed
        k3 = msgspec.structs.replace(k2, rpm_limit=None, version=3)
        assert await admit(p, k3) is NOTHING

    run(body())


def test_a_new_budget_period_starts_a_new_counter() -> None:
    async def body() -> None:
        clock = Clock()
        p = policy(clock)
        k = key(budget_usd=1.0, budget_period="day")
        assert await admitted(p, k, 5, usd=0.4) == 2
        clock.now = DAY0 + 86400 + 1  # the next day
        assert await admitted(p, k, 5, usd=0.4) == 2
        with pytest.raises(RateLimited) as e:
            await admit(p, k, usd=0.4)
        assert e.value.code == "budget_exceeded"

    run(body())


def test_counters_swept_under_a_plan_keep_every_charge() -> None:
    """A sweep of idle counters makes plans look their counters up again: the live window of a
    key keeps its count across it, and the idle one starts afresh."""

    async def body() -> None:
        clock = Clock()
        p = policy(clock)
        busy, idle = key(rpm_limit=3), key("fedcba9876543210", rpm_limit=3)
        other = key("00000000000000aa", tpm_limit=10**9)
        assert await admitted(p, idle, 3) == 3
        clock.now += 61  # idle's window is now empty, and its counter may be dropped
        assert await admitted(p, busy, 2) == 2
        assert await admitted(p, other, SWEEP_EVERY) == SWEEP_EVERY  # a sweep happens
        assert await admitted(p, busy, 3) == 1
        assert await admitted(p, idle, 2) == 2  # bound again after the sweep
        assert await admitted(p, idle, 5) == 1

    run(body())
