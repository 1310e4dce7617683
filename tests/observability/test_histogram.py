"""Bucketed histograms and quantiles estimated from them the way histogram_quantile does."""

from __future__ import annotations

import random

import pytest

from ailb.observability.histogram import DURATION_BOUNDS, OVERHEAD_BOUNDS, Histogram, quantile


def test_observations_land_in_the_first_bucket_whose_bound_holds_them() -> None:
    h = Histogram((0.1, 0.5, 1.0))
    for v in (0.05, 0.1, 0.2, 0.5, 0.7, 3.0):
        h.observe(v)
    assert h.counts == [2, 2, 1, 1]  # le is inclusive: 0.1 and 0.5 are in their own buckets
    assert h.cumulative() == [("0.1", 2), ("0.5", 4), ("1.0", 5), ("+Inf", 6)]
    assert h.sum == pytest.approx(4.55)
    assert h.count == 6


def test_quantile_interpolates_inside_the_bucket() -> None:
    bounds = (0.1, 0.2, 0.4)
    # 10 in (0, 0.1], 10 in (0.1, 0.2], none above
    counts = [10, 10, 0, 0]
    assert quantile(0.5, bounds, counts) == pytest.approx(0.1)
    assert quantile(0.75, bounds, counts) == pytest.approx(0.15)
    assert quantile(0.25, bounds, counts) == pytest.approx(0.05)
    assert quantile(1.0, bounds, counts) == pytest.approx(0.2)


def test_quantile_edge_cases() -> None:
    assert quantile(0.5, (1.0, 2.0), [0, 0, 0]) == 0.0
    # everything above the last bound: the highest finite bound, as Prometheus answers
    assert quantile(0.99, (1.0, 2.0), [0, 0, 5]) == 2.0


def test_estimates_stay_within_a_bucket_of_the_true_quantile() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-2.5, 1.0) for _ in range(20_000)]  # ~80 ms median
    h = Histogram(DURATION_BOUNDS)
    for v in values:
        h.observe(v)
    values.sort()
    for q in (0.5, 0.9, 0.95, 0.99):
        true = values[int(q * len(values))]
        estimate = quantile(q, DURATION_BOUNDS, h.counts)
        assert true / 1.5 <= estimate <= true * 1.5, (q, true, estimate)


def test_bounds_are_increasing() -> None:
    for bounds in (DURATION_BOUNDS, OVERHEAD_BOUNDS):
        assert list(bounds) == sorted(set(bounds))
