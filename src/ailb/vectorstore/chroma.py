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


class StoreUnavailable(Exception):
    """The vector store cannot be reached or failed; callers degrade, never 500."""


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
                    self._client = chromadb.PersistentClient(path=self.data_dir, settings=settings)
            return self._client

    def _collection(self, name: str) -> Any:
        coll = self._collections.get(name)
        if coll is None:
            client = self._connect()
            coll = client.get_or_create_collection(
                name, metadata={"hnsw:space": "cosine"}, embedding_function=None
            )
            self._collections[name] = coll
        return coll

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as e:  # chromadb raises many types; all mean "not now"
            with self._lock:
                self._collections.clear()  # a server restart invalidates collection handles
            raise StoreUnavailable(f"{type(e).__name__}: {e}"[:300]) from e

    async def open(self) -> None:
        await self._call(self._connect)

    async def ping(self) -> None:
        await self._call(lambda: self._connect().heartbeat())

    # --- records --------------------------------------------------------------------------

    async def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        embeddings: Array,
        documents: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
    ) -> None:
        if not ids:
            return

        def run() -> None:
            self._collection(collection).upsert(
                ids=list(ids),
                embeddings=embeddings,
                documents=list(documents),
                metadatas=[dict(m) for m in metadatas],
            )

        await self._call(run)

    async def query(
        self, collection: str, embedding: Array, k: int, where: Where | None = None
    ) -> list[Hit]:
        def run() -> list[Hit]:
            res = self._collection(collection).query(
                query_embeddings=[embedding],
                n_results=k,
                where=dict(where) if where else None,
                include=["documents", "metadatas", "distances"],
            )
            ids, docs = res["ids"][0], (res["documents"] or [[]])[0]
            metas, dists = (res["metadatas"] or [[]])[0], (res["distances"] or [[]])[0]
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
    ) -> list[Record]:
        def run() -> list[Record]:
            res = self._collection(collection).get(
                ids=list(ids) if ids is not None else None,
                where=dict(where) if where else None,
                limit=limit,
                include=["documents", "metadatas"],
            )
            docs = res["documents"] or [""] * len(res["ids"])
            metas = res["metadatas"] or [{}] * len(res["ids"])
            return [
                Record(i, d or "", dict(m or {}))
                for i, d, m in zip(res["ids"], docs, metas, strict=True)
            ]

        return await self._call(run)  # type: ignore[no-any-return]

    async def delete(
        self, collection: str, where: Where | None = None, ids: Sequence[str] | None = None
    ) -> None:
        def run() -> None:
            self._collection(collection).delete(
                ids=list(ids) if ids is not None else None, where=dict(where) if where else None
            )

        await self._call(run)

    async def count(self, collection: str) -> int:
        return await self._call(lambda: self._collection(collection).count())  # type: ignore[no-any-return]

    async def drop(self, collection: str) -> None:
        def run() -> None:
            self._collections.pop(collection, None)
            client = self._connect()
            try:
                client.delete_collection(collection)
            except Exception as e:
                if "does not exist" not in str(e).lower() and "not found" not in str(e).lower():
                    raise

        await self._call(run)
