"""The request log's and ledger's rounding: as round() would give for what AILB measures
(non-negative), without its decimal-string detour."""

from __future__ import annotations

import random

import pytest

from ailb.pipeline.exchange import rounded


@pytest.mark.parametrize(
    ("x", "scale", "expected"),
    [
        (1.23456, 1000, 1.235),
        (1.2344, 1000, 1.234),
        (0.0, 1000, 0.0),
        (0.0005, 1000, 0.001),  # half up (0.0005 is a hair above 5e-4 as a double)
        (12.3456, 100, 12.35),
        (0.000123456789, 100_000_000, 0.00012346),
        (250.0, 100, 250.0),
    ],
)
def test_rounded(x: float, scale: int, expected: float) -> None:
    assert rounded(x, scale) == expected


def test_rounded_prints_as_the_short_decimal() -> None:
    rng = random.Random(7)
    for _ in range(10_000):
        x = rng.uniform(0, 5000)
        assert len(repr(rounded(x, 1000)).split(".")[1]) <= 3
        assert abs(rounded(x, 1000) - x) <= 0.0005 + 1e-9
