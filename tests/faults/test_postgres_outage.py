"""PostgreSQL (keys and the usage ledger) down and back, with a throwaway server: requests are
still answered, their usage waits in the durable spool and reaches the ledger once it is back --
every answered request exactly once, even when the gateway dies while the ledger is down."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx2
import openai
import pytest

from tests.faults.services import PostgresServer
from tests.gateway import create_key
from tests.processes import GatewayProcess

MASTER = "master-key-for-fault-tests-0123456789"
SCHEMA = "faults"
CONFIG = """
deployments:
  - name: mock
    provider: mock
    models: [mock-a]
"""


@pytest.fixture
def pg():
    server = PostgresServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def env(pg, tmp_path):
    (tmp_path / "ailb.yaml").write_text(CONFIG)
    return {
        "AILB_MASTER_KEY": MASTER,
        "AILB_CONFIG": str(tmp_path / "ailb.yaml"),
        "AILB_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": pg.dsn,
        "AILB_DATABASE_SCHEMA": SCHEMA,
        "ENABLE_MEMORY": "false",
        "AILB_HEALTH_INTERVAL": "60",
    }


def admin() -> dict[str, str]:
    return {"authorization": f"Bearer {MASTER}"}


def new_key(gw: GatewayProcess) -> str:
    return create_key(gw.url, MASTER, "faults")["key"]


def traffic(client: openai.OpenAI, n: int) -> list[str]:
    """n answered requests, every other one streamed; their request ids (x-request-id)."""
    ids = []
    for i in range(n):
        messages = [{"role": "user", "content": f"request {i}"}]
        if i % 2:
            raw = client.chat.completions.with_raw_response.create(
                model="mock-a", messages=messages, stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        else:
            raw = client.chat.completions.with_raw_response.create(
                model="mock-a", messages=messages
            )
            text = raw.parse().choices[0].message.content
        assert raw.status_code == 200 and text
        ids.append(raw.headers["x-request-id"])
    return ids


async def _ledger(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch(f'SELECT request_id FROM "{SCHEMA}".usage')
    finally:
        await conn.close()
    return [r[0] for r in rows]


def ledger(pg: PostgresServer) -> list[str]:
    return asyncio.run(_ledger(pg.dsn))


def wait_for_ledger(pg: PostgresServer, count: int, timeout: float = 25) -> list[str]:
    deadline = time.monotonic() + timeout
    rows = ledger(pg)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.25)
        rows = ledger(pg)
    return rows


def health(gw: GatewayProcess) -> dict:
    return httpx2.get(gw.url + "/healthz", timeout=10).json()


def wait_until(check, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_usage_is_buffered_while_postgres_is_down_and_flushed_once(pg, env, tmp_path):
    gw = GatewayProcess(env, tmp_path / "gw1.log").start()
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=new_key(gw), max_retries=0)
        answered = traffic(client, 4)
        assert sorted(wait_for_ledger(pg, 4)) == sorted(answered)

        pg.stop()  # immediate: like a crash, connections cut
        down_at = time.monotonic()
        answered += traffic(client, 10)  # answered from the key cache; usage spooled
        assert time.monotonic() - down_at < 10
        assert wait_until(lambda: health(gw)["accounts"].get("usage_ledger", "ok") == "buffering")
        r = httpx2.get(gw.url + "/api/usage", headers=admin(), timeout=10)
        assert r.status_code == 503, r.text

        pg.start()
        rows = wait_for_ledger(pg, len(answered))
        assert sorted(rows) == sorted(answered)  # nothing lost, nothing twice
        assert wait_until(lambda: health(gw)["accounts"].get("usage_ledger", "ok") == "ok")

        # Down again, and this time the gateway dies with the records only in its spool.
        pg.stop()
        answered += traffic(client, 6)
    finally:
        gw.kill()
    pg.start()
    assert len(ledger(pg)) == 14
    again = GatewayProcess(env, tmp_path / "gw2.log").start()  # flushes what gw1 left
    try:
        rows = wait_for_ledger(pg, len(answered))
        assert len(rows) == len(answered) == 20
        assert sorted(rows) == sorted(answered)
        total = httpx2.get(again.url + "/api/usage", headers=admin(), timeout=10).json()
        assert total["data"][0]["requests"] == 20 and total["data"][0]["errors"] == 0
    finally:
        again.stop()


def test_a_gateway_started_while_postgres_is_down_serves_and_recovers(pg, env, tmp_path):
    """Start-up does not depend on the database being up (a restart during a PostgreSQL restart
    must not crash-loop): keys answer 503 key_store_unavailable until it is back, the master key
    is served with its usage spooled, and everything works once it returns, no restart."""
    first = GatewayProcess(env, tmp_path / "gw1.log").start()
    key = new_key(first)
    first.stop()
    pg.stop()

    gw = GatewayProcess(env, tmp_path / "gw2.log").start(timeout=20)
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.InternalServerError) as e:
            traffic(client, 1)
        assert e.value.status_code == 503
        assert e.value.body["code"] == "key_store_unavailable"
        assert e.value.response.headers["retry-after"] == "1"
        report = health(gw)
        assert report["status"] == "degraded"
        assert report["accounts"]["key_store"] == "unavailable"
        assert "key_store_unavailable_at_start" in gw.log()
        admin_client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER, max_retries=0)
        answered = traffic(admin_client, 3)  # no key to look up: served, usage spooled

        pg.start()

        def key_works() -> bool:
            try:
                answered.extend(traffic(client, 1))
            except openai.InternalServerError:
                return False
            return True

        assert wait_until(key_works, timeout=10)
        answered += traffic(client, 2)
        assert wait_until(lambda: health(gw)["status"] == "ok", timeout=15)
        rows = wait_for_ledger(pg, len(answered))
        assert sorted(rows) == sorted(answered)
    finally:
        gw.stop()


def test_a_wrong_database_still_stops_start_up_with_its_name(pg, env, tmp_path):
    """Waiting does not fix a configuration error: start-up fails at once, naming it."""
    env = {**env, "DATABASE_URL": pg.dsn.rsplit("/", 1)[0] + "/no_such_db"}
    started = time.monotonic()
    gw = GatewayProcess(env, tmp_path / "gw.log")
    try:
        with pytest.raises(AssertionError, match="no_such_db"):
            gw.start(timeout=20)
    finally:
        gw.kill()
    assert time.monotonic() - started < 15
