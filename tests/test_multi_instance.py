"""Three gateway processes sharing Redis and PostgreSQL: limits, revocations, the usage ledger
and budgets hold across all of them, not per instance (DESIGN §3, §6)."""

from __future__ import annotations

import asyncio
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import httpx2
import openai
import pytest
import redis

from tests.gateway import create_key
from tests.processes import GatewayProcess

MASTER = "master-key-for-the-cluster-0123456789"
CONFIG = """
deployments:
  - name: mock
    provider: mock
    models: [mock-a]
    input_cost_per_1m: 1000
    output_cost_per_1m: 2000
"""


@pytest.fixture(scope="module")
def cluster(postgres_dsn, redis_url, tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    schema = f"t_{secrets.token_hex(6)}"
    prefix = f"ailb-test-{secrets.token_hex(4)}:"
    (base / "ailb.yaml").write_text(CONFIG)
    gateways = []
    try:
        for i in range(3):
            env = {
                "AILB_MASTER_KEY": MASTER,
                "AILB_CONFIG": str(base / "ailb.yaml"),
                "AILB_DATA_DIR": str(base / f"data{i}"),
                "DATABASE_URL": postgres_dsn,
                "AILB_DATABASE_SCHEMA": schema,
                "REDIS_URL": redis_url,
                "AILB_REDIS_PREFIX": prefix,
                "ENABLE_MEMORY": "false",
                "MODULE_ID": f"ailb-{i}",
            }
            gateways.append(GatewayProcess(env, base / f"gw{i}.log").start())
        yield gateways
    finally:
        for gw in gateways:
            gw.stop()
        r = redis.Redis.from_url(redis_url)
        for k in r.scan_iter(f"{prefix}*"):
            r.delete(k)
        r.close()
        asyncio.run(_drop(postgres_dsn, schema))


async def _drop(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def create(gw: GatewayProcess, **fields) -> dict:
    return create_key(gw.url, MASTER, "cluster", **fields)


def chat(gw: GatewayProcess, key: str, **extra) -> httpx2.Response:
    return httpx2.post(
        gw.url + "/v1/chat/completions",
        json={"model": "mock-a", "messages": [{"role": "user", "content": "hello there"}], **extra},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )


def test_a_60_rpm_key_gets_60_successes_across_three_instances(cluster):
    key = create(cluster[0], rpm_limit=60)["key"]
    started = time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: chat(cluster[i % 3], key), range(180)))
    elapsed = time.monotonic() - started
    assert elapsed < 50  # all inside one window: nothing could have been refilled
    ok = [a for a in answers if a.status_code == 200]
    limited = [a for a in answers if a.status_code == 429]
    assert len(ok) == 60, [a.status_code for a in answers]
    assert len(limited) == 120
    assert all(int(a.headers["retry-after"]) >= 1 for a in limited)
    assert all(a.json()["error"]["code"] == "rate_limit_exceeded" for a in limited)
    # each instance served some of the 60: the limit is shared, not per instance
    served = {a.url.port for a in ok}
    assert served == {gw.port for gw in cluster}


def test_a_revoked_key_is_refused_by_all_within_one_second(cluster):
    made = create(cluster[0])
    for gw in cluster:
        assert chat(gw, made["key"]).status_code == 200
    r = httpx2.delete(
        cluster[0].url + f"/api/keys/{made['id']}",
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 200
    revoked_at = time.monotonic()
    refused_after = {}
    while len(refused_after) < 3 and time.monotonic() - revoked_at < 5:
        for i, gw in enumerate(cluster):
            if i not in refused_after and chat(gw, made["key"]).status_code == 401:
                refused_after[i] = time.monotonic() - revoked_at
        time.sleep(0.01)
    assert sorted(refused_after) == [0, 1, 2], refused_after
    assert max(refused_after.values()) <= 1.0, refused_after


def test_the_ledger_equals_what_the_clients_received(cluster):
    made = create(cluster[0])
    clients = [
        openai.OpenAI(base_url=gw.url + "/v1", api_key=made["key"], max_retries=0) for gw in cluster
    ]
    prompt = completion = 0
    for i in range(45):
        c = clients[i % 3]
        messages = [{"role": "user", "content": "word " * (i + 1)}]
        if i % 2:
            for chunk in c.chat.completions.create(
                model="mock-a",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            ):
                if chunk.usage:
                    prompt += chunk.usage.prompt_tokens
                    completion += chunk.usage.completion_tokens
        else:
            u = c.chat.completions.create(model="mock-a", messages=messages).usage
            prompt += u.prompt_tokens
            completion += u.completion_tokens
    for c in clients:
        c.close()
    deadline = time.monotonic() + 10
    while True:  # the other instances flush their spools every second
        row = httpx2.get(
            cluster[0].url + "/api/usage",
            params={"key_id": made["id"], "group_by": "key,model"},
            headers={"authorization": f"Bearer {MASTER}"},
        ).json()["data"][0]
        if row["requests"] >= 45 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row["requests"] == 45
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    assert row["cost_usd"] == pytest.approx((prompt * 1000 + completion * 2000) / 1e6)


def test_a_budget_exhausted_on_one_instance_stops_the_key_on_all(cluster):
    made = create(cluster[0], budget_usd=0.05, budget_period="day")
    for _ in range(100):
        r = chat(cluster[0], made["key"], max_tokens=5)
        if r.status_code == 429:
            break
        assert r.status_code == 200
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
    for gw in cluster[1:]:
        r = chat(gw, made["key"], max_tokens=5)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "budget_exceeded"
