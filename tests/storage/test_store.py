"""Both `Store` engines against the same behavioural tests: SQLite in a temporary directory,
PostgreSQL in a fresh schema. A second store object on the same database stands in for a
second gateway process."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec
import pytest

from ailb.auth.keys import ApiKey
from ailb.billing.records import GroupBy, UsageQuery, UsageRecord, UsageRow
from ailb.storage import Store, StoredResponse, StoreUnavailable
from ailb.storage import sqlite_ledger as ledger
from ailb.storage.postgres import USAGE_COLUMNS, PostgresStore
from ailb.storage.sqlite import SqliteStore

T = TypeVar("T")
MakeStore = Callable[[], Store]

DAY1 = 1709251200.0  # 2024-03-01T00:00:00Z
DAY2 = DAY1 + 86400  # 2024-03-02T00:00:00Z


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """make_store() -> a new, unopened store on this test's database."""
    if request.param == "sqlite":
        path = str(tmp_path / "data" / "ailb.db")
        return lambda: SqliteStore(path)
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("pg_schema")
    # The session's time zone (UTC+14) must not move a record to another day.
    sep = "&" if "?" in dsn else "?"
    local_dsn = f"{dsn}{sep}timezone=Pacific/Kiritimati"
    return lambda: PostgresStore(local_dsn, schema=schema)


@asynccontextmanager
async def opened(make_store: MakeStore, count: int = 1) -> AsyncIterator[list[Store]]:
    async with AsyncExitStack() as stack:
        stores: list[Store] = []
        for _ in range(count):
            store = make_store()
            await store.open()
            stack.push_async_callback(store.close)
            stores.append(store)
        yield stores


def key(key_id: str, **kw: Any) -> ApiKey:
    fields: dict[str, Any] = {"name": f"key {key_id}", "hash": "h" * 64, "prefix": "sk-ailb-x…"}
    return ApiKey(id=key_id, **{**fields, **kw})


def record(request_id: str, ts: float, key_id: str = "ka", **kw: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "model": "gpt",
        "deployment": "d1",
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "cost_usd": 0.0,
        "latency_ms": 12.5,
        "status": 200,
    }
    return UsageRecord(request_id=request_id, ts=ts, key_id=key_id, **{**fields, **kw})


# --- keys -----------------------------------------------------------------------------------

FULL_KEY = key(
    "00112233aabbccdd",
    models=("gpt-*", "claude-3-5-sonnet"),
    collections=("docs",),
    admin=True,
    rpm_limit=60,
    tpm_limit=10_000,
    user_rpm_limit=6,
    user_tpm_limit=1_000,
    budget_usd=12.75,
    token_budget=1_000_000,
    budget_period="day",
    expires_at=1893456000.5,
    created_at=1709251200.25,
    updated_at=1709251300.0,
    revoked_at=1709251400.0,
    previous_hash="p" * 64,
    previous_expires_at=1709255000.0,
    signing_secret="whsec-ünïcode",
    version=7,
)


def test_key_round_trip(make_store: MakeStore) -> None:
    async def scenario() -> None:
        async with opened(make_store) as (store,):
            plain = key("ffee000000000001")  # every optional field left at its default
            seq1 = await store.insert_key(FULL_KEY)
            seq2 = await store.insert_key(plain)
            assert seq2 > seq1 > 0
            assert await store.get_key(FULL_KEY.id) == FULL_KEY
            assert await store.get_key(plain.id) == plain
            assert await store.get_key("missing") is None
            assert await store.list_keys() == [FULL_KEY, plain]

            changed = msgspec.structs.replace(
                FULL_KEY, models=None, collections=(), revoked_at=None, version=8
            )
            seq3 = await store.update_key(changed)
            assert seq3 > seq2
            assert await store.get_key(FULL_KEY.id) == changed
            assert await store.list_keys() == [changed, plain]

    run(scenario())


