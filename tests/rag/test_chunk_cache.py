"""The in-process cache of chunk texts: content-addressed ids, its bound, and searches that read
texts from it yet never return a replaced document's old text (another instance may replace
it behind this one's back)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ailb.embeddings import LocalEmbedder
from ailb.embeddings.minilm import MiniLM
from ailb.rag.chunk_cache import ChunkCache, content_id, is_content_id
from ailb.rag.chunking import ChunkSettings
from ailb.rag.service import DocumentIn, RagService
from ailb.vectorstore.backend import VectorBackend
from ailb.vectorstore.chroma import VectorStore

META = {"doc_id": "a.md", "chunk": 0, "title": "A"}


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (("a.md", 0, "text", META), True),
        (("a.md", 0, "text!", META), False),
        (("a.md", 0, "text", {**META, "title": "B"}), False),
        (("a.md", 1, "text", META), False),
        (("b.md", 0, "text", META), False),
    ],
)
def test_content_id_names_the_content(other: tuple[Any, ...], same: bool) -> None:
    assert (content_id("a.md", 0, "text", META) == content_id(*other)) is same


@pytest.mark.parametrize(
    ("chunk_id", "expected"),
    [
        (content_id("a.md", 3, "t", {}), True),
        (content_id("x@y#z.md", 3, "t", {}), True),
        ("a.md#3", False),  # ids of an older layout: the same id may name new content
        ("me@host#3", False),
    ],
)
def test_only_content_ids_are_cached(chunk_id: str, expected: bool) -> None:
    assert is_content_id(chunk_id) is expected
    cache = ChunkCache()
    cache.put("c", chunk_id, "text", {})
    assert (cache.get("c", chunk_id) is not None) is expected


def test_the_cache_is_bounded_by_characters_least_recently_used_first() -> None:
    cache = ChunkCache(budget_chars=10)
    ids = [content_id("d", i, "x", {}) for i in range(4)]
    for i in ids[:3]:
        cache.put("c", i, "abcd", {})  # 12 chars > 10: the first goes
    assert cache.get("c", ids[0]) is None and cache.chars == 8
    assert cache.get("c", ids[1]) is not None  # now the most recently used
    cache.put("c", ids[3], "abcd", {})
    assert cache.get("c", ids[2]) is None and cache.get("c", ids[1]) is not None
    cache.put("c", ids[1], "abcdef", {})  # replaced in place: counted once
    assert cache.chars == 10 and len(cache) == 2
    cache.drop_collection("c")
    assert cache.chars == 0 and len(cache) == 0


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM()


class CountingStore(VectorStore):
    """The real store, counting reads of chunk texts."""

    reads = 0

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await super().get(*args, **kwargs)


def test_searches_read_texts_from_the_cache_and_never_a_replaced_text(tmp_path, model) -> None:
    async def main() -> None:
        store = CountingStore(str(tmp_path))
        backend = VectorBackend(store, LocalEmbedder(loader=lambda: model))
        chunks = ChunkSettings(max_tokens=64, overlap_tokens=0, min_tokens=8)
        # Two instances on one store, each with its own cache.
        one, two = RagService(backend, chunks), RagService(backend, chunks)
        await one.create("k", "docs", "", False)
        old = "The harbour ferry leaves at seven every morning from pier four."
        await one.add("k", "docs", [DocumentIn("ferry.txt", old, format="text")])
        await two.add("k", "docs", [DocumentIn("other.txt", "Gulls nest on the cliffs.")])
        reads = store.reads
        found = await one.search("k", "docs", "when does the ferry leave", 1)
        assert found[0].text == old
        assert store.reads == reads + 1  # other.txt's text, added by `two`, read once
        await one.search("k", "docs", "when does the ferry leave", 1)
        assert store.reads == reads + 1  # everything cached now

        new = "The harbour ferry now leaves at nine every morning from pier two."
        await two.add("k", "docs", [DocumentIn("ferry.txt", new, format="text")])
        found = await one.search("k", "docs", "when does the ferry leave", 2)
        assert [p.text for p in found if p.document_id == "ferry.txt"] == [new]
        cold = RagService(backend, chunks)  # a restarted instance: texts from Chroma
        assert (await cold.search("k", "docs", "when does the ferry leave", 1))[0].text == new
        await backend.stop()

    asyncio.run(main())
