"""Retrieval quality: AILB's RAG against plain Chroma on the same labelled data.

    python bench/retrieval/evaluate.py [--dataset bench/retrieval/python_faq.json.gz]
                                       [--layout per-answer|pages|both]

AILB: the real RagService (chunking, embedding, Chroma, hybrid re-ranking) on a temporary
embedded store, documents added through the same code as the API. Plain Chroma: a collection
created with Chroma's defaults (L2 distance), each document added whole and queried by its
embedding. Chroma's default embedding function is all-MiniLM-L6-v2 too, but it downloads the
model at first use; here the same model's vectors come from AILB's offline encoder (cosine >=
0.999 to sentence-transformers'), truncated at 256 tokens as that model is.

Layouts: `per-answer` gives each answer as its own document (the data arrives cut into ideal
units: the layout most favourable to a plain store); `pages` joins a page's answers into one
Markdown document, as a user ingesting files would, and a retrieved chunk counts when it covers
half of the answer or the answer covers half of it. Prints recall@5 and MRR@10.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
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
from ailb.rag.chunking import ChunkSettings  # noqa: E402
from ailb.rag.service import DocumentIn, RagService  # noqa: E402
from ailb.vectorstore.backend import VectorBackend  # noqa: E402
from ailb.vectorstore.chroma import VectorStore  # noqa: E402

OWNER = "eval"
K = 10


@dataclass
class Item:
    id: str  # document id
    start: int = 0  # the span that is relevant inside it (pages layout)
    end: int = 0


def load(path: Path) -> dict[str, Any]:
    return json.loads(gzip.decompress(path.read_bytes()))  # type: ignore[no-any-return]


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


async def ailb(
    docs: list[DocumentIn], questions: list[dict[str, Any]], answers: list[Item], layout: str
) -> dict[str, Any]:
    env = load_settings({}).env
    with tempfile.TemporaryDirectory() as tmp:
        backend = VectorBackend(VectorStore(tmp), LocalEmbedder())
        rag = RagService(
            backend,
            ChunkSettings(max_tokens=env.rag_chunk_tokens, overlap_tokens=env.rag_chunk_overlap,
                          min_tokens=32),
        )  # fmt: skip
        await rag.create(OWNER, "eval", "", False)
        t0 = time.perf_counter()
        chunks = 0
        for i in range(0, len(docs), 64):
            added = await rag.add(OWNER, "eval", docs[i : i + 64])
            chunks += sum(n for _, n in added)
        ingest_s = time.perf_counter() - t0
        ranks: list[int | None] = []
        latencies = []
        for q, answer in zip(questions, answers, strict=True):
            t = time.perf_counter()
            found = await rag.search(OWNER, "eval", q["question"], K)
            latencies.append(time.perf_counter() - t)
            rank = next(
                (i for i, p in enumerate(found)
                 if hit(Item(p.document_id), answer, layout, p.start, p.end)),
                None,
            )  # fmt: skip
            ranks.append(rank)
        tokens = sum(backend.embedder.count_tokens([d.text for d in docs]))
        await backend.stop()
    r5, mrr = scores(ranks)
    return {
        "recall@5": r5,
        "mrr@10": mrr,
        "chunks": chunks,
        "ingest_chunks_per_s": round(chunks / ingest_s, 1),
        "ingest_tokens_per_s": round(tokens / ingest_s),
        "search_p50_ms": round(statistics.median(latencies) * 1000, 2),
    }


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
        for i in range(0, len(docs), 256):
            part = docs[i : i + 256]
            coll.add(
                ids=[d.id for d in part],
                documents=[d.text for d in part],
                embeddings=model.embed([d.text for d in part]),
            )
        ranks: list[int | None] = []
        for q, answer in zip(questions, answers, strict=True):
            res = coll.query(query_embeddings=model.embed([q["question"]]), n_results=K)
            ids = res["ids"][0]
            ranks.append(next((i for i, d in enumerate(ids) if hit(Item(d), answer, layout)), None))
    r5, mrr = scores(ranks)
    return {"recall@5": r5, "mrr@10": mrr, "chunks": len(docs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", type=Path, default=Path(__file__).with_name("python_faq.json.gz"))
    p.add_argument("--layout", choices=("per-answer", "pages", "both"), default="both")
    args = p.parse_args()
    data = load(args.dataset)
    questions = data["questions"]
    print(f"{args.dataset.name}: {data['source']}; {len(data['documents'])} documents, "
          f"{len(questions)} questions")  # fmt: skip
    layouts = ["per-answer", "pages"] if args.layout == "both" else [args.layout]
    for layout in layouts:
        if layout == "per-answer":
            docs = [DocumentIn(d["id"], d["text"]) for d in data["documents"]]
            answers = [Item(q["answer_id"]) for q in questions]
        else:
            docs, spans = pages(data)
            answers = [spans[q["answer_id"]] for q in questions]
        base = plain_chroma(docs, questions, answers, layout)
        ours = asyncio.run(ailb(docs, questions, answers, layout))
        print(f"\nlayout {layout}: {len(docs)} documents")
        print(f"  {'':14s} {'recall@5':>9s} {'MRR@10':>7s} {'chunks':>7s}")
        for name, r in (("plain Chroma", base), ("AILB", ours)):
            print(f"  {name:14s} {r['recall@5']:9.3f} {r['mrr@10']:7.3f} {r['chunks']:7d}")
        print(f"  AILB ingestion {ours['ingest_chunks_per_s']} chunks/s "
              f"({ours['ingest_tokens_per_s']} tokens/s); search p50 {ours['search_p50_ms']} ms "
              "(query embedding included)")  # fmt: skip
        better = ours["recall@5"] > base["recall@5"] and ours["mrr@10"] > base["mrr@10"]
        print(f"  AILB higher on both: {'yes' if better else 'NO'}")


if __name__ == "__main__":
    main()