def test_duplicate_insert_and_missing_update(make_store: MakeStore) -> None:
    async def scenario() -> None:
        async with opened(make_store) as (store,):
            await store.insert_key(FULL_KEY)
            with pytest.raises(ValueError):
                await store.insert_key(key(FULL_KEY.id, name="impostor"))
            with pytest.raises(KeyError):
                await store.update_key(key("0000000000000000"))
            assert await store.list_keys() == [FULL_KEY]

    run(scenario())


def test_keys_changed_since_sees_another_process(make_store: MakeStore) -> None:
    async def scenario() -> None:
        async with opened(make_store, count=2) as (a, b):
            assert await a.keys_changed_since(0) == (0, [])
            k1, k2 = key("1000000000000000"), key("2000000000000000")

            s1 = await a.insert_key(k1)
            assert await b.keys_changed_since(0) == (s1, [k1])

            k1b = key(k1.id, name="renamed", version=2)
            s2 = await b.update_key(k1b)
            s3 = await b.insert_key(k2)
            assert s3 > s2 > s1
            assert await a.keys_changed_since(s1) == (s3, [k1b, k2])
            assert await a.keys_changed_since(s2) == (s3, [k2])
            # Nothing new: the caller's own sequence comes back.
            assert await a.keys_changed_since(s3) == (s3, [])
            assert await b.keys_changed_since(s3) == (s3, [])

    run(scenario())


def test_key_writes_from_two_processes_get_distinct_increasing_seqs(
    make_store: MakeStore,
) -> None:
    async def scenario() -> None:
        async with opened(make_store, count=2) as (a, b):
            ids = [f"{i:016x}" for i in range(20)]
            seqs = await asyncio.gather(
                *((a if i % 2 else b).insert_key(key(key_id)) for i, key_id in enumerate(ids))
            )
            assert len(set(seqs)) == len(ids)
            top, changed = await b.keys_changed_since(0)
            assert top == max(seqs)
            assert sorted(k.id for k in changed) == ids
            # Reported in sequence order, each with the seq its writer was given.
            by_id = dict(zip(ids, seqs, strict=True))
            assert [by_id[k.id] for k in changed] == sorted(seqs)

    run(scenario())


# --- usage ledger ---------------------------------------------------------------------------

LEDGER = [
    record("r1", DAY1 + 10, "ka", model="gpt", prompt_tokens=10, completion_tokens=5,
           cost_usd=0.5, status=200),
    # Half a second before midnight UTC: still day 1 (already day 2 in most of Asia).
    record("r2", DAY2 - 0.5, "ka", model="claude", prompt_tokens=20, completion_tokens=10,
           cost_usd=1.25, status=500, user="u1", session_id="s1", collection="docs",
           estimated=True, stream=True, deployment=None, instance="i-1"),
    record("r3", DAY2, "ka", model="gpt", prompt_tokens=30, completion_tokens=15,
           cost_usd=0.25, status=200),
    record("r4", DAY2 + 3600, "kb", model="gpt", prompt_tokens=40, completion_tokens=20,
           cost_usd=2.0, status=429),
    record("r5", DAY2 + 7200, "kb", model="claude", prompt_tokens=50, completion_tokens=25,
           cost_usd=0.125, status=200),
    record("r6", DAY1 + 100, "kb", model="gpt", prompt_tokens=60, completion_tokens=30,
           cost_usd=1.0, status=399),
]  # fmt: skip
D1, D2 = "2024-03-01", "2024-03-02"


def row(
    requests: int, errors: int, prompt: int, completion: int, cost: float, **labels: str
) -> UsageRow:
    return UsageRow(
        requests=requests,
        errors=errors,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost,
        **labels,
    )


