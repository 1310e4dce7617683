"""The embedded store of conversation turns: rows in SQLite, with real deletes."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import numpy as np
import pytest

from ailb.memory.sqlite_store import FILE, SqliteTurnStore
from ailb.vectorstore.chroma import StoreUnavailable


def records(n: int, start: int = 0, sk: str = "o/s") -> dict[str, Any]:
    rng = np.random.default_rng(start)
    return {
        "ids": [f"r{i}" for i in range(start, start + n)],
        "embeddings": rng.standard_normal((n, 384)).astype(np.float32),
        "documents": [f"turn {i} " + "text " * 40 for i in range(start, start + n)],
        "metadatas": [
            {"owner": "o", "session": sk[2:], "sk": sk, "ts": i, "role": "user"}
            | ({"part": 1} if i % 2 else {})
            for i in range(start, start + n)
        ],
    }


def test_records_round_trip_by_session_and_expire_by_time(tmp_path):
    async def main() -> None:
        store = SqliteTurnStore(str(tmp_path))
        await store.open()
        a, b = records(3, 0, "o/a"), records(2, 10, "o/b")
        await store.upsert("c", **a)
        await store.upsert("c", **b)
        await store.upsert("other", **records(1, 0, "o/a"))  # collections are apart
        got = await store.get("c", where={"sk": "o/a"}, vectors=True)
        assert [r.id for r in got] == ["r0", "r1", "r2"]  # in time order
        assert got[1].metadata == a["metadatas"][1]
        assert got[0].metadata == {
            "owner": "o",
            "session": "a",
            "sk": "o/a",
            "ts": 0,
            "role": "user",
        }
        assert got[1].document == a["documents"][1]
        # kept as float16, as the session cache holds them
        assert got[1].embedding is not None and got[1].embedding.dtype == np.float16
        assert np.allclose(got[1].embedding, a["embeddings"][1], rtol=1e-3, atol=1e-3)
        assert all(r.embedding is None for r in await store.get("c", where={"sk": "o/b"}))
        # the same id again replaces the record
        again = records(1, 0, "o/a") | {"documents": ["edited"]}
        await store.upsert("c", **again)
        edited = await store.get("c", where={"sk": "o/a"})
        assert edited[0].document == "edited"
        await store.delete("c", where={"ts": {"$lt": 2}})
        assert [r.id for r in await store.get("c")] == ["r2", "r10", "r11"]
        await store.delete("c", where={"sk": "o/b"})
        assert [r.id for r in await store.get("c")] == ["r2"]
        assert len(await store.get("other")) == 1
        with pytest.raises(ValueError, match="unsupported filter"):
            await store.get("c", where={"owner": "o"})
        with pytest.raises(ValueError, match="no field for"):
            bad = records(1, 50) | {"metadatas": [{**a["metadatas"][0], "colour": "red"}]}
            await store.upsert("c", **bad)
        await store.close()

    asyncio.run(main())


def test_expired_records_give_their_space_back(tmp_path):
    """Churn (turns written, later expired) does not grow the store: deleted rows' pages are
    reused. Chroma's HNSW index keeps every vector it was ever given (chroma #2594)."""

    async def main() -> list[int]:
        store = SqliteTurnStore(str(tmp_path))
        pages = []
        for round_ in range(4):
            await store.upsert("c", **records(1000, round_ * 1000))
            await store.delete("c", where={"ts": {"$lt": round_ * 1000}})
            with sqlite3.connect(tmp_path / FILE) as db:
                pages.append(db.execute("PRAGMA page_count").fetchone()[0])
        await store.close()
        return pages

    pages = asyncio.run(main())
    assert pages[1] > pages[0]  # two rounds held at once, after the first
    assert pages[3] <= pages[1] * 1.1, pages  # then steady


def test_an_unusable_data_directory_is_store_unavailable(tmp_path):
    (tmp_path / "file").write_text("not a directory")

    async def main() -> None:
        store = SqliteTurnStore(str(tmp_path / "file"))
        with pytest.raises(StoreUnavailable):
            await store.open()

    asyncio.run(main())
