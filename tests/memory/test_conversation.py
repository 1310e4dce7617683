"""ConversationMemory over a real embedded Chroma store and the real MiniLM encoder."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ailb.embeddings import LocalEmbedder
from ailb.embeddings.minilm import MiniLM
from ailb.memory.conversation import ConversationMemory, MemorySettings
from ailb.memory.fence import fenced
from ailb.vectorstore.chroma import VectorStore

FILLER = [
    "Let's talk about the weather today.",
    "I bought new running shoes yesterday.",
    "The train to work was late again.",
    "My favourite film is an old western.",
    "We had pasta for dinner.",
    "The garden needs watering this week.",
    "I am reading a book about volcanoes.",
    "The football match ended in a draw.",
]


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM()


def run(coro_fn: Any, tmp_path: Any, model: MiniLM, **settings: Any) -> Any:
    async def main() -> Any:
        store = VectorStore(str(tmp_path / "store"))
        embedder = LocalEmbedder(loader=lambda: model)
        memory = ConversationMemory(store, embedder, MemorySettings(**settings))
        memory.start()
        try:
            return await coro_fn(memory)
        finally:
            await memory.stop()
            await embedder.close()

    return asyncio.run(main())


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_old_relevant_turn_is_recalled_beyond_the_recent_window(tmp_path, model):
    async def scenario(memory: ConversationMemory) -> str:
        memory.remember("o", "s", [user("My sister Maria lives in Porto.")], "Good to know.")
        for text in FILLER:
            memory.remember("o", "s", [user(text)], "I see.")
        await memory.flush()
        memory._cache.clear()  # read back from the store, not the hot cache
        recall = await memory.recall("o", "s", [user("Which city does my sister live in?")], 4000)
        assert recall.recent == 2 and recall.recalled >= 1
        return str(recall.messages[0]["content"])

    block = run(scenario, tmp_path, model, recent_turns=2, recall_k=3)
    assert "My sister Maria lives in Porto." in block
    assert "user: The football match ended in a draw.\nassistant: I see." in block  # recent 2
    assert "pasta" not in block  # old and unrelated: neither recent nor recalled
    # Chronological order: the recalled old turn comes before the recent ones.
    assert block.index("Porto") < block.index("assistant: I see.")


def test_budget_bounds_what_is_added(tmp_path, model):
    async def scenario(memory: ConversationMemory) -> Any:
        for i in range(10):
            memory.remember("o", "s", [user(f"note {i}: " + "x" * 400)], "ok")
        await memory.flush()
        return await memory.recall("o", "s", [user("next")], 150)

    recall = run(scenario, tmp_path, model, recent_turns=10)
    added = len(recall.messages[0]["content"])
    assert recall.recent >= 1
    assert added < 150 * 4 + 400  # ~4 characters a token, plus the fixed preamble


def test_owners_and_sessions_are_separate(tmp_path, model):
    async def scenario(memory: ConversationMemory) -> tuple[Any, Any, Any]:
        memory.remember("alice", "s", [user("alice secret 111")], "ok")
        memory.remember("bob", "s", [user("bob secret 222")], "ok")
        await memory.flush()
        memory._cache.clear()
        return (
            await memory.session("alice", "s"),
            await memory.session("bob", "other"),
            await memory.recall("bob", "s", [user("secret?")], 4000),
        )

    alice, bob_other, bob_recall = run(scenario, tmp_path, model)
    assert [t.content for t in alice] == ["alice secret 111", "ok"]
    assert bob_other == []
    assert "111" not in str(bob_recall.messages)


def test_expired_turns_are_removed(tmp_path, model):
    async def scenario(memory: ConversationMemory) -> tuple[int, int]:
        memory.remember("o", "s", [user("old")], "ok")
        await memory.flush()
        before = len(await memory.session("o", "s"))
        await memory.expire(now_ns=time.time_ns() + int(120 * 1e9))
        return before, len(await memory.session("o", "s"))

    assert run(scenario, tmp_path, model, ttl_s=60) == (2, 0)


def test_persisted_across_restarts(tmp_path, model):
    async def write(memory: ConversationMemory) -> None:
        memory.remember("o", "s", [user("remember me")], "I will")
        await memory.flush()

    async def read(memory: ConversationMemory) -> list[str]:
        return [t.content for t in await memory.session("o", "s")]

    run(write, tmp_path, model)
    assert run(read, tmp_path, model) == ["remember me", "I will"]


@pytest.mark.parametrize(
    ("text", "fence"),
    [("plain", "```"), ("has ``` inside", "````"), ("has ````` five", "``````")],
)
def test_fence_cannot_be_closed_from_inside(text, fence):
    out = fenced(text, "memory")
    assert out.startswith(fence + "memory\n") and out.endswith("\n" + fence)
    assert fence not in text