# Costs are binary fractions, so every sum is exact and rows compare with ==.
GROUPED: list[tuple[tuple[GroupBy, ...], list[UsageRow]]] = [
    ((), [row(6, 2, 210, 105, 5.125)]),
    (("day",), [row(3, 1, 90, 45, 2.75, day=D1), row(3, 1, 120, 60, 2.375, day=D2)]),
    (("key",), [row(3, 1, 60, 30, 2.0, key_id="ka"), row(3, 1, 150, 75, 3.125, key_id="kb")]),
    (
        ("model",),
        [row(2, 1, 70, 35, 1.375, model="claude"), row(4, 1, 140, 70, 3.75, model="gpt")],
    ),
    (
        ("model", "key"),  # rows still ordered key first
        [
            row(1, 1, 20, 10, 1.25, key_id="ka", model="claude"),
            row(2, 0, 40, 20, 0.75, key_id="ka", model="gpt"),
            row(1, 0, 50, 25, 0.125, key_id="kb", model="claude"),
            row(2, 1, 100, 50, 3.0, key_id="kb", model="gpt"),
        ],
    ),
    (
        ("key", "day"),
        [
            row(2, 1, 30, 15, 1.75, day=D1, key_id="ka"),
            row(1, 0, 60, 30, 1.0, day=D1, key_id="kb"),
            row(1, 0, 30, 15, 0.25, day=D2, key_id="ka"),
            row(2, 1, 90, 45, 2.125, day=D2, key_id="kb"),
        ],
    ),
    (
        ("day", "model"),
        [
            row(1, 1, 20, 10, 1.25, day=D1, model="claude"),
            row(2, 0, 70, 35, 1.5, day=D1, model="gpt"),
            row(1, 0, 50, 25, 0.125, day=D2, model="claude"),
            row(2, 1, 70, 35, 2.25, day=D2, model="gpt"),
        ],
    ),
    (
        ("model", "day", "key"),
        [
            row(1, 1, 20, 10, 1.25, day=D1, key_id="ka", model="claude"),
            row(1, 0, 10, 5, 0.5, day=D1, key_id="ka", model="gpt"),
            row(1, 0, 60, 30, 1.0, day=D1, key_id="kb", model="gpt"),
            row(1, 0, 30, 15, 0.25, day=D2, key_id="ka", model="gpt"),
            row(1, 0, 50, 25, 0.125, day=D2, key_id="kb", model="claude"),
            row(1, 1, 40, 20, 2.0, day=D2, key_id="kb", model="gpt"),
        ],
    ),
]

FILTERED: list[tuple[UsageQuery, list[UsageRow]]] = [
    (UsageQuery(key_id="kb"), [row(3, 1, 150, 75, 3.125)]),
    (UsageQuery(key_id="ka", model="gpt"), [row(2, 0, 40, 20, 0.75)]),
    (UsageQuery(from_ts=DAY2), [row(3, 1, 120, 60, 2.375)]),  # r3 sits on the boundary
    (UsageQuery(to_ts=DAY2), [row(3, 1, 90, 45, 2.75)]),
    (UsageQuery(from_ts=DAY1 + 100, to_ts=DAY2), [row(2, 1, 80, 40, 2.25)]),
    (UsageQuery(key_id="nobody"), [UsageRow()]),
    (UsageQuery(key_id="nobody", group_by=("day",)), []),
    (
        UsageQuery(model="gpt", from_ts=DAY2, group_by=("key",)),
        [row(1, 0, 30, 15, 0.25, key_id="ka"), row(1, 1, 40, 20, 2.0, key_id="kb")],
    ),
    (
        UsageQuery(group_by=("day", "key", "model"), limit=2),
        [
            row(1, 1, 20, 10, 1.25, day=D1, key_id="ka", model="claude"),
            row(1, 0, 10, 5, 0.5, day=D1, key_id="ka", model="gpt"),
        ],
    ),
    (UsageQuery(limit=0), [row(6, 2, 210, 105, 5.125)]),  # ungrouped: always one row
]


def test_query_usage_groups_and_filters(make_store: MakeStore) -> None:
    async def scenario() -> None:
        async with opened(make_store) as (store,):
            assert await store.query_usage(UsageQuery()) == [UsageRow()]
            assert await store.insert_usage(LEDGER, "b1") == len(LEDGER)
            for group_by, expected in GROUPED:
                got = await store.query_usage(UsageQuery(group_by=group_by))
                assert got == expected, group_by
            for query, expected in FILTERED:
                assert await store.query_usage(query) == expected, query

    run(scenario())


