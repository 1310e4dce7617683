"""Median req/s and p50 latency per mode, and each mode's ratio to `off`; also the gateway's CPU
per request (utime + stime over the case / requests served), which the other core's load moves
less than req/s does (wrk and the fake upstream share that core with everything else)."""

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
    cpu: dict[tuple[str, str], list[float]] = defaultdict(list)
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    errors = 0
    for tsv in sorted(out.glob("*/results.tsv")):
        mode = tsv.parent.name.rsplit("-", 1)[0]
        for row in csv.DictReader(tsv.open(), delimiter="\t"):
            rps[mode, row["case"]].append(float(row["rps"]))
            p50[mode, row["case"]].append(float(row["p50_ms"]))
            served = float(row["rps"]) * seconds
            if row.get("gw_cpu_s") and served:
                cpu[mode, row["case"]].append(float(row["gw_cpu_s"]) / served * 1e6)
            errors += int(row["non2xx"] or 0) + int(row["sock_err"] or 0)
    modes = list(dict.fromkeys(m for m, _ in rps))
    cases = list(dict.fromkeys(c for _, c in rps))
    print(
        f"{'case':10s} {'mode':9s} {'req/s':>8s} {'p50':>8s} {'vs off':>7s} "
        f"{'cpu/req':>9s} {'vs off':>7s}  (medians of rounds)"
    )
    for case in cases:
        base = statistics.median(rps["off", case]) if ("off", case) in rps else None
        base_cpu = statistics.median(cpu["off", case]) if cpu.get(("off", case)) else None
        for mode in modes:
            r = statistics.median(rps[mode, case])
            lat = statistics.median(p50[mode, case])
            ratio = f"{r / base:7.3f}" if base else "      -"
            c = statistics.median(cpu[mode, case]) if cpu.get((mode, case)) else None
            cpu_text = f"{c:6.0f} us" if c else "        -"
            cpu_ratio = f"{base_cpu / c:7.3f}" if c and base_cpu else "      -"
            print(
                f"{case:10s} {mode:9s} {r:8.0f} {lat:6.2f}ms {ratio} {cpu_text} {cpu_ratio}  "
                f"({len(rps[mode, case])} rounds)"
            )
    print(f"errors (non-2xx or socket): {errors}")


if __name__ == "__main__":
    main()
