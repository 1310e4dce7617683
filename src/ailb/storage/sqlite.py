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
from ailb.storage import StoreUnavailable, usage_row

T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        doc TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS usage (
        request_id TEXT PRIMARY KEY,
        ts REAL NOT NULL,
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        deployment TEXT,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        latency_ms REAL NOT NULL,
        status INTEGER NOT NULL,
        estimated INTEGER NOT NULL,
        stream INTEGER NOT NULL,
        "user" TEXT,
        session_id TEXT,
        collection TEXT,
        instance TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts)",
    "CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key_id, ts)",
)

USAGE_COLUMNS = tuple(f'"{name}"' for name in UsageRecord.__struct_fields__)
# sqlite3 binds exact int, float and str directly, but sends every other value (None and bool
# included) through its adaptation protocol, which fails two attribute lookups -- two exceptions
# made and dropped -- per value: that was a fifth of a request's whole cost. So rows go in as
# ints and strs only; the optional text columns carry '' for NULL, turned back by NULLIF.
NULLABLE = frozenset({"deployment", "user", "session_id", "collection"})
VALUES_ROW = "({})".format(
    ", ".join("NULLIF(?, '')" if f in NULLABLE else "?" for f in UsageRecord.__struct_fields__)
)
MAX_ROWS_PER_INSERT = 512
OPEN_ATTEMPTS = 100
INSERT_USAGE = f"INSERT OR IGNORE INTO usage ({', '.join(USAGE_COLUMNS)}) VALUES {VALUES_ROW}"  # noqa: S608


# Group name -> (SQL expression, UsageRow field); dict order is the row order.
GROUPS = {
    "day": ("strftime('%Y-%m-%d', ts, 'unixepoch')", "day"),
    "key": ("key_id", "key_id"),
    "model": ("model", "model"),
}


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only
        self._insert_statements: dict[int, str] = {}
        self._rows_per_insert = 1

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

    async def insert_usage(self, records: Sequence[UsageRecord]) -> int:
        if not records:
            return 0
        values = [_row(r) for r in records]
        return await self._run(self._insert_usage, values)

    async def query_usage(self, query: UsageQuery) -> list[UsageRow]:
        unknown = set(query.group_by) - GROUPS.keys()
        if unknown:
            raise ValueError(f"cannot group usage by {sorted(unknown)}")
        groups = [(name, *spec) for name, spec in GROUPS.items() if name in query.group_by]
        where, args = _where(query)
        exprs = [expr for _, expr, _ in groups]
        sql = (
            f"SELECT {''.join(e + ', ' for e in exprs)}count(*), "  # noqa: S608 - constants
            "coalesce(sum(status >= 400), 0), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0.0) "
            f"FROM usage{where}"
        )
        if groups:
            cols = ", ".join(exprs)
            sql += f" GROUP BY {cols} ORDER BY {cols} LIMIT ?"
            args.append(max(query.limit, 0))
        rows = await self._run(self._fetch, sql, tuple(args))
        return [
            usage_row({field: row[i] for i, (_, _, field) in enumerate(groups)}, row[len(groups) :])
            for row in rows
        ]

    async def spent_since(
        self, since: float, key_id: str | None = None
    ) -> dict[str, tuple[float, int]]:
        sql = (
            "SELECT key_id, sum(cost_usd), sum(prompt_tokens + completion_tokens) "
            "FROM usage WHERE ts >= ?"
        )
        args: list[Any] = [since]
        if key_id is not None:
            sql += " AND key_id = ?"
            args.append(key_id)
        rows = await self._run(self._fetch, sql + " GROUP BY key_id", tuple(args))
        return {k: (float(cost), int(tokens)) for k, cost, tokens in rows}

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
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
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
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            rows = min(MAX_ROWS_PER_INSERT, max(1, limit // len(USAGE_COLUMNS)))
            self._rows_per_insert = 1 << (rows.bit_length() - 1)  # a power of two
            self._conn = conn
            with self._write():
                for statement in SCHEMA:
                    conn.execute(statement)
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

    def _insert_usage(self, values: list[tuple[Any, ...]]) -> int:
        # Many rows per statement, not executemany: executemany takes the GIL back for every
        # row, and against a busy event loop each of those waits out the switch interval
        # (measured: 5 ms a row), so the ledger could never keep up with traffic.
        # Chunks are powers of two, so at most a dozen statement shapes are ever prepared (each
        # prepared statement is kept by sqlite3's cache; one shape per batch size grew memory
        # without bound).
        with self._errors(), self._write() as conn:
            before = conn.total_changes
            i = 0
            while i < len(values):
                rows = min(self._rows_per_insert, 1 << ((len(values) - i).bit_length() - 1))
                chunk = values[i : i + rows]
                conn.execute(self._insert_sql(rows), [v for row in chunk for v in row])
                i += rows
            return conn.total_changes - before

    def _insert_sql(self, rows: int) -> str:
        sql = self._insert_statements.get(rows)
        if sql is None:
            sql = self._insert_statements[rows] = INSERT_USAGE.replace(
                VALUES_ROW, ",".join([VALUES_ROW] * rows)
            )
        return sql


def _where(query: UsageQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for clause, value in (
        ("key_id = ?", query.key_id),
        ("model = ?", query.model),
        ("ts >= ?", query.from_ts),
        ("ts < ?", query.to_ts),
    ):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _seq_of(conn: sqlite3.Connection, key_id: str) -> int:
    (seq,) = conn.execute("SELECT seq FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return int(seq)


def _encode_key(key: ApiKey) -> str:
    return msgspec.json.encode(key).decode()


def _decode_key(doc: str) -> ApiKey:
    return msgspec.json.decode(doc, type=ApiKey)


def _row(r: UsageRecord) -> tuple[str | int | float, ...]:
    """A record as sqlite3 binds it without adaptation (see NULLABLE); in column order."""
    return (
        r.request_id,
        r.ts,
        r.key_id,
        r.model,
        r.deployment or "",
        r.prompt_tokens,
        r.completion_tokens,
        r.cost_usd,
        r.latency_ms,
        r.status,
        1 if r.estimated else 0,
        1 if r.stream else 0,
        r.user or "",
        r.session_id or "",
        r.collection or "",
        r.instance,
    )