def test_spent_since(make_store: MakeStore) -> None:
    async def scenario() -> None:
        async with opened(make_store) as (store,):
            assert await store.spent_since(0) == {}
            await store.insert_usage(LEDGER, "b1")
            assert await store.spent_since(0) == {"ka": (2.0, 90), "kb": (3.125, 225)}
            assert await store.spent_since(DAY2) == {"ka": (0.25, 45), "kb": (2.125, 135)}
            assert await store.spent_since(DAY2, key_id="kb") == {"kb": (2.125, 135)}
            assert await store.spent_since(DAY2, key_id="nobody") == {}
            assert await store.spent_since(DAY2 + 7200.5) == {}

    run(scenario())


def test_a_batch_is_written_once(make_store: MakeStore) -> None:
    async def scenario() -> None:
        async with opened(make_store, count=2) as (a, b):
            r1, r2, r3 = (record(f"q{i}", DAY1 + i * 50, cost_usd=0.5) for i in range(3))
            assert await a.insert_usage([], "empty") == 0
            assert await a.insert_usage([r1, r2], "seg-1") == 2
            assert await a.insert_usage([r1, r2], "seg-1") == 0
            assert await b.insert_usage([r1, r2], "seg-1") == 0  # another process
            assert await b.insert_usage([r3], "seg-2") == 1
            # The first write wins: a batch written again with other contents is not applied.
            assert await b.insert_usage([record("q0", DAY1, cost_usd=99.0)], "seg-1") == 0
            assert await b.query_usage(UsageQuery()) == [row(3, 0, 3, 3, 1.5)]
            # Its records are all there, partial minutes included.
            assert await b.query_usage(UsageQuery(from_ts=DAY1 + 1)) == [row(2, 0, 2, 2, 1.0)]

    run(scenario())


def test_postgres_skips_a_request_id_already_stored(postgres_dsn: str, pg_schema: str) -> None:
    """PostgreSQL keeps one row per request: a record is also skipped when it comes again in
    another batch."""

    async def scenario() -> None:
        async with opened(lambda: PostgresStore(postgres_dsn, schema=pg_schema)) as (store,):
            r1, r2, r3 = (record(f"q{i}", DAY1 + i, cost_usd=0.5) for i in range(3))
            assert await store.insert_usage([r1, r2], "seg-1") == 2
            assert await store.insert_usage([r2, r3], "seg-2") == 1
            assert await store.insert_usage([r3, r3], "seg-3") == 0
            assert await store.query_usage(UsageQuery()) == [row(3, 0, 3, 3, 1.5)]

    run(scenario())


def test_postgres_ledger_from_before_the_api_column_gets_it(
    postgres_dsn: str, pg_schema: str
) -> None:
    """A ledger table made before records said which API they came through is given the
    column when a gateway opens it: old rows read as chat, new ones keep theirs."""
    old_columns = ", ".join(
        f'"{name}" {type_} {constraint}'.rstrip()
        for name, type_, constraint in USAGE_COLUMNS
        if name != "api"
    )

    async def scenario() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f'CREATE SCHEMA "{pg_schema}"')
            await conn.execute(f'CREATE TABLE "{pg_schema}".usage ({old_columns})')
            await conn.execute(f'CREATE INDEX usage_key_ts ON "{pg_schema}".usage (key_id, ts)')
            await conn.execute(
                f'INSERT INTO "{pg_schema}".usage VALUES '
                "('old', 1, 'k', 'm', NULL, 1, 1, 0, 1, 200, false, false, NULL, NULL, NULL, '')"
            )
            async with opened(lambda: PostgresStore(postgres_dsn, schema=pg_schema)) as (store,):
                await store.insert_usage([record("new", DAY1, api="responses")], "seg")
            rows = await conn.fetch(f'SELECT request_id, api FROM "{pg_schema}".usage ORDER BY 1')
            assert [tuple(r) for r in rows] == [("new", "responses"), ("old", "chat")]
        finally:
            await conn.close()

    run(scenario())


