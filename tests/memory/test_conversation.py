"""ConversationMemory over a real embedded Chroma store and the real MiniLM encoder."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ailb.embeddings import LocalEmbedder
from ailb.embeddings.minilm import MiniLM
from ailb.memory.conversation import (
    ConversationMemory,
    MemorySettings,
    TurnStore,
    sentence_parts,
    session_key,
)
from ailb.memory.fence import fenced
from ailb.memory.sqlite_store import SqliteTurnStore
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


@pytest.fixture(params=["sqlite", "chroma"])
def turn_store(request: pytest.FixtureRequest) -> Callable[[Path], TurnStore]:
    """Each behaviour on both stores of turns: SQLite (embedded default) and Chroma."""
    if request.param == "sqlite":
        return lambda tmp: SqliteTurnStore(str(tmp / "store"))
    return lambda tmp: VectorStore(str(tmp / "store"))


def run(coro_fn: Any, tmp_path: Any, model: MiniLM, store: Any = None, **settings: Any) -> Any:
    """coro_fn(memory) on a real store (`store(tmp_path)` makes another kind) and encoder."""

    async def main() -> Any:
        store_ = store(tmp_path) if store else VectorStore(str(tmp_path / "store"))
        embedder = LocalEmbedder(loader=lambda: model)
        memory = ConversationMemory(store_, embedder, MemorySettings(**settings))
        memory.start()
        try:
            return await coro_fn(memory)
        finally:
            await memory.stop()
            await embedder.close()

    return asyncio.run(main())


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_old_relevant_turn_is_recalled_beyond_the_recent_window(tmp_path, model, turn_store):
    async def scenario(memory: ConversationMemory) -> str:
        memory.remember("o", "s", [user("My sister Maria lives in Porto.")], "Good to know.")
        for text in FILLER:
            memory.remember("o", "s", [user(text)], "I see.")
        await memory.flush()
        memory._cache.clear()  # read back from the store, not the hot cache
        recall = await memory.recall("o", "s", [user("Which city does my sister live in?")], 4000)
        assert recall.recent == 2 and recall.recalled >= 1
        return str(recall.messages[0]["content"])

    block = run(scenario, tmp_path, model, turn_store, recent_turns=2, recall_k=1)
    assert "My sister Maria lives in Porto." in block
    assert "user: The football match ended in a draw.\nassistant: I see." in block  # recent 2
    assert "pasta" not in block  # old and less related: neither recent nor recalled
    # Chronological order: the recalled old turn comes before the recent ones.
    assert block.index("Porto") < block.index("assistant: I see.")


def test_budget_bounds_what_is_added(tmp_path, model, turn_store):
    async def scenario(memory: ConversationMemory) -> Any:
        for i in range(10):
            memory.remember("o", "s", [user(f"note {i}: " + "x" * 400)], "ok")
        await memory.flush()
        return await memory.recall("o", "s", [user("next")], 150)

    recall = run(scenario, tmp_path, model, turn_store, recent_turns=10)
    added = len(recall.messages[0]["content"])
    assert recall.recent >= 1
    assert added < 150 * 4 + 400  # ~4 characters a token, plus the fixed preamble


def test_owners_and_sessions_are_separate(tmp_path, model, turn_store):
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

    alice, bob_other, bob_recall = run(scenario, tmp_path, model, turn_store)
    assert [t.content for t in alice] == ["alice secret 111", "ok"]
    assert bob_other == []
    assert "111" not in str(bob_recall.messages)


def test_expired_turns_are_removed(tmp_path, model, turn_store):
    async def scenario(memory: ConversationMemory) -> tuple[int, int]:
        memory.remember("o", "s", [user("old")], "ok")
        await memory.flush()
        before = len(await memory.session("o", "s"))
        await memory.expire(now_ns=time.time_ns() + int(120 * 1e9))
        return before, len(await memory.session("o", "s"))

    assert run(scenario, tmp_path, model, turn_store, ttl_s=60) == (2, 0)


def test_expiry_of_older_turns_of_a_session_in_use(tmp_path, model, turn_store):
    """Records expire one by one: a session still in use (held in the cache) loses its old
    turns from recall as well as from the store, and keeps its new ones."""

    async def scenario(memory: ConversationMemory) -> tuple[list[str], list[str], str]:
        memory.remember("o", "s", [user("My locker code is 4711.")], "Noted.")
        await memory.flush()
        await asyncio.sleep(0.01)
        mid = time.time_ns()
        memory.remember("o", "s", [user("What a sunny day.")], "Lovely.")
        await memory.flush()
        await memory.recall("o", "s", [user("hello")], 4000)  # the session is now cached
        await memory.expire(now_ns=mid + int(60 * 1e9))
        cached = [t.content for t in await memory._history("o", "s")]
        recall = await memory.recall("o", "s", [user("What is my locker code?")], 4000)
        stored = [t.content for t in await memory.session("o", "s")]
        return cached, stored, str(recall.messages)

    cached, stored, recall = run(scenario, tmp_path, model, turn_store, ttl_s=60, recent_turns=0)
    assert cached == stored == ["What a sunny day.", "Lovely."]
    assert "4711" not in recall


def test_persisted_across_restarts(tmp_path, model, turn_store):
    async def write(memory: ConversationMemory) -> None:
        memory.remember("o", "s", [user("remember me")], "I will")
        await memory.flush()

    async def read(memory: ConversationMemory) -> list[str]:
        return [t.content for t in await memory.session("o", "s")]

    run(write, tmp_path, model, turn_store)
    assert run(read, tmp_path, model, turn_store) == ["remember me", "I will"]


def test_a_fact_said_in_passing_is_recalled(tmp_path, model, turn_store):
    # The message is about Kubernetes: its one vector does not resemble the question (cosine
    # 0.03 with MiniLM), its sentence about work does (0.45).
    aside = (
        "Why does my pod keep restarting with CrashLoopBackOff? "
        "By the way, I work at Zalando as a data engineer."
    )

    async def scenario(memory: ConversationMemory) -> str:
        memory.remember("o", "s", [user(aside)], "Check kubectl logs --previous first.")
        for text in FILLER:
            memory.remember("o", "s", [user(text)], "I see.")
        await memory.flush(within=60)
        memory._cache.clear()
        recall = await memory.recall("o", "s", [user("Where am I employed?")], 4000)
        return str(recall.messages[0]["content"])

    block = run(scenario, tmp_path, model, turn_store, recent_turns=2, recall_k=3)
    assert f"user: {aside}" in block


def test_a_loosely_worded_question_still_finds_its_fact_by_default(tmp_path, model, turn_store):
    # MiniLM scores this paraphrase 0.16, as low as loosely related chatter: with the default
    # settings the rank decides, not a similarity threshold of 0.2 or more.
    fact = "I spend my weekdays at Spotify, in the platform team."

    async def scenario(memory: ConversationMemory) -> str:
        memory.remember("o", "s", [user(fact)], "Nice!")
        for text in FILLER:
            memory.remember("o", "s", [user(text)], "I see.")
        await memory.flush(within=60)
        recall = await memory.recall(
            "o", "s", [user("What's the name of the firm that hired me?")], 4000
        )
        return str(recall.messages[0]["content"])

    assert f"user: {fact}" in run(scenario, tmp_path, model, turn_store)


def test_a_recalled_turn_comes_back_with_the_rest_of_its_exchange(tmp_path, model, turn_store):
    # Only the answer resembles the question; the user's own message comes back with it.
    said = "Look who joined the family last weekend!"
    answered = "Congratulations on adopting Biscuit, your new beagle puppy!"

    async def scenario(memory: ConversationMemory) -> Any:
        memory.remember("o", "s", [user(said)], answered)
        for text in FILLER:
            memory.remember("o", "s", [user(text)], "I see.")
        await memory.flush(within=60)
        return await memory.recall("o", "s", [user("What is my dog called?")], 4000)

    recall = run(scenario, tmp_path, model, turn_store, recent_turns=2, recall_k=1)
    block = str(recall.messages[0]["content"])
    assert f"user: {said}\nassistant: {answered}" in block
    assert recall.recalled == 2 and recall.recent == 2


def test_recent_and_resent_turns_leave_recall_its_places(tmp_path, model, turn_store):
    # The records nearest to the question are a recent turn and a turn the client re-sends;
    # with recall_k=1 the older fact must still be found behind them.
    fact = "My sister Maria lives in Porto."
    resent = "Does my sister live in a city or in the countryside?"

    async def scenario(memory: ConversationMemory) -> str:
        memory.remember("o", "s", [user(fact)], "Good to know.")
        for text in FILLER:
            memory.remember("o", "s", [user(text)], "I see.")
        memory.remember("o", "s", [user(resent)], "In a city, I believe.")
        memory.remember("o", "s", [user("Which city does my sister live in, again?")], "Hmm.")
        await memory.flush(within=60)
        question = [
            user(resent),
            {"role": "assistant", "content": "In a city, I believe."},
            user("Which city does my sister live in?"),
        ]
        recall = await memory.recall("o", "s", question, 4000)
        return str(recall.messages[0]["content"])

    block = run(scenario, tmp_path, model, turn_store, recent_turns=2, recall_k=1)
    assert f"user: {fact}" in block
    assert "user: Which city does my sister live in, again?" in block  # recent
    assert resent not in block  # the client sent it: not repeated


def test_when_the_exchange_does_not_fit_the_turn_that_matched_does(tmp_path, model, turn_store):
    fact = "My sister Maria lives in Porto."
    long_reply = "Porto is lovely. " + "Here is a very long story about something else. " * 40

    async def scenario(memory: ConversationMemory) -> str:
        memory.remember("o", "s", [user(fact)], long_reply)
        for text in FILLER:
            memory.remember("o", "s", [user(text)], "I see.")
        await memory.flush(within=60)
        recall = await memory.recall("o", "s", [user("Which city does my sister live in?")], 120)
        return str(recall.messages[0]["content"])

    block = run(scenario, tmp_path, model, turn_store, recent_turns=2, recall_k=3)
    assert f"user: {fact}" in block
    assert "very long story" not in block


def test_sentence_records_are_not_turns(tmp_path, model, turn_store):
    text = "I grew up in Dundee. Now I live in Leeds with my partner."

    async def scenario(memory: ConversationMemory) -> list[str]:
        memory.remember("o", "s", [user(text)], "Nice! Two very different cities.")
        await memory.flush(within=60)
        rows = await memory.store.get(
            memory.settings.collection, where={"sk": session_key("o", "s")}
        )
        assert len(rows) == 4  # the two turns and the user turn's two sentences
        return [t.content for t in await memory.session("o", "s")]

    assert run(scenario, tmp_path, model, turn_store) == [text, "Nice! Two very different cities."]


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("One sentence only, however long it is.", []),
        (
            "I grew up in Dundee. Now I live in Leeds.",
            ["I grew up in Dundee.", "Now I live in Leeds."],
        ),
        (
            "Anyway. How do I stop procrastinating? Side note: I drive a Fiat 500.",
            ["Anyway. How do I stop procrastinating?", "Side note: I drive a Fiat 500."],
        ),
        (
            "Line one of a list\nline two of the list",
            ["Line one of a list", "line two of the list"],
        ),
        ("Thanks! Sure.", []),  # fragments only: the turn's own vector is enough
    ],
)
def test_sentence_parts(text, parts):
    assert sentence_parts(text) == parts


def test_a_long_paste_gets_a_bounded_number_of_sentence_vectors():
    parts = sentence_parts(" ".join(f"Sentence number {i} of the paste." for i in range(100)))
    assert 2 <= len(parts) <= 16
    assert parts[0].startswith("Sentence number 0 ") and parts[-1].endswith(
        "number 99 of the paste."
    )


@pytest.mark.parametrize(
    ("text", "fence"),
    [("plain", "```"), ("has ``` inside", "````"), ("has ````` five", "``````")],
)
def test_fence_cannot_be_closed_from_inside(text, fence):
    out = fenced(text, "memory")
    assert out.startswith(fence + "memory\n") and out.endswith("\n" + fence)
    assert fence not in text


def test_no_recent_turns_means_recall_only(tmp_path, model, turn_store):
    async def scenario(memory: ConversationMemory) -> Any:
        memory.remember("o", "s", [user("My sister Maria lives in Porto.")], "Good to know.")
        for text in FILLER:
            memory.remember("o", "s", [user(text)], "I see.")
        await memory.flush()
        return await memory.recall("o", "s", [user("Which city does my sister live in?")], 4000)

    recall = run(scenario, tmp_path, model, turn_store, recent_turns=0, recall_k=1)
    block = str(recall.messages[0]["content"])
    assert recall.recent == 0 and "Porto" in block
    assert "football" not in block  # AILB_MEMORY_RECENT_TURNS=0 once returned every turn
