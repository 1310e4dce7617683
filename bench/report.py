"""Prints the side-by-side table of one bench run and AILB's ratios against its targets."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def main() -> None:
    out = Path(sys.argv[1])
    rows = list(csv.DictReader((out / "results.tsv").open(), delimiter="\t"))
    by = {(r["target"], r["case"]): r for r in rows}

    def val(target: str, case: str, col: str) -> float | None:
        r = by.get((target, case))
        return float(r[col]) if r and r[col] not in ("", None) else None

    cols = ["target", "case", "rps", "p50_ms", "p99_ms", "non2xx", "sock_err", "rss_peak_mb"]
    print("\t".join(cols))
    for r in rows:
        print("\t".join(r[c] for c in cols))
    startup = json.loads((out / "startup.json").read_text())
    print(
        f"\nstart-up to first answer: {startup['startup_s']} s; idle RSS: "
        f"{startup['idle_rss_mb']} MB (median of {len(startup['runs'])})\n"
    )

    checks: list[tuple[str, float | None, str, float]] = []
    c10 = val("custom", "c10", "rps")

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    checks.append(("c10 rps / Portkey", ratio(c10, val("portkey", "c10", "rps")), ">=", 4))
    checks.append(("c10 rps / LiteLLM", ratio(c10, val("litellm", "c10", "rps")), ">=", 30))
    p50 = val("custom", "c1", "p50_ms")
    direct = val("direct", "c1", "p50_ms")
    added = None if p50 is None or direct is None else p50 - direct
    checks.append(("c1 median added latency (ms)", added, "<=", 0.5))
    checks.append(
        (
            "stream c10 / non-stream c10 rps",
            ratio(val("custom", "c10_stream", "rps"), c10),
            ">=",
            0.5,
        )
    )
    checks.append(("c100, 50 ms upstream: p99 (ms)", val("custom", "c100_d50", "p99_ms"), "<=", 70))
    checks.append(("idle RSS (MB)", startup["idle_rss_mb"], "<=", 80))
    checks.append(("start-up to first answer (s)", startup["startup_s"], "<=", 1.5))
    failed = 0
    for name, got, op, target in checks:
        if got is None:
            verdict = "n/a"
        else:
            ok = got >= target if op == ">=" else got <= target
            failed += not ok
            verdict = "ok" if ok else "MISSED"
        shown = "-" if got is None else f"{got:.2f}"
        print(f"{name:36s} {shown:>9s}  target {op} {target:<5g} {verdict}")
    errors = sum(int(r["non2xx"]) + int(r["sock_err"]) for r in rows if r["target"] == "custom")
    print(f"AILB errors during the run: {errors}")
    sys.exit(1 if failed or errors else 0)


if __name__ == "__main__":
    main()
