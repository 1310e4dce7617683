"""One key ingests at full speed; what does another key's chat latency do?

Starts the fake upstream (../shared/bench/fake_upstream.py, on CPU 0) and `ailb serve` (on CPU 1,
authentication, memory and RAG on, the local MiniLM encoder), creates two keys and gives the
second ("bravo") a small collection and a remembered session. Then two phases of PHASE seconds:

  quiet      bravo alone: chat requests at RATE per second (open loop, so a slow answer does
             not slow the load down), a mix of plain, RAG (its own collection) and memory
             (its own sessions)
  ingesting  the same load while the first key ("alpha") ingests documents back to back,
             INGEST_CONCURRENCY requests at a time, each DOC_KB of prose

and prints, per phase and per kind of bravo's requests, p50 / p95 / p99 / max latency, errors and
degraded answers (memory or RAG answered without their store), alpha's ingestion rate (chunks/s)
and the gateway's peak RSS. Everything on 127.0.0.1; the run is bounded by 2 x PHASE plus the
ingestion requests still running at the end (each bounded by DOC_KB).

  .venv/bin/python bench/fairness/fairness.py [--phase 60] [--rate 20] [--doc-kb 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
MASTER = "fairness-master-key-0123456789ab"
MIX = "plain=50,rag=25,memory=25"
VOCABULARY = (
    "lamp harbour keeper tide beacon light rotate night signal ship fog channel buoy chart "
    "pilot dock crane cargo vessel anchor rope mast sail hull deck bridge radar compass north "
    "south east west storm wind wave current reef rock island coast shore cliff tower stair "
    "glass lens mirror oil wick flame clock gear shift log report season winter summer"
)
WORDS = VOCABULARY.split(" ")
BRAVO_DOCS = [
    {"id": f"guide-{i}.md", "text": f"# Guide {i}\n\n" + " ".join(WORDS[i : i + 30]) * 4}
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


def prose(rng: random.Random, kb: int) -> str:
    """Markdown of about `kb` KiB: sections of sentences of random words (real token counts)."""
    out: list[str] = []
    size = 0
    section = 0
    while size < kb * 1024:
        section += 1
        out.append(f"\n## Section {section}\n")
        for _ in range(rng.randrange(4, 12)):
            sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(8, 20)))
            out.append(sentence.capitalize() + ".")
            size += len(sentence) + 2
    return "# Alpha's manual\n" + " ".join(out)


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary(latencies: dict[str, list[float]], counts: Counter[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, xs in sorted(latencies.items()):
        out[kind] = {
            "n": len(xs),
            "p50_ms": round(percentile(xs, 0.50) * 1000, 1),
            "p95_ms": round(percentile(xs, 0.95) * 1000, 1),
            "p99_ms": round(percentile(xs, 0.99) * 1000, 1),
            "max_ms": round(max(xs) * 1000, 1) if xs else None,
        }
    out["problems"] = dict(counts)
    return out


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


async def call(
    session: aiohttp.ClientSession, method: str, url: str, key: str, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    async with session.request(
        method, url, json=body, headers={"authorization": f"Bearer {key}"}
    ) as r:
        data = await r.read()
        return r.status, dict(r.headers), json.loads(data) if data else None


class Bravo:
    """The other key's chat load, open loop: a request every 1/rate s whatever the answers do."""

    def __init__(self, base: str, key: str, mix: str, seed: int) -> None:
        shares = [part.split("=") for part in mix.split(",")]
        total = sum(float(s) for _, s in shares)
        self.mix = [(kind, float(s) / total) for kind, s in shares]
        self.base, self.key = base, key
        self.rng = random.Random(seed)

    def body(self) -> tuple[str, dict[str, Any]]:
        r, acc, kind = self.rng.random(), 0.0, self.mix[-1][0]
        for name, share in self.mix:
            acc += share
            if r < acc:
                kind = name
                break
        question = f"How often does the {self.rng.choice(WORDS)} {self.rng.choice(WORDS)} turn?"
        body: dict[str, Any] = {
            "model": "fake-model",
            "messages": [{"role": "user", "content": question}],
        }
        if kind == "rag":
            body |= {"rag_collection": "bravo-guide", "rag_top_k": 3}
        elif kind == "memory":
            body["session_id"] = f"bravo-{self.rng.randrange(20)}"
        return kind, body

    async def run(
        self, session: aiohttp.ClientSession, rate: float, seconds: float
    ) -> tuple[dict[str, list[float]], Counter[str]]:
        latencies: dict[str, list[float]] = defaultdict(list)
        problems: Counter[str] = Counter()

        async def one(kind: str, body: dict[str, Any]) -> None:
            started = time.perf_counter()
            try:
                status, headers, _ = await call(
                    session, "POST", self.base + "/v1/chat/completions", self.key, body
                )
            except (TimeoutError, aiohttp.ClientError) as e:
                problems[f"{kind}:{type(e).__name__}"] += 1
                return
            latencies[kind].append(time.perf_counter() - started)
            if status != 200:
                problems[f"{kind}:{status}"] += 1
            elif kind != "plain":
                outcome = headers.get(f"x-ailb-{kind}", "")
                if outcome.startswith("degraded"):
                    problems[f"{kind}:degraded"] += 1

        tasks = []
        start = time.monotonic()
        n = 0
        while (due := start + n / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(*self.body())))
            n += 1
        await asyncio.gather(*tasks)
        return latencies, problems


