"""Memory and RAG speed with 10,000 stored chunks and 10,000 stored turns.

    python bench/vectors/speed.py [--chunks 10000] [--turns 10000] [--queries 200]
                                  [--ingest 400] [--docs DIR] [--cache DIR] [--out FILE]

The corpus is real documentation nobody here wrote: the Python 3.11 library reference from
Debian's python3.11-doc (fetched with `apt-get download` + `dpkg -x` unless --docs points at an
unpacked html/ folder), converted and chunked by AILB's own RAG code.

Filling a store with 10,000 chunks costs the encoder ~8 minutes on 2 cores, so stored vectors
are cached by text hash (--cache). Only the fill uses the cache: every query below is embedded
live, and the ingestion figure comes from documents embedded live.

Measured in one process, in the same code paths the gateway runs:
- RAG search p50/p95: query embedding + Chroma query + re-rank + passage assembly
  (`RagService.search`), for questions from the Python FAQ, with 10,000 chunks stored.
- RAG ingestion chunks/s: documents not yet stored, chunked, embedded live and upserted into the
  collection holding 10,000 chunks; and the same documents again with their vectors cached,
  which is what the gateway adds around the encoder.
- Memory lookup p50/p95: `ConversationMemory.recall` for a new user message in one of 250
  sessions of 40 turns (10,000 stored turns), query embedding included; cold (history read
  from Chroma) and hot (history in the in-process cache).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from ailb.config import load_settings  # noqa: E402
from ailb.embeddings import LocalEmbedder  # noqa: E402
from ailb.memory.conversation import ConversationMemory, MemorySettings  # noqa: E402
from ailb.rag.chunking import ChunkSettings  # noqa: E402
from ailb.rag.extract import html_to_markdown  # noqa: E402
from ailb.rag.service import DocumentIn, RagService  # noqa: E402
from ailb.vectorstore.backend import VectorBackend  # noqa: E402
from ailb.vectorstore.chroma import VectorStore  # noqa: E402

OWNER = "bench"
PACKAGE = "python3.11-doc"
FAQ = ROOT / "bench" / "retrieval" / "python_faq.json.gz"
TURNS_PER_SESSION = 40


class CachedEmbedder:
    """The real encoder behind a cache of vectors by text hash; `live` counts texts embedded
    for real, so a figure can say which part of it was measured live."""

    def __init__(self, inner: LocalEmbedder, path: Path) -> None:
        self.inner = inner
        self.name, self.dimensions, self.max_tokens = inner.name, inner.dimensions, inner.max_tokens
        self.bulk_slice = inner.bulk_slice
        self.path = path
        self.vectors: dict[str, np.ndarray[Any, Any]] = {}
        if path.exists():
            with np.load(path) as saved:
                self.vectors = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))
        self.use_cache = True
        self.live = 0

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - a cache key

    async def embed(self, texts: Sequence[str], *, bulk: bool = False) -> np.ndarray[Any, Any]:
        keys = [self.key(t) for t in texts]
        todo = [i for i, k in enumerate(keys) if not self.use_cache or k not in self.vectors]
        if todo:
            fresh = await self.inner.embed([texts[i] for i in todo], bulk=bulk)
            self.live += len(todo)
            for i, v in zip(todo, fresh, strict=True):
                self.vectors[keys[i]] = v
        return np.stack([self.vectors[k] for k in keys]) if keys else np.zeros((0, 384), "f4")

    def save(self) -> None:
        keys = list(self.vectors)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(self.path, keys=np.array(keys), vectors=np.stack([self.vectors[k] for k in keys]))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def token_ends(self, text: str) -> list[int] | None:
        return self.inner.token_ends(text)

    async def warm_up(self) -> None:
        await self.inner.warm_up()

    async def close(self) -> None:
        await self.inner.close()


def library_pages(docs: Path | None, workdir: Path) -> list[DocumentIn]:
    if docs is None:
        subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir, check=True)  # noqa: S603, S607
        deb = next(workdir.glob(f"{PACKAGE}_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(workdir / "x")], check=True)  # noqa: S603, S607
        docs = workdir / "x" / "usr" / "share" / "doc" / "python3.11" / "html"
    out = []
    for page in sorted((docs / "library").glob("*.html")):
        text = html_to_markdown(page.read_text(encoding="utf-8", errors="replace"))
        if len(text) > 500:
            out.append(DocumentIn(f"library/{page.name}", text))
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "n": len(ms),
    }


async def fill_rag(rag: RagService, pages: list[DocumentIn], target: int) -> tuple[int, int]:
    """Pages added until the collection holds `target` chunks: (chunks, pages used)."""
    chunks = used = 0
    while used < len(pages) and chunks < target:
        batch = pages[used : used + 8]
        added = await rag.add(OWNER, "docs", batch)
        chunks += sum(n for _, n in added)
        used += len(batch)
        print(f"\r  filling: {chunks} chunks from {used} pages", end="", flush=True)
    print()
    return chunks, used


async def ingest(rag: RagService, docs: list[DocumentIn], emb: CachedEmbedder) -> dict[str, Any]:
    tokens = sum(emb.count_tokens([d.text for d in docs]))
    t0 = time.perf_counter()
    added = await rag.add(OWNER, "docs", docs)
    seconds = time.perf_counter() - t0
    chunks = sum(n for _, n in added)
    return {
        "chunks": chunks,
        "chunks_per_s": round(chunks / seconds, 1),
        "tokens_per_s": round(tokens / seconds),
    }


async def rag_bench(
    args: argparse.Namespace, pages: list[DocumentIn], emb: CachedEmbedder, data: Path
) -> dict[str, Any]:
    backend = VectorBackend(VectorStore(str(data)), emb)  # type: ignore[arg-type]
    env = load_settings({}).env
    rag = RagService(
        backend,
        ChunkSettings(max_tokens=env.rag_chunk_tokens, overlap_tokens=env.rag_chunk_overlap,
                      min_tokens=32),
    )  # fmt: skip
    await backend.wait_ready()
    await rag.create(OWNER, "docs", "Python library reference", False)
    stored, used = await fill_rag(rag, pages, args.chunks)
    emb.save()
    # Ingestion: pages the store has not seen, embedded live, into the full collection.
    fresh: list[DocumentIn] = []
    live_chunks = 0
    for page in pages[used:]:
        fresh.append(page)
        live_chunks += len(rag._chunk_all([page])[0])
        if live_chunks >= args.ingest:
            break
    emb.use_cache = False
    live = await ingest(rag, fresh, emb)
    emb.use_cache = True
    cached = await ingest(rag, fresh, emb)  # same ids: replaced, vectors now cached
    total = (await rag.counts(await rag.resolve(OWNER, "docs")))[1]
    questions = [q["question"] for q in json.loads(gzip.decompress(FAQ.read_bytes()))["questions"]]
    rng = random.Random(7)
    asked = [rng.choice(questions) for _ in range(args.queries)]
    emb.use_cache = False  # every query embedded live
    for q in asked[:5]:  # first use of the query path (term caches, Chroma's segment load)
        await rag.search(OWNER, "docs", q, 3)
    times = []
    for q in asked:
        t = time.perf_counter()
        await rag.search(OWNER, "docs", q, 3)
        times.append(time.perf_counter() - t)
    return {
        "stored_chunks": total,
        "search_top3": percentiles(times),
        "ingest_live": live,
        "ingest_vectors_cached": cached,
        "fill_chunks": stored,
    }


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def conversation_texts(pages: list[DocumentIn], rng: random.Random) -> list[str]:
    """Prose sentences of the documentation, the raw material of synthetic chat turns."""
    out = []
    for p in pages:
        for para in p.text.split("\n\n"):
            if para[:1].isalpha() and len(para) > 80 and "|" not in para:
                out.extend(s for s in _SENTENCE.split(para) if 30 < len(s) < 400)
    rng.shuffle(out)
    return out


def turn(sentences: list[str], rng: random.Random, n: int) -> str:
    return " ".join(sentences[rng.randrange(len(sentences))] for _ in range(n))


async def memory_bench(
    args: argparse.Namespace, pages: list[DocumentIn], emb: CachedEmbedder, data: Path
) -> dict[str, Any]:
    rng = random.Random(11)
    sentences = conversation_texts(pages, rng)
    store = VectorStore(str(data))
    await store.open()
    memory = ConversationMemory(store, emb, MemorySettings())  # type: ignore[arg-type]
    memory.start()
    sessions = max(1, args.turns // TURNS_PER_SESSION)
    for s in range(sessions):
        for _ in range(TURNS_PER_SESSION // 2):  # an exchange is two turns
            question = [{"role": "user", "content": turn(sentences, rng, rng.randint(1, 2))}]
            memory.remember(OWNER, f"s{s}", question, turn(sentences, rng, rng.randint(2, 5)))
        if s % 10 == 9:
            await memory.flush(600)
            print(f"\r  filling: {(s + 1) * TURNS_PER_SESSION} turns", end="", flush=True)
    await memory.flush(600)
    print()
    emb.save()
    stored = await store.count(memory.settings.collection)
    emb.use_cache = False
    cold, hot = [], []
    for i in range(args.queries + 5):
        session = f"s{rng.randrange(sessions)}"
        ask = [{"role": "user", "content": turn(sentences, rng, 1) + f" ({i})"}]
        memory._cache.clear()  # cold: the session's history comes from Chroma
        t = time.perf_counter()
        cold_recall = await memory.recall(OWNER, session, ask, 6000)
        cold_s = time.perf_counter() - t
        ask = [{"role": "user", "content": turn(sentences, rng, 1) + f" [{i}]"}]
        t = time.perf_counter()
        await memory.recall(OWNER, session, ask, 6000)  # hot: the history is cached now
        hot_s = time.perf_counter() - t
        if i >= 5:  # the first lookups load Chroma's segments
            cold.append(cold_s)
            hot.append(hot_s)
        assert cold_recall.recent > 0, "a stored session must be recalled"
    await memory.stop()
    return {
        "stored_records": stored,
        "turns": sessions * TURNS_PER_SESSION,
        "sessions": sessions,
        "lookup_cold": percentiles(cold),
        "lookup_hot": percentiles(hot),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        pages = library_pages(args.docs, work)
        print(f"{len(pages)} library pages")
        emb = CachedEmbedder(LocalEmbedder(), args.cache / "vectors.npz")
        t0 = time.perf_counter()
        rag = await rag_bench(args, pages, emb, work / "rag")
        print(json.dumps(rag, indent=1))
        mem = await memory_bench(args, pages, emb, work / "memory")
        print(json.dumps(mem, indent=1))
        await emb.close()
        return {"rag": rag, "memory": mem, "seconds": round(time.perf_counter() - t0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--chunks", type=int, default=10_000)
    p.add_argument("--turns", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--ingest", type=int, default=400, help="chunks ingested live")
    p.add_argument("--docs", type=Path, help="an unpacked python3.11-doc html/ folder")
    p.add_argument("--cache", type=Path, default=ROOT / "bench" / "results" / "vector-cache")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    result = asyncio.run(main_async(args))
    rag, mem = result["rag"], result["memory"]
    print(f"\nRAG, {rag['stored_chunks']} chunks stored:")
    print(f"  search p50 {rag['search_top3']['p50_ms']} ms, p95 {rag['search_top3']['p95_ms']} ms"
          "  (target p50 <= 15 ms, query embedding included)")  # fmt: skip
    print(f"  ingestion {rag['ingest_live']['chunks_per_s']} chunks/s "
          f"({rag['ingest_live']['tokens_per_s']} tokens/s) with the encoder; "
          f"{rag['ingest_vectors_cached']['chunks_per_s']} chunks/s around it")  # fmt: skip
    print(f"Memory, {mem['turns']} turns ({mem['stored_records']} records with sentence vectors) "
          f"in {mem['sessions']} sessions:")  # fmt: skip
    print(f"  lookup p50 cold {mem['lookup_cold']['p50_ms']} ms, hot {mem['lookup_hot']['p50_ms']}"
          " ms (target p50 <= 10 ms, query embedding included)")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
