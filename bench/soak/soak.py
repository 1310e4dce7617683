"""A long run under load: zero errors, flat memory and file descriptors, no usage record lost.

Starts the fake upstream (../shared/bench/fake_upstream.py) and `ailb serve` (authentication on,
memory and RAG on, the embedded SQLite ledger), creates a key and a RAG collection, then drives
CONCURRENCY client tasks for DURATION seconds with a mix of requests:

  plain     non-streaming chat
  stream    streaming chat (stream_options.include_usage)
  memory    non-streaming with a session_id (50 conversations at a time, each of 40
            exchanges, then a new one; --session-exchanges)
  rag       non-streaming naming the collection

It samples the gateway's RSS and open file descriptors every few seconds and, after the run,
checks: no error of any kind; RSS at the end within RSS_LIMIT (10 %) of RSS after WARMUP; no more
file descriptors at the end than after the warm-up (plus a small slack for pooled connections);
every request the client saw answered (x-request-id of a complete 200) present in the ledger.

  .venv/bin/python bench/soak/soak.py --duration 600 --concurrency 100
Prints a JSON summary; exits 1 when a check fails. Gateway on CPU 1, load and upstream on CPU 0
(as ../shared/bench does), so the figures are the gateway's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
MASTER = "soak-master-key-0123456789abcdef"
MIX = "plain=55,stream=25,memory=12,rag=8"  # percent of requests of each kind
DOCS = [
    {"id": f"doc{i}", "text": f"Topic {i}. " + ("The gateway keeps answering under load. " * 20)}
    for i in range(20)
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_sockets() -> dict[str, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) of every TCP socket on the machine."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
                out[inode] = (
                    int(local.rsplit(":", 1)[1], 16),
                    int(remote.rsplit(":", 1)[1], 16),
                    state,
                )
    return out


def fd_kinds(pid: int, gateway_port: int, upstream_port: int, work: Path) -> dict[str, int]:
    """What the gateway's descriptors are: explains a change in their number. Files are listed
    one by one (relative to the run's directory, ids left out)."""
    tcp = tcp_sockets()
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            local, remote, state = tcp.get(target[8:-1], (0, 0, ""))
            if state == "0A":
                kinds["listening"] += 1
            elif local == gateway_port:
                kinds["client connections"] += 1
            elif remote == upstream_port:
                kinds["upstream connections"] += 1
            elif state:
                kinds["other tcp"] += 1
            else:
                kinds["other sockets"] += 1
        elif target.startswith(("pipe:", "anon_inode:")):
            kinds[target.split(":")[0].split("[")[0]] += 1
        else:
            name = target.removeprefix(str(work) + "/")
            name = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<uuid>", name)
            kinds["file " + re.sub(r"-\d+-[0-9a-f]+-\d+\.", "-<segment>.", name)] += 1
    return dict(sorted(kinds.items()))


CHROMA_DB = "file data/chroma.sqlite3"
# Embedded Chroma's SQLite pool (sqlx's default pool: up to 10 connections, opened on demand).
CHROMA_POOL = 10
POOLED = ("client connections", "upstream connections", CHROMA_DB)


def fd_check(warm: dict[str, int], end: dict[str, int], concurrency: int, slack: int) -> bool:
    """Pooled descriptors stay within their pools' bounds (clients, an upstream pool that
    follows them, Chroma's SQLite pool); nothing else grows by more than `slack`."""
    others = [sum(n for k, n in kinds.items() if k not in POOLED) for kinds in (warm, end)]
    return (
        end.get("client connections", 0) <= concurrency
        and end.get("upstream connections", 0) <= concurrency + slack
        and end.get(CHROMA_DB, 0) <= CHROMA_POOL
        and others[1] <= others[0] + slack
    )


async def wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"not ready: {url}")


