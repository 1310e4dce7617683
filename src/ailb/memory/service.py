"""Memory as a feature of the running gateway: a request needing memory while the store or the
embedder cannot be used is answered without it and says so (`x-ailb-memory: degraded`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Literal

from ailb.config import EnvSettings
from ailb.embeddings import Embedder, LocalEmbedder
from ailb.memory.conversation import COLLECTION, ConversationMemory, MemorySettings, TurnStore
from ailb.memory.journal import TurnJournal
from ailb.memory.sqlite_store import SqliteTurnStore
from ailb.vectorstore.backend import VectorBackend
from ailb.vectorstore.chroma import VectorStore

log = logging.getLogger("ailb.memory")

Outcome = Literal["hit", "miss", "degraded"]
DEFAULT_WINDOW = 8192  # a model with no configured context window
DEFAULT_ANSWER = 1024  # room kept for the answer when the client sets no max_tokens


def room_for_context(window: int | None, prompt_tokens: int, max_tokens: int) -> int:
    """Tokens left for remembered or retrieved context in the smallest window of the model."""
    return (window or DEFAULT_WINDOW) - prompt_tokens - (max_tokens or DEFAULT_ANSWER)


def memory_collection(embedder_name: str) -> str:
    """The Chroma collection of the turns embedded by this embedder. Vectors of two models
    cannot share one (their sizes may differ, their spaces always do), so memory starts afresh
    when the embedder changes. The local embedder keeps the original name."""
    if embedder_name == LocalEmbedder.name:
        return COLLECTION
    slug = re.sub(r"[^A-Za-z0-9]+", "-", embedder_name).strip("-")[:48]
    digest = hashlib.sha256(embedder_name.encode()).hexdigest()[:8]  # slugs may collide
    return f"{COLLECTION}-{slug}-{digest}"


@dataclass(slots=True)
class Augmented:
    messages: list[dict[str, Any]]
    outcome: Outcome
    added_tokens: int = 0


def memory_in_chroma(env: EnvSettings) -> bool:
    """MEMORY_BACKEND=auto keeps turns in Chroma only when it is a server shared by instances."""
    if env.memory_backend == "auto":
        return bool(env.chroma_url)
    return env.memory_backend == "chromadb"


def memory_backend(
    env: EnvSettings, shared: VectorBackend[VectorStore] | None, embedder: Embedder
) -> VectorBackend[TurnStore]:
    """The backend memory uses: RAG's Chroma one, or its own over SQLite with the same
    embedder."""
    if memory_in_chroma(env) and shared is not None:
        return shared
    return VectorBackend(SqliteTurnStore(env.data_dir), embedder)


class MemoryService:
    def __init__(self, env: EnvSettings, backend: VectorBackend[TurnStore]) -> None:
        self.backend = backend
        self.memory = ConversationMemory(
            backend.store,
            backend.embedder,
            MemorySettings(
                recent_turns=env.memory_recent_turns,
                max_tokens=env.memory_max_tokens,
                ttl_s=env.memory_ttl,
                cache_bytes=env.memory_cache_mb << 20,
                collection=memory_collection(backend.embedder.name),
            ),
            TurnJournal(os.path.join(env.data_dir, "memory-journal")),
        )

    @property
    def status(self) -> str:
        return self.backend.status

    @property
    def detail(self) -> str | None:
        return self.backend.detail

    async def wait_ready(self) -> None:
        await self.backend.wait_ready()

    async def start(self) -> None:
        self.memory.start()

    async def stop(self) -> None:
        # A store that is down cannot be flushed to; do not hold shutdown hostage to it.
        await self.memory.stop(flush_timeout=1.0 if self.status == "degraded" else 10.0)

    async def augment(
        self,
        owner: str,
        session: str,
        messages: list[dict[str, Any]],
        window: int | None,
        prompt_tokens: int,
        max_tokens: int,
    ) -> Augmented:
        budget = room_for_context(window, prompt_tokens, max_tokens)
        if budget <= 0:
            return Augmented(messages, "miss")
        try:
            await self.backend.wait_ready()
            recall = await self.memory.recall(owner, session, messages, budget)
        except Exception as e:
            self.memory.stats["degraded"] += 1
            self.backend.degrade("memory", f"{type(e).__name__}: {e}"[:300])
            return Augmented(messages, "degraded")
        self.backend.recovered()
        if recall.messages is messages:
            return Augmented(messages, "miss")
        added = sum(len(str(m.get("content") or "")) for m in recall.messages) - sum(
            len(str(m.get("content") or "")) for m in messages
        )
        return Augmented(recall.messages, "hit", (added + 3) // 4)

    def remember(self, owner: str, session: str, messages: Any, answer: str) -> None:
        self.backend.ensure_opening()
        self.memory.remember(owner, session, messages, answer)
