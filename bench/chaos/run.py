"""The full mixed chaos run of issue 7 (two minutes by default): four fake deployments failing
at random under load, at least one up at every moment; prints the figures as JSON.

    .venv/bin/python bench/chaos/run.py [--seconds 120] [--seed 7] [--concurrency 6]

The same run as tests/faults/test_chaos.py (which runs 20 s); see tests/faults/chaos.py for the
schedule, the faults and how client outcomes are classified."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.faults.chaos import run_chaos  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--concurrency", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ailb-chaos-") as tmp:
        report = run_chaos(
            Path(tmp), seconds=args.seconds, seed=args.seed, concurrency=args.concurrency
        )
    summary = report.summary()
    summary["injected_by_deployment"] = report.injected
    summary["error_samples"] = report.outcomes.errors[:10]
    summary["errors_while_none_up_samples"] = report.outcomes.errors_none_up[:10]
    print(json.dumps(summary, indent=2))
    o = report.outcomes
    return 1 if o.errors or o.truncated else 0


if __name__ == "__main__":
    sys.exit(main())