class Load:
    def __init__(self, base: str, key: str, seed: int, mix: str, exchanges: int) -> None:
        shares = [part.split("=") for part in mix.split(",")]
        total = sum(float(share) for _, share in shares)
        self.mix = [(kind, float(share) / total) for kind, share in shares]
        self.base = base
        self.headers = {"authorization": f"Bearer {key}"}
        self.rng = random.Random(seed)
        self.answered: list[str] = []  # request ids of complete 200 answers
        self.kinds: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        # 50 conversations at a time; each ends after `exchanges` and a new one takes its place
        # (0: the same 50 sessions grow for the whole run)
        self.exchanges = exchanges
        self.sessions = [(0, 0)] * 50  # (generation, exchanges so far) of each slot

    def body(self) -> tuple[str, dict[str, Any]]:
        r, acc = self.rng.random(), 0.0
        kind = self.mix[-1][0]
        for name, share in self.mix:
            acc += share
            if r < acc:
                kind = name
                break
        body: dict[str, Any] = {
            "model": "fake-model",
            "messages": [{"role": "user", "content": f"question {self.rng.randrange(10**6)}"}],
        }
        if kind == "stream":
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        elif kind == "memory":
            slot = self.rng.randrange(len(self.sessions))
            generation, done = self.sessions[slot]
            if self.exchanges and done >= self.exchanges:
                generation, done = generation + 1, 0
            self.sessions[slot] = (generation, done + 1)
            body["session_id"] = f"soak-{slot}-{generation}"
        elif kind == "rag":
            body |= {"rag_collection": "soak", "rag_top_k": 2}
        return kind, body

    async def one(self, session: aiohttp.ClientSession) -> None:
        kind, body = self.body()
        try:
            async with session.post(
                self.base + "/v1/chat/completions", json=body, headers=self.headers
            ) as r:
                data = await r.read()
                if r.status != 200:
                    self.errors[f"{kind}:{r.status}"] += 1
                    return
                if kind == "stream" and not data.rstrip().endswith(b"data: [DONE]"):
                    self.errors[f"{kind}:incomplete"] += 1
                    return
                if kind in ("memory", "rag"):
                    header = "x-ailb-memory" if kind == "memory" else "x-ailb-rag"
                    if r.headers.get(header, "").startswith("degraded"):
                        self.errors[f"{kind}:degraded"] += 1
                self.answered.append(r.headers["x-request-id"])
                self.kinds[kind] += 1
        except (TimeoutError, aiohttp.ClientError) as e:
            self.errors[f"{kind}:{type(e).__name__}"] += 1

    async def worker(self, session: aiohttp.ClientSession, until: float) -> None:
        while time.monotonic() < until:
            await self.one(session)


async def prepare(session: aiohttp.ClientSession, base: str) -> str:
    master = {"authorization": f"Bearer {MASTER}"}
    async with session.post(base + "/api/keys", json={"name": "soak"}, headers=master) as r:
        key = str((await r.json())["key"])
    auth = {"authorization": f"Bearer {key}"}
    async with session.post(base + "/api/rag/collections", json={"name": "soak"}, headers=auth):
        pass
    async with session.post(
        base + "/api/rag/collections/soak/documents", json={"documents": DOCS}, headers=auth
    ) as r:
        if r.status != 200:
            raise SystemExit(f"ingest failed: {r.status} {await r.text()}")
    # Memory opens its store on first use, in the background: degraded until then, by design.
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(300):
        async with session.post(
            base + "/v1/chat/completions", json={**body, "session_id": "warm"}, headers=auth
        ) as r:
            if not r.headers.get("x-ailb-memory", "degraded").startswith("degraded"):
                break
        await asyncio.sleep(0.1)
    return key


async def run(
    args: argparse.Namespace,
    gateway: subprocess.Popen[bytes],
    base: str,
    ports: tuple[int, int],
    work: Path,
) -> dict:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await wait_ready(session, base + "/livez")
        key = await prepare(session, base)
        load = Load(base, key, args.seed, args.mix, args.session_exchanges)
        samples: list[tuple[float, float, int]] = []
        start = time.monotonic()
        until = start + args.duration

        async def sample() -> None:
            while time.monotonic() < until:
                samples.append((time.monotonic() - start, rss_mb(gateway.pid), fds(gateway.pid)))
                await asyncio.sleep(args.sample_every)

        async def kinds_after_warmup() -> dict[str, int]:
            await asyncio.sleep(args.warmup)
            return fd_kinds(gateway.pid, *ports, work)

        sampler = asyncio.create_task(sample())
        warm_kinds = asyncio.create_task(kinds_after_warmup())
        await asyncio.gather(*(load.worker(session, until) for _ in range(args.concurrency)))
        await sampler
        elapsed = time.monotonic() - start
        samples.append((elapsed, rss_mb(gateway.pid), fds(gateway.pid)))
        end_kinds = fd_kinds(gateway.pid, *ports, work)
        await asyncio.sleep(1.0)  # the ledger flushes every 0.25 s
        async with session.get(base + "/healthz") as r:
            health = await r.json()
    after = [s for s in samples if s[0] >= args.warmup] or samples[-1:]
    rss_base = after[0][1]
    rss_end = sum(s[1] for s in after[-3:]) / len(after[-3:])
    return {
        "duration_s": round(elapsed, 1),
        "concurrency": args.concurrency,
        "requests": len(load.answered) + sum(load.errors.values()),
        "answered": len(load.answered),
        "req_per_s": round(len(load.answered) / elapsed, 1),
        "by_kind": dict(load.kinds),
        "errors": dict(load.errors),
        "rss_mb_after_warmup": round(rss_base, 1),
        "rss_mb_end": round(rss_end, 1),
        "rss_mb_peak": round(max(s[1] for s in samples), 1),
        "rss_growth": round(rss_end / rss_base - 1, 4),
        "rss_mb_by_minute": [round(s[1]) for s in samples if int(s[0]) % 60 < args.sample_every],
        "fds_after_warmup": after[0][2],
        "fds_end": samples[-1][2],
        "fd_kinds_after_warmup": await warm_kinds,
        "fd_kinds_end": end_kinds,
        "memory": health.get("memory"),
        "rag": health.get("rag"),
        "answered_ids": load.answered,
    }


