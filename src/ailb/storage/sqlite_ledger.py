"""The embedded usage ledger: records kept whole by the batch, totals kept by the minute.

One table row per request cost SQLite about 6 µs of CPU per request (sixteen bound values, a
multi-row VALUES program, a row and three index entries): the largest single cost of usage
recording, on the one core the gateway has. The ledger is written on every request and read as
totals, so it is kept the way it is used:

- `usage_records`: each batch (one spool segment) as a few rows, one per minute its records
  started in, holding those records (MessagePack arrays: the per-request detail, nothing
  dropped);
- `usage_minutes`: requests, errors, tokens and cost per key, minute and model, added to as
  each batch is written.

A query takes whole minutes from the totals and reads records only for the partial minutes at
its ends, so every answer is exact to the record. A batch is written once: writing the same
segment again (a crash between the commit and deleting the file, or two processes flushing one
orphaned segment) changes nothing.

All functions here run on the store's worker thread, inside its transactions.
"""

from __future__ import annotations

import math
import sqlite3
import struct
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from ailb.billing.records import UsageRecord, encode_record
from ailb.storage.sqlite_rows import insert_rows

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS usage_records (
        minute INTEGER NOT NULL,
        batch TEXT NOT NULL,
        records BLOB NOT NULL,
        PRIMARY KEY (minute, batch)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS usage_minutes (
        key_id TEXT NOT NULL,
        minute INTEGER NOT NULL,
        model TEXT NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        PRIMARY KEY (key_id, minute, model)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS usage_minutes_minute ON usage_minutes (minute)",
)

# Group name -> (SQL expression over usage_minutes, UsageRow field); dict order is the row order.
GROUPS = {
    "day": ("strftime('%Y-%m-%d', minute * 60, 'unixepoch')", "day"),
    "key": ("key_id", "key_id"),
    "model": ("model", "model"),
}
TOTALS = (
    "coalesce(sum(requests), 0), coalesce(sum(errors), 0), coalesce(sum(prompt_tokens), 0), "
    "coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0.0)"
)
ADD_MINUTES = (
    "INSERT INTO usage_minutes VALUES {rows} ON CONFLICT (key_id, minute, model) DO UPDATE SET"
    " requests = requests + excluded.requests, errors = errors + excluded.errors,"
    " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
    " completion_tokens = completion_tokens + excluded.completion_tokens,"
    " cost_usd = cost_usd + excluded.cost_usd"
)
V1_CHUNK = 10_000
TS_MAX = float(2**40)  # year 36812

# MessagePack (records.encode_record): floats as 8 bytes rather than decimal text.
_decode = msgspec.msgpack.Decoder(list[UsageRecord]).decode

Totals = list[Any]  # [requests, errors, prompt tokens, completion tokens, cost]
_ARRAY32 = struct.Struct(">BI")  # MessagePack's array header for any length: 0xdd, the count


def _array(encoded: list[bytes]) -> bytes:
    """A MessagePack array of already encoded elements."""
    return _ARRAY32.pack(0xDD, len(encoded)) + b"".join(encoded)


def insert_batch(
    conn: sqlite3.Connection,
    batch: str,
    records: Sequence[UsageRecord],
    encoded: Sequence[bytes] | None = None,
) -> int:
    """Write one batch inside the caller's transaction; 0 when `batch` was written before.
    `encoded`: the records' MessagePack encodings (the spool's), stored as they are."""
    if not records:
        return 0
    if encoded is None:
        encoded = [encode_record(r) for r in records]
    # Each minute's records as their encodings, then stored as one MessagePack array (a header
    # and the encodings one after the other): nothing is encoded twice.
    by_minute: dict[int, list[bytes]] = {}
    sums: dict[tuple[str, int, str], Totals] = {}
    # A batch is mostly runs of one key and model within one minute: the minute and the totals
    # row are looked up only when the run changes, and a run's totals are summed in local
    # variables (this loop runs once per request). Costs are added in record order, run after
    # run, as a plain loop over the records would.
    minute, lo, hi = 0, 0.0, -1.0  # the current minute and its bounds
    group: list[bytes] = []
    key_id: str | None = None
    model: str | None = None
    run: tuple[str, int, str] | None = None
    n = errors = prompt = completion = 0
    cost = 0.0
    for r, e in zip(records, encoded, strict=True):
        ts = r.ts
        if ts >= hi or ts < lo:
            minute = int(ts // 60)
            lo = minute * 60.0
            hi = lo + 60.0
            group = by_minute.setdefault(minute, [])
            key_id = None  # a new run
        group.append(e)
        if r.key_id != key_id or r.model != model:
            if run is not None:
                sums[run] = [n, errors, prompt, completion, cost]
            key_id, model = r.key_id, r.model
            run = (key_id, minute, model)
            n, errors, prompt, completion, cost = sums.get(run) or (0, 0, 0, 0, 0.0)
        n += 1
        if r.status >= 400:
            errors += 1
        prompt += r.prompt_tokens
        completion += r.completion_tokens
        cost += r.cost_usd
    assert run is not None  # there was a record
    sums[run] = [n, errors, prompt, completion, cost]
    minutes = iter(by_minute.items())
    first, group = next(minutes)
    cur = conn.execute(
        "INSERT OR IGNORE INTO usage_records VALUES (?, ?, ?)", (first, batch, _array(group))
    )
    if cur.rowcount == 0:
        return 0  # the batch is in: its totals were added with it
    for minute, group in minutes:
        conn.execute("INSERT INTO usage_records VALUES (?, ?, ?)", (minute, batch, _array(group)))
    rows = [(k, m, model, *s) for (k, m, model), s in sums.items()]
    insert_rows(conn, ADD_MINUTES, rows, 8)
    return len(records)


def totals(
    conn: sqlite3.Connection,
    groups: Sequence[str],
    key_id: str | None = None,
    model: str | None = None,
    from_ts: float | None = None,
    to_ts: float | None = None,
) -> dict[tuple[Any, ...], Totals]:
    """Group labels (in `groups` order) -> totals of the records with from_ts <= ts < to_ts:
    whole minutes from usage_minutes, the partial minutes at either end from usage_records."""
    # Records are stamped with the clock, so bounds outside [0, TS_MAX] change nothing and are
    # clamped, which keeps the minutes SQLite compares within its integers.
    if from_ts is not None:
        from_ts = min(max(from_ts, 0.0), TS_MAX)
    if to_ts is not None:
        to_ts = min(max(to_ts, 0.0), TS_MAX)
    lo = None if from_ts is None else math.ceil(from_ts / 60)  # first whole minute
    hi = None if to_ts is None else math.floor(to_ts / 60)  # end of the whole minutes
    partial: list[int] = []  # minutes only partly inside [from_ts, to_ts)
    if lo is not None and hi is not None and lo >= hi:
        assert from_ts is not None and to_ts is not None
        partial = list(range(math.floor(from_ts / 60), math.ceil(to_ts / 60)))
        lo = hi = None
        whole = False
    else:
        whole = True
        if lo is not None and lo * 60 != from_ts:
            partial.append(lo - 1)
        if hi is not None and hi * 60 != to_ts:
            partial.append(hi)
    out: dict[tuple[Any, ...], Totals] = {}
    if whole:
        exprs = [GROUPS[g][0] for g in groups]
        where, args = _where(key_id, model, lo, hi)
        sql = f"SELECT {''.join(e + ', ' for e in exprs)}{TOTALS} FROM usage_minutes{where}"  # noqa: S608 - constants
        if exprs:
            sql += " GROUP BY " + ", ".join(exprs)
        for row in conn.execute(sql, args):
            n = len(exprs)
            if row[n]:  # ungrouped sums over no rows: nothing to add
                out[tuple(row[:n])] = list(row[n:])
    for minute in partial:
        _add_records(out, groups, conn, minute, key_id, model, from_ts, to_ts)
    return out


def _where(
    key_id: str | None, model: str | None, lo: int | None, hi: int | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for clause, value in (
        ("key_id = ?", key_id),
        ("model = ?", model),
        ("minute >= ?", lo),
        ("minute < ?", hi),
    ):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _add_records(
    out: dict[tuple[Any, ...], Totals],
    groups: Sequence[str],
    conn: sqlite3.Connection,
    minute: int,
    key_id: str | None,
    model: str | None,
    from_ts: float | None,
    to_ts: float | None,
) -> None:
    for r in records(conn, minute):
        if (
            (key_id is not None and r.key_id != key_id)
            or (model is not None and r.model != model)
            or (from_ts is not None and r.ts < from_ts)
            or (to_ts is not None and r.ts >= to_ts)
        ):
            continue
        labels = tuple(_label(g, r) for g in groups)
        s = out.get(labels)
        if s is None:
            s = out[labels] = [0, 0, 0, 0, 0.0]
        s[0] += 1
        s[1] += r.status >= 400
        s[2] += r.prompt_tokens
        s[3] += r.completion_tokens
        s[4] += r.cost_usd


def records(conn: sqlite3.Connection, minute: int | None = None) -> Iterator[UsageRecord]:
    """The stored records (of the requests that started in `minute`), batch by batch."""
    sql = "SELECT records FROM usage_records"
    args: tuple[int, ...] = ()
    if minute is not None:
        sql, args = sql + " WHERE minute = ?", (minute,)
    for (blob,) in conn.execute(sql, args):
        yield from _decode(blob)


def _label(group: str, r: UsageRecord) -> str:
    if group == "key":
        return r.key_id
    if group == "model":
        return r.model
    return datetime.fromtimestamp(r.ts, UTC).strftime("%Y-%m-%d")


# --- the ledger of earlier versions: one row per request --------------------------------------


def migrate_rows(conn: sqlite3.Connection) -> int:
    """Move a per-row `usage` table (AILB before this ledger) into batches, inside the caller's
    transaction, then drop it; returns how many records moved (0: nothing to migrate)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage'"
    ).fetchone()
    if exists is None:
        return 0
    # The v1 table's columns: fields added to records since then take their defaults.
    fields = UsageRecord.__struct_fields__[: UsageRecord.__struct_fields__.index("instance") + 1]
    columns = ", ".join(f'"{f}"' for f in fields)
    moved = 0
    last = -1
    while True:
        rows = conn.execute(
            f"SELECT rowid, {columns} FROM usage WHERE rowid > ? ORDER BY rowid LIMIT ?",  # noqa: S608 - constants
            (last, V1_CHUNK),
        ).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        moved += insert_batch(conn, f"v1-{rows[0][0]}", list(_records(fields, rows)))
    conn.execute("DROP TABLE usage")
    return moved


def _records(fields: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> Iterable[UsageRecord]:
    for row in rows:
        values = dict(zip(fields, row[1:], strict=True))
        values["estimated"] = bool(values["estimated"])
        values["stream"] = bool(values["stream"])
        yield UsageRecord(**values)
