"""Conversation memory on long synthetic conversations: evidence recall against recency only.

    python bench/memory/evaluate.py [--sessions 50] [--seed 1]
                                    [--split all|tune|heldout|heldout2] [--out results.json]

Sessions come from `synth.py` beside this file: 40 exchanges each (80 stored turns), facts
stated in the first 10 exchanges and asked about, paraphrased, in the last 6. Splits: `tune`
(seed `--seed`, phrasing set A), `heldout` (seed + 1, set B, six more fact types) and
`heldout2` (seed + 2, set C, four more fact types and other question openers).

Every session goes through the real ConversationMemory (real MiniLM encoder, a Chroma store in
a temporary directory, default MemorySettings: 6 recent turns, 2000 tokens), exchange by
exchange through remember(), as the gateway does after each answer. Before each late question
every earlier write is stored, then recall() is called with what a memory-using client sends:
only the new user message (`new`), and, as a second variant, the last 2 exchanges re-sent with
it (`resend`: turns the client sent are not repeated by memory). The budget is the gateway's:
room_for_context() for a model window of 8192 tokens, capped by max_tokens.

Evidence recall: the fraction of questions whose fact-stating user turn is inside the injected
memory block. The baseline is recency only: the most recent turns the client did not send that
fit the same budget. The recall() latency (embedding the query included) is measured in the
same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth import EXCHANGES, Question, Session, generate  # noqa: E402

from ailb.embeddings import LocalEmbedder  # noqa: E402
from ailb.memory.conversation import (  # noqa: E402
    COLLECTION,
    ConversationMemory,
    MemorySettings,
    Recall,
    Turn,
)
from ailb.memory.service import room_for_context  # noqa: E402
from ailb.vectorstore.chroma import StoreUnavailable, VectorStore  # noqa: E402

OWNER = "eval"
WINDOW = 8192  # the gateway's default for a model without a configured context window
VARIANTS = ("new", "resend")
SPLITS = {"tune": (0, "A"), "heldout": (1, "B"), "heldout2": (2, "C")}  # seed offset, phrasing


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """The gateway's estimate of a request's prompt (api/chat.py)."""
    chars = sum(len(m["content"]) for m in messages)
    return (chars + 3) // 4 + 4 * len(messages)


def client_messages(session: Session, index: int, variant: str) -> list[dict[str, Any]]:
    question = {"role": "user", "content": session.exchanges[index][0]}
    if variant == "new":
        return [question]
    out: list[dict[str, Any]] = []
    for u, a in session.exchanges[max(0, index - 2) : index]:
        out += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    return [*out, question]


def memory_block(messages: list[dict[str, Any]]) -> str:
    blocks = [
        m["content"] for m in messages if m["role"] == "system" and "```memory" in m["content"]
    ]
    return blocks[0] if blocks else ""


def recency_only(history: list[Turn], messages: list[dict[str, Any]], budget: int) -> str:
    """The baseline: the newest turns the client did not send, as many as fit the budget."""
    sent = {(m["role"], m["content"]) for m in messages}
    used, chosen = 0, []
    for t in reversed([t for t in history if (t.role, t.content) not in sent]):
        if used + t.tokens > budget:
            break
        chosen.append(t)
        used += t.tokens
    return "\n".join(f"{t.role}: {t.content}" for t in reversed(chosen))


def evidence(block: str, q: Question) -> bool:
    return f"user: {q.statement}" in block


async def diagnose(memory: ConversationMemory, session: Session, q: Question) -> dict[str, Any]:
    """How the question scores the fact's turn (its best record: the turn or one of its
    sentences) and the reply to it, and where the fact's turn ranks among the session's turns
    (all of them, recent ones included)."""
    vector = (await memory.embedder.embed([session.exchanges[q.index][0]]))[0]
    hits = await memory.store.query(
        COLLECTION,
        vector,
        1000,
        where={"$and": [{"owner": OWNER}, {"session": session.id}]},
    )
    best: dict[int, float] = {}
    text: dict[int, str] = {}
    for h in hits:
        ts = int(h.metadata["ts"])
        best[ts] = max(best.get(ts, -1.0), h.score)
        if "part" not in h.metadata:
            text[ts] = h.document
    order = sorted(best, key=lambda ts: -best[ts])
    fact = next((ts for ts, t in text.items() if t == q.statement), None)
    if fact is None:
        return {"rank": None, "score": None}
    reply = min((ts for ts in text if ts > fact), default=None)
    return {
        "rank": order.index(fact) + 1,
        "score": round(best[fact], 3),
        "reply_score": round(best[reply], 3) if reply is not None else None,
    }


async def run_split(
    name: str, sessions: list[Session], settings: MemorySettings, embedder: LocalEmbedder
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    latencies: list[float] = []
    degraded = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ailb-memory-eval-") as tmp:
        memory = ConversationMemory(VectorStore(tmp), embedder, settings)
        memory.start()
        try:
            for n, session in enumerate(sessions, 1):
                asked = {q.index: q for q in session.questions}
                history: list[Turn] = []
                for i, (user, answer) in enumerate(session.exchanges):
                    q = asked.get(i)
                    if q is not None:
                        await memory.flush(within=600)
                        assert not memory._pending, "writes still pending"
                        row: dict[str, Any] = {
                            "session": session.id,
                            "fact_type": q.fact_type,
                            "question": q.question,
                            "statement": q.statement,
                            "distance": q.index - q.statement_index,
                            "in_passing": q.in_passing,
                        }
                        for variant in VARIANTS:
                            messages = client_messages(session, i, variant)
                            budget = room_for_context(WINDOW, prompt_tokens(messages), 0)
                            t0 = time.perf_counter()
                            try:
                                recall = await memory.recall(OWNER, session.id, messages, budget)
                                block = memory_block(recall.messages)
                            except (TimeoutError, StoreUnavailable):
                                # The gateway answers without memory (degraded): a miss here.
                                recall, block = Recall(messages), ""
                                degraded += 1
                            latencies.append((time.perf_counter() - t0) * 1000)
                            cap = min(budget, settings.max_tokens)
                            row[variant] = {
                                "ailb": evidence(block, q),
                                "recency": evidence(recency_only(history, messages, cap), q),
                                "recent": recall.recent,
                                "recalled": recall.recalled,
                                "block_tokens": (len(block) + 3) // 4,
                            }
                        if not row["new"]["ailb"]:
                            row["diagnosis"] = await diagnose(memory, session, q)
                        results.append(row)
                    memory.remember(OWNER, session.id, [{"role": "user", "content": user}], answer)
                    now = time.time_ns()
                    history += [Turn("user", user, now), Turn("assistant", answer, now + 1)]
                if n % 10 == 0 or n == len(sessions):
                    print(
                        f"  {name}: {n}/{len(sessions)} sessions, "
                        f"{time.perf_counter() - started:.0f} s",
                        flush=True,
                    )
            await memory.flush(within=600)
            records = await memory.store.get(COLLECTION, where={"owner": OWNER})
        finally:
            await memory.stop()
    stored = sum("part" not in r.metadata for r in records)
    assert stored == 2 * EXCHANGES * len(sessions), f"{stored} turns stored"
    stored = len(records)  # turns and any other records (sentences)
    return summarise(
        name, sessions, results, latencies, degraded, stored, time.perf_counter() - started
    )


def rate(rows: list[dict[str, Any]], variant: str, system: str) -> float:
    return round(sum(r[variant][system] for r in rows) / len(rows), 3) if rows else 0.0


def summarise(
    name: str,
    sessions: list[Session],
    results: list[dict[str, Any]],
    latencies: list[float],
    degraded: int,
    stored: int,
    seconds: float,
) -> dict[str, Any]:
    tokens = [
        sum(Turn("user", u, 0).tokens + Turn("assistant", a, 0).tokens for u, a in s.exchanges)
        for s in sessions
    ]
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_type[r["fact_type"]].append(r)
    q = statistics.quantiles(latencies, n=20)
    return {
        "split": name,
        "sessions": len(sessions),
        "questions": len(results),
        "session_tokens": {
            "mean": round(statistics.mean(tokens)),
            "min": min(tokens),
            "max": max(tokens),
        },
        "evidence_recall": {
            v: {"ailb": rate(results, v, "ailb"), "recency": rate(results, v, "recency")}
            for v in VARIANTS
        },
        "by_statement_form": {
            form: {
                "questions": len(rows),
                **{
                    v: {"ailb": rate(rows, v, "ailb"), "recency": rate(rows, v, "recency")}
                    for v in VARIANTS
                },
            }
            for form, rows in (
                ("standalone", [r for r in results if not r["in_passing"]]),
                ("in passing", [r for r in results if r["in_passing"]]),
            )
        },
        "by_fact_type": {
            t: {
                "questions": len(rows),
                **{
                    v: {"ailb": rate(rows, v, "ailb"), "recency": rate(rows, v, "recency")}
                    for v in VARIANTS
                },
            }
            for t, rows in sorted(by_type.items())
        },
        "recall_latency_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p95": round(q[18], 1),
            "calls": len(latencies),
        },
        "stored_records": stored,
        "degraded_recalls": degraded,
        "mean_recalled_turns": round(statistics.mean(r["new"]["recalled"] for r in results), 2),
        "mean_block_tokens": round(statistics.mean(r["new"]["block_tokens"] for r in results)),
        "misses": [
            {k: r[k] for k in ("session", "fact_type", "question", "statement", "diagnosis")}
            for r in results
            if "diagnosis" in r
        ],
        "seconds": round(seconds),
        "rows": results,
    }


def report(s: dict[str, Any], budget: int) -> None:
    e = s["evidence_recall"]
    print(
        f"\n{s['split']}: {s['sessions']} sessions, {s['questions']} questions; session "
        f"{s['session_tokens']['mean']} tokens on average (budget {budget}); {s['seconds']} s"
    )
    print(f"{'fact type':<20} {'n':>3}  AILB new  recency new  AILB resend  recency resend")
    rows = [
        ("ALL", s["questions"], e),
        *((f, v["questions"], v) for f, v in s["by_statement_form"].items()),
        *((t, v["questions"], v) for t, v in s["by_fact_type"].items()),
    ]
    for label, n, v in rows:
        print(
            f"{label:<20} {n:>3}  {v['new']['ailb']:>8.3f}  {v['new']['recency']:>11.3f}  "
            f"{v['resend']['ailb']:>11.3f}  {v['resend']['recency']:>14.3f}"
        )
    lat = s["recall_latency_ms"]
    print(
        f"recall() latency p50 {lat['p50']} ms, p95 {lat['p95']} ms ({lat['calls']} calls); "
        f"{s['mean_recalled_turns']} turns recalled, {s['mean_block_tokens']} block tokens; "
        f"{s['degraded_recalls']} recalls degraded (timeout); {s['stored_records']} records stored"
    )
    for m in s["misses"]:
        print(f"  miss [{m['fact_type']}] {m['question']!r} <- {m['statement']!r} {m['diagnosis']}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sessions", type=int, default=50, help="sessions per split (default 50)")
    ap.add_argument("--seed", type=int, default=1, help="tuning split seed; held-out: seed + 1")
    ap.add_argument("--split", choices=("all", *SPLITS), default="all")
    ap.add_argument("--out", type=Path, help="write the results (JSON) here")
    args = ap.parse_args()

    settings = MemorySettings()
    embedder = LocalEmbedder()
    t0 = time.perf_counter()
    await embedder.warm_up()
    print(f"MiniLM loaded in {time.perf_counter() - t0:.1f} s; {settings}", flush=True)
    splits = [
        (name, generate(args.sessions, args.seed + offset, phrasing))
        for name, (offset, phrasing) in SPLITS.items()
        if args.split in ("all", name)
    ]
    out: dict[str, Any] = {
        "settings": {
            "recent_turns": settings.recent_turns,
            "recall_k": settings.recall_k,
            "min_score": settings.min_score,
            "max_tokens": settings.max_tokens,
            "window": WINDOW,
            "seed": args.seed,
        },
        "splits": {},
    }
    try:
        for name, sessions in splits:
            summary = await run_split(name, sessions, settings, embedder)
            report(summary, settings.max_tokens)
            out["splits"][name] = summary
    finally:
        await embedder.close()
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False))
        print(f"\nresults written to {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
