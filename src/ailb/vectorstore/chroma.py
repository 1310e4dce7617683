"""ChromaDB behind a small async interface: embedded (a data directory) or a Chroma server.

chromadb is imported only when the store opens, in a worker thread, so the gateway's start-up
and its requests without memory or RAG never pay for it. Every call runs off the event loop.
Embeddings are always computed by AILB and handed over: Chroma's own default embedder would
try to download a model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ailb.datadir import private_dir
from ailb.embeddings.minilm import Array

log = logging.getLogger("ailb.store")

Where = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    document: str
    metadata: dict[str, Any]
    score: float  # cosine similarity, 1 = same direction


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    document: str
    metadata: dict[str, Any]
    embedding: Array | None = None  # only when asked for


class StoreUnavailable(Exception):
    """The vector store cannot be reached or failed; callers degrade, never 500."""


class CollectionMissing(StoreUnavailable):
    """The collection does not exist (never created, or dropped by another instance)."""


def _missing(e: Exception) -> bool:
    text = str(e).lower()
    return "does not exist" in text or "not found" in text or "notfound" in type(e).__name__.lower()


HANDLES = 1024  # collection handles kept (a handle is a Chroma model object and its metadata)


class VectorStore:
    def __init__(self, data_dir: str, chroma_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.chroma_url = chroma_url
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return self.chroma_url or f"embedded:{self.data_dir}"

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                import chromadb
                from chromadb.config import Settings as ChromaSettings

                settings = ChromaSettings(anonymized_telemetry=False)
                if self.chroma_url:
                    u = urlsplit(self.chroma_url)
                    self._client = chromadb.HttpClient(
                        host=u.hostname or "127.0.0.1",
                        port=u.port or (443 if u.scheme == "https" else 8000),
                        ssl=u.scheme == "https",
                        settings=settings,
                    )
                else:
                    private_dir(self.data_dir)  # before Chroma makes it with the umask's mode
                    self._client = chromadb.PersistentClient(path=self.data_dir, settings=settings)
            return self._client

    def _collection(self, name: str, create: bool = True) -> Any:
        coll = self._collections.get(name)
        if coll is None:
            client = self._connect()
            if create:
                coll = client.get_or_create_collection(
                    name, metadata={"hnsw:space": "cosine"}, embedding_function=None
                )
            else:  # a missing collection becomes CollectionMissing in _call
                coll = client.get_collection(name, embedding_function=None)
            self._keep(name, coll)
        return coll

    def _keep(self, name: str, coll: Any) -> None:
        with self._lock:  # worker threads share the dict
            self._collections[name] = coll
            if len(self._collections) > HANDLES:  # the oldest goes: they are re-read on demand
                self._collections.pop(next(iter(self._collections)), None)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as e:  # chromadb raises many types; all but "missing" mean "not now"
            with self._lock:
                self._collections.clear()  # a server restart invalidates collection handles
            if _missing(e):
                raise CollectionMissing(str(e)[:300]) from e
            raise StoreUnavailable(f"{type(e).__name__}: {e}"[:300]) from e

    async def open(self) -> None:
        await self._call(self._connect)

    async def ping(self) -> None:
        await self._call(lambda: self._connect().heartbeat())

    async def close(self) -> None:
        """Nothing to release: chromadb keeps its client (and the embedded store's files) for
        the life of the process."""

    # --- collections with metadata (RAG's registry lives in Chroma, shared by instances) ----

    async def create_collection(self, name: str, metadata: Mapping[str, Any]) -> bool:
        """Create with metadata; False when it already exists (nothing changed)."""

        def run() -> bool:
            client = self._connect()
            try:
                coll = client.create_collection(
                    name, metadata={"hnsw:space": "cosine", **metadata}, embedding_function=None
                )
            except Exception as e:
                if "already exists" in str(e).lower():
                    return False
                raise
            self._keep(name, coll)
            return True

        return await self._call(run)  # type: ignore[no-any-return]

    async def collection_metadata(self, name: str) -> dict[str, Any] | None:
        """One collection's metadata, read from the store (None: no such collection)."""

        def run() -> dict[str, Any] | None:
            try:
                coll = self._connect().get_collection(name, embedding_function=None)
            except Exception as e:
                if _missing(e):
                    return None
                raise
            return dict(coll.metadata or {})

        return await self._call(run)  # type: ignore[no-any-return]

    async def list_collections(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        """(name, metadata) of every collection whose name starts with `prefix`."""

        def run() -> list[tuple[str, dict[str, Any]]]:
            out = []
            for c in self._connect().list_collections():
                if c.name.startswith(prefix):
                    out.append((c.name, dict(c.metadata or {})))
            return out

        return await self._call(run)  # type: ignore[no-any-return]

    async def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        def run() -> None:
            coll = self._collection(name, create=False)
            # The distance (hnsw:*) lives in the collection's configuration and may not be
            # "changed", even to its own value.
            current = {k: v for k, v in (coll.metadata or {}).items() if not k.startswith("hnsw:")}
            coll.modify(metadata={**current, **metadata})

        await self._call(run)

    # --- records --------------------------------------------------------------------------

    async def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        embeddings: Array,
        documents: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        create: bool = True,
    ) -> None:
        if not ids:
            return

        def run() -> None:
            self._collection(collection, create).upsert(
                ids=list(ids),
                embeddings=embeddings,
                documents=list(documents),
                metadatas=[dict(m) for m in metadatas],
            )

        await self._call(run)

    async def query(
        self,
        collection: str,
        embedding: Array,
        k: int,
        where: Where | None = None,
        create: bool = True,
        texts: bool = True,
    ) -> list[Hit]:
        """The k nearest records; with `texts=False` only ids and scores (documents and
        metadata cost Chroma several times the search itself)."""
        include = ["documents", "metadatas", "distances"] if texts else ["distances"]

        def run() -> list[Hit]:
            res = self._collection(collection, create).query(
                query_embeddings=[embedding],
                n_results=k,
                where=dict(where) if where else None,
                include=include,
            )
            ids, dists = res["ids"][0], (res["distances"] or [[]])[0]
            n = len(ids)
            docs = (res["documents"] or [[""] * n])[0]
            metas = (res["metadatas"] or [[{}] * n])[0]
            return [
                Hit(i, d or "", dict(m or {}), 1.0 - float(dist))
                for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
            ]

        return await self._call(run)  # type: ignore[no-any-return]

    async def get(
        self,
        collection: str,
        where: Where | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        create: bool = True,
        vectors: bool = False,
    ) -> list[Record]:
        include = (
            ["documents", "metadatas", "embeddings"] if vectors else ["documents", "metadatas"]
        )

        def run() -> list[Record]:
            res = self._collection(collection, create).get(
                ids=list(ids) if ids is not None else None,
                where=dict(where) if where else None,
                limit=limit,
                offset=offset,
                include=include,
            )
            n = len(res["ids"])
            docs = res["documents"] or [""] * n
            metas = res["metadatas"] or [{}] * n
            embs = res["embeddings"] if vectors and res["embeddings"] is not None else [None] * n
            return [
                Record(i, d or "", dict(m or {}), e)
                for i, d, m, e in zip(res["ids"], docs, metas, embs, strict=True)
            ]

        return await self._call(run)  # type: ignore[no-any-return]

    async def metadatas(
        self, collection: str, where: Where, create: bool = True
    ) -> list[tuple[str, dict[str, Any]]]:
        """(id, metadata) of the matching records, without their texts."""

        def run() -> list[tuple[str, dict[str, Any]]]:
            res = self._collection(collection, create).get(where=dict(where), include=["metadatas"])
            metas = res["metadatas"] or [{}] * len(res["ids"])
            return [(i, dict(m or {})) for i, m in zip(res["ids"], metas, strict=True)]

        return await self._call(run)  # type: ignore[no-any-return]

    async def ids(self, collection: str, where: Where, create: bool = True) -> list[str]:
        """Ids of the matching records, without their texts or metadata."""

        def run() -> list[str]:
            res = self._collection(collection, create).get(where=dict(where), include=[])
            return list(res["ids"])

        return await self._call(run)  # type: ignore[no-any-return]

    async def delete(
        self,
        collection: str,
        where: Where | None = None,
        ids: Sequence[str] | None = None,
        create: bool = True,
    ) -> None:
        def run() -> None:
            self._collection(collection, create).delete(
                ids=list(ids) if ids is not None else None, where=dict(where) if where else None
            )

        await self._call(run)

    async def count(self, collection: str, create: bool = True) -> int:
        return await self._call(lambda: self._collection(collection, create).count())  # type: ignore[no-any-return]

    async def drop(self, collection: str) -> None:
        def run() -> None:
            self._collections.pop(collection, None)
            client = self._connect()
            try:
                client.delete_collection(collection)
            except Exception as e:
                if not _missing(e):
                    raise

        await self._call(run)
