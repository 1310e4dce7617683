"""Both `Store` engines against the same behavioural tests: SQLite in a temporary directory,
PostgreSQL in a fresh schema. A second store object on the same database stands in for a
second gateway process."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from ailb.auth.keys import ApiKey
from ailb.billing.records import GroupBy, UsageQuery, UsageRecord, UsageRow
from ailb.storage import Store, StoreUnavailable
from ailb.storage.postgres import PostgresStore
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
            assert await store.insert_usage(LEDGER) == len(LEDGER)
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
            await store.insert_usage(LEDGER)
            assert await store.spent_since(0) == {"ka": (2.0, 90), "kb": (3.125, 225)}
            assert await store.spent_since(DAY2) == {"ka": (0.25, 45), "kb": (2.125, 135)}
            assert await store.spent_since(DAY2, key_id="kb") == {"kb": (2.125, 135)}
            assert await store.spent_since(DAY2, key_id="nobody") == {}
            assert await store.spent_since(DAY2 + 7200.5) == {}

    run(scenario())


def test_insert_usage_is_idempotent(make_store: MakeStore) -> None:
    async def scenario() -> None:
        async with opened(make_store, count=2) as (a, b):
            r1, r2, r3, r4 = (record(f"q{i}", DAY1 + i, cost_usd=0.5) for i in range(4))
            assert await a.insert_usage([]) == 0
            assert await a.insert_usage([r1, r2]) == 2
            assert await a.insert_usage([r2, r3]) == 1
            assert await b.insert_usage([r1, r2, r3]) == 0  # another process, same records
            assert await a.insert_usage([r4, r4]) == 1  # a duplicate inside one batch
            # The first write wins; a changed record under a known id is not applied.
            assert await b.insert_usage([record("q0", DAY1, cost_usd=99.0)]) == 0
            assert await b.query_usage(UsageQuery()) == [row(4, 0, 4, 4, 2.0)]

    run(scenario())


def test_a_batch_larger_than_one_statement(make_store: MakeStore) -> None:
    """SQLite takes a batch in multi-row statements of at most ~2,000 rows (its parameter
    limit): a larger one spans several, and a repeat of part of it is still skipped."""

    async def scenario() -> None:
        async with opened(make_store) as (store,):
            batch = [record(f"big{i:05d}", DAY1 + i / 1000, prompt_tokens=i) for i in range(5001)]
            assert await store.insert_usage(batch) == 5001
            assert await store.insert_usage([*batch[4000:], record("new", DAY1)]) == 1
            (total,) = await store.query_usage(UsageQuery())
            assert total.requests == 5002
            assert total.prompt_tokens == sum(range(5001)) + 1

    run(scenario())


def test_concurrent_insert_usage(make_store: MakeStore) -> None:
    tasks, per_task, overlap = 8, 25, 5

    async def scenario() -> None:
        async with opened(make_store, count=2) as (a, b):
            # Neighbouring batches share `overlap` ids and the two stores take turns, so the
            # same request ids race between tasks and between "processes".
            batches = [
                [
                    record(f"c{n:04d}", DAY1 + n, cost_usd=0.25)
                    for n in range(t * (per_task - overlap), t * (per_task - overlap) + per_task)
                ]
                for t in range(tasks)
            ]
            counts = await asyncio.gather(
                *((a if t % 2 else b).insert_usage(batch) for t, batch in enumerate(batches))
            )
            distinct = len({r.request_id for batch in batches for r in batch})
            assert sum(counts) == distinct == tasks * (per_task - overlap) + overlap
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
            await store.insert_usage([record("x", DAY1)])

    run(scenario())
    assert path.is_file()


def test_sqlite_ledger_rows_keep_every_value(tmp_path: Path) -> None:
    """Rows are bound as ints and strs only (bools as 0/1, NULLs as '' turned back by NULLIF):
    what is read back is exactly what was recorded."""
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
    bare = record("bare", DAY1 + 1, deployment=None, user=None, session_id=None, collection=None)

    async def scenario() -> None:
        store = SqliteStore(str(tmp_path / "ledger.db"))
        await store.open()
        try:
            assert await store.insert_usage([full, bare]) == 2
        finally:
            await store.close()

    run(scenario())
    columns = ", ".join(f'"{f}"' for f in UsageRecord.__struct_fields__)
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        rows = db.execute(f"SELECT {columns} FROM usage ORDER BY ts").fetchall()
    assert [UsageRecord(*row) for row in rows] == [full, bare]
