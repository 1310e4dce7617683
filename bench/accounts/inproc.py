"""The gateway's own cost per request, without HTTP in front: steadier than req/s here.

Builds the app with `create_app` in this process (no uvicorn), starts the fake upstream of
../shared/bench, and drives the chat endpoint with ten concurrent tasks through ASGI directly.
Prints the process's CPU time per request; with --instructions, runs itself under valgrind's
callgrind, collecting only during the measured requests, and prints machine instructions per
request (deterministic: the same build gives the same count within a fraction of a percent,
whatever else the machine is doing).

  .venv/bin/python bench/accounts/inproc.py --modes off,open,keyonly,embedded --instructions

Modes as in run.sh: off (no master key, ENABLE_USAGE=false), open (ledger on), keyonly (a key
without limits), embedded (a key with rpm, tpm and a daily budget), shared (the same with
Redis and PostgreSQL on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
BODY = (SHARED / "body.json").read_bytes() if (SHARED / "body.json").exists() else b""
MASTER = "bench-master-key-0123456789"
UPSTREAM_PORT = 9000
# Under callgrind the process runs about fifty times slower, so work done every so many seconds
# (the usage flush, the key ring's poll, health probes) would weigh fifty times more per request
# than at native speed: while counting, those intervals are stretched by this factor, and the
# flush of the measured requests is counted at the end (one batch, as at native speed, where a
# flush carries about a second's requests).
VALGRIND_SLOWDOWN = 50


def settings_env(mode: str, data: str) -> dict[str, str]:
    env = dict(
        os.environ,
        AILB_CONFIG=str(ROOT / "bench" / "ailb-bench.yaml"),
        AILB_BENCH_KEY="sk-bench",
        ENABLE_MEMORY="false",
        ENABLE_GRPC="false",
        AILB_DATA_DIR=data,
        AILB_LOG_LEVEL="WARNING",
    )
    if mode == "off":
        env["ENABLE_USAGE"] = "false"
    if mode in ("off", "open"):
        env.pop("AILB_MASTER_KEY", None)  # the caller's own must not switch authentication on
    else:
        env["AILB_MASTER_KEY"] = MASTER
    if mode == "shared":
        env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        env["AILB_REDIS_PREFIX"] = f"bench{os.getpid()}:"
        env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/test"
        env["AILB_DATABASE_SCHEMA"] = f"bench_{os.getpid()}"
    return env


async def measure(mode: str, requests: int, collect: bool) -> dict[str, Any]:
    from ailb.app import create_app
    from ailb.auth.manager import KeyCreate
    from ailb.config import load_settings

    env = settings_env(mode, tempfile.mkdtemp())
    if collect:
        env["AILB_HEALTH_INTERVAL"] = str(15 * VALGRIND_SLOWDOWN)
    app = create_app(load_settings(env))
    lifespan: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await lifespan.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        started.set()

    life = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, lifespan_send))
    await started.wait()
    auth = b"Bearer sk-anything"
    runtime = app.runtime
    if collect:
        if runtime.usage is not None:
            runtime.usage.interval *= VALGRIND_SLOWDOWN
        if runtime.ring is not None:
            runtime.ring.poll_interval *= VALGRIND_SLOWDOWN
    if mode != "off" and mode != "open":
        assert runtime.keys is not None
        limits: dict[str, Any] = {}
        if mode in ("embedded", "shared"):
            big = 10**9
            limits = dict(rpm_limit=big, tpm_limit=big, budget_usd=big, budget_period="day")
        made = await runtime.keys.create(KeyCreate(name="bench", **limits), actor="bench")
        auth = b"Bearer " + made["key"].encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 5555),
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"authorization", auth),
            (b"content-length", str(len(BODY)).encode()),
        ],
    }
    statuses: dict[int, int] = {}

    async def one() -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(dict(scope), receive, send)

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()

    await asyncio.gather(*(worker(200) for _ in range(10)))  # warm-up
    await asyncio.sleep(0.5)
    if collect and runtime.usage is not None:
        await runtime.usage.sync()  # the warm-up's records are not counted
    statuses.clear()
    if collect:
        callgrind("on")
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(requests // 10) for _ in range(10)))
    if collect and runtime.usage is not None:
        await runtime.usage.sync()  # the ledger's batched write of these requests, counted too
    else:
        await asyncio.sleep(1.2)  # the same, by the flush every second
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if collect:
        callgrind("off")
    await lifespan.put({"type": "lifespan.shutdown"})
    await life
    return {"cpu_us": cpu / requests * 1e6, "statuses": statuses}


def callgrind(state: str) -> None:
    subprocess.run(  # noqa: S603 - our own pid
        ["callgrind_control", "-i", state, str(os.getpid())],  # noqa: S607
        check=True,
        capture_output=True,
    )


def instructions(mode: str, requests: int) -> int:
    """Instructions for `requests` requests of `mode`, counted by callgrind in a child."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(  # noqa: S603 - this interpreter and this file
            [  # noqa: S607 - valgrind from PATH
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                __file__,
                "--child",
                mode,
                "--requests",
                str(requests),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None or f"{{200: {requests}}}" not in out.stdout:
        raise SystemExit(f"{mode}: no count\n{out.stdout}\n{out.stderr[-2000:]}")
    return int(found.group(1))


async def drive_server(url: str, mode: str, requests: int) -> None:
    """`requests` chat requests, ten at a time."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(url + "/livez") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        headers = {"content-type": "application/json", "authorization": "Bearer sk-anything"}
        if mode not in ("off", "open"):
            big = 10**9
            limits = {"rpm_limit": big, "tpm_limit": big, "budget_usd": big}
            body = {"name": "bench", **(limits if mode in ("embedded", "shared") else {})}
            master = {"authorization": f"Bearer {MASTER}"}
            async with http.post(url + "/api/keys", json=body, headers=master) as r:
                headers["authorization"] = "Bearer " + (await r.json())["key"]
        failures = 0

        async def worker(n: int) -> None:
            nonlocal failures
            for _ in range(n):
                async with http.post(url + "/v1/chat/completions", data=BODY, headers=headers) as r:
                    await r.read()
                    failures += r.status != 200

        await asyncio.gather(*(worker(requests // 10) for _ in range(10)))
        await asyncio.sleep(0.6)
        if failures:
            raise SystemExit(f"{mode}: {failures} requests failed")


# `ailb serve` with the usage flush and the key ring's poll spaced out as under measure(): the
# records of the requests counted are flushed when the server stops.
# (UsageRecorder may be compiled: its defaults cannot be patched, so the app builds it through a
# stand-in that passes the interval.)
SERVE_SLOWED = f"""
import sys
import ailb.app
from ailb.auth.keyring import KeyRing
from ailb.billing.usage import FLUSH_INTERVAL_S, UsageRecorder
from ailb.cli import main
ailb.app.UsageRecorder = lambda store, spool: UsageRecorder(
    store, spool, FLUSH_INTERVAL_S * {VALGRIND_SLOWDOWN}
)
KeyRing.__init__.__defaults__ = (0.5 * {VALGRIND_SLOWDOWN},)
sys.exit(main(["serve"]))
"""


def server_instructions(mode: str, requests: int) -> float:
    """Instructions per request `ailb serve` (uvicorn and all) spends on `mode`: the whole
    process counted twice, for 500 and for 500 + `requests` requests, and the difference divided
    (callgrind cannot be switched on from outside here: vgdb cannot reach a server process)."""
    counts = [whole_server(mode, n) for n in (500, 500 + requests)]
    return (counts[1] - counts[0]) / requests


def whole_server(mode: str, requests: int) -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = settings_env(mode, tmp) | {"HOST": "127.0.0.1", "HTTP_PORT": str(port)}
        env["AILB_HEALTH_INTERVAL"] = str(15 * VALGRIND_SLOWDOWN)
        server = subprocess.Popen(  # noqa: S603 - this interpreter
            [  # noqa: S607 - valgrind from PATH
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                "-c",
                SERVE_SLOWED,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            asyncio.run(drive_server(f"http://127.0.0.1:{port}", mode, requests))
        finally:
            server.terminate()
            _, err = server.communicate(timeout=120)
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise SystemExit(f"{mode}: no count\n{err[-2000:]}")
    return int(found.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="off,open,keyonly,embedded")
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--instructions", action="store_true")
    p.add_argument(
        "--server", action="store_true", help="with --instructions: count `ailb serve` over HTTP"
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    import uvloop

    if args.child:
        result = uvloop.run(measure(args.child, args.requests, collect=True))
        print(result["statuses"])
        return 0
    upstream = subprocess.Popen(  # noqa: S603 - this interpreter and the shared fake upstream
        [sys.executable, str(SHARED / "fake_upstream.py"), "--port", str(UPSTREAM_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        base = None
        for mode in args.modes.split(","):
            if args.instructions:
                n = min(args.requests, 4000)  # about 50 times slower under valgrind
                per = server_instructions(mode, n) if args.server else instructions(mode, n) / n
                base = base or per
                print(
                    f"{mode:9s} {per / 1000:7.1f}k instructions/request  off/mode {base / per:.3f}"
                )
            else:
                r = uvloop.run(measure(mode, args.requests, collect=False))
                base = base or r["cpu_us"]
                print(
                    f"{mode:9s} {r['cpu_us']:7.1f} us CPU/request  off/mode "
                    f"{base / r['cpu_us']:.3f}  {r['statuses']}"
                )
    finally:
        upstream.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