async def alpha_ingests(
    session: aiohttp.ClientSession, base: str, key: str, args: argparse.Namespace, until: float
) -> dict[str, Any]:
    rng = random.Random(args.seed + 1)
    chunks = 0
    requests = 0
    problems: Counter[str] = Counter()
    url = base + "/api/rag/collections/alpha-manual/documents"
    started = time.monotonic()

    async def worker(w: int) -> None:
        nonlocal chunks, requests
        i = 0
        while time.monotonic() < until:
            # A few ids, replaced over and over: the document quota is never what stops alpha.
            doc = {"id": f"manual-{w}-{i % 4}.md", "text": prose(rng, args.doc_kb)}
            i += 1
            status, _, body = await call(session, "POST", url, key, {"documents": [doc]})
            if status == 200:
                chunks += int(body["chunks"])
                requests += 1
            else:
                problems[str(status)] += 1
                await asyncio.sleep(1.0)

    await asyncio.gather(*(worker(w) for w in range(args.ingest_concurrency)))
    elapsed = time.monotonic() - started
    return {
        "requests": requests,
        "chunks": chunks,
        "chunks_per_s": round(chunks / elapsed, 1),
        "seconds": round(elapsed, 1),
        "problems": dict(problems),
    }


async def run(
    args: argparse.Namespace, gateway: subprocess.Popen[bytes], base: str
) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await wait_ready(session, base + "/livez")
        keys = {}
        for name in ("alpha", "bravo"):
            status, _, body = await call(
                session, "POST", base + "/api/keys", MASTER, {"name": name}
            )
            assert status == 200, body
            keys[name] = body["key"]
        for key, coll in ((keys["alpha"], "alpha-manual"), (keys["bravo"], "bravo-guide")):
            status, _, body = await call(
                session, "POST", base + "/api/rag/collections", key, {"name": coll}
            )
            assert status == 200, body
        status, _, body = await call(
            session,
            "POST",
            base + "/api/rag/collections/bravo-guide/documents",
            keys["bravo"],
            {"documents": BRAVO_DOCS},
        )
        assert status == 200, body
        bravo = Bravo(base, keys["bravo"], args.mix, args.seed)
        await bravo.run(session, args.rate, 5.0)  # warm: store open, sessions remembered

        peak = {"quiet": 0.0, "ingesting": 0.0}
        phase = {"name": "quiet"}

        async def sample(stop: asyncio.Event) -> None:
            while not stop.is_set():
                name = phase["name"]
                peak[name] = max(peak[name], rss_mb(gateway.pid))
                await asyncio.sleep(0.5)

        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(stop))
        quiet = await bravo.run(session, args.rate, args.phase)
        phase["name"] = "ingesting"
        until = time.monotonic() + args.phase
        ingest, loaded = await asyncio.gather(
            alpha_ingests(session, base, keys["alpha"], args, until),
            bravo.run(session, args.rate, args.phase),
        )
        stop.set()
        await sampler
    return {
        "rate_per_s": args.rate,
        "phase_s": args.phase,
        "doc_kb": args.doc_kb,
        "ingest_concurrency": args.ingest_concurrency,
        "quiet": summary(*quiet),
        "ingesting": summary(*loaded),
        "alpha_ingestion": ingest,
        "rss_mb_peak": {k: round(v) for k, v in peak.items()},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", type=float, default=60.0, help="seconds of each phase")
    p.add_argument("--rate", type=float, default=20.0, help="bravo's requests per second")
    p.add_argument("--mix", default=MIX, help=f"kind=percent,... (default {MIX})")
    p.add_argument("--doc-kb", type=int, default=64, help="KiB of each ingested document")
    p.add_argument("--ingest-concurrency", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--env", action="append", default=[], help="NAME=value for the gateway")
    p.add_argument(
        "--chroma-server",
        action="store_true",
        help="RAG in a Chroma server process (CHROMA_URL, on CPU 0), not the embedded store",
    )
    args = p.parse_args()
    if not (SHARED / "fake_upstream.py").is_file():
        raise SystemExit(f"no {SHARED}/fake_upstream.py: set SHARED_BENCH to its directory")
    work = Path(tempfile.mkdtemp(prefix="ailb-fairness-"))
    up_port, gw_port = free_port(), free_port()
    config = work / "ailb.yaml"
    config.write_text(
        "deployments:\n"
        f"  - {{name: fake, provider: openai, base_url: 'http://127.0.0.1:{up_port}/v1',\n"
        "     api_key_env: FAIRNESS_UPSTREAM_KEY, models: [fake-model]}\n"
    )
    env = {
        **os.environ,
        "AILB_CONFIG": str(config),
        "AILB_DATA_DIR": str(work / "data"),
        "AILB_MASTER_KEY": MASTER,
        "FAIRNESS_UPSTREAM_KEY": "sk-fairness",
        "ENABLE_MEMORY": "true",
        "ENABLE_RAG": "true",
        "HOST": "127.0.0.1",
        "HTTP_PORT": str(gw_port),
        "GRPC_PORT": "0",
        "AILB_LOG_LEVEL": "WARNING",
        **dict(kv.split("=", 1) for kv in args.env),
    }
    chroma = None
    if args.chroma_server:
        from ailb.cluster.services import chroma as chroma_server

        chroma = chroma_server(free_port(), work / "chroma", work).start()
        if chroma.proc is not None:  # beside the load and the upstream, off the gateway's core
            os.sched_setaffinity(chroma.proc.pid, {0})
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
        result = asyncio.run(run(args, gateway, f"http://127.0.0.1:{gw_port}"))
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gateway.kill()
        upstream.kill()
        if chroma is not None:
            chroma.stop()
    result["chroma_server"] = args.chroma_server
    result["gateway_log"] = str(work / "gateway.log")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
