"""Median req/s and p50 latency with memory and RAG off and on, and the ratio on/off."""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1])
    rps: dict[tuple[str, str], list[float]] = defaultdict(list)
    p50: dict[tuple[str, str], list[float]] = defaultdict(list)
    errors = 0
    for tsv in sorted(out.glob("*/results.tsv")):
        mode = tsv.parent.name.split("-")[0]
        for row in csv.DictReader(tsv.open(), delimiter="\t"):
            rps[mode, row["case"]].append(float(row["rps"]))
            p50[mode, row["case"]].append(float(row["p50_ms"]))
            errors += int(row["non2xx"] or 0) + int(row["sock_err"] or 0)
    cases = list(dict.fromkeys(case for _, case in rps))
    rounds = len(rps["off", cases[0]])
    print(f"{'case':12s} {'off req/s':>10s} {'on req/s':>10s} {'on/off':>7s} "
          f"{'off p50':>8s} {'on p50':>8s}  (medians of {rounds} rounds)")  # fmt: skip
    worst = 1.0
    for case in cases:
        off, on = statistics.median(rps["off", case]), statistics.median(rps["on", case])
        worst = min(worst, on / off)
        lat_off, lat_on = statistics.median(p50["off", case]), statistics.median(p50["on", case])
        print(f"{case:12s} {off:10.0f} {on:10.0f} {on / off:7.3f} "
              f"{lat_off:6.2f}ms {lat_on:6.2f}ms")  # fmt: skip
    print(f"errors: {errors}; lowest on/off ratio {worst:.3f}")


if __name__ == "__main__":
    main()
