"""The shared engine: PostgreSQL through an asyncpg pool, for several gateway instances.

Everything lives in one schema (the pool's search_path), so several deployments or test runs
can share a database. Error messages name host:port/database, never the DSN itself.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg
import msgspec

from ailb.auth.keys import ApiKey
from ailb.billing.records import UsageQuery, UsageRecord, UsageRow
from ailb.storage import StoredResponse, StoreUnavailable, usage_row

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
SCHEMA_LOCK = 0x41494C42  # "AILB": serialises schema creation across starting processes
REOPEN_INTERVAL_S = 1.0  # a store that could not connect at start-up tries again at most this often
# What waiting will not fix: the configuration is wrong.
CONFIGURATION_ERRORS = (
    asyncpg.InvalidAuthorizationSpecificationError,  # unknown role, wrong password
    asyncpg.InvalidCatalogNameError,  # unknown database
    asyncpg.InsufficientPrivilegeError,
)

# (column, type, constraint), in UsageRecord field order.
USAGE_COLUMNS = (
    ("request_id", "text", "PRIMARY KEY"),
    ("ts", "double precision", "NOT NULL"),
    ("key_id", "text", "NOT NULL"),
    ("model", "text", "NOT NULL"),
    ("deployment", "text", ""),
    ("prompt_tokens", "bigint", "NOT NULL"),
    ("completion_tokens", "bigint", "NOT NULL"),
    ("cost_usd", "double precision", "NOT NULL"),
    ("latency_ms", "double precision", "NOT NULL"),
    ("status", "integer", "NOT NULL"),
    ("estimated", "boolean", "NOT NULL"),
    ("stream", "boolean", "NOT NULL"),
    ("user", "text", ""),
    ("session_id", "text", ""),
    ("collection", "text", ""),
    ("instance", "text", "NOT NULL"),
    ("api", "text", "NOT NULL DEFAULT 'chat'"),
)

SCHEMA = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    "CREATE SEQUENCE IF NOT EXISTS {s}.api_keys_seq",
    "CREATE TABLE IF NOT EXISTS {s}.api_keys ("
    " id text PRIMARY KEY, seq bigint NOT NULL UNIQUE, doc jsonb NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {s}.usage ("
    + ", ".join(
        f'"{name}" {type_} {constraint}'.rstrip() for name, type_, constraint in USAGE_COLUMNS
    )
    + ")",
    "CREATE INDEX IF NOT EXISTS usage_ts ON {s}.usage (ts)",
    "CREATE INDEX IF NOT EXISTS usage_key_ts ON {s}.usage (key_id, ts)",
    # A ledger from before the column gets it.
    "ALTER TABLE {s}.usage ADD COLUMN IF NOT EXISTS api text NOT NULL DEFAULT 'chat'",
    # Last: when it exists, the whole schema does (it is made in one transaction).
    "CREATE TABLE IF NOT EXISTS {s}.responses ("
    " id text PRIMARY KEY, owner text NOT NULL, expires double precision NOT NULL,"
    " doc bytea NOT NULL)",
    "CREATE INDEX IF NOT EXISTS responses_expires ON {s}.responses (expires)",
)

SCHEMA_DONE = "SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = 'responses_expires'"

# One statement for a whole batch: each column travels as one array parameter.
INSERT_USAGE = (
    "INSERT INTO usage ("  # noqa: S608 - names and types are constants
    + ", ".join(f'"{name}"' for name, _, _ in USAGE_COLUMNS)
    + ") SELECT * FROM unnest("
    + ", ".join(f"${i}::{type_}[]" for i, (_, type_, _) in enumerate(USAGE_COLUMNS, 1))
    + ") ON CONFLICT (request_id) DO NOTHING"
)

# Taken by every key write: nextval order must equal commit order, or a reader polling
# keys_changed_since could see seq N+1 committed, move past it, and never see N. The mode
# conflicts with itself and other writers but not with plain SELECTs.
LOCK_KEYS = "LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE"

# Group name -> (SQL expression, UsageRow field); dict order is the row order.
GROUPS = {
    "day": ("to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')", "day"),
    "key": ("key_id", "key_id"),
    "model": ("model", "model"),
}


class PostgresStore:
    def __init__(
        self, dsn: str, schema: str = "ailb", min_size: int = 1, max_size: int = 4
    ) -> None:
        self._dsn = dsn
        self._schema = _quote_ident(schema)
        self._schema_name = schema
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None
        self._wanted = False  # open() was called: later uses connect if it could not
        self._reopening: asyncio.Lock | None = None
        self._reopen_at = 0.0
        self._reopen_error: StoreUnavailable | None = None

    async def open(self) -> None:
        self._wanted = True
        if self._pool is not None:
            return
        with self._errors():
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                server_settings={"search_path": self._schema},
            )
        try:
            with self._errors():
                async with pool.acquire() as conn:
                    await self._create_schema(conn)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        self._wanted = False
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # --- keys -------------------------------------------------------------------------------

    async def insert_key(self, key: ApiKey) -> int:
        seq = await self._write_key(
            "INSERT INTO api_keys (id, seq, doc) VALUES ($1, nextval('api_keys_seq'), $2)"
            " ON CONFLICT (id) DO NOTHING RETURNING seq",
            key,
        )
        if seq is None:
            raise ValueError(f"key {key.id} already exists")
        return seq

    async def update_key(self, key: ApiKey) -> int:
        seq = await self._write_key(
            "UPDATE api_keys SET seq = nextval('api_keys_seq'), doc = $2 WHERE id = $1"
            " RETURNING seq",
            key,
        )
        if seq is None:
            raise KeyError(key.id)
        return seq

    async def _write_key(self, sql: str, key: ApiKey) -> int | None:
        """One key write under LOCK_KEYS; the new change sequence, None when nothing matched."""
        async with self._acquire() as conn, conn.transaction():
            await conn.execute(LOCK_KEYS)
            seq = await conn.fetchval(sql, key.id, _encode_key(key))
        return None if seq is None else int(seq)

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self._acquire() as conn:
            doc = await conn.fetchval("SELECT doc FROM api_keys WHERE id = $1", key_id)
        return None if doc is None else _decode_key(doc)

    async def list_keys(self) -> list[ApiKey]:
        async with self._acquire() as conn:
            rows = await conn.fetch('SELECT doc FROM api_keys ORDER BY id COLLATE "C"')
        return [_decode_key(row[0]) for row in rows]

    async def keys_changed_since(self, seq: int) -> tuple[int, list[ApiKey]]:
        async with self._acquire() as conn:
            rows = await conn.fetch(
                "SELECT seq, doc FROM api_keys WHERE seq > $1 ORDER BY seq", seq
            )
        if not rows:
            return seq, []
        return int(rows[-1][0]), [_decode_key(row[1]) for row in rows]

    # --- usage ledger -----------------------------------------------------------------------

    async def insert_usage(
        self, records: Sequence[UsageRecord], batch: str, encoded: Sequence[bytes] | None = None
    ) -> int:
        # Row per record, each request id once: that makes any batch idempotent, `batch` too.
        if not records:
            return 0
        # Sorted so concurrent batches that share request ids lock them in the same order
        # (ON CONFLICT waits on an uncommitted twin; opposite orders would deadlock).
        ordered = sorted(records, key=lambda r: r.request_id)
        columns = [[getattr(r, name) for r in ordered] for name, _, _ in USAGE_COLUMNS]
        async with self._acquire() as conn:
            status = await conn.execute(INSERT_USAGE, *columns)
        return int(status.split()[-1])  # "INSERT 0 <new rows>"

    async def query_usage(self, query: UsageQuery) -> list[UsageRow]:
        unknown = set(query.group_by) - GROUPS.keys()
        if unknown:
            raise ValueError(f"cannot group usage by {sorted(unknown)}")
        groups = [spec for name, spec in GROUPS.items() if name in query.group_by]
        where, args = _where(query)
        exprs = [expr for expr, _ in groups]
        sql = (
            f"SELECT {''.join(e + ', ' for e in exprs)}count(*), "  # noqa: S608 - constants
            "count(*) FILTER (WHERE status >= 400), "
            "coalesce(sum(prompt_tokens), 0)::bigint, "
            "coalesce(sum(completion_tokens), 0)::bigint, "
            "coalesce(sum(cost_usd), 0)::double precision "
            f"FROM usage{where}"
        )
        if groups:
            # Byte order, as SQLite sorts, whatever the database's collation.
            order = ", ".join(f'{e} COLLATE "C"' for e in exprs)
            args.append(max(query.limit, 0))
            sql += f" GROUP BY {', '.join(exprs)} ORDER BY {order} LIMIT ${len(args)}"
        async with self._acquire() as conn:
            rows = await conn.fetch(sql, *args)
        return [
            usage_row(
                {field: row[i] for i, (_, field) in enumerate(groups)},
                tuple(row)[len(groups) :],
            )
            for row in rows
        ]

    async def spent_since(
        self, since: float, key_id: str | None = None
    ) -> dict[str, tuple[float, int]]:
        sql = (
            "SELECT key_id, sum(cost_usd), sum(prompt_tokens + completion_tokens)::bigint "
            "FROM usage WHERE ts >= $1"
        )
        args: list[Any] = [float(since)]
        if key_id is not None:
            sql += " AND key_id = $2"
            args.append(key_id)
        async with self._acquire() as conn:
            rows = await conn.fetch(sql + " GROUP BY key_id", *args)
        return {row[0]: (float(row[1]), int(row[2])) for row in rows}

    # --- Responses API state ----------------------------------------------------------------

    async def put_responses(self, items: Sequence[StoredResponse]) -> None:
        if not items:
            return
        async with self._acquire() as conn, conn.transaction():
            # Expired documents go as new ones come (the index makes it cheap when none has).
            await conn.execute("DELETE FROM responses WHERE expires <= $1", time.time())
            await conn.executemany(
                "INSERT INTO responses (id, owner, expires, doc) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (id) DO UPDATE SET owner = $2, expires = $3, doc = $4",
                [tuple(item) for item in items],
            )

    async def get_response(self, response_id: str, owner: str, now: float) -> bytes | None:
        async with self._acquire() as conn:
            doc = await conn.fetchval(
                "SELECT doc FROM responses WHERE id = $1 AND owner = $2 AND expires > $3",
                response_id,
                owner,
                now,
            )
        return None if doc is None else bytes(doc)

    async def delete_response(self, response_id: str, owner: str, now: float) -> bool:
        async with self._acquire() as conn:
            status = await conn.execute(
                "DELETE FROM responses WHERE id = $1 AND owner = $2 AND expires > $3",
                response_id,
                owner,
                now,
            )
        return bool(int(status.split()[-1]))

    # --- plumbing ---------------------------------------------------------------------------

    async def _create_schema(self, conn: Any) -> None:
        # Skipped when present, so a role without CREATE rights can use a prepared schema.
        if await conn.fetchval(SCHEMA_DONE, self._schema_name):
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            for statement in SCHEMA:
                await conn.execute(statement.format(s=self._schema))

    async def _reopen(self) -> None:
        """Connect now, for a store whose open() failed (the database was unreachable when the
        gateway started): one attempt at a time, at most one per REOPEN_INTERVAL_S; callers in
        between get the last attempt's StoreUnavailable at once."""
        if self._reopening is None:
            self._reopening = asyncio.Lock()
        if self._reopening.locked() or time.monotonic() < self._reopen_at:
            last = self._reopen_error
            # A fresh exception each time: re-raising one object would grow its traceback.
            raise StoreUnavailable(
                str(last) if last else f"PostgreSQL {_describe(self._dsn)}: not connected yet",
                transient=last.transient if last else True,
            )
        async with self._reopening:
            self._reopen_at = time.monotonic() + REOPEN_INTERVAL_S
            try:
                await self.open()
            except StoreUnavailable as e:
                self._reopen_error = e
                raise
            self._reopen_error = None

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Any]:
        if self._pool is None:
            if not self._wanted:
                raise RuntimeError("PostgresStore is not open")
            await self._reopen()
        with self._errors():
            async with self._pool.acquire() as conn:
                yield conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = _redact(f"{type(exc).__name__}: {exc}", self._dsn)
            # Not chained: the driver's exception is already summarised here, and a
            # traceback must not be a way for connection details to leak.
            raise StoreUnavailable(
                f"PostgreSQL {_describe(self._dsn)}: {reason}",
                transient=not isinstance(exc, CONFIGURATION_ERRORS),
            ) from None