def test_a_large_batch(make_store: MakeStore) -> None:
    """A batch of a full spool segment: thousands of records over several minutes and keys
    (SQLite adds their totals in multi-row statements of at most 512 rows)."""

    async def scenario() -> None:
        async with opened(make_store) as (store,):
            batch = [
                record(f"big{i:05d}", DAY1 + i / 10, f"k{i % 7}", model=f"m{i % 11}",
                       prompt_tokens=i)
                for i in range(5001)
            ]  # fmt: skip
            assert await store.insert_usage(batch, "big") == 5001
            assert await store.insert_usage(batch, "big") == 0
            (total,) = await store.query_usage(UsageQuery())
            assert total.requests == 5001
            assert total.prompt_tokens == sum(range(5001))
            by_key = await store.query_usage(UsageQuery(group_by=("key", "model")))
            assert len(by_key) == 7 * 11
            assert sum(r.prompt_tokens for r in by_key) == sum(range(5001))

    run(scenario())


def test_concurrent_insert_usage(make_store: MakeStore) -> None:
    """Two processes flushing the same segments at once (an orphaned spool both picked up):
    each batch lands once."""
    batches, per_batch = 8, 25

    async def scenario() -> None:
        async with opened(make_store, count=2) as (a, b):
            segments = [
                [record(f"c{t:02d}{n:03d}", DAY1 + n, cost_usd=0.25) for n in range(per_batch)]
                for t in range(batches)
            ]
            counts = await asyncio.gather(
                *(
                    store.insert_usage(batch, f"seg-{t}")
                    for t, batch in enumerate(segments)
                    for store in (a, b)
                )
            )
            distinct = batches * per_batch
            assert sum(counts) == distinct
            assert await a.query_usage(UsageQuery()) == [
                row(distinct, 0, distinct, distinct, distinct * 0.25)
            ]

    run(scenario())


def test_three_processes_open_a_new_database_at_once(make_store: MakeStore) -> None:
    async def scenario() -> None:
        stores = [make_store() for _ in range(3)]
        results = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
        try:
            assert results == [None, None, None]
            seq = await stores[0].insert_key(key("3000000000000000"))
            assert await stores[2].keys_changed_since(0) == (seq, [key("3000000000000000")])
        finally:
            for s in stores:
                await s.close()

    run(scenario())


def test_unknown_group_is_rejected(make_store: MakeStore) -> None:
    async def scenario() -> None:
        async with opened(make_store) as (store,):
            bad: Any = ("key", "week")
            with pytest.raises(ValueError, match="week"):
                await store.query_usage(UsageQuery(group_by=bad))

    run(scenario())


# --- unavailable databases ------------------------------------------------------------------


def test_unreachable_postgres_is_unavailable_without_the_password() -> None:
    store = PostgresStore("postgresql://u:sekret@127.0.0.1:1/x")
    with pytest.raises(StoreUnavailable) as caught:
        run(store.open())
    message = str(caught.value)
    assert "127.0.0.1:1/x" in message
    assert "sekret" not in message
    assert caught.value.__cause__ is None


def test_missing_postgres_database_is_unavailable_without_the_password(postgres_dsn: str) -> None:
    host = postgres_dsn.split("@", 1)[1].split("/", 1)[0]
    dsn = f"postgresql://postgres:s%40kret@{host}/ailb_no_such_database"
    with pytest.raises(StoreUnavailable) as caught:
        run(PostgresStore(dsn).open())
    message = str(caught.value)
    assert f"{host}/ailb_no_such_database" in message
    assert "kret" not in message


def test_sqlite_under_a_regular_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = str(blocker / "sub" / "ailb.db")
    with pytest.raises(StoreUnavailable, match="not-a-dir"):
        run(SqliteStore(path).open())


def test_sqlite_on_a_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match=str(tmp_path)):
        run(SqliteStore(str(tmp_path)).open())


def test_sqlite_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ailb.db"

    async def scenario() -> None:
        async with opened(lambda: SqliteStore(str(path))) as (store,):
            await store.insert_usage([record("x", DAY1)], "b")

    run(scenario())
    assert path.is_file()


