"""RAG collections: create, share, ingest documents (chunk, embed, upsert) and search them.

Everything lives in Chroma, so several instances sharing one Chroma server see the same
collections: each AILB collection is one Chroma collection whose metadata records its owner,
public name, description and sharing. Chroma names are derived from (owner, name), so two keys
can each have a collection called `docs` and neither learns the other's exists.

Search is hybrid: the nearest chunks by embedding, re-ranked with BM25 over those candidates
(ailb.rag.ranking; the measurements behind it are in bench/retrieval/README.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ailb.embeddings import Embedder
from ailb.errors import APIError
from ailb.rag.chunk_cache import ChunkCache, content_id
from ailb.rag.chunking import Chunk, ChunkSettings, Format, chunk_document
from ailb.rag.extract import html_to_markdown
from ailb.rag.ranking import Lexicon, rerank
from ailb.vectorstore.backend import VectorBackend
from ailb.vectorstore.chroma import CollectionMissing, Hit, VectorStore

log = logging.getLogger("ailb.rag")

PREFIX = "ailb-rag-"
USER_META = "m."  # user metadata keys are stored under this prefix: ours cannot collide
REGISTRY_TTL = 2.0  # seconds another instance's new or shared collection may take to show
EMBED_BATCH = 256
SEARCH_POOL = 50  # dense candidates re-ranked lexically (measured: 50 > 30 on recall)


class CollectionNotFound(APIError):
    status = 404
    type = "invalid_request_error"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"No RAG collection `{name}` for this API key.",
            param="rag_collection",
            code="collection_not_found",
        )


class CollectionExists(APIError):
    status = 409
    type = "invalid_request_error"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"This API key already has a RAG collection `{name}`.",
            param="name",
            code="collection_exists",
        )


class NotOwner(APIError):
    status = 403
    type = "permission_error"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"RAG collection `{name}` is shared with you read-only; only its owner can change it.",
            param="name",
            code="not_collection_owner",
        )


class EmbedderMismatch(APIError):
    status = 409
    type = "invalid_request_error"

    def __init__(self, name: str, built: str, configured: str) -> None:
        super().__init__(
            f"RAG collection `{name}` was built with the embedder `{built}`, but `{configured}` "
            "is configured; recreate the collection to use it.",
            param="rag_collection",
            code="embedder_mismatch",
        )


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    owner: str
    chroma: str
    description: str
    shared: bool
    created_at: float
    embedder: str

    @staticmethod
    def from_meta(chroma: str, meta: Mapping[str, Any]) -> Collection:
        return Collection(
            name=str(meta.get("ailb_name", "")),
            owner=str(meta.get("ailb_owner", "")),
            chroma=chroma,
            description=str(meta.get("description", "")),
            shared=bool(meta.get("shared", False)),
            created_at=float(meta.get("created_at", 0.0)),
            embedder=str(meta.get("embedder", "")),
        )


@dataclass(frozen=True, slots=True)
class DocumentIn:
    id: str
    text: str
    format: Literal["markdown", "text", "html"] = "markdown"
    metadata: Mapping[str, str | int | float | bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Passage:
    """One retrieved chunk, or neighbouring chunks of one document joined."""

    id: str  # "<document id>#<chunk>" or "<document id>#<first>-<last>"
    document_id: str
    chunk: int
    text: str
    score: float
    dense: float
    lexical: float
    title: str
    section: str
    start: int
    end: int
    metadata: dict[str, Any]
    last_chunk: int  # > chunk when neighbouring chunks were joined into this passage


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: str
    chunks: int
    chars: int
    title: str
    created_at: float
    metadata: dict[str, Any]


def chroma_name(owner: str, name: str) -> str:
    return PREFIX + hashlib.sha256(f"{owner}\0{name}".encode()).hexdigest()[:40]


class RagService:
    def __init__(self, backend: VectorBackend[VectorStore], chunks: ChunkSettings) -> None:
        self.backend = backend
        self.chunks = chunks
        self._lexicon: Lexicon | None = None
        self._registry: list[Collection] = []
        self._registry_at = -1e9
        self._registry_lock = asyncio.Lock()
        self.chunk_texts = ChunkCache()
        self.stats = {"searches": 0, "hits": 0, "misses": 0, "degraded": 0, "chunks_ingested": 0}

    @property
    def embedder(self) -> Embedder:
        return self.backend.embedder

    @property
    def lexicon(self) -> Lexicon:
        if self._lexicon is None:
            self._lexicon = Lexicon()
        return self._lexicon

    # --- registry ---------------------------------------------------------------------------

    async def _collections(self, fresh: bool = False) -> list[Collection]:
        await self.backend.wait_ready()
        async with self._registry_lock:
            if fresh or time.monotonic() - self._registry_at > REGISTRY_TTL:
                listed = await self.backend.store.list_collections(PREFIX)
                self._registry = [Collection.from_meta(n, m) for n, m in listed]
                self._registry_at = time.monotonic()
            return self._registry

    async def visible(self, owner: str) -> list[Collection]:
        """The caller's collections and those shared by others, by name."""
        cols = await self._collections()
        return sorted(
            (c for c in cols if c.owner == owner or c.shared),
            key=lambda c: (c.name, c.owner != owner),
        )

    async def resolve(self, owner: str, name: str, write: bool = False) -> Collection:
        for fresh in (False, True):  # a miss is re-checked once against the store itself
            cols = await self._collections(fresh)
            own = next((c for c in cols if c.owner == owner and c.name == name), None)
            if own is not None:
                return own
            shared = [c for c in cols if c.shared and c.name == name]
            if shared:
                if write:
                    raise NotOwner(name)
                return min(shared, key=lambda c: c.created_at)
        raise CollectionNotFound(name)

    async def create(self, owner: str, name: str, description: str, shared: bool) -> Collection:
        await self.backend.wait_ready()
        chroma = chroma_name(owner, name)
        meta = {
            "ailb_kind": "rag",
            "ailb_owner": owner,
            "ailb_name": name,
            "description": description,
            "shared": shared,
            "created_at": time.time(),
            "embedder": self.embedder.name,
        }
        if not await self.backend.store.create_collection(chroma, meta):
            raise CollectionExists(name)
        self._registry_at = -1e9
        log.info("rag_collection_created", extra={"collection": name, "shared": shared})
        return Collection.from_meta(chroma, meta)

    async def update(
        self, owner: str, name: str, description: str | None, shared: bool | None
    ) -> Collection:
        coll = await self.resolve(owner, name, write=True)
        changes: dict[str, Any] = {}
        if description is not None:
            changes["description"] = description
        if shared is not None:
            changes["shared"] = shared
        if changes:
            await self._on(coll, self.backend.store.set_metadata(coll.chroma, changes))
            self._registry_at = -1e9
        return await self.resolve(owner, name, write=True)

    async def delete(self, owner: str, name: str) -> None:
        coll = await self.resolve(owner, name, write=True)
        await self.backend.store.drop(coll.chroma)
        self.chunk_texts.drop_collection(coll.chroma)
        self._registry_at = -1e9
        log.info("rag_collection_deleted", extra={"collection": name})

    async def counts(self, coll: Collection) -> tuple[int, int]:
        """(documents, chunks)."""
        store = self.backend.store
        chunks = await self._on(coll, store.count(coll.chroma, create=False))
        firsts = await self._on(coll, store.ids(coll.chroma, {"chunk": 0}, create=False))
        return len(firsts), chunks

    async def _on(self, coll: Collection, aw: Any) -> Any:
        try:
            return await aw
        except CollectionMissing:
            self._registry_at = -1e9  # dropped meanwhile, perhaps by another instance
            raise CollectionNotFound(coll.name) from None

    def _check_embedder(self, coll: Collection) -> None:
        if coll.embedder and coll.embedder != self.embedder.name:
            raise EmbedderMismatch(coll.name, coll.embedder, self.embedder.name)

    # --- documents --------------------------------------------------------------------------

    async def add(self, owner: str, name: str, docs: Sequence[DocumentIn]) -> list[tuple[str, int]]:
        """Chunk, embed and upsert; a document id already present is replaced. Returns
        (document id, chunks) for each document."""
        coll = await self.resolve(owner, name, write=True)
        self._check_embedder(coll)
        planned = await asyncio.to_thread(self._chunk_all, docs)
        store = self.backend.store
        old = await self._on(
            coll, store.ids(coll.chroma, {"doc_id": {"$in": [d.id for d in docs]}}, create=False)
        )
        now = time.time()
        ids: list[str] = []
        texts: list[str] = []
        metas: list[dict[str, Any]] = []
        for doc, chunks in zip(docs, planned, strict=True):
            title = _title(doc, chunks)
            user = {USER_META + k: v for k, v in doc.metadata.items()}
            for c in chunks:
                meta = {
                    **user,
                    "doc_id": doc.id,
                    "chunk": c.index,
                    "chunks": len(chunks),
                    "start": c.start,
                    "end": c.end,
                    "chars": len(doc.text),
                    "title": title,
                    "section": " > ".join(c.headings),
                }
                ids.append(content_id(doc.id, c.index, c.text, meta))
                texts.append(c.text)
                metas.append({**meta, "created_at": now})
        # Embedded across documents in large batches: one model pass per batch, not per file.
        for start in range(0, len(ids), EMBED_BATCH):
            end = start + EMBED_BATCH
            vectors = await self.embedder.embed(texts[start:end])
            await self._on(
                coll,
                store.upsert(coll.chroma, ids[start:end], vectors, texts[start:end],
                             metas[start:end], create=False),
            )  # fmt: skip
        for i, text, meta in zip(ids, texts, metas, strict=True):
            self.chunk_texts.put(coll.chroma, i, text, meta)
        kept = set(ids)
        stale = [i for i in old if i not in kept]
        if stale:  # a new version with fewer chunks: drop the old tail
            await self._on(coll, store.delete(coll.chroma, ids=stale, create=False))
        self.stats["chunks_ingested"] += len(ids)
        return [(d.id, len(c)) for d, c in zip(docs, planned, strict=True)]

    def _chunk_all(self, docs: Sequence[DocumentIn]) -> list[list[Chunk]]:
        e = self.embedder
        out = []
        for d in docs:
            fmt: Format = "text" if d.format == "text" else "markdown"
            text = html_to_markdown(d.text) if d.format == "html" else d.text
            out.append(chunk_document(text, fmt, self.chunks, e.count_tokens, e.token_ends))
        return out

    async def documents(
        self, owner: str, name: str, limit: int, offset: int
    ) -> tuple[Collection, list[DocumentInfo]]:
        coll = await self.resolve(owner, name)
        records = await self._on(
            coll,
            self.backend.store.get(
                coll.chroma, where={"chunk": 0}, limit=limit, offset=offset, create=False
            ),
        )
        docs = [
            DocumentInfo(
                id=str(r.metadata.get("doc_id", r.id)),
                chunks=int(r.metadata.get("chunks", 1)),
                chars=int(r.metadata.get("chars", 0)),
                title=str(r.metadata.get("title", "")),
                created_at=float(r.metadata.get("created_at", 0.0)),
                metadata=_user_meta(r.metadata),
            )
            for r in records
        ]
        return coll, docs

    async def delete_document(self, owner: str, name: str, doc_id: str) -> int:
        coll = await self.resolve(owner, name, write=True)
        store = self.backend.store
        ids = await self._on(coll, store.ids(coll.chroma, {"doc_id": doc_id}, create=False))
        if ids:
            await self._on(coll, store.delete(coll.chroma, ids=ids, create=False))
        return len(ids)

    # --- search -----------------------------------------------------------------------------

    async def search(self, owner: str, name: str, query: str, top_k: int) -> list[Passage]:
        coll = await self.resolve(owner, name)
        self._check_embedder(coll)
        vector = (await self.embedder.embed([query]))[0]
        pool = max(SEARCH_POOL, top_k)
        hits = await self._candidates(coll, vector, pool)
        ranked = await asyncio.to_thread(
            rerank,
            self.lexicon,
            query,
            [(h, h.document, h.score) for h in hits],
            keys=[f"{coll.chroma}/{h.id}" for h in hits],
        )
        self.stats["searches"] += 1
        out: list[Passage] = []
        for r in ranked:
            if len(out) == top_k:
                break
            m = r.item.metadata
            doc_id = str(m.get("doc_id", r.item.id))
            chunk = int(m.get("chunk", 0))
            p = Passage(
                id=f"{doc_id}#{chunk}",
                document_id=doc_id,
                chunk=chunk,
                text=r.item.document,
                score=round(r.score, 6),
                dense=round(r.dense, 6),
                lexical=round(r.lexical, 6),
                title=str(m.get("title", "")),
                section=str(m.get("section", "")),
                start=int(m.get("start", 0)),
                end=int(m.get("end", 0)),
                metadata=_user_meta(m),
                last_chunk=chunk,
            )
            # A neighbour of a passage already chosen extends it instead of taking a slot:
            # overlapping neighbours would say the same thing twice.
            near = next((i for i, q in enumerate(out) if _adjacent(q, p)), None)
            if near is None:
                out.append(p)
            else:
                out[near] = _joined(out[near], p)
        return out

    async def _candidates(self, coll: Collection, vector: Any, pool: int) -> list[Hit]:
        """The nearest chunks with their texts: ids and scores from Chroma, texts from the
        cache, and only the ones not cached yet read back from Chroma."""
        store = self.backend.store
        near = await self._on(coll, store.query(coll.chroma, vector, pool, create=False,
                                                texts=False))  # fmt: skip
        cache = self.chunk_texts
        texts = {h.id: cache.get(coll.chroma, h.id) for h in near}
        missing = [i for i, got in texts.items() if got is None]
        if missing:
            for r in await self._on(coll, store.get(coll.chroma, ids=missing, create=False)):
                texts[r.id] = (r.document, r.metadata)
                cache.put(coll.chroma, r.id, r.document, r.metadata)
        out = []
        for h in near:
            got = texts[h.id]
            if got is not None:  # None: deleted between the query and the read
                out.append(Hit(h.id, got[0], got[1], h.score))
        return out


