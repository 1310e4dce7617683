"""Hot sessions are searched in process: exact similarity over their records' vectors, the
records written since they were loaded included, within a bound on what the cache holds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ailb.embeddings.minilm import MiniLM
from ailb.memory.conversation import ConversationMemory, Turn
from ailb.memory.session_cache import OWNER_BYTES, CachedSession, SessionCache, turn_bytes
from ailb.vectorstore.chroma import VectorStore
from tests.memory.test_conversation import FILLER, run, user


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM()


def unit(*xs: float) -> np.ndarray[Any, Any]:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_nearest_ranks_by_cosine_and_names_each_vectors_turn() -> None:
    s = CachedSession([])
    assert s.nearest(unit(1, 0), 3) == []
    s.add_vectors([1, 2], np.stack([unit(1, 0), unit(0, 1)]))
    s.add_vectors([2], unit(1, 1)[None, :])  # a sentence of turn 2, added later
    got = s.nearest(unit(1, 0.1), 5)
    assert [ts for ts, _ in got] == [1, 2, 2]
    assert got[0][1] > got[1][1] > got[2][1]
    assert abs(got[0][1] - float(unit(1, 0) @ unit(1, 0.1))) < 1e-3  # float16 storage
    assert [ts for ts, _ in s.nearest(unit(0, 1), 1)] == [2]


def test_the_cache_is_bounded_by_sessions_and_by_bytes() -> None:
    def session(vectors: int) -> CachedSession:
        s = CachedSession([Turn("user", "x", 1)])
        s.add_vectors([1] * vectors, np.ones((vectors, 4), np.float32))
        return s

    one = session(1).nbytes
    per_vector = session(2).nbytes - one
    assert per_vector == 4 * 2 + OWNER_BYTES  # float16 row and its turn's ts
    assert one == turn_bytes([Turn("user", "x", 1)]) + per_vector
    cache = SessionCache(max_sessions=2, max_bytes=2 * one + 3 * per_vector)
    cache.put(("o", "a"), session(2))
    cache.put(("o", "b"), session(2))
    cache.put(("o", "c"), session(1))  # third session: the least recently used goes
    assert ("o", "a") not in cache and cache.nbytes == 2 * one + per_vector
    assert cache.get(("o", "b")) is not None  # b is now the most recently used
    # c grows by four vectors: over the bound, so b (least recently used) goes, c stays
    cache.add_vectors(("o", "c"), [1] * 4, np.ones((4, 4), np.float32))
    assert ("o", "b") not in cache and ("o", "c") in cache
    assert cache.nbytes == one + 4 * per_vector
    cache.add_turns(("o", "c"), [Turn("assistant", "y", 2)])  # exactly at the bound
    assert cache.nbytes == 2 * one + 3 * per_vector and ("o", "c") in cache
    before = cache.nbytes
    cache.add_vectors(("o", "gone"), [1], np.ones((1, 4), np.float32))  # not held: ignored
    cache.add_turns(("o", "gone"), [Turn("user", "z", 3)])
    assert cache.nbytes == before
    # a session larger than the whole bound is not kept at all
    cache.put(("o", "huge"), session(100))
    assert ("o", "huge") not in cache and cache.nbytes <= cache.max_bytes
    cache.expire(cutoff_ns=10)
    assert len(cache) == 0 and cache.nbytes == 0


def test_expiry_drops_a_held_sessions_old_turns_and_their_vectors() -> None:
    """The store deletes records older than the TTL one by one; a session still in use keeps
    its newer turns, and the cache must not hold (or recall) the expired ones."""
    cache = SessionCache(max_sessions=10, max_bytes=1 << 20)
    s = CachedSession([Turn("user", "old", 1), Turn("assistant", "old answer", 2)])
    s.add_vectors([1, 1], np.stack([unit(1, 0), unit(0.9, 0.1)]))  # the turn and a sentence
    s.add_turns([Turn("user", "new", 5)])
    s.add_vectors([5], unit(0, 1)[None, :])
    cache.put(("o", "s"), s)
    assert [ts for ts, _ in s.nearest(unit(1, 0), 3)] == [1, 1, 5]
    cache.expire(cutoff_ns=3)
    held = cache.get(("o", "s"))
    assert held is s and [t.content for t in s.turns] == ["new"]
    assert s.vectors == 1 and [ts for ts, _ in s.nearest(unit(1, 0), 3)] == [5]
    fresh = CachedSession([Turn("user", "new", 5)])
    fresh.add_vectors([5], unit(0, 1)[None, :])
    assert s.nbytes == fresh.nbytes and cache.nbytes == fresh.nbytes
    s.add_vectors([6], unit(1, 1)[None, :])  # still searchable after the trim
    assert [ts for ts, _ in s.nearest(unit(1, 1), 1)] == [6]


class CountingStore(VectorStore):
    calls: list[str]

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("get")
        return await super().get(*args, **kwargs)

    async def query(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("query")
        return await super().query(*args, **kwargs)


def test_a_hot_session_is_recalled_without_the_store_and_sees_new_records(tmp_path, model):
    async def scenario(memory: ConversationMemory) -> tuple[str, list[str]]:
        for text in FILLER[:4]:
            memory.remember("o", "s", [user(text)], "I see.")
        await memory.flush()
        memory._cache.clear()
        await memory.recall("o", "s", [user("What did we eat?")], 4000)  # loads the session
        store = memory.store
        assert isinstance(store, CountingStore)
        store.calls.clear()
        # Written after the session was loaded, then pushed out of the recent window.
        memory.remember("o", "s", [user("My sister Maria lives in Porto.")], "Good to know.")
        for text in FILLER[4:]:
            memory.remember("o", "s", [user(text)], "I see.")
        await memory.flush()
        recall = await memory.recall("o", "s", [user("Which city does my sister live in?")], 4000)
        return str(recall.messages[0]["content"]), store.calls

    def counting(tmp: Any) -> CountingStore:
        store = CountingStore(str(tmp / "store"))
        store.calls = []
        return store

    block, calls = run(scenario, tmp_path, model, recent_turns=2, recall_k=1, store=counting)
    assert "My sister Maria lives in Porto." in block
    assert "get" not in calls and "query" not in calls  # answered from the hot session
