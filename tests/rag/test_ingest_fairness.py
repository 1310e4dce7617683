"""Ingestion does not starve other keys: one key's ingestion never holds up another key's
search (interactive embeddings have their own lane; ingestion's runs on lower-priority threads),
and keys ingesting at once take turns at the encoder, slice by slice, whatever the number of
requests each has in flight."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import numpy as np
import pytest

from ailb.embeddings import LocalEmbedder
from ailb.rag.chunking import ChunkSettings
from ailb.rag.service import DocumentIn, RagService
from ailb.rag.turns import FairTurns
from ailb.vectorstore.backend import VectorBackend
from ailb.vectorstore.chroma import VectorStore

KEY_A = "key_00000000000000aa"
KEY_B = "key_00000000000000bb"
PER_TEXT = 0.004  # the slow model's seconds per text (it sleeps: no CPU is taken)


class SlowModel:
    """Stands in for MiniLM: PER_TEXT seconds a text, and a record of what it embedded, on
    which thread, at what CPU priority."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []
        self.lock = threading.Lock()

    def embed(self, texts: list[str]) -> Any:
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        with self.lock:
            self.calls.append((list(texts), nice))
        time.sleep(PER_TEXT * len(texts))
        rng = np.random.default_rng(len(texts))
        v = rng.standard_normal((len(texts), 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def document(owner: str, n: int, paragraphs: int) -> DocumentIn:
    """`paragraphs` chunks, each naming its owner and number (small chunks: one each)."""
    text = "\n\n".join(
        f"# {owner} part {n}.{i}\n\nThe lamp turns {i} times." for i in range(paragraphs)
    )
    return DocumentIn(f"{owner}-{n}.md", text)


@pytest.fixture
def world(tmp_path: Any) -> Any:
    model = SlowModel()
    embedder = LocalEmbedder(loader=lambda: model, bulk_threads=1)
    rag = RagService(
        VectorBackend(VectorStore(str(tmp_path)), embedder),
        ChunkSettings(max_tokens=24, overlap_tokens=0, min_tokens=4),
    )
    return rag, model


def test_a_search_never_waits_for_another_keys_ingestion(world: Any) -> None:
    rag, model = world

    async def main() -> None:
        await rag.create(KEY_A, "manual", "", False)
        await rag.create(KEY_B, "guide", "", False)
        await rag.add(KEY_B, "guide", [DocumentIn("g.md", "The harbour lamp turns every 7.5 s.")])
        await rag.search(KEY_B, "guide", "lamp", 1)  # warm: the first search loads the ranker
        ingest = asyncio.create_task(rag.add(KEY_A, "manual", [document("a", 0, 300)]))
        while not any(texts[0].startswith("# a part") for texts, _ in model.calls):
            await asyncio.sleep(0.01)  # until A's chunks are being encoded
        waits = []
        for _ in range(5):
            started = time.perf_counter()
            found = await rag.search(KEY_B, "guide", "How often does the lamp turn?", 1)
            waits.append(time.perf_counter() - started)
            assert found and found[0].document_id == "g.md"
        assert not ingest.done()  # all five searches ran while A's 300 chunks were encoded
        # Before, the query queued behind A's whole batch (256 chunks: about a second here).
        assert max(waits) < 0.25, waits
        await ingest
        await rag.backend.stop()

    asyncio.run(main())
    bulk = [nice for texts, nice in model.calls if texts[0].startswith("# a part")]
    interactive = [nice for texts, nice in model.calls if texts[0].startswith("How often")]
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert bulk and all(n > base for n in bulk)  # ingestion at a lower CPU priority ...
    assert interactive and all(n == base for n in interactive)  # ... queries at the usual one
    assert max(len(texts) for texts, nice in model.calls if nice > base) <= 4  # in slices


def test_keys_ingesting_at_once_take_turns(world: Any) -> None:
    """A sends three big requests at once, B one: B's chunks are encoded alongside A's from the
    start, not after all of A's."""
    rag, model = world

    async def main() -> None:
        await rag.create(KEY_A, "manual", "", False)
        await rag.create(KEY_B, "guide", "", False)
        a = [
            asyncio.create_task(rag.add(KEY_A, "manual", [document("a", n, 80)])) for n in range(3)
        ]
        await asyncio.sleep(0)  # A's requests are in first
        b = asyncio.create_task(rag.add(KEY_B, "guide", [document("b", 0, 80)]))
        await asyncio.gather(*a, b)
        await rag.backend.stop()

    asyncio.run(main())
    order = [texts[0].split(" ")[1] for texts, _ in model.calls if texts[0].startswith("# ")]
    b_first = order.index("b")
    b_last = max(i for i, who in enumerate(order) if who == "b")
    # Once B's request is ready to encode, the keys alternate, a turn (16 chunks, 4 calls)
    # each: B's 80 chunks are done after about as many of A's, not after A's 240.
    during = order[b_first : b_last + 1]
    assert during.count("a") <= during.count("b") + 4, "".join(order)
    assert order[b_last + 1 :].count("a") >= 20  # A still had most of its chunks left


def test_turns_go_round_the_keys() -> None:
    async def main() -> list[str]:
        turns = FairTurns()
        order: list[str] = []

        async def use(key: str) -> None:
            async with turns.turn(key):
                order.append(key)
                await asyncio.sleep(0.001)

        first = asyncio.create_task(use("a"))
        await asyncio.sleep(0)  # "a" holds the turn
        waiting = [asyncio.create_task(use(k)) for k in ("a", "a", "a", "b", "c", "b")]
        cancelled = asyncio.create_task(use("d"))
        await asyncio.sleep(0)
        cancelled.cancel()  # a waiter that gives up takes no turn
        await asyncio.gather(first, *waiting)
        async with turns.turn("e"):  # free again: no wait
            order.append("e")
        return order

    assert asyncio.run(main()) == ["a", "b", "c", "a", "b", "a", "a", "e"]
