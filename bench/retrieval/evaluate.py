"""Retrieval quality: AILB's RAG against plain Chroma on the same labelled data.

    python bench/retrieval/evaluate.py [--dataset python_faq|zsh_faq|django_faq|all|FILE ...]
                                       [--layout per-answer|pages|both] [--questions N]
                                       [--lexical-weights W,W,...] [--details DIR]

Datasets are built by build_dataset.py: `python_faq` (the set AILB's ranking was designed on,
the default), `zsh_faq` and `django_faq` (held out), or any file in that format.

AILB: the real RagService (chunking, embedding, Chroma, hybrid re-ranking) on a temporary
embedded store, documents added through the same code as the API. Plain Chroma: a collection
created with Chroma's defaults (L2 distance), each document added whole and queried by its
embedding. Chroma's default embedding function is all-MiniLM-L6-v2 too, but it downloads the
model at first use; here the same model's vectors come from AILB's offline encoder (cosine >=
0.999 to sentence-transformers'), truncated at 256 tokens as that model is.

Layouts: `per-answer` gives each answer as its own document (the data arrives cut into ideal
units: the layout most favourable to a plain store); `pages` joins a page's answers into one
Markdown document, as a user ingesting files would, and a retrieved chunk counts when it covers
half of the answer or the answer covers half of it. Prints recall@5 and MRR@10, and how many
questions each side ranks better than the other.

--lexical-weights re-runs AILB's searches (ingestion is done once) with other weights of BM25 in
the re-ranking, as a what-if; the row labelled just "AILB" is the shipped weight. --details
writes, per question, the rank each side gave the answer and their top 5 results, to study the
misses.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from ailb.config import load_settings  # noqa: E402
from ailb.embeddings import LocalEmbedder  # noqa: E402
from ailb.rag import ranking  # noqa: E402
from ailb.rag import service as rag_service  # noqa: E402
from ailb.rag.chunking import ChunkSettings  # noqa: E402
from ailb.rag.service import DocumentIn, RagService  # noqa: E402
from ailb.vectorstore.backend import VectorBackend  # noqa: E402
from ailb.vectorstore.chroma import VectorStore  # noqa: E402

HERE = Path(__file__).resolve().parent
DATASETS = ("python_faq", "zsh_faq", "django_faq")
OWNER = "eval"
K = 10
TOP = 5  # results kept per question in --details


@dataclass
class Item:
    id: str  # document id
    start: int = 0  # the span that is relevant inside it (pages layout)
    end: int = 0


class Progress:
    """One line every `every` seconds (and at the end), so a long run shows it is alive."""

    def __init__(self, what: str, total: int, every: float = 15.0) -> None:
        self.what, self.total, self.every = what, total, every
        self.t0 = self.last = time.perf_counter()

    def __call__(self, done: int, extra: str = "") -> None:
        now = time.perf_counter()
        if done < self.total and now - self.last < self.every:
            return
        self.last = now
        print(f"    {self.what}: {done}/{self.total}{extra} ({now - self.t0:.0f} s)", flush=True)


def source_version() -> str:
    """The commit of the AILB code under test, and whether src/ differs from it."""

    def git(*args: str) -> str:
        cmd = ["git", "-C", str(ROOT), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)  # noqa: S603
        return out.stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--", "src")
    except (OSError, subprocess.CalledProcessError):
        return f"{ROOT / 'src'} (not a git checkout)"
    return f"src at {head}" + (" with uncommitted changes" if dirty else "")


def load(path: Path) -> dict[str, Any]:
    return json.loads(gzip.decompress(path.read_bytes()))  # type: ignore[no-any-return]


def dataset_path(name: str) -> Path:
    path = HERE / f"{name}.json.gz"
    return path if name in DATASETS else Path(name)


def sample(questions: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    """n questions spread evenly over the set (all of them without n)."""
    if n is None or n >= len(questions):
        return questions
    return [questions[i * len(questions) // n] for i in range(n)]


def batches(docs: list[DocumentIn], size: int = 64, chars: int = 100_000) -> list[list[DocumentIn]]:
    """Up to `size` documents a batch, fewer when they are long (whole pages)."""
    out: list[list[DocumentIn]] = [[]]
    for d in docs:
        if out[-1] and (len(out[-1]) == size or sum(len(x.text) for x in out[-1]) >= chars):
            out.append([])
        out[-1].append(d)
    return out


def pages(data: dict[str, Any]) -> tuple[list[DocumentIn], dict[str, Item]]:
    """A page per document-id prefix, its sections as Markdown headings; answer spans kept."""
    texts: dict[str, str] = {}
    last_section: dict[str, str] = {}
    spans: dict[str, Item] = {}
    for d in data["documents"]:
        page = d["id"].split("#")[0]
        title, _, section = d["metadata"]["title"].partition(" — ")
        text = texts.get(page, f"# {title}\n\n")
        if section and section != last_section.get(page):
            text += f"## {section}\n\n"
            last_section[page] = section
        start = len(text)
        text += d["text"] + "\n\n"
        texts[page] = text
        spans[d["id"]] = Item(page, start, start + len(d["text"]))
    return [DocumentIn(p, t) for p, t in texts.items()], spans


def hit(item: Item, answer: Item, layout: str, start: int = 0, end: int = 0) -> bool:
    if layout == "per-answer":
        return item.id == answer.id
    if item.id != answer.id:
        return False
    if end == start == 0:  # a whole page returned: generous, it contains the answer
        return True
    overlap = min(end, answer.end) - max(start, answer.start)
    return overlap > 0 and (
        overlap >= 0.5 * (end - start) or overlap >= 0.5 * (answer.end - answer.start)
    )


def scores(ranks: list[int | None]) -> tuple[float, float]:
    recall5 = sum(r is not None and r < 5 for r in ranks) / len(ranks)
    mrr = sum(1 / (r + 1) for r in ranks if r is not None and r < K) / len(ranks)
    return round(recall5, 3), round(mrr, 3)


def summary(ranks: list[int | None], **extra: Any) -> dict[str, Any]:
    r5, mrr = scores(ranks)
    return {"recall@5": r5, "mrr@10": mrr, "ranks": ranks, **extra}


async def ailb(
    docs: list[DocumentIn],
    questions: list[dict[str, Any]],
    answers: list[Item],
    layout: str,
    weights: list[float],
) -> list[dict[str, Any]]:
    """One ingestion, then the questions once per lexical weight (the first: as shipped)."""
    env = load_settings({}).env
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        backend = VectorBackend(VectorStore(tmp), LocalEmbedder())
        backend.open_timeout = 600.0  # loading the model on a busy machine is not an outage
        rag = RagService(
            backend,
            ChunkSettings(max_tokens=env.rag_chunk_tokens, overlap_tokens=env.rag_chunk_overlap,
                          min_tokens=32),
        )  # fmt: skip
        await rag.create(OWNER, "eval", "", False)
        t0 = time.perf_counter()
        chunks = 0
        progress = Progress("AILB ingestion, documents", len(docs))
        done = 0
        for batch in batches(docs):
            added = await rag.add(OWNER, "eval", batch)
            chunks += sum(n for _, n in added)
            done += len(batch)
            progress(done, f", {chunks} chunks")
        ingest_s = time.perf_counter() - t0
        tokens = sum(backend.embedder.count_tokens([d.text for d in docs]))
        shipped = rag_service.rerank
        try:
            for weight in weights:
                rag_service.rerank = functools.partial(ranking.rerank, weight=weight)
                ranks: list[int | None] = []
                tops: list[list[dict[str, Any]]] = []
                latencies = []
                progress = Progress(f"AILB search (lexical weight {weight})", len(questions))
                for n, (q, answer) in enumerate(zip(questions, answers, strict=True), 1):
                    t = time.perf_counter()
                    found = await rag.search(OWNER, "eval", q["question"], K)
                    latencies.append(time.perf_counter() - t)
                    ranks.append(next(
                        (i for i, p in enumerate(found)
                         if hit(Item(p.document_id), answer, layout, p.start, p.end)),
                        None,
                    ))  # fmt: skip
                    tops.append([
                        {"id": p.document_id, "start": p.start, "end": p.end,
                         "section": p.section, "dense": round(p.dense, 3),
                         "lexical": round(p.lexical, 3)}
                        for p in found[:TOP]
                    ])  # fmt: skip
                    progress(n)
                results.append(
                    summary(
                        ranks,
                        weight=weight,
                        top=tops,
                        chunks=chunks,
                        ingest_chunks_per_s=round(chunks / ingest_s, 1),
                        ingest_tokens_per_s=round(tokens / ingest_s),
                        search_p50_ms=round(statistics.median(latencies) * 1000, 2),
                    )
                )
        finally:
            rag_service.rerank = shipped
        await backend.stop()
    return results


def plain_chroma(
    docs: list[DocumentIn], questions: list[dict[str, Any]], answers: list[Item], layout: str
) -> dict[str, Any]:
    import chromadb
    from chromadb.config import Settings

    from ailb.embeddings.minilm import MiniLM

    model = MiniLM()
    with tempfile.TemporaryDirectory() as tmp:
        client = chromadb.PersistentClient(tmp, settings=Settings(anonymized_telemetry=False))
        coll = client.create_collection("plain", embedding_function=None)  # defaults: L2, HNSW
        progress = Progress("plain Chroma ingestion, documents", len(docs))
        for i in range(0, len(docs), 256):
            part = docs[i : i + 256]
            coll.add(
                ids=[d.id for d in part],
                documents=[d.text for d in part],
                embeddings=model.embed([d.text for d in part]),
            )
            progress(i + len(part))
        ranks: list[int | None] = []
        tops: list[list[dict[str, Any]]] = []
        latencies = []
        progress = Progress("plain Chroma search", len(questions))
        for n, (q, answer) in enumerate(zip(questions, answers, strict=True), 1):
            t = time.perf_counter()
            res = coll.query(query_embeddings=model.embed([q["question"]]), n_results=K)
            latencies.append(time.perf_counter() - t)
            ids = res["ids"][0]
            ranks.append(next((i for i, d in enumerate(ids) if hit(Item(d), answer, layout)), None))
            tops.append([{"id": d} for d in ids[:TOP]])
            progress(n)
    return summary(
        ranks,
        top=tops,
        chunks=len(docs),
        search_p50_ms=round(statistics.median(latencies) * 1000, 2),
    )


def compare(a: list[int | None], b: list[int | None]) -> tuple[int, int]:
    """How many questions a ranks better than b (within K), and worse."""

    def key(r: int | None) -> int:
        return K if r is None else r

    return sum(key(x) < key(y) for x, y in zip(a, b, strict=True)), sum(
        key(x) > key(y) for x, y in zip(a, b, strict=True)
    )


def run(
    path: Path, layouts: list[str], n: int | None, weights: list[float], details: Path | None
) -> list[dict[str, Any]]:
    data = load(path)
    questions = sample(data["questions"], n)
    name = path.name.removesuffix(".json.gz")
    print(f"\n{name}: {data['source']}; {len(data['documents'])} documents, "
          f"{len(questions)} of {len(data['questions'])} questions", flush=True)  # fmt: skip
    rows = []
    for layout in layouts:
        if layout == "per-answer":
            docs = [DocumentIn(d["id"], d["text"]) for d in data["documents"]]
            answers = [Item(q["answer_id"]) for q in questions]
        else:
            docs, spans = pages(data)
            answers = [spans[q["answer_id"]] for q in questions]
        print(f"  layout {layout}: {len(docs)} documents", flush=True)
        t0 = time.perf_counter()
        base = plain_chroma(docs, questions, answers, layout)
        ours = asyncio.run(ailb(docs, questions, answers, layout, weights))
        print(f"  layout {layout}: {len(docs)} documents ({time.perf_counter() - t0:.0f} s)")
        print(f"    {'':20s} {'recall@5':>9s} {'MRR@10':>7s} {'chunks':>7s} {'p50 ms':>7s}"
              f" {'better':>7s} {'worse':>6s}")  # fmt: skip
        print(f"    {'plain Chroma':20s} {base['recall@5']:9.3f} {base['mrr@10']:7.3f} "
              f"{base['chunks']:7d} {base['search_p50_ms']:7.1f}")  # fmt: skip
        for r in ours:
            label = (
                "AILB" if r["weight"] == ranking.LEXICAL_WEIGHT else f"AILB, weight {r['weight']}"
            )
            better, worse = compare(r["ranks"], base["ranks"])
            print(f"    {label:20s} {r['recall@5']:9.3f} {r['mrr@10']:7.3f} {r['chunks']:7d} "
                  f"{r['search_p50_ms']:7.1f} {better:7d} {worse:6d}")  # fmt: skip
        print(
            f"    AILB ingestion {ours[0]['ingest_chunks_per_s']} chunks/s "
            f"({ours[0]['ingest_tokens_per_s']} tokens/s); p50 includes the query embedding; "
            "better/worse: questions whose answer AILB ranks above/below plain Chroma's"
        )
        rows.append({"dataset": name, "layout": layout, "documents": len(docs),
                     "questions": len(questions), "plain": base, "ailb": ours})  # fmt: skip
        if details is not None:
            details.mkdir(parents=True, exist_ok=True)
            per_question = [
                {"question": q["question"], "answer_id": q["answer_id"],
                 "plain": {"rank": base["ranks"][i], "top": base["top"][i]},
                 "ailb": {str(r["weight"]): {"rank": r["ranks"][i], "top": r["top"][i]}
                          for r in ours}}
                for i, q in enumerate(questions)
            ]  # fmt: skip
            out = details / f"{name}-{layout}.json"
            out.write_text(json.dumps(per_question, ensure_ascii=False, indent=1))
            print(f"    per question: {out}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", nargs="+", default=["python_faq"],
                   help=f"{', '.join(DATASETS)}, all, or a dataset file")  # fmt: skip
    p.add_argument("--layout", choices=("per-answer", "pages", "both"), default="both")
    p.add_argument("--questions", type=int, help="only N questions, spread over the set")
    p.add_argument(
        "--lexical-weights",
        default=str(ranking.LEXICAL_WEIGHT),
        help=f"AILB's BM25 weights to try, comma-separated (shipped: {ranking.LEXICAL_WEIGHT})",
    )
    p.add_argument("--details", type=Path, help="write per-question ranks and results here")
    args = p.parse_args()
    names = list(DATASETS) if args.dataset == ["all"] else args.dataset
    paths = [dataset_path(n) for n in names]
    for path in paths:
        if not path.exists():
            p.error(f"{path}: no such dataset (build it with build_dataset.py)")
    layouts = ["per-answer", "pages"] if args.layout == "both" else [args.layout]
    weights = [float(w) for w in args.lexical_weights.split(",")]
    print(f"AILB: {source_version()}")
    t0 = time.perf_counter()
    rows = []
    for path in paths:
        rows += run(path, layouts, args.questions, weights, args.details)
    print(f"\nSummary ({time.perf_counter() - t0:.0f} s):")
    print("| set | layout | questions | plain Chroma recall@5 / MRR@10 "
          "| AILB recall@5 / MRR@10 | AILB search p50 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        base = r["plain"]
        ours = next((a for a in r["ailb"] if a["weight"] == ranking.LEXICAL_WEIGHT), r["ailb"][0])
        print(f"| {r['dataset']} | {r['layout']} ({r['documents']:,} documents) "
              f"| {r['questions']} | {base['recall@5']:.3f} / {base['mrr@10']:.3f} "
              f"| {ours['recall@5']:.3f} / {ours['mrr@10']:.3f} "
              f"| {ours['search_p50_ms']:.1f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
