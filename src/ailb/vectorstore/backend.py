"""A store and the embedder as one service of the running gateway: opened on first use,
degraded on failure, retried without restart. RAG's is Chroma; memory shares it, or has its own
over SQLite (memory/sqlite_store.py) with the same embedder.

chromadb and the model (about 90 MB of weights) load in worker threads on the first request
that needs them, so start-up and requests without memory or RAG never pay for them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from typing import Generic, Literal, Protocol, TypeVar

from ailb.aio import cancel_and_wait
from ailb.embeddings import Embedder
from ailb.vectorstore.chroma import StoreUnavailable

log = logging.getLogger("ailb.vectorstore")

Status = Literal["idle", "starting", "ok", "degraded"]


class Store(Protocol):
    @property
    def where(self) -> str: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=Store, covariant=True)


class VectorBackend(Generic[S]):
    def __init__(self, store: S, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self.ready = asyncio.Event()
        self.status: Status = "idle"
        self.detail: str | None = "loads on first use"
        self.open_timeout = 15.0  # the first use loads chromadb and the model
        self.retry_interval = 5.0
        self._opening: asyncio.Task[None] | None = None
        self._opened_at = -1e9
        # Degradations by feature ("memory", "rag"): what a metric reports.
        self.degradations: Counter[str] = Counter()

    def ensure_opening(self) -> asyncio.Task[None]:
        task = self._opening
        retry_due = time.monotonic() - self._opened_at >= self.retry_interval
        if task is None or (task.done() and not self.ready.is_set() and retry_due):
            if self.status != "degraded":
                self.status, self.detail = "starting", "opening the vector store"
            self._opened_at = time.monotonic()
            task = self._opening = asyncio.create_task(self._open())
        return task

    async def wait_ready(self) -> None:
        """Open on first use (retried at most every `retry_interval` after a failure); raises
        StoreUnavailable or TimeoutError when the store cannot be used now."""
        if self.ready.is_set():
            return
        task = self.ensure_opening()
        async with asyncio.timeout(self.open_timeout):
            await asyncio.shield(task)
        if not self.ready.is_set():
            raise StoreUnavailable(self.detail or "the vector store is unavailable")

    async def _open(self) -> None:
        try:
            await self.store.open()
            warm = getattr(self.embedder, "warm_up", None)
            if warm is not None:
                await warm()
        except Exception as e:
            self.degrade("open", f"cannot open the vector store or the embedder: {e}"[:300])
            return
        # chromadb, onnxruntime and the model bring a large, permanent heap of Python objects;
        # frozen, the collector stops walking them in every full collection, which otherwise
        # shows as tail latency on requests that use neither memory nor RAG.
        gc.freeze()
        self.status, self.detail = "ok", None
        self.ready.set()
        log.info("vector_store_ready", extra={"store": self.store.where})

    def degrade(self, feature: str, detail: str) -> None:
        """A use failed: say so in /healthz and count it, once per transition in the log."""
        self.degradations[feature] += 1
        if self.status != "degraded":
            log.warning("vector_store_degraded", extra={"feature": feature, "detail": detail})
        self.status, self.detail = "degraded", detail

    def recovered(self) -> None:
        if self.status == "degraded" and self.ready.is_set():
            self.status, self.detail = "ok", None
            log.info("vector_store_recovered")

    async def stop(self, close_embedder: bool = True) -> None:
        """Stop; `close_embedder=False` when another backend shares the embedder and closes it."""
        await cancel_and_wait(self._opening)
        await self.store.close()
        if close_embedder:
            await self.embedder.close()