def _where(query: UsageQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, op, value in (
        ("key_id", "=", query.key_id),
        ("model", "=", query.model),
        ("ts", ">=", query.from_ts),
        ("ts", "<", query.to_ts),
    ):
        if value is not None:
            args.append(float(value) if column == "ts" else value)
            clauses.append(f"{column} {op} ${len(args)}")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _describe(dsn: str) -> str:
    """host:port/database of a DSN, without user or password."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "(unparsable DSN)"
    hosts = parts.netloc.rpartition("@")[2] or "localhost"
    if not re.search(r":\d+$", hosts):
        hosts += ":5432"
    database = unquote(parts.path.lstrip("/")) or unquote(parts.username or "") or "postgres"
    return f"{hosts}/{database}"


def _redact(text: str, dsn: str) -> str:
    try:
        parts = urlsplit(dsn)
        query = parse_qsl(parts.query)
    except ValueError:
        return text
    userinfo = parts.netloc.rpartition("@")[0]
    secrets = [userinfo.partition(":")[2]] if ":" in userinfo else []
    secrets += [value for name, value in query if name == "password"]
    for secret in {s for raw in secrets for s in (raw, unquote(raw))}:
        if secret:
            text = text.replace(secret, "***")
    return text


def _encode_key(key: ApiKey) -> str:
    return msgspec.json.encode(key).decode()


def _decode_key(doc: str) -> ApiKey:
    return msgspec.json.decode(doc, type=ApiKey)