def ledger_ids(data_dir: Path) -> set[str]:
    with sqlite3.connect(data_dir / "ailb.db") as db:
        return {row[0] for row in db.execute("SELECT request_id FROM usage")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--warmup", type=float, default=60.0)
    p.add_argument("--sample-every", type=float, default=5.0)
    p.add_argument("--rss-limit", type=float, default=0.10)
    p.add_argument("--fd-slack", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mix", default=MIX, help=f"kind=percent,... (default {MIX})")
    p.add_argument(
        "--session-exchanges",
        type=int,
        default=40,
        help="exchanges in one conversation before a new one replaces it (0: 50 sessions that "
        "grow for the whole run)",
    )
    p.add_argument(
        "--chroma-server",
        action="store_true",
        help="memory and RAG in a Chroma server process (CHROMA_URL), not the embedded store",
    )
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ailb-soak-"))
    up_port, gw_port = free_port(), free_port()
    config = work / "ailb.yaml"
    config.write_text(
        "deployments:\n"
        f"  - {{name: fake, provider: openai, base_url: 'http://127.0.0.1:{up_port}/v1',\n"
        "     api_key_env: SOAK_UPSTREAM_KEY, models: [fake-model]}\n"
    )
    env = {
        **os.environ,
        "AILB_CONFIG": str(config),
        "AILB_DATA_DIR": str(work / "data"),
        "AILB_MASTER_KEY": MASTER,
        "SOAK_UPSTREAM_KEY": "sk-soak",
        "ENABLE_MEMORY": "true",
        "ENABLE_RAG": "true",
        "HOST": "127.0.0.1",
        "HTTP_PORT": str(gw_port),
        "GRPC_PORT": "0",
        "AILB_LOG_LEVEL": "WARNING",
    }
    chroma = None
    if args.chroma_server:
        from ailb.cluster.services import chroma as chroma_server

        chroma = chroma_server(free_port(), work / "chroma", work).start()
        env["CHROMA_URL"] = str(chroma.url)
    python = sys.executable  # this venv's: the arguments below are all ours
    upstream = subprocess.Popen(  # noqa: S603
        [python, str(SHARED / "fake_upstream.py"), "--port", str(up_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {0}),
    )
    log = (work / "gateway.log").open("wb")
    gateway = subprocess.Popen(  # noqa: S603
        [python, "-m", "ailb", "serve"],
        env=env,
        stdout=log,
        stderr=log,
        preexec_fn=lambda: os.sched_setaffinity(0, {1}),
    )
    os.sched_setaffinity(0, {0})
    try:
        result = asyncio.run(
            run(args, gateway, f"http://127.0.0.1:{gw_port}", (gw_port, up_port), work)
        )
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gateway.kill()
        upstream.kill()
        if chroma is not None:
            chroma.stop()
    ids = result.pop("answered_ids")
    missing = set(ids) - ledger_ids(work / "data")
    result["ledger_missing"] = len(missing)
    checks = {
        "zero errors": not result["errors"],
        f"RSS growth <= {args.rss_limit:.0%}": result["rss_growth"] <= args.rss_limit,
        "no fd growth": fd_check(
            result["fd_kinds_after_warmup"], result["fd_kinds_end"], args.concurrency, args.fd_slack
        ),
        "every answered request in the ledger": not missing,
    }
    result["checks"] = checks
    result["gateway_log"] = str(work / "gateway.log")
    print(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
