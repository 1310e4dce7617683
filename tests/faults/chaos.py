"""A mixed chaos run: several fake OpenAI deployments of one model failing at random under load
(server errors, timeouts, 429s, resets, garbage, streams cut or stalled), for a bounded time,
with at least one deployment healthy in every moment. Used by tests/faults/test_chaos.py (short)
and bench/chaos/run.py (the full two minutes).

The schedule is seeded: time is cut into slots, and in each slot every deployment is up, flaky
(half its answers fail) or down (all fail), one of them always up. Clients are threads with the
official openai SDK, half their requests streamed.

What a client sees is classified:
- ok: the whole answer (streams: every piece and a finish reason);
- error: anything else before the first byte of the answer -- an HTTP error or a broken
  connection (must be zero while a deployment is up);
- broken: a stream cut by its upstream after its first byte, ended by the gateway with an
  explicit SSE error event (cannot be retried; counted apart);
- truncated: a stream that ended without an error but without its whole answer (a silent
  [DONE] on a cut answer: must be zero).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai

from tests.fakes.openai import fake_openai, openai_error
from tests.fakes.server import FakeServer, Reply
from tests.processes import GatewayProcess

MODEL = "chaos"
TEXT = "Hello from the fake upstream, in six pieces."
PIECES = 6
FIRST_BYTE_S = 0.5  # the deployments' first-byte and idle timeouts
MODES = ("up", "flaky", "down")
MODE_WEIGHTS = (0.25, 0.45, 0.3)
FLAKY_FAILURE = 0.5
# fault -> weight; streams only for the *_mid and cut_early ones (see Chaos.reply)
FAULTS = {
    "http_500": 3,
    "http_503": 2,
    "http_429": 2,
    "timeout": 1,
    "reset": 2,
    "garbage": 1,
    "cut_early": 2,
    "cut_mid": 1,
    "stall_mid": 1,
}
STREAM_ONLY = frozenset({"cut_early", "cut_mid", "stall_mid"})


def fault_reply(kind: str) -> Reply:
    if kind == "http_500":
        return Reply(status=500, error=openai_error("The server had an error", code="server"))
    if kind == "http_503":
        return Reply(status=503, error=openai_error("Overloaded", code="overloaded"))
    if kind == "http_429":
        return Reply(status=429, error=openai_error("Rate limit"), headers={"Retry-After": "1"})
    if kind == "timeout":  # a stream's first byte too late; a plain answer only slow (no limit)
        return Reply(text=TEXT, pieces=PIECES, delay=FIRST_BYTE_S * 2)
    if kind == "reset":
        return Reply(drop=True)
    if kind == "garbage":
        return Reply(text=TEXT, pieces=PIECES, garbage=True)
    if kind == "cut_early":  # the stream's headers, then nothing: before its first event
        return Reply(text=TEXT, pieces=PIECES, cut_after=0)
    if kind == "cut_mid":  # after the role and two pieces
        return Reply(text=TEXT, pieces=PIECES, cut_after=3)
    if kind == "stall_mid":  # the first event, then silence longer than the idle timeout
        return Reply(text=TEXT, pieces=PIECES, chunk_delay=FIRST_BYTE_S * 2)
    raise ValueError(kind)


class Schedule:
    """Which mode each deployment is in, slot by slot (seeded)."""

    def __init__(self, deployments: int, slot_s: float, slots: int, seed: int) -> None:
        rng = random.Random(seed)
        self.slot_s = slot_s
        self.modes: list[list[str]] = []
        for k in range(slots):
            modes = rng.choices(MODES, MODE_WEIGHTS, k=deployments)
            if k and not any(a == b == "up" for a, b in zip(self.modes[-1], modes, strict=True)):
                # a hand-over: one deployment stays up across the slot boundary
                was_up = [i for i, m in enumerate(self.modes[-1]) if m == "up"]
                modes[rng.choice(was_up)] = "up"
            self.modes.append(modes)

    def slot(self, elapsed: float) -> int:
        return max(0, min(int(elapsed / self.slot_s), len(self.modes) - 1))

    def mode(self, deployment: int, elapsed: float) -> str:
        return self.modes[self.slot(elapsed)][deployment]

    def up_throughout(self, start: float, end: float) -> bool:
        """Some deployment was up for the whole of [start, end] (seconds into the run)."""
        spanned = self.modes[self.slot(start) : self.slot(end) + 1]
        return any(all(m[i] == "up" for m in spanned) for i in range(len(spanned[0])))


class Chaos:
    """The fault injector of one fake deployment (runs in its server's thread)."""

    def __init__(self, index: int, schedule: Schedule, started: float, seed: int) -> None:
        self.index = index
        self.schedule = schedule
        self.started = started
        self.rng = random.Random(seed * 1000 + index)
        self.given: Counter[str] = Counter()
        self.kinds = list(FAULTS)
        self.weights = [FAULTS[k] for k in self.kinds]
        self.plain = [k for k in self.kinds if k not in STREAM_ONLY]
        self.plain_weights = [FAULTS[k] for k in self.plain]

    def reply(self, body: Any) -> Reply:
        mode = self.schedule.mode(self.index, time.monotonic() - self.started)
        fails = mode == "down" or (mode == "flaky" and self.rng.random() < FLAKY_FAILURE)
        if not fails:
            self.given["ok"] += 1
            return Reply(text=TEXT, pieces=PIECES)
        stream = isinstance(body, dict) and bool(body.get("stream"))
        # Every kind once before the weighted draw: a loaded machine serves fewer requests, and
        # a rare kind must still be exercised in every run.
        untried = [k for k in (self.kinds if stream else self.plain) if not self.given[k]]
        if untried:
            kind = untried[0]
        elif stream:
            kind = self.rng.choices(self.kinds, self.weights)[0]
        else:
            kind = self.rng.choices(self.plain, self.plain_weights)[0]
        self.given[kind] += 1
        return fault_reply(kind)


@dataclass
class Outcomes:
    requests: int = 0
    streams: int = 0
    ok: int = 0
    errors: list[str] = field(default_factory=list)  # before the first byte: must be none
    # ... of which while no deployment was up for the request's whole duration (it spanned a
    # slot boundary, and every deployment failed at the moment it was tried): not the gateway's
    errors_none_up: list[str] = field(default_factory=list)
    broken: int = 0  # cut after the first byte, ended by an explicit error event
    truncated: list[str] = field(default_factory=list)  # ended quietly, incomplete: none
    latencies: list[float] = field(default_factory=list)


def _client_loop(
    url: str,
    schedule: Schedule,
    run_started: float,
    deadline: float,
    seed: int,
    stream_share: float,
    out: Outcomes,
    lock: threading.Lock,
) -> None:
    rng = random.Random(seed)
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-chaos", max_retries=0, timeout=30)
    mine = Outcomes()
    try:
        while time.monotonic() < deadline:
            stream = rng.random() < stream_share
            messages = [{"role": "user", "content": f"chaos {rng.random()}"}]
            started = time.monotonic()
            mine.requests += 1
            mine.streams += stream
            try:
                if stream:
                    _one_stream(client, messages, mine)
                else:
                    reply = client.chat.completions.create(model=MODEL, messages=messages)
                    text = reply.choices[0].message.content
                    if text != TEXT:
                        mine.errors.append(f"wrong answer: {text!r}")
                    else:
                        mine.ok += 1
            except openai.APIError as e:  # HTTP errors, broken connections: before any byte
                what = f"{'stream ' if stream else ''}{type(e).__name__} {e}"
                if isinstance(e, openai.APIStatusError):
                    what += f" {e.response.headers.get('x-request-id')}"
                up = schedule.up_throughout(started - run_started, time.monotonic() - run_started)
                (mine.errors if up else mine.errors_none_up).append(what)
            mine.latencies.append(time.monotonic() - started)
    finally:
        client.close()
        with lock:
            out.requests += mine.requests
            out.streams += mine.streams
            out.ok += mine.ok
            out.errors += mine.errors
            out.errors_none_up += mine.errors_none_up
            out.broken += mine.broken
            out.truncated += mine.truncated
            out.latencies += mine.latencies


def _one_stream(client: openai.OpenAI, messages: list[dict[str, str]], out: Outcomes) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    pieces: list[str] = []
    finish = None
    try:
        for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
    except openai.APIError as e:
        code = e.body.get("code") if isinstance(e.body, dict) else None
        if code == "upstream_stream_error" and pieces:  # the explicit SSE error event
            out.broken += 1
        else:
            out.errors.append(f"stream broken without the error event: {type(e).__name__} {e}")
        return
    finally:
        stream.close()
    text = "".join(pieces)
    if text != TEXT or finish != "stop":
        out.truncated.append(f"{text!r} finish={finish}")
    else:
        out.ok += 1


def config_yaml(servers: list[FakeServer]) -> str:
    lines = ["deployments:"]
    for i, s in enumerate(servers):
        lines.append(
            f"  - {{name: d{i}, provider: openai, base_url: '{s.url}/v1', models: [{MODEL}], "
            f"timeouts: {{connect: 1, first_byte: {FIRST_BYTE_S}, idle: {FIRST_BYTE_S}, "
            "total: 10}}"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Report:
    seconds: float
    seed: int
    concurrency: int
    deployments: int
    outcomes: Outcomes
    injected: dict[str, dict[str, int]]  # deployment -> fault kind -> count
    stats: dict[str, Any]  # /api/routing/stats of the gateway at the end
    schedule: list[list[str]]

    def summary(self) -> dict[str, Any]:
        o = self.outcomes
        lat = sorted(o.latencies) or [0.0]

        def pct(q: float) -> float:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1)

        deps = self.stats.get("deployments", {})
        faults = Counter[str]()
        for per in self.injected.values():
            faults.update({k: v for k, v in per.items() if k != "ok"})
        return {
            "seconds": round(self.seconds, 1),
            "seed": self.seed,
            "concurrency": self.concurrency,
            "requests": o.requests,
            "streams": o.streams,
            "ok": o.ok,
            "errors": len(o.errors),
            "errors_while_none_up": len(o.errors_none_up),
            "broken_mid_stream": o.broken,
            "truncated_silently": len(o.truncated),
            "req_per_s": round(o.requests / self.seconds, 1) if self.seconds else 0,
            "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1)},
            "faults_injected": dict(sorted(faults.items())),
            "upstream_attempts": sum(d.get("requests", 0) for d in deps.values()),
            "ejections": sum(d.get("ejections", 0) for d in deps.values()),
            "retry_budget": self.stats.get("retry_budget"),
            "slots_with_one_up": sum(1 for m in self.schedule if m.count("up") == 1),
            "slots": len(self.schedule),
        }


def run_chaos(
    workdir: Path,
    seconds: float = 20.0,
    seed: int = 7,
    concurrency: int = 6,
    deployments: int = 4,
    slot_s: float = 1.0,
    stream_share: float = 0.5,
    env: dict[str, str] | None = None,
) -> Report:
    """Start the fakes and a gateway process, run the load for `seconds`, stop everything."""
    workdir.mkdir(parents=True, exist_ok=True)
    servers = [fake_openai() for _ in range(deployments)]
    gw: GatewayProcess | None = None
    try:
        for s in servers:
            s.models = [MODEL]
            s.record = False
            s.start()
        (workdir / "chaos.yaml").write_text(config_yaml(servers))
        gw = GatewayProcess(
            {
                "AILB_CONFIG": str(workdir / "chaos.yaml"),
                "AILB_DATA_DIR": str(workdir / "data"),
                "ENABLE_MEMORY": "false",
                "AILB_MAX_ATTEMPTS": str(deployments),
                "AILB_LOG_LEVEL": "ERROR",  # a failed attempt is a warning: thousands of them
                # The run asserts that every request is served while any deployment is up,
                # whatever it takes. The retry budget deliberately gives some of that up when
                # most deployments fail (a deployment back up may still be ejected, tried only
                # as a retry), to spare the upstreams: here it lets every client retry.
                "AILB_RETRY_MIN_CONCURRENCY": str(concurrency),
                **(env or {}),
            },
            workdir / "gateway.log",
        ).start()
        slots = int(seconds / slot_s) + 2
        schedule = Schedule(deployments, slot_s, slots, seed)
        started = time.monotonic()
        chaos = [Chaos(i, schedule, started, seed) for i in range(deployments)]
        for s, c in zip(servers, chaos, strict=True):
            s.chooser = c.reply
        out = Outcomes()
        lock = threading.Lock()
        sink = (out, lock)
        deadline = started + seconds
        threads = [
            threading.Thread(
                target=_client_loop,
                args=(gw.url, schedule, started, deadline, seed * 100 + i, stream_share, *sink),
                daemon=True,
            )
            for i in range(concurrency)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        elapsed = time.monotonic() - started
        for s in servers:
            s.chooser = None
        stats = httpx2.get(gw.url + "/api/routing/stats", timeout=10).json()
        return Report(
            seconds=elapsed,
            seed=seed,
            concurrency=concurrency,
            deployments=deployments,
            outcomes=out,
            injected={f"d{c.index}": dict(c.given) for c in chaos},
            stats=stats,
            schedule=schedule.modes[: int(elapsed / slot_s) + 1],
        )
    finally:
        if gw is not None:
            gw.stop()
        for s in servers:
            with contextlib.suppress(Exception):
                s.stop()
