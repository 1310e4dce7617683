"""Memory as a feature of the running gateway: started in the background, degraded on failure.

The store (chromadb) and the embedder (about 90 MB of weights) load on the first request that
uses memory, in worker threads, so start-up and requests without session_id never pay for
them. A request needing memory while they cannot be used is answered without it and says so
(`x-ailb-memory: degraded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from ailb.config import EnvSettings
from ailb.embeddings import Embedder, LocalEmbedder
from ailb.memory.conversation import ConversationMemory, MemorySettings
from ailb.memory.store import StoreUnavailable, VectorStore

log = logging.getLogger("ailb.memory")

Outcome = Literal["hit", "miss", "degraded"]
DEFAULT_WINDOW = 8192  # a model with no configured context window
DEFAULT_ANSWER = 1024  # room kept for the answer when the client sets no max_tokens


@dataclass(slots=True)
class Augmented:
    messages: list[dict[str, Any]]
    outcome: Outcome
    added_tokens: int = 0


class MemoryService:
    def __init__(
        self, env: EnvSettings, store: VectorStore | None = None, embedder: Embedder | None = None
    ) -> None:
        self.store = store or VectorStore(env.data_dir, env.chroma_url or None)
        self.embedder = embedder or LocalEmbedder()
        self.memory = ConversationMemory(
            self.store,
            self.embedder,
            MemorySettings(
                recent_turns=env.memory_recent_turns,
                max_tokens=env.memory_max_tokens,
                ttl_s=env.memory_ttl,
            ),
        )
        self.ready = asyncio.Event()
        self.status: Literal["idle", "starting", "ok", "degraded"] = "idle"
        self.detail: str | None = "loads on first use"
        self._opening: asyncio.Task[None] | None = None
        self.open_timeout = 15.0  # the first use loads chromadb and the model
        self.retry_interval = 5.0
        self._opened_at = -1e9

    async def start(self) -> None:
        self.memory.start()

    def _ensure_opening(self) -> asyncio.Task[None]:
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
        StoreUnavailable or TimeoutError when memory cannot be used now."""
        if self.ready.is_set():
            return
        task = self._ensure_opening()
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
            self._degrade(f"cannot open the vector store or the embedder: {e}"[:300])
            return
        self.status, self.detail = "ok", None
        self.ready.set()
        log.info("memory_ready", extra={"store": self.store.where})

    def _degrade(self, detail: str) -> None:
        if self.status != "degraded":
            log.warning("memory_degraded", extra={"detail": detail})
        self.status, self.detail = "degraded", detail

    async def stop(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opening
        # A store that is down cannot be flushed to; do not hold shutdown hostage to it.
        await self.memory.stop(flush_timeout=1.0 if self.status == "degraded" else 10.0)
        await self.embedder.close()

    async def augment(
        self,
        owner: str,
        session: str,
        messages: list[dict[str, Any]],
        window: int | None,
        prompt_tokens: int,
        max_tokens: int,
    ) -> Augmented:
        budget = (window or DEFAULT_WINDOW) - prompt_tokens - (max_tokens or DEFAULT_ANSWER)
        if budget <= 0:
            return Augmented(messages, "miss")
        try:
            await self.wait_ready()
            recall = await self.memory.recall(owner, session, messages, budget)
        except Exception as e:
            self.memory.stats["degraded"] += 1
            self._degrade(f"{type(e).__name__}: {e}"[:300])
            return Augmented(messages, "degraded")
        if self.status == "degraded":
            self.status, self.detail = "ok", None
            log.info("memory_recovered")
        if recall.messages is messages:
            return Augmented(messages, "miss")
        added = sum(len(str(m.get("content") or "")) for m in recall.messages) - sum(
            len(str(m.get("content") or "")) for m in messages
        )
        return Augmented(recall.messages, "hit", (added + 3) // 4)

    def remember(self, owner: str, session: str, messages: Any, answer: str) -> None:
        self._ensure_opening()
        self.memory.remember(owner, session, messages, answer)
