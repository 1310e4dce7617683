"""Conversation turns in SQLite: the embedded memory store.

Memory never asks an approximate-nearest-neighbour index anything: a recall reads one session's
records and ranks them exactly in process (session_cache.py). In Chroma every turn still goes
into an HNSW graph held in memory, and deleting records does not shrink it (chroma-core/chroma
#2594): with turns expiring and new ones arriving, the embedded gateway's memory grew about
1.8 KB with every record ever written. Here a record is a row, indexed by its session, with
its vector as a float16 blob (as the session cache holds it); expiry deletes rows and SQLite
reuses their pages, so the process holds only SQLite's page cache whatever has been stored.

The interface is the part of the vector store's that ConversationMemory uses: get, upsert and
delete, with `where` either {"sk": session key} or {"ts": {"$lt": ns}}.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ailb.datadir import private_dir, private_file
from ailb.embeddings.minilm import Array
from ailb.storage.sqlite_rows import insert_rows
from ailb.vectorstore.chroma import Record, StoreUnavailable, Where

# A plain rowid table: records arrive in time order and are appended. (WITHOUT ROWID, keyed by
# id, packed these ~1 KB rows two to a page after splits: 4 KB a record on disk.)
SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_records (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    owner TEXT NOT NULL,
    session TEXT NOT NULL,
    sk TEXT NOT NULL,
    role TEXT NOT NULL,
    ts INTEGER NOT NULL,
    part INTEGER,
    document TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS memory_records_id ON memory_records (collection, id);
CREATE INDEX IF NOT EXISTS memory_records_session ON memory_records (collection, sk, ts);
CREATE INDEX IF NOT EXISTS memory_records_ts ON memory_records (collection, ts);
"""
FILE = "memory.db"
METADATA = ("owner", "session", "sk", "role", "ts", "part")  # what a turn's record carries
VECTOR = np.dtype("<f2")  # as the session cache holds them: half the disk and the reads


def _condition(where: Where | None) -> tuple[str, list[Any]]:
    """SQL for the two filters memory uses; anything else is a programming error."""
    if where is None:
        return "", []
    if set(where) == {"sk"} and isinstance(where["sk"], str):
        return " AND sk = ?", [where["sk"]]
    ts = where.get("ts")
    if set(where) == {"ts"} and isinstance(ts, Mapping) and set(ts) == {"$lt"}:
        return " AND ts < ?", [int(ts["$lt"])]
    raise ValueError(f"unsupported filter for the SQLite memory store: {dict(where)!r}")


def _row(
    collection: str, id_: str, document: str, meta: Mapping[str, Any], vector: Any
) -> tuple[Any, ...]:
    unknown = set(meta) - set(METADATA)
    if unknown:
        raise ValueError(f"the SQLite memory store has no field for {sorted(unknown)}")
    part = meta.get("part")
    return (
        collection,
        id_,
        str(meta["owner"]),
        str(meta["session"]),
        str(meta["sk"]),
        str(meta["role"]),
        int(meta["ts"]),
        None if part is None else int(part),
        document,
        vector.tobytes(),
    )


def _record(row: tuple[Any, ...], vectors: bool) -> Record:
    id_, owner, session, sk, role, ts, part, document, blob = row
    meta = {"owner": owner, "session": session, "sk": sk, "role": role, "ts": ts}
    if part is not None:
        meta["part"] = part
    return Record(id_, document, meta, np.frombuffer(blob, VECTOR) if vectors else None)


class SqliteTurnStore:
    def __init__(self, data_dir: str) -> None:
        self.path = Path(data_dir) / FILE
        self._db: sqlite3.Connection | None = None  # used on the worker thread only
        # One thread of its own, as the ledger's store has: calls queue there, not in the
        # default pool that Chroma's calls and others share.
        self._executor: ThreadPoolExecutor | None = None

    @property
    def where(self) -> str:
        return f"sqlite:{self.path}"

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            private_dir(self.path.parent)
            private_file(self.path)  # SQLite's -wal and -shm files take this file's mode
            db = sqlite3.connect(self.path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses no committed write
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    async def _call(self, fn: Any, *args: Any) -> Any:
        if self._executor is None:  # memory may write (a replayed journal) before open()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ailb-memory")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(self._connect(), *args))
        except (sqlite3.Error, OSError) as e:
            raise StoreUnavailable(f"{type(e).__name__}: {e}"[:300]) from e

    async def open(self) -> None:
        await self._call(lambda db: None)

    async def ping(self) -> None:
        await self._call(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(executor, shut)
        executor.shutdown(wait=True)

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
        vectors = np.asarray(embeddings).astype(VECTOR)
        rows = [
            _row(collection, i, d, m, v)
            for i, d, m, v in zip(ids, documents, metadatas, vectors, strict=True)
        ]

        def run(db: sqlite3.Connection) -> None:
            with db:  # one transaction: a batch is stored whole or not at all
                insert_rows(db, "INSERT OR REPLACE INTO memory_records VALUES {rows}", rows, 10)

        await self._call(run)

    async def get(
        self, collection: str, *, where: Where | None = None, vectors: bool = False
    ) -> list[Record]:
        condition, args = _condition(where)
        sql = (
            "SELECT id, owner, session, sk, role, ts, part, document, "  # noqa: S608
            + ("embedding" if vectors else "NULL")
            + f" FROM memory_records WHERE collection = ?{condition} ORDER BY ts"
        )

        def run(db: sqlite3.Connection) -> list[Record]:
            return [_record(row, vectors) for row in db.execute(sql, [collection, *args])]

        return await self._call(run)  # type: ignore[no-any-return]

    async def delete(self, collection: str, *, where: Where | None = None) -> None:
        condition, args = _condition(where)
        sql = f"DELETE FROM memory_records WHERE collection = ?{condition}"  # noqa: S608

        def run(db: sqlite3.Connection) -> None:
            with db:
                db.execute(sql, [collection, *args])

        await self._call(run)