def _adjacent(a: Passage, b: Passage) -> bool:
    return a.document_id == b.document_id and (
        b.chunk == a.last_chunk + 1 or b.last_chunk == a.chunk - 1
    )


def _joined(a: Passage, b: Passage) -> Passage:
    """a (ranked higher) and its neighbour b as one passage in document order."""
    first, second = (a, b) if b.chunk > a.last_chunk else (b, a)
    if second.start < first.end:  # the overlap is in both texts once
        text = first.text + second.text[first.end - second.start :]
    else:
        text = first.text + "\n\n" + second.text
    lo, hi = first.chunk, second.last_chunk
    return Passage(
        id=f"{a.document_id}#{lo}-{hi}",
        document_id=a.document_id,
        chunk=lo,
        text=text,
        score=a.score,
        dense=a.dense,
        lexical=a.lexical,
        title=a.title,
        section=first.section,
        start=first.start,
        end=second.end,
        metadata=a.metadata,
        last_chunk=hi,
    )


def _user_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    n = len(USER_META)
    return {k[n:]: v for k, v in meta.items() if k.startswith(USER_META)}


def _title(doc: DocumentIn, chunks: Sequence[Chunk]) -> str:
    given = doc.metadata.get("title")
    if isinstance(given, str) and given:
        return given
    for c in chunks:
        if c.headings:
            return str(c.headings[0])
    return ""
