"""Start-up to first answered chat request, and idle RSS, of `ailb serve` (median of runs).

Pinned to CPU 1 like the gateway in ../shared/bench; the fake upstream must be on :9000.
Prints JSON: {"startup_s": ..., "idle_rss_mb": ..., "runs": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BODY = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def answered(port: int) -> bool:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=BODY.encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310 - loopback only
            return r.status == 200
    except OSError:
        return False


def one_run(config: str, port: int) -> dict[str, float]:
    env = {
        **os.environ,
        "AILB_CONFIG": config,
        "AILB_BENCH_KEY": "sk-bench",
        "AILB_LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
    }
    exe = str(Path(sys.executable).with_name("ailb"))
    start = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        ["taskset", "-c", "1", exe, "serve"],  # noqa: S607 - taskset from PATH on purpose
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = start + 20
        while not answered(port):
            if time.perf_counter() > deadline or proc.poll() is not None:
                raise SystemExit("gateway did not answer within 20 s")
            time.sleep(0.01)
        startup = time.perf_counter() - start
        time.sleep(3)  # idle: let start-up garbage settle
        return {"startup_s": round(startup, 3), "idle_rss_mb": round(rss_mb(proc.pid), 1)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    runs = [one_run(a.config, a.port) for _ in range(a.runs)]
    print(
        json.dumps(
            {
                "startup_s": statistics.median(r["startup_s"] for r in runs),
                "idle_rss_mb": statistics.median(r["idle_rss_mb"] for r in runs),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
