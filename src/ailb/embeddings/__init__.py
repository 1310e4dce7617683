"""Text embeddings for memory and RAG: the offline MiniLM encoder, or a configured provider."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from ailb.aio import cancel_and_wait
from ailb.config import (
    DEFAULT_BASE_URLS,
    DEFAULT_EMBEDDING_MODELS,
    EMBEDDER_CREDENTIAL,
    EnvSettings,
    Secret,
)
from ailb.embeddings.minilm import Array
from ailb.embeddings.provider import WIRES, EmbeddingError, ProviderEmbedder
from ailb.embeddings.wordpiece import WordPieceCounter
from ailb.upstream.egress import parse_proxy

__all__ = [
    "Embedder",
    "EmbeddingError",
    "LocalEmbedder",
    "ProviderEmbedder",
    "build_embedder",
]

log = logging.getLogger("ailb.embeddings")


class Embedder(Protocol):
    name: str
    dimensions: int
    max_tokens: int  # what one text may hold before the model ignores the rest
    bulk_slice: int  # texts one ingestion turn embeds (`embed(..., bulk=True)`)

    async def embed(self, texts: Sequence[str], *, bulk: bool = False) -> Array:
        """(len(texts), dimensions) float32, rows of unit length. `bulk`: ingestion, which
        yields to everything else (a search, a memory recall) instead of holding it up."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text in the model's own tokenization (no special tokens)."""
        ...

    def token_ends(self, text: str) -> list[int] | None:
        """Character offsets where each token ends (None: unknown, cut at words)."""
        ...

    async def close(self) -> None: ...


BULK_NICE = 10  # how much lower the bulk threads' CPU priority is (Linux nice increment)
BULK_SLICE = 4  # texts one bulk thread encodes in one go


def usable_cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def lower_priority() -> None:
    """Run by each bulk thread as it starts: a lower CPU priority for this thread alone (on
    Linux, nice is per thread), so the event loop and the interactive encoder thread get a core
    whenever they want one, and ingestion only the rest."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BULK_NICE)
    except (AttributeError, OSError) as e:  # not Linux, or not allowed: it still works
        log.warning("embedder_priority_unchanged", extra={"detail": str(e)[:200]})


class LocalEmbedder:
    """MiniLM in worker threads, the event loop never running the model, in two lanes.

    Interactive (a search's query, memory's recall and writes): concurrent requests coalesced
    into one model pass. Bulk (RAG ingestion): slices of a few texts on their own threads (half
    the usable cores, at least one) at a lower CPU priority. The model runs each call on the
    calling thread alone (onnxruntime's own pool would keep the priority of the thread that
    built it), so a search never waits for ingestion, neither in a queue nor for a core.
    Measured in bench/fairness/README.md."""

    name = "all-MiniLM-L6-v2"
    dimensions = 384
    max_tokens = 254  # 256 with [CLS] and [SEP]

    def __init__(
        self,
        max_batch: int = 64,
        loader: Callable[[], object] | None = None,
        bulk_threads: int | None = None,
    ) -> None:
        self.max_batch = max_batch
        self._loader = loader
        self._model: object | None = None
        self._loading = threading.Lock()  # memory's and RAG's stores may open at once
        self._counter = WordPieceCounter()
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future[Array]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.bulk_threads = bulk_threads or max(1, usable_cores() // 2)
        self.bulk_slice = max(16, BULK_SLICE * self.bulk_threads)  # about a second a turn
        self._bulk: ThreadPoolExecutor | None = None

    def _load(self) -> object:
        with self._loading:
            if self._model is None:
                if self._loader is not None:
                    self._model = self._loader()
                else:
                    from ailb.embeddings.minilm import MiniLM

                    self._model = MiniLM(threads=1)
            return self._model

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._counter.count_tokens(texts)

    def token_ends(self, text: str) -> list[int] | None:
        return self._counter.token_ends(text)

    async def warm_up(self) -> None:
        await asyncio.to_thread(self._load)

    async def embed(self, texts: Sequence[str], *, bulk: bool = False) -> Array:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if bulk:
            return await self._embed_bulk(list(texts))
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(self._queue))
        fut: asyncio.Future[Array] = asyncio.get_running_loop().create_future()
        await self._queue.put((list(texts), fut))
        return await fut

    async def _embed_bulk(self, texts: list[str]) -> Array:
        if self._model is None:  # loaded at normal priority (see MiniLM's tokenizer)
            await asyncio.to_thread(self._load)
        if self._bulk is None:
            self._bulk = ThreadPoolExecutor(
                self.bulk_threads, "ailb-embed-bulk", initializer=lower_priority
            )
        loop = asyncio.get_running_loop()
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._bulk, self._embed_sync, texts[i : i + BULK_SLICE])
                for i in range(0, len(texts), BULK_SLICE)
            )
        )
        return np.concatenate(parts)

    async def _run(self, queue: asyncio.Queue[tuple[list[str], asyncio.Future[Array]]]) -> None:
        while True:
            jobs = [await queue.get()]
            size = len(jobs[0][0])
            while not queue.empty() and size < self.max_batch:
                job = queue.get_nowait()
                jobs.append(job)
                size += len(job[0])
            texts = [t for job_texts, _ in jobs for t in job_texts]
            try:
                vectors = await asyncio.to_thread(self._embed_sync, texts)
            except Exception as e:  # handed to every waiter: the caller degrades gracefully
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            start = 0
            for job_texts, fut in jobs:
                end = start + len(job_texts)
                if not fut.done():
                    fut.set_result(vectors[start:end])
                start = end

    def _embed_sync(self, texts: list[str]) -> Array:
        model = self._load()
        return model.embed(texts)  # type: ignore[attr-defined, no-any-return]

    async def close(self) -> None:
        if self._worker is not None:
            await cancel_and_wait(self._worker)
            self._worker = None
            self._queue = None
        if self._bulk is not None:
            self._bulk.shutdown(wait=False, cancel_futures=True)
            self._bulk = None


def build_embedder(
    env: EnvSettings, credentials: Mapping[str, Secret], proxy: str | None = None
) -> Embedder:
    """The configured embedder (AILB_EMBEDDER). load_settings resolves the model, URL, key and
    egress proxy (Settings.embedder_proxy); the defaults here serve settings made without it
    (Settings.with_env)."""
    kind = env.embedder
    if kind == "local":
        return LocalEmbedder()
    return ProviderEmbedder(
        WIRES[kind],
        env.embedding_base_url or DEFAULT_BASE_URLS[kind],
        env.embedding_model or DEFAULT_EMBEDDING_MODELS[kind],
        credentials.get(EMBEDDER_CREDENTIAL),
        env.embedding_dimensions,
        proxy=parse_proxy(proxy) if proxy else None,
    )
