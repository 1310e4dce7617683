"""Req/s of each mode against `off`, measured in short interleaved slices.

On a shared machine the gateway core's speed drifts by a factor of two within a minute, so
modes measured one after the other (run.sh: a fresh gateway per mode and round, 8-10 s each)
differ by more than what they cost. Here every mode's gateway runs at once (each on its own
port, all pinned to CPU 1, only one loaded at a time), and wrk loads them in turn for SLICE
seconds each, the order reversed every other pass (A B B A ...), so the modes of one pass meet
the same machine. Each mode's ratio to `off` is the median over passes of its req/s divided by
off's in the same pass; also the ratio of the medians, and the gateway CPU per request.

    .venv/bin/python bench/accounts/interleave.py --modes off,embedded --passes 20 --slice 2

Modes (as in run.sh): off, open, keyonly, embedded, shared (REDIS_URL and DATABASE_URL on
127.0.0.1, a schema and key prefix of its own, dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from inproc import settings_env  # this folder: run as a script, it is on the path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
AILB = str(ROOT / ".venv" / "bin" / "ailb")
MODES = ("off", "open", "keyonly", "embedded", "shared")
LIMITS = "--rpm 1000000000 --tpm 1000000000 --budget-usd 1000000000 --budget-period day"
PG = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RESULT = re.compile(r"RESULT requests=(\d+) duration_s=([\d.]+) .* non2xx=(\d+) connect_err=(\d+)")


class Gateway:
    def __init__(self, mode: str, port: int, work: Path, schema: str, prefix: str) -> None:
        if mode not in MODES:
            raise SystemExit(f"unknown mode {mode!r}")
        self.mode, self.port = mode, port
        # The modes' settings are inproc's, served over HTTP with the access log on (as
        # `ailb serve` runs by default), the shared stores under this run's own names.
        self.env = settings_env(mode, str(work / mode)) | {
            "HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
        }
        self.env.pop("AILB_LOG_LEVEL")
        if mode == "shared":
            self.env |= {
                "DATABASE_URL": PG,
                "AILB_DATABASE_SCHEMA": schema,
                "REDIS_URL": REDIS,
                "AILB_REDIS_PREFIX": prefix,
            }
        self.key = "sk-anything"
        self.proc: subprocess.Popen[bytes] | None = None
        self.requests: list[int] = []
        self.rps: list[float] = []
        self.cpu_us: list[float] = []  # user + system, per request
        self.sys_us: list[float] = []
        self.errors = 0

    def start(self) -> None:
        if self.mode in ("keyonly", "embedded", "shared"):
            limits = [] if self.mode == "keyonly" else LIMITS.split()
            out = subprocess.check_output(  # noqa: S603 - this checkout's CLI
                [AILB, "keys", "create", "--name", f"bench-{self.mode}", *limits], env=self.env
            )
            self.key = json.loads(out)["key"]
        with open(Path(self.env["AILB_DATA_DIR"]) / "gateway.log", "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                ["taskset", "-c", "1", AILB, "serve"],  # noqa: S607
                env=self.env,
                stdout=log,
                stderr=log,
            )
        for _ in range(300):
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/livez", timeout=1),
            ):
                return
            time.sleep(0.1)
        raise SystemExit(f"{self.mode}: the gateway did not start (see its gateway.log)")

    def cpu_s(self) -> tuple[float, float]:
        """The gateway's user and system CPU seconds so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def load(self, seconds: float, keep: bool = True) -> None:
        env = dict(
            os.environ,
            BODY_FILE=str(SHARED / "body.json"),
            EXTRA_HEADERS=f"Authorization: Bearer {self.key}",
        )
        before = self.cpu_s()
        out = subprocess.run(  # noqa: S603
            ["taskset", "-c", "0", "wrk", "-t1", "-c10", f"-d{seconds}s", "--timeout", "30s",  # noqa: S607
             "-s", str(SHARED / "post.lua"), f"http://127.0.0.1:{self.port}/v1/chat/completions"],
            env=env, capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout  # fmt: skip
        after = self.cpu_s()
        found = RESULT.search(out)
        if found is None:
            raise SystemExit(f"{self.mode}: no result from wrk\n{out}")
        n, duration = int(found.group(1)), float(found.group(2))
        if keep:
            self.requests.append(n)
            self.rps.append(n / duration)
            self.cpu_us.append((sum(after) - sum(before)) / n * 1e6)
            self.sys_us.append((after[1] - before[1]) / n * 1e6)
            self.errors += int(found.group(3)) + int(found.group(4))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def report(gateways: list[Gateway]) -> None:
    """Per mode: median req/s and its ratio to off's median; the median (and quartiles) of the
    passes' own ratios; CPU per request likewise, and the system part of it."""
    off = next((g for g in gateways if g.mode == "off"), gateways[0])
    print(
        f"{'mode':9s} {'req/s':>7s} {'vs off':>7s} {'pass ratios (quartiles)':>24s} "
        f"{'cpu/req':>8s} {'vs off':>7s} {'pass ratios':>11s} {'sys/req':>8s}"
    )
    for g in gateways:
        rps, cpu = statistics.median(g.rps), statistics.median(g.cpu_us)
        q = _quartiles([a / b for a, b in zip(g.rps, off.rps, strict=True)])
        cq = _quartiles([b / a for a, b in zip(g.cpu_us, off.cpu_us, strict=True)])
        print(
            f"{g.mode:9s} {rps:7.0f} {rps / statistics.median(off.rps):7.3f} "
            f"{q[1]:10.3f} ({q[0]:.3f}-{q[2]:.3f}) {cpu:5.0f} us "
            f"{statistics.median(off.cpu_us) / cpu:7.3f} {cq[1]:11.3f} "
            f"{statistics.median(g.sys_us):5.0f} us"
        )
    print(f"errors (non-2xx or socket): {sum(g.errors for g in gateways)}")


def _quartiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=4) if len(values) > 1 else values * 3


async def drop_schema(schema: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="off,embedded,shared")
    p.add_argument("--passes", type=int, default=20)
    p.add_argument("--slice", type=int, default=2, help="seconds of load per mode and pass")
    args = p.parse_args()
    modes = args.modes.split(",")
    schema, prefix = f"bench_{secrets.token_hex(4)}", f"ailb-bench-{secrets.token_hex(4)}:"
    upstream = subprocess.Popen(  # noqa: S603
        ["taskset", "-c", "0", sys.executable, str(SHARED / "fake_upstream.py"),  # noqa: S607
         "--host", "127.0.0.1", "--port", "9000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        gateways = [Gateway(m, 8081 + i, Path(tmp), schema, prefix) for i, m in enumerate(modes)]
        try:
            for g in gateways:
                os.makedirs(g.env["AILB_DATA_DIR"])
                g.start()
                g.load(2, keep=False)  # warm: connections, caches, the first compiled plans
            for n in range(args.passes):
                for g in gateways if n % 2 == 0 else reversed(gateways):
                    g.load(args.slice)
                print(
                    f"pass {n + 1:2d}: "
                    + "  ".join(f"{g.mode} {g.rps[-1]:6.0f}" for g in gateways),
                    flush=True,
                )
        finally:
            for g in gateways:
                g.stop()
            upstream.terminate()
            if "shared" in modes:
                asyncio.run(drop_schema(schema))
    report(gateways)
    return 0


if __name__ == "__main__":
    sys.exit(main())
