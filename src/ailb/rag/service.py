"""RAG collections: create, share, ingest documents (chunk, embed, upsert) and search them.

Everything lives in Chroma, so several instances sharing one Chroma server see the same
collections: each AILB collection is one Chroma collection whose metadata records its owner,
public name, description and sharing. Chroma names are derived from (owner, name), so two keys
can each have a collection called `docs` and neither learns the other's exists; how a request
names one, and how they are found and listed, is in ailb.rag.registry.

Each key has quotas (collections, documents, bytes of text in one ingestion request).

Search is hybrid: the nearest chunks by embedding, re-ranked with BM25 over those candidates
(ailb.rag.ranking; the measurements behind it are in bench/retrieval/README.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from ailb.embeddings import Embedder
from ailb.errors import APIError, open_gateway_owners
from ailb.rag.chunk_cache import ChunkCache, content_id
from ailb.rag.chunking import Chunk, ChunkSettings, Format, chunk_document
from ailb.rag.extract import html_to_markdown
from ailb.rag.ranking import Lexicon, rerank
from ailb.rag.registry import Collection, Registry, chroma_name, split_reference, text_bytes
from ailb.rag.turns import FairTurns
from ailb.vectorstore.backend import VectorBackend
from ailb.vectorstore.chroma import CollectionMissing, Hit, VectorStore

log = logging.getLogger("ailb.rag")

USER_META = "m."  # user metadata keys are stored under this prefix: ours cannot collide
# Chunks written or deleted in one store call. Embedded Chroma holds the GIL while it writes
# (chroma-core/chroma#3873 freed it for reads only), so a write stops the event loop: about
# 30 ms a call plus 1-1.5 ms a chunk measured here (256 at once: 0.4 s; deleting 128: 0.4 s);
# 32 stop it for up to about 70 ms. A Chroma server (CHROMA_URL) writes in its own process.
STORE_BATCH = 32
SEARCH_POOL = 50  # dense candidates re-ranked lexically (measured: 50 > 30 on recall)


class CollectionNotFound(APIError):
    status = 404
    type = "invalid_request_error"

    def __init__(self, name: str, open_gateway: bool = False) -> None:
        super().__init__(
            f"No RAG collection `{name}` for this API key. A bare name is the key's own "
            "collection; another key's shared one is `<owner id>/<name>` (GET "
            "/api/rag/collections lists them)."
            + (open_gateway_owners("collections") if open_gateway else ""),
            param="rag_collection",
            code="collection_not_found",
        )


class QuotaExceeded(APIError):
    """A per-key quota: 403, which clients do not retry (a 429 would be, to no avail)."""

    status = 403
    type = "invalid_request_error"

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message, param=param, code=code)


class IngestTooLarge(APIError):
    status = 413
    type = "invalid_request_error"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"The documents hold {size} bytes of text; one ingestion request may carry at most "
            f"{limit} (AILB_RAG_MAX_INGEST_BYTES). Send them in smaller requests.",
            param="documents",
            code="ingest_too_large",
        )


@dataclass(frozen=True, slots=True)
class RagLimits:
    """Per key: AILB_RAG_MAX_COLLECTIONS, AILB_RAG_MAX_DOCUMENTS, AILB_RAG_MAX_BYTES and
    AILB_RAG_MAX_INGEST_BYTES. Documents and bytes count all of a key's collections together;
    bytes are of document text (UTF-8)."""

    collections: int = 100
    documents: int = 10_000
    bytes: int = 100 * 1024 * 1024
    ingest_bytes: int = 1024 * 1024  # in one request


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


class RagService:
    def __init__(
        self,
        backend: VectorBackend[VectorStore],
        chunks: ChunkSettings,
        limits: RagLimits | None = None,
        open_gateway: bool = False,
    ) -> None:
        self.backend = backend
        self.chunks = chunks
        self.limits = limits or RagLimits()
        self.open_gateway = open_gateway  # said in a 404: the presented key is the owner
        self.registry = Registry(backend.store)
        self._lexicon: Lexicon | None = None
        # Collections being created, and documents and bytes being ingested, by owner: counted
        # with the indexed ones, checked and reserved one request at a time (a lock held for a
        # read of the index), so concurrent requests cannot pass a quota together. A request
        # releases its reservation once the index counts its work; `_releases` tells a check
        # that one did while it was reading.
        self._quota = asyncio.Lock()
        self._releases = 0
        self._creating: Counter[str] = Counter()
        self._ingesting: Counter[str] = Counter()
        self._ingesting_bytes: Counter[str] = Counter()
        self._turns = FairTurns()  # ingestion's turns at the encoder, by key
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

    # --- collections ------------------------------------------------------------------------

    async def _ready(self) -> None:
        await self.backend.wait_ready()
        await self.registry.ensure_index()

    async def visible(self, owner: str) -> list[Collection]:
        """The caller's collections and those other keys share, with their indexed counts."""
        await self._ready()
        own = await self.registry.owned(owner)
        shared = [c for c in await self.registry.shared() if c.owner != owner]
        return sorted([*own, *shared], key=lambda c: (c.name, c.owner != owner, c.owner))

    async def resolve(self, owner: str, reference: str, write: bool = False) -> Collection:
        """The collection `reference` names for `owner`: a bare name is the caller's own;
        `<owner id>/<name>` is that owner's, if it is the caller's or shared. Anything else is
        the same 404 as a collection that does not exist."""
        await self._ready()
        parts = split_reference(reference)
        if parts is None:
            raise self._not_found(reference)
        named, name = parts
        coll = await self.registry.lookup(owner if named is None else named, name)
        if coll is None or (coll.owner != owner and not coll.shared):
            raise self._not_found(reference)
        if write and coll.owner != owner:
            raise NotOwner(reference)
        return coll

    def _not_found(self, reference: str) -> CollectionNotFound:
        return CollectionNotFound(reference, self.open_gateway)

    async def create(self, owner: str, name: str, description: str, shared: bool) -> Collection:
        await self._ready()
        coll = Collection(
            name, owner, chroma_name(owner, name), description, shared, time.time(),
            self.embedder.name,
        )  # fmt: skip
        async with self._quota:
            limit = self.limits.collections
            if len(await self._held(owner)) + self._creating[owner] >= limit:
                raise QuotaExceeded(
                    f"This API key has {limit} RAG collections, its limit "
                    "(AILB_RAG_MAX_COLLECTIONS); delete one to create another.",
                    code="collection_quota_exceeded",
                    param="name",
                )
            self._creating[owner] += 1
        try:
            if not await self.backend.store.create_collection(coll.chroma, coll.meta()):
                raise CollectionExists(name)
            try:
                await self.registry.put(coll)
            except Exception:
                await self.backend.store.drop(coll.chroma)  # unindexed, it would escape quotas
                raise
        finally:
            self._creating[owner] -= 1
            if not self._creating[owner]:
                del self._creating[owner]
            self._releases += 1
        log.info("rag_collection_created", extra={"collection": name, "shared": shared})
        return coll

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
            coll = replace(coll, **changes)
            self.registry.forget(coll)
            await self._count(coll)
        return coll

    async def delete(self, owner: str, name: str) -> None:
        coll = await self.resolve(owner, name, write=True)
        await self.backend.store.drop(coll.chroma)
        await self.registry.remove(coll)
        self.chunk_texts.drop_collection(coll.chroma)
        log.info("rag_collection_deleted", extra={"collection": name})

    async def counts(self, coll: Collection) -> Collection:
        """`coll` with its documents, chunks and bytes counted in the store now."""
        store = self.backend.store
        chunks = await self._on(coll, store.count(coll.chroma, create=False))
        firsts = await self._on(coll, store.metadatas(coll.chroma, {"chunk": 0}, create=False))
        size = sum(text_bytes(m) for _, m in firsts)
        return replace(coll, documents=len(firsts), chunks=chunks, bytes=size)

    async def _count(self, coll: Collection) -> Collection:
        """Count the collection again and index it with its counts (which also indexes one
        whose creation was cut short before it was indexed)."""
        counted = await self.counts(coll)
        await self.registry.put(counted)
        return counted

    async def _on(self, coll: Collection, aw: Any) -> Any:
        try:
            return await aw
        except CollectionMissing:
            self.registry.forget(coll)  # dropped meanwhile, perhaps by another instance
            raise self._not_found(coll.name) from None

    def _check_embedder(self, coll: Collection) -> None:
        if coll.embedder and coll.embedder != self.embedder.name:
            raise EmbedderMismatch(coll.name, coll.embedder, self.embedder.name)

    # --- documents --------------------------------------------------------------------------

    async def add(self, owner: str, name: str, docs: Sequence[DocumentIn]) -> list[tuple[str, int]]:
        """Chunk, embed and upsert; a document id already present is replaced. Returns
        (document id, chunks) for each document."""
        coll = await self.resolve(owner, name, write=True)
        self._check_embedder(coll)
        size = sum(len(d.text.encode()) for d in docs)
        if size > self.limits.ingest_bytes:
            raise IngestTooLarge(size, self.limits.ingest_bytes)
        store = self.backend.store
        where = {"doc_id": {"$in": [d.id for d in docs]}}
        old = await self._on(coll, store.metadatas(coll.chroma, where, create=False))
        present = {str(m.get("doc_id")) for _, m in old}
        replaced = sum(text_bytes(m) for _, m in old if m.get("chunk") == 0)
        new, grown = len({d.id for d in docs} - present), max(0, size - replaced)
        async with self._quota:
            await self._check_quotas(owner, new, grown)
            self._ingesting[owner] += new
            self._ingesting_bytes[owner] += grown
        try:
            planned = await self._ingest(coll, docs, [i for i, _ in old])
            await self._count(coll)
        finally:
            for pending, n in ((self._ingesting, new), (self._ingesting_bytes, grown)):
                pending[owner] -= n
                if not pending[owner]:
                    del pending[owner]
            self._releases += 1
        return [(d.id, len(c)) for d, c in zip(docs, planned, strict=True)]

    async def _held(self, owner: str) -> list[Collection]:
        """The owner's indexed collections, read again if a request released its reservation
        meanwhile (its counts may have reached the index after this read began)."""
        while True:
            releases = self._releases
            owned = await self.registry.owned(owner)
            if self._releases == releases:
                return owned

    async def _check_quotas(self, owner: str, new: int, grown: int) -> None:
        if not new and not grown:
            return
        owned = await self._held(owner)
        held = sum(c.documents for c in owned)
        limit = self.limits.documents
        if new and held + self._ingesting[owner] + new > limit:
            raise QuotaExceeded(
                f"This API key holds {held} documents in its RAG collections; {new} more would "
                f"pass its limit of {limit} (AILB_RAG_MAX_DOCUMENTS). Delete some first.",
                code="document_quota_exceeded",
                param="documents",
            )
        held = sum(c.bytes for c in owned)
        limit = self.limits.bytes
        if grown and held + self._ingesting_bytes[owner] + grown > limit:
            raise QuotaExceeded(
                f"This API key's RAG collections hold {held} bytes of text; {grown} more would "
                f"pass its limit of {limit} (AILB_RAG_MAX_BYTES). Delete some first.",
                code="storage_quota_exceeded",
                param="documents",
            )

    async def _ingest(
        self, coll: Collection, docs: Sequence[DocumentIn], old: Sequence[str]
    ) -> list[list[Chunk]]:
        planned = await asyncio.to_thread(self._chunk_all, docs)
        store = self.backend.store
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
                    "bytes": len(doc.text.encode()),
                    "title": title,
                    "section": " > ".join(c.headings),
                }
                ids.append(content_id(doc.id, c.index, c.text, meta))
                texts.append(c.text)
                metas.append({**meta, "created_at": now})
        # Embedded in the encoder's bulk lane, a slice per turn, keys taking turns: another
        # key's ingestion waits for one slice, not for this whole request. Stored in batches.
        step = self.embedder.bulk_slice
        embedded: list[Any] = []  # vectors of the chunks from `stored` on
        stored = 0
        for first in range(0, len(ids), step):
            last = min(first + step, len(ids))
            async with self._turns.turn(coll.owner):
                embedded.append(await self.embedder.embed(texts[first:last], bulk=True))
            if last - stored < STORE_BATCH and last < len(ids):
                continue
            vectors = np.concatenate(embedded)
            for start in range(stored, last, STORE_BATCH):
                end = min(start + STORE_BATCH, last)
                batch = vectors[start - stored : end - stored]
                await self._on(
                    coll,
                    store.upsert(coll.chroma, ids[start:end], batch, texts[start:end],
                                 metas[start:end], create=False),
                )  # fmt: skip
            embedded, stored = [], last
        for i, text, meta in zip(ids, texts, metas, strict=True):
            self.chunk_texts.put(coll.chroma, i, text, meta)
        kept = set(ids)
        stale = [i for i in old if i not in kept]
        await self._delete(coll, stale)  # the old version's chunks that are not in the new
        self.stats["chunks_ingested"] += len(ids)
        return planned

    async def _delete(self, coll: Collection, ids: Sequence[str]) -> None:
        store = self.backend.store
        for start in range(0, len(ids), STORE_BATCH):
            batch = ids[start : start + STORE_BATCH]
            await self._on(coll, store.delete(coll.chroma, ids=batch, create=False))

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
            await self._delete(coll, ids)
            await self._count(coll)
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
