"""How collections are found, listed and counted: a lookup reads one collection whatever the
number of others (a hostile key's thousands cost other keys nothing), never a listing of them
all; a store written before the index existed is indexed once, on first use."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from ailb.embeddings import LocalEmbedder
from ailb.rag.chunking import ChunkSettings
from ailb.rag.registry import chroma_name, owner_id, owner_of_id, split_reference
from ailb.rag.service import CollectionNotFound, QuotaExceeded, RagLimits, RagService
from ailb.vectorstore.backend import VectorBackend
from ailb.vectorstore.chroma import VectorStore

CHUNKS = ChunkSettings(max_tokens=64, overlap_tokens=0, min_tokens=8)
KEY_A = "key_00000000000000aa"
KEY_B = "key_00000000000000bb"


class CountingStore(VectorStore):
    """Counts full listings of collections and reads of one collection's metadata."""

    listings = 0
    lookups = 0

    async def list_collections(self, prefix: str) -> Any:
        self.listings += 1
        return await super().list_collections(prefix)

    async def collection_metadata(self, name: str) -> Any:
        self.lookups += 1
        return await super().collection_metadata(name)


def service(store: VectorStore) -> RagService:
    # These operations embed nothing: a model that is never called.
    return RagService(VectorBackend(store, LocalEmbedder(loader=object)), CHUNKS)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("docs", (None, "docs")),
        ("00000000000000aa/docs", (KEY_A, "docs")),
        ("master/docs", ("master", "docs")),
        ("k_0123abcd/my.docs-2", ("k_0123abcd", "my.docs-2")),
        ("a/b/docs", None),
        ("/docs", None),
        ("owner/", None),
        ("docs/", None),
        ("dö/docs", None),
        ("x" * 65 + "/docs", None),
    ],
)
def test_a_reference_is_a_name_or_an_owner_and_a_name(reference: str, expected: Any) -> None:
    assert split_reference(reference) == expected


@pytest.mark.parametrize("owner", [KEY_A, "master", "anonymous", "k_0123abcd", "key_short"])
def test_owner_ids_name_owners_both_ways(owner: str) -> None:
    assert owner_of_id(owner_id(owner)) == owner
    assert owner_id(KEY_A) == "00000000000000aa"


def test_lookups_never_list_every_collection(tmp_path: Any) -> None:
    async def main() -> None:
        store = CountingStore(str(tmp_path))
        rag = service(store)
        await rag.create(KEY_A, "docs", "", True)
        await rag.create(KEY_A, "private", "", False)
        await rag.create(KEY_B, "docs", "", False)
        listings, lookups = store.listings, store.lookups
        for i in range(20):  # misses: each is one read of the collection it names
            with pytest.raises(CollectionNotFound):
                await rag.resolve(KEY_B, f"missing-{i}")
            with pytest.raises(CollectionNotFound):  # another's private one: the same 404
                await rag.resolve(KEY_B, "00000000000000aa/private")
        assert (await rag.resolve(KEY_B, "docs")).owner == KEY_B  # the bare name: its own
        assert (await rag.resolve(KEY_B, "00000000000000aa/docs")).owner == KEY_A
        visible = await rag.visible(KEY_B)
        assert [(c.owner, c.name) for c in visible] == [(KEY_B, "docs"), (KEY_A, "docs")]
        assert store.listings == listings
        assert store.lookups - lookups <= 42
        await rag.backend.stop()

    asyncio.run(main())


def test_a_store_from_before_the_index_is_indexed_once(tmp_path: Any) -> None:
    """Collections made by an earlier version (metadata, no index record) are listed with
    their counts and count against their owner's quota."""

    async def main() -> None:
        store = CountingStore(str(tmp_path))
        old = chroma_name(KEY_A, "handbook")
        meta = {"ailb_kind": "rag", "ailb_owner": KEY_A, "ailb_name": "handbook",
                "description": "", "shared": False, "created_at": 1.0, "embedder": "x"}  # fmt: skip
        assert await store.create_collection(old, meta)
        vectors = np.ones((3, 4), dtype=np.float32)
        metas = [{"doc_id": "a.md", "chunk": 0}, {"doc_id": "a.md", "chunk": 1},
                 {"doc_id": "b.md", "chunk": 0}]  # fmt: skip
        await store.upsert(old, ["a.md#0", "a.md#1", "b.md#0"], vectors, ["x"] * 3, metas)
        rag = service(store)
        listed = await rag.visible(KEY_A)
        assert [(c.name, c.documents, c.chunks) for c in listed] == [("handbook", 2, 3)]
        assert store.listings == 1
        again = service(store)  # another instance, or a restart: the index is there
        assert [c.name for c in await again.visible(KEY_A)] == ["handbook"]
        assert store.listings == 1
        await rag.backend.stop()

    asyncio.run(main())


def test_concurrent_creates_are_counted_against_the_quota_together(tmp_path: Any) -> None:
    """However slow the index read, requests checking the quota at once see each other."""

    async def main() -> None:
        rag = RagService(
            VectorBackend(VectorStore(str(tmp_path)), LocalEmbedder(loader=object)),
            CHUNKS,
            RagLimits(collections=2),
        )
        owned = rag.registry.owned
        reads = [0]

        async def slow_owned(owner: str) -> Any:
            found = await owned(owner)
            reads[0] += 1
            # Each read longer than the last: one request's collection is made and its
            # reservation released while the next is between its read and its check.
            await asyncio.sleep(0.05 * reads[0])
            return found

        rag.registry.owned = slow_owned  # type: ignore[method-assign]
        results = await asyncio.gather(
            *(rag.create(KEY_A, f"c-{i}", "", False) for i in range(5)), return_exceptions=True
        )
        made = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, QuotaExceeded)]
        assert (len(made), len(refused)) == (2, 3), results
        assert len(await owned(KEY_A)) == 2
        await rag.backend.stop()

    asyncio.run(main())
