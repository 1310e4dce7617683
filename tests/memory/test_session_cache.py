"""Hot sessions are searched in process: exact similarity over their records' vectors, the
records written since they were loaded included, within a bound on what the cache holds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ailb.embeddings.minilm import MiniLM
from ailb.memory.conversation import ConversationMemory, Turn
from ailb.memory.session_cache import CachedSession, SessionCache
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


def test_the_cache_is_bounded_by_sessions_and_by_vectors() -> None:
    cache = SessionCache(max_sessions=2, max_vectors=5)

    def session(vectors: int) -> CachedSession:
        s = CachedSession([Turn("user", "x", 1)])
        s.add_vectors([1] * vectors, np.ones((vectors, 2), np.float32))
        return s

    cache.put(("o", "a"), session(2))
    cache.put(("o", "b"), session(2))
    cache.put(("o", "c"), session(1))  # third session: the least recently used goes
    assert ("o", "a") not in cache and cache.vectors == 3
    assert cache.get(("o", "b")) is not None  # b is now the most recently used
    cache.add_vectors(("o", "c"), [1, 1, 1], np.ones((3, 2), np.float32))  # 6 > 5 vectors
    assert ("o", "b") not in cache and ("o", "c") in cache and cache.vectors == 4
    cache.add_vectors(("o", "gone"), [1], np.ones((1, 2), np.float32))  # not held: ignored
    assert cache.vectors == 4
    cache.expire(cutoff_ns=2)
    assert len(cache) == 0 and cache.vectors == 0


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
