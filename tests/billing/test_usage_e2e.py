"""The usage ledger and budgets through a running gateway (embedded SQLite store)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time

import httpx2
import openai
import pytest

from tests.gateway import create_key
from tests.processes import GatewayProcess

MASTER = "master-key-for-tests-0123456789"
CONFIG = """
deployments:
  - name: mock
    provider: mock
    models: [mock-a, mock-b]
    input_cost_per_1m: 1000
    output_cost_per_1m: 2000
"""


def auth(key: str = MASTER) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def create(url: str, **fields) -> dict:
    return create_key(url, MASTER, "t", **fields)


def usage(url: str, key: str = MASTER, **params) -> httpx2.Response:
    return httpx2.get(url + "/api/usage", params=params, headers=auth(key), timeout=10)


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(CONFIG, {"AILB_MASTER_KEY": MASTER})


def run_traffic(client, model: str, n: int) -> tuple[int, int]:
    """n requests, every other one streamed; the usage the client was told about."""
    prompt = completion = 0
    for i in range(n):
        messages = [{"role": "user", "content": f"question number {i} " + "word " * i}]
        if i % 2:
            stream = client.chat.completions.create(
                model=model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in stream:
                if chunk.usage:
                    prompt += chunk.usage.prompt_tokens
                    completion += chunk.usage.completion_tokens
        else:
            u = client.chat.completions.create(model=model, messages=messages).usage
            prompt += u.prompt_tokens
            completion += u.completion_tokens
    return prompt, completion


def test_ledger_totals_equal_what_clients_received(gw, client_for):
    a, b = create(gw.url), create(gw.url)
    got = {
        (a["id"], "mock-a"): run_traffic(client_for(gw, api_key=a["key"]), "mock-a", 6),
        (a["id"], "mock-b"): run_traffic(client_for(gw, api_key=a["key"]), "mock-b", 3),
        (b["id"], "mock-a"): run_traffic(client_for(gw, api_key=b["key"]), "mock-a", 5),
    }
    r = usage(gw.url, group_by="key,model")
    assert r.status_code == 200, r.text
    rows = {(row["key_id"], row["model"]): row for row in r.json()["data"]}
    for k, (prompt, completion) in got.items():
        row = rows[k]
        assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
        expected_cost = (prompt * 1000 + completion * 2000) / 1e6
        assert row["cost_usd"] == pytest.approx(expected_cost)
    assert rows[(a["id"], "mock-a")]["requests"] == 6
    total = usage(gw.url).json()["data"]
    assert len(total) == 1 and total[0]["requests"] == 14 and total[0]["errors"] == 0


def test_filters_grouping_and_a_key_sees_only_its_own(gw, client_for):
    a, b = create(gw.url), create(gw.url)
    run_traffic(client_for(gw, api_key=a["key"]), "mock-a", 2)
    run_traffic(client_for(gw, api_key=b["key"]), "mock-b", 3)
    with pytest.raises(openai.NotFoundError):
        client_for(gw, api_key=a["key"]).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    rows = usage(gw.url, group_by="day,model").json()["data"]
    assert {(r["day"], r["model"]) for r in rows} == {
        (today, "mock-a"),
        (today, "mock-b"),
        (today, "nope"),
    }
    only_b = usage(gw.url, model="mock-b").json()["data"][0]
    assert only_b["requests"] == 3
    own = usage(gw.url, key=a["key"], group_by="key").json()["data"]
    assert [(r["key_id"], r["requests"], r["errors"]) for r in own] == [(a["id"], 3, 1)]
    r = usage(gw.url, key=a["key"], key_id=b["id"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_your_key"
    future = usage(gw.url, **{"from": str(time.time() + 3600)}).json()["data"]
    assert future[0]["requests"] == 0
    for bad in ({"group_by": "week"}, {"from": "yesterday"}, {"limit": "0"}, {"colour": "x"}):
        r = usage(gw.url, **bad)
        assert r.status_code == 400, bad


def test_budget_stops_the_key_with_a_clear_429(gw, client_for):
    # Each request reserves its worst case at the highest price before it runs: a token per
    # byte of its body, and max_tokens (ailb.ratelimit.reserve).
    made = create(gw.url, budget_usd=0.5, budget_period="day")
    c = client_for(gw, api_key=made["key"])
    spent_by_client = 0.0
    refused = None
    for _ in range(200):
        try:
            u = c.chat.completions.create(
                model="mock-a", messages=[{"role": "user", "content": "a b c"}], max_tokens=5
            ).usage
        except openai.RateLimitError as e:
            refused = e
            break
        spent_by_client += (u.prompt_tokens * 1000 + u.completion_tokens * 2000) / 1e6
    assert refused is not None, "the budget never stopped the key"
    assert refused.body["code"] == "budget_exceeded"
    assert "budget" in refused.message
    # Refused only when what is left is less than one request's reservation: the SDK's body
    # of about 80 bytes * $1000/M + 5 completion tokens * $2000/M, under $0.1.
    assert 0.5 - 0.1 < spent_by_client <= 0.5 + 1e-9
    row = usage(gw.url, key_id=made["id"]).json()["data"][0]
    assert row["cost_usd"] == pytest.approx(spent_by_client)
    # raising the budget lets it go on
    httpx2.patch(gw.url + f"/api/keys/{made['id']}", json={"budget_usd": 1.0}, headers=auth())
    assert c.chat.completions.create(model="mock-a", messages=[{"role": "user", "content": "x"}])


def test_token_budget(gw, client_for):
    made = create(gw.url, token_budget=40, budget_period="total")
    c = client_for(gw, api_key=made["key"])
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(50):
            c.chat.completions.create(
                model="mock-a", messages=[{"role": "user", "content": "a b"}], max_tokens=3
            )
    assert e.value.body["code"] == "budget_exceeded"
    row = usage(gw.url, key_id=made["id"]).json()["data"][0]
    assert row["prompt_tokens"] + row["completion_tokens"] <= 40


def test_budget_survives_a_restart(tmp_path):
    """Spent money is in the ledger: a restarted gateway starts from it, not from zero."""
    cfg = tmp_path / "ailb.yaml"
    cfg.write_text(CONFIG)
    env = {"AILB_MASTER_KEY": MASTER, "AILB_CONFIG": str(cfg), "AILB_DATA_DIR": str(tmp_path)}
    first = GatewayProcess(env, tmp_path / "gw1.log").start()
    try:
        made = create(first.url, budget_usd=0.02, budget_period="month")
        c = openai.OpenAI(base_url=first.url + "/v1", api_key=made["key"], max_retries=0)
        with pytest.raises(openai.RateLimitError):
            for _ in range(100):
                c.chat.completions.create(
                    model="mock-a", messages=[{"role": "user", "content": "a"}], max_tokens=5
                )
    finally:
        first.stop()
    second = GatewayProcess(env, tmp_path / "gw2.log").start()
    try:
        c = openai.OpenAI(base_url=second.url + "/v1", api_key=made["key"], max_retries=0)
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(
                model="mock-a", messages=[{"role": "user", "content": "a"}], max_tokens=5
            )
        assert e.value.body["code"] == "budget_exceeded"
    finally:
        second.stop()


def test_acknowledged_usage_survives_a_crash(tmp_path):
    """SIGKILL right after the answers: every answered request is in the ledger after restart."""
    cfg = tmp_path / "ailb.yaml"
    cfg.write_text(CONFIG)
    env = {"AILB_MASTER_KEY": MASTER, "AILB_CONFIG": str(cfg), "AILB_DATA_DIR": str(tmp_path)}
    gw = GatewayProcess(env, tmp_path / "gw1.log").start()
    try:
        made = create(gw.url)
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key=made["key"], max_retries=0)
        prompt, completion = run_traffic(c, "mock-a", 20)
    finally:
        gw.kill()  # no flush, no shutdown: whatever was only in memory is gone
    again = GatewayProcess(env, tmp_path / "gw2.log").start()
    try:
        row = usage(again.url, key_id=made["id"]).json()["data"][0]
        assert row["requests"] == 20
        assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    finally:
        again.stop()


def test_an_answer_that_cannot_be_recorded_is_withheld(gw, client_for, monkeypatch):
    import errno

    import ailb.spool as spool_module

    c = client_for(gw, api_key=create(gw.url)["key"])
    assert c.chat.completions.create(model="mock-a", messages=[{"role": "user", "content": "x"}])

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "posix_fallocate", no_space)
    gw.call(gw.runtime.usage.sync())  # the spool moves on to a segment that cannot be made
    with pytest.raises(openai.InternalServerError) as e:
        c.chat.completions.create(model="mock-a", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 503 and e.value.body["code"] == "usage_unrecordable"
    assert gw.runtime.usage.disk_failing
    monkeypatch.undo()
    assert c.chat.completions.create(model="mock-a", messages=[{"role": "user", "content": "y"}])
    total = usage(gw.url).json()["data"][0]
    # the withheld request's 503 may be recorded too, once the disk has room again
    assert total["requests"] - total["errors"] == 2


def test_usage_recording_off(gateway_factory, client_for, tmp_path):
    """ENABLE_USAGE=false: no records and no spool, /api/usage says why, budgets still hold."""
    gw = gateway_factory(CONFIG, {"AILB_MASTER_KEY": MASTER, "ENABLE_USAGE": "false"})
    made = create(gw.url, budget_usd=0.5, budget_period="day")
    c = client_for(gw, api_key=made["key"])
    spent = 0.0
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(200):
            u = c.chat.completions.create(
                model="mock-a", messages=[{"role": "user", "content": "a b c"}], max_tokens=5
            ).usage
            spent += (u.prompt_tokens * 1000 + u.completion_tokens * 2000) / 1e6
    assert e.value.body["code"] == "budget_exceeded"
    assert 0.5 - 0.1 < spent <= 0.5 + 1e-9  # as with the ledger on
    r = usage(gw.url)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "usage_disabled"
    data = tmp_path / "ailb_memory"
    assert not (data / "usage-spool").exists()
    with sqlite3.connect(data / "ailb.db") as db:
        assert db.execute("SELECT count(*) FROM usage_records").fetchone() == (0,)
