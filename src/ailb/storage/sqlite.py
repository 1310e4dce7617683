"""The embedded engine: one SQLite file, shareable by several gateway processes.

sqlite3 blocks, so every statement runs on one worker thread owned by the store; the event loop
only awaits it. WAL lets readers proceed while another process writes, and every write opens
with BEGIN IMMEDIATE so the change sequence is computed under the database's write lock.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ailb.auth.keys import ApiKey
from ailb.billing.records import UsageQuery, UsageRecord, UsageRow
from ailb.datadir import private_dir, private_file
from ailb.storage import StoredResponse, StoreUnavailable, usage_row
from ailb.storage import sqlite_ledger as ledger
from ailb.storage.sqlite_rows import insert_rows

T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        doc TEXT NOT NULL
    )""",
    *ledger.SCHEMA,
    # Responses API state: one document per response, by owner, until it expires.
    """CREATE TABLE IF NOT EXISTS responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires REAL NOT NULL,
        doc BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires)",
)
OPEN_ATTEMPTS = 100


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ailb-sqlite")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    # --- keys -------------------------------------------------------------------------------

    async def insert_key(self, key: ApiKey) -> int:
        return await self._run(self._insert_key, key)

    async def update_key(self, key: ApiKey) -> int:
        return await self._run(self._update_key, key)

    async def get_key(self, key_id: str) -> ApiKey | None:
        rows = await self._run(self._fetch, "SELECT doc FROM api_keys WHERE id = ?", (key_id,))
        return _decode_key(rows[0][0]) if rows else None

    async def list_keys(self) -> list[ApiKey]:
        rows = await self._run(self._fetch, "SELECT doc FROM api_keys ORDER BY id", ())
        return [_decode_key(doc) for (doc,) in rows]

    async def keys_changed_since(self, seq: int) -> tuple[int, list[ApiKey]]:
        rows = await self._run(
            self._fetch, "SELECT seq, doc FROM api_keys WHERE seq > ? ORDER BY seq", (seq,)
        )
        if not rows:
            return seq, []
        return int(rows[-1][0]), [_decode_key(doc) for _, doc in rows]

    # --- usage ledger -----------------------------------------------------------------------

    async def insert_usage(
        self, records: Sequence[UsageRecord], batch: str, encoded: Sequence[bytes] | None = None
    ) -> int:
        if not records:
            return 0
        return await self._run(self._insert_usage, batch, records, encoded)

    async def query_usage(self, query: UsageQuery) -> list[UsageRow]:
        unknown = set(query.group_by) - ledger.GROUPS.keys()
        if unknown:
            raise ValueError(f"cannot group usage by {sorted(unknown)}")
        groups = [g for g in ledger.GROUPS if g in query.group_by]
        found = await self._run(
            self._totals, groups, query.key_id, query.model, query.from_ts, query.to_ts
        )
        if not groups:
            return [usage_row({}, found.get((), (0, 0, 0, 0, 0.0)))]
        fields = [ledger.GROUPS[g][1] for g in groups]
        return [
            usage_row(dict(zip(fields, labels, strict=True)), found[labels])
            for labels in sorted(found)[: max(query.limit, 0)]
        ]

    async def spent_since(
        self, since: float, key_id: str | None = None
    ) -> dict[str, tuple[float, int]]:
        found = await self._run(self._totals, ["key"], key_id, None, since, None)
        return {k: (float(t[4]), int(t[2] + t[3])) for (k,), t in found.items()}

    # --- Responses API state ----------------------------------------------------------------

    async def put_responses(self, items: Sequence[StoredResponse]) -> None:
        if items:
            await self._run(self._put_responses, items)

    async def get_response(self, response_id: str, owner: str, now: float) -> bytes | None:
        rows = await self._run(
            self._fetch,
            "SELECT doc FROM responses WHERE id = ? AND owner = ? AND expires > ?",
            (response_id, owner, now),
        )
        return bytes(rows[0][0]) if rows else None

    async def delete_response(self, response_id: str, owner: str, now: float) -> bool:
        return await self._run(self._delete_response, response_id, owner, now)

    def _put_responses(self, items: Sequence[StoredResponse]) -> None:
        with self._errors(), self._write() as conn:
            # Expired documents go as new ones come (the index makes it cheap when none has).
            conn.execute("DELETE FROM responses WHERE expires <= ?", (time.time(),))
            insert_rows(
                conn,
                "INSERT OR REPLACE INTO responses (id, owner, expires, doc) VALUES {rows}",
                items,
                4,
            )

    def _delete_response(self, response_id: str, owner: str, now: float) -> bool:
        with self._errors(), self._write() as conn:
            cur = conn.execute(
                "DELETE FROM responses WHERE id = ? AND owner = ? AND expires > ?",
                (response_id, owner, now),
            )
            return cur.rowcount > 0

    # --- worker thread ----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("SqliteStore is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite database {self._path}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"SQLite database {self._path}: {exc.strerror or exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        # IMMEDIATE takes the write lock up front (waiting up to busy_timeout): a deferred
        # transaction upgrading to a writer could fail at once with SQLITE_BUSY under WAL.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("SqliteStore is not open")
        return self._conn

    def _open(self) -> None:
        with self._errors():
            private_dir(Path(self._path).parent)
            private_file(self._path)  # SQLite's -wal and -shm files take this file's mode
            for attempt in range(OPEN_ATTEMPTS):
                try:
                    self._open_once()
                    return
                except sqlite3.OperationalError as e:
                    # Processes opening one new database at the same moment: switching it to
                    # WAL and creating the schema can report "locked" at once, without waiting
                    # out busy_timeout. It settles within moments.
                    if "locked" not in str(e) or attempt == OPEN_ATTEMPTS - 1:
                        raise
                    time.sleep(0.05)

    def _open_once(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            # busy_timeout first: switching to WAL needs a lock another process may hold.
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = conn
            with self._write():
                for statement in SCHEMA:
                    conn.execute(statement)
                ledger.migrate_rows(conn)
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with self._errors():
                conn.close()

    def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._errors():
            return self._connection().execute(sql, args).fetchall()

    def _insert_key(self, key: ApiKey) -> int:
        with self._errors(), self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO api_keys (id, seq, doc)"
                    " VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM api_keys), ?)",
                    (key.id, _encode_key(key)),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"key {key.id} already exists") from None
            return _seq_of(conn, key.id)

    def _update_key(self, key: ApiKey) -> int:
        with self._errors(), self._write() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET seq = (SELECT coalesce(max(seq), 0) + 1 FROM api_keys),"
                " doc = ? WHERE id = ?",
                (_encode_key(key), key.id),
            )
            if cur.rowcount == 0:
                raise KeyError(key.id)
            return _seq_of(conn, key.id)

    def _insert_usage(
        self, batch: str, records: Sequence[UsageRecord], encoded: Sequence[bytes] | None
    ) -> int:
        with self._errors(), self._write() as conn:
            return ledger.insert_batch(conn, batch, records, encoded)

    def _totals(
        self,
        groups: Sequence[str],
        key_id: str | None,
        model: str | None,
        from_ts: float | None,
        to_ts: float | None,
    ) -> dict[tuple[Any, ...], ledger.Totals]:
        with self._errors():
            return ledger.totals(self._connection(), groups, key_id, model, from_ts, to_ts)


def _seq_of(conn: sqlite3.Connection, key_id: str) -> int:
    (seq,) = conn.execute("SELECT seq FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return int(seq)


def _encode_key(key: ApiKey) -> str:
    return msgspec.json.encode(key).decode()


def _decode_key(doc: str) -> ApiKey:
    return msgspec.json.decode(doc, type=ApiKey)