def test_sqlite_ledger_keeps_every_value(tmp_path: Path) -> None:
    """Records are kept whole in their batch: what is read back is exactly what was recorded."""
    full = record(
        "full",
        DAY1,
        model="m",
        deployment="d",
        estimated=True,
        stream=True,
        user="u",
        session_id="s",
        collection="c",
        instance="i",
    )
    bare = record("bare", DAY1 + 61, deployment=None, user=None, session_id=None, collection=None)

    async def scenario() -> None:
        async with opened(lambda: SqliteStore(str(tmp_path / "ledger.db"))) as (store,):
            assert await store.insert_usage([full, bare], "seg") == 2

    run(scenario())
    db = sqlite3.connect(tmp_path / "ledger.db")
    rows = db.execute("SELECT minute, batch FROM usage_records ORDER BY minute").fetchall()
    assert rows == [(DAY1 // 60, "seg"), (DAY1 // 60 + 1, "seg")]
    assert list(ledger.records(db, int(DAY1 // 60))) == [full]
    assert list(ledger.records(db, int(DAY1 // 60) + 1)) == [bare]
    db.close()


V1_SCHEMA = """CREATE TABLE usage (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
    deployment TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, latency_ms REAL NOT NULL, status INTEGER NOT NULL,
    estimated INTEGER NOT NULL, stream INTEGER NOT NULL, "user" TEXT, session_id TEXT,
    collection TEXT, instance TEXT NOT NULL
)"""


def test_sqlite_ledger_of_an_earlier_version_is_migrated(tmp_path: Path) -> None:
    """A database written by AILB before the batched ledger (one row per request) is moved
    into it when the store opens: the same answers, every record kept."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(V1_SCHEMA)
        v1 = UsageRecord.__struct_fields__[:16]  # up to `instance`
        columns = ", ".join(f'"{f}"' for f in v1)
        marks = ", ".join("?" * len(v1))
        db.executemany(
            f"INSERT INTO usage ({columns}) VALUES ({marks})",
            [msgspec.structs.astuple(r)[:16] for r in LEDGER],
        )
    db.close()

    async def scenario() -> None:
        async with opened(lambda: SqliteStore(str(path))) as (store,):
            for group_by, expected in GROUPED:
                assert await store.query_usage(UsageQuery(group_by=group_by)) == expected
            for query, expected in FILTERED:
                assert await store.query_usage(query) == expected, query
        async with opened(lambda: SqliteStore(str(path))) as (store,):  # migrated once
            assert await store.query_usage(UsageQuery()) == [row(6, 2, 210, 105, 5.125)]

    run(scenario())
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'usage'").fetchone() is None
        kept = list(ledger.records(db))
    db.close()
    assert sorted(kept, key=lambda r: r.request_id) == LEDGER  # r1..r6


def test_ledger_totals_match_the_records_at_any_bounds(make_store: MakeStore) -> None:
    """Whatever the bounds -- whole minutes, partial ones, both inside one minute -- a query
    adds up exactly the records with from_ts <= ts < to_ts (against a sum over the records)."""
    rng = random.Random(7)
    base = DAY2 - 600.0
    records = [
        record(f"x{i:04d}", base + rng.randrange(0, 1200 * 4) / 4, rng.choice(["ka", "kb"]),
               model=rng.choice(["gpt", "claude"]), prompt_tokens=rng.randrange(100),
               completion_tokens=rng.randrange(100), cost_usd=rng.randrange(64) / 64,
               status=rng.choice([200, 200, 429]))
        for i in range(400)
    ]  # fmt: skip
    bounds = [None, base, base + 59.75, base + 60, base + 61.5, DAY2, DAY2 + 0.25, base + 1200]
    bounds += [base + rng.randrange(0, 1200 * 4) / 4 for _ in range(6)]
    bounds += [-3.1e257, -1.0, 0.0, 4.2e-73, 1e300]  # any finite number is a valid bound

    def expected(q: UsageQuery) -> list[UsageRow]:
        inside = [
            r
            for r in records
            if (q.from_ts is None or r.ts >= q.from_ts)
            and (q.to_ts is None or r.ts < q.to_ts)
            and (q.key_id is None or r.key_id == q.key_id)
        ]
        groups: dict[tuple[str, ...], list[UsageRecord]] = {}
        for r in inside:
            day = time.strftime("%Y-%m-%d", time.gmtime(r.ts))
            labels = tuple(
                {"day": day, "key": r.key_id, "model": r.model}[g]
                for g in ("day", "key", "model")
                if g in q.group_by
            )
            groups.setdefault(labels, []).append(r)
        if not q.group_by:
            groups.setdefault((), [])
        out = []
        names = [g for g in ("day", "key", "model") if g in q.group_by]
        for labels, rs in sorted(groups.items()):
            named = dict(zip(names, labels, strict=True))
            out.append(
                UsageRow(
                    day=named.get("day"),
                    key_id=named.get("key"),
                    model=named.get("model"),
                    requests=len(rs),
                    errors=sum(r.status >= 400 for r in rs),
                    prompt_tokens=sum(r.prompt_tokens for r in rs),
                    completion_tokens=sum(r.completion_tokens for r in rs),
                    cost_usd=sum(r.cost_usd for r in rs),
                )
            )
        return out

    async def scenario() -> None:
        async with opened(make_store) as (store,):
            for n in range(0, len(records), 97):  # several batches, minutes split between them
                await store.insert_usage(records[n : n + 97], f"seg-{n}")
            for lo in bounds:
                for hi in bounds:
                    for key_id, group_by in ((None, ()), ("kb", ("day", "model"))):
                        q = UsageQuery(from_ts=lo, to_ts=hi, key_id=key_id, group_by=group_by)
                        assert await store.query_usage(q) == expected(q), q
            spent = await store.spent_since(base + 61.5, key_id="ka")
            (want,) = expected(UsageQuery(from_ts=base + 61.5, key_id="ka"))
            assert spent == {"ka": (want.cost_usd, want.prompt_tokens + want.completion_tokens)}

    run(scenario())


def test_stored_responses_by_owner_until_they_expire(make_store: MakeStore) -> None:
    """Responses API state: a document is found by its owner only, until it expires; delete
    says whether there was one; expired documents go when new ones are stored."""

    async def scenario() -> None:
        async with opened(make_store, 2) as (store, other):
            now = time.time()
            await store.put_responses(
                [
                    StoredResponse("resp_1", "alice", now + 60, b'{"a":1}'),
                    StoredResponse("resp_old", "alice", now - 1, b"{}"),
                ]
            )
            assert await other.get_response("resp_1", "alice", now) == b'{"a":1}'
            assert await store.get_response("resp_1", "bob", now) is None
            assert await store.get_response("resp_1", "alice", now + 61) is None
            assert await store.get_response("resp_old", "alice", now) is None
            assert not await store.delete_response("resp_1", "bob", now)
            await store.put_responses([StoredResponse("resp_1", "alice", now + 60, b'{"a":2}')])
            assert await store.get_response("resp_1", "alice", now) == b'{"a":2}'
            assert await other.delete_response("resp_1", "alice", now)
            assert not await store.delete_response("resp_1", "alice", now)
            assert await store.get_response("resp_1", "alice", now) is None
            # The expired one went when a document was stored after it expired.
            assert not await store.delete_response("resp_old", "alice", now - 2)

    run(scenario())


def test_postgres_schema_from_before_stored_responses_gets_them(
    postgres_dsn: str, pg_schema: str
) -> None:
    """A schema made by a version without the responses table is completed on open."""

    async def scenario() -> None:
        async with opened(lambda: PostgresStore(postgres_dsn, schema=pg_schema)):
            pass
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f'DROP TABLE "{pg_schema}".responses')
        finally:
            await conn.close()
        async with opened(lambda: PostgresStore(postgres_dsn, schema=pg_schema)) as (store,):
            await store.put_responses([StoredResponse("resp_1", "o", time.time() + 60, b"{}")])
            assert await store.get_response("resp_1", "o", time.time()) == b"{}"

    run(scenario())
