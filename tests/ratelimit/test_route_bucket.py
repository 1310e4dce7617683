"""The control plane's route limits: token buckets (Envoy's local rate limit), on a fake clock."""

from __future__ import annotations

import pytest

from ailb.ratelimit.route_bucket import ALL_ROUTES, BucketLimit, RouteBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def takes(buckets: RouteBuckets, route: str, count: int) -> list[float]:
    return [buckets.take(route) for _ in range(count)]


def test_a_full_bucket_then_one_token_per_interval() -> None:
    clock = Clock()
    b = RouteBuckets(clock)
    b.set("m", BucketLimit(rate=2, burst=3))
    assert takes(b, "m", 4) == [0.0, 0.0, 0.0, 0.5]  # three at once, then wait half a second
    clock.now += 0.25
    assert b.take("m") == pytest.approx(0.25)  # half a token: a quarter second to go
    clock.now += 0.25
    assert b.take("m") == 0.0
    clock.now += 100  # never more than the burst
    assert takes(b, "m", 4)[-1] > 0 and takes(b, "m", 1) == [pytest.approx(0.5)]


@pytest.mark.parametrize(("rate", "burst", "seconds", "admitted"), [(1, 2, 10, 11), (5, 5, 2, 14)])
def test_admitted_over_time_is_burst_plus_rate_times_time(
    rate: int, burst: int, seconds: int, admitted: int
) -> None:
    clock = Clock()
    b = RouteBuckets(clock)
    b.set("m", BucketLimit(rate, burst))
    ok = 0
    for _ in range(seconds * 100):  # a request every 10 ms for `seconds`: burst + rate x 9.99
        ok += sum(1 for w in takes(b, "m", 1) if w == 0.0)
        clock.now += 0.01
    assert ok == admitted


def test_every_route_and_its_own_limit() -> None:
    clock = Clock()
    b = RouteBuckets(clock)
    assert not b.active and b.take("m") == 0.0
    b.set(ALL_ROUTES, BucketLimit(1, 1))
    assert b.active
    assert takes(b, "m", 2)[1] > 0 and takes(b, "n", 2)[1] > 0  # each route its own bucket
    b.set("n", BucketLimit(10, 10))
    assert b.limit("n") == BucketLimit(10, 10) and b.limit("m") == BucketLimit(1, 1)
    assert takes(b, "n", 10) == [0.0] * 10  # a new, full bucket
    b.set(ALL_ROUTES, BucketLimit(2, 2))  # routes that followed "*" start afresh
    assert takes(b, "m", 2) == [0.0, 0.0]
    assert b.take("n") > 0  # its own limit and bucket are kept
    b.set("n", None)
    assert b.limit("n") == BucketLimit(2, 2)
    b.set(ALL_ROUTES, None)
    assert not b.active and b.limit("m") is None
