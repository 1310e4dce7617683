"""Budgets hold under concurrency, against an upstream that spends all it is allowed: every
completion as long as the request's limit (or far longer when there is none), every prompt
byte a token. On the embedded stores and on Redis + PostgreSQL (two gateways), the ledger's
total for a key never exceeds its budget (DESIGN §8, issue 18 point 2)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import openai
import pytest

from tests.fakes.openai import fake_openai
from tests.fakes.server import FakeServer, Reply
from tests.gateway import RunningGateway, create_key

MASTER = "master-key-for-budget-tests-0123"
RAMBLE = 16_384  # what a model writes when nothing stops it


def worst_case(body: Any) -> Reply:
    """As long an answer as the request allows, n times; one token per prompt byte."""
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or RAMBLE
    prompt = sum(len(json.dumps(m["content"]).encode()) for m in body["messages"])
    return Reply(text="spent", usage=(prompt, limit * int(body.get("n") or 1)))


@pytest.fixture
def upstream() -> Iterator[FakeServer]:
    server = fake_openai().start()
    server.chooser = worst_case
    yield server
    server.stop()


def config(url: str) -> str:
    return (
        "deployments:\n"
        "  - name: up\n"
        "    provider: openai\n"
        f"    base_url: {url}/v1\n"
        "    models: [gpt-test]\n"
        "    input_cost_per_1m: 2.5\n"
        "    output_cost_per_1m: 10\n"
    )


Gateways = list[RunningGateway]


@pytest.fixture(params=["embedded", "redis+postgres"])
def gateways(request: pytest.FixtureRequest, upstream: Any) -> Gateways:
    env = {"AILB_MASTER_KEY": MASTER}
    if request.param == "embedded":
        return [request.getfixturevalue("gateway_factory")(config(upstream.url), env)]
    redis_url = request.getfixturevalue("redis_url")
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("pg_schema")  # dropped after the gateways stop
    gateway_factory: Callable[..., RunningGateway] = request.getfixturevalue("gateway_factory")
    env |= {
        "REDIS_URL": redis_url,
        "AILB_REDIS_PREFIX": f"ailb-budget-{schema}:",
        "DATABASE_URL": dsn,
        "AILB_DATABASE_SCHEMA": schema,
    }
    return [gateway_factory(config(upstream.url), env) for _ in range(2)]


def spend(gateways: Gateways, key: str, bodies: list[dict[str, Any]]) -> list[Any]:
    """All `bodies` at once, spread over the gateways; each request's outcome: the usage the
    client was told, or the error."""

    def one(i: int) -> Any:
        gw = gateways[i % len(gateways)]
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=30)
        try:
            body = bodies[i]
            if i % 3 == 2:
                usage = None
                for chunk in client.chat.completions.create(
                    **body, stream=True, stream_options={"include_usage": True}
                ):
                    usage = chunk.usage or usage
                return usage
            return client.chat.completions.create(**body).usage
        except openai.APIStatusError as e:
            return e
        finally:
            client.close()

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, range(len(bodies))))


def ledger(gateways: Gateways, key_id: str) -> dict[str, Any]:
    for gw in gateways:
        assert gw.call(gw.runtime.usage.flush())
    gw = gateways[0]
    r = httpx2.get(
        gw.url + "/api/usage",
        params={"key_id": key_id},
        headers={"authorization": f"Bearer {MASTER}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["data"][0])


def ask(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **kw}


def refused_for_budget(outcomes: list[Any]) -> list[Any]:
    refused = [o for o in outcomes if isinstance(o, openai.APIStatusError)]
    for e in refused:
        assert e.status_code == 429 and e.body["code"] == "budget_exceeded", e
    return refused


def test_a_token_budget_holds_against_concurrent_requests_without_max_tokens(
    gateways: Gateways, upstream: FakeServer
) -> None:
    made = create_key(gateways[0].url, MASTER, "tokens", token_budget=20_000)
    outcomes = spend(gateways, made["key"], [ask(f"question {i}") for i in range(30)])
    served = [o for o in outcomes if not isinstance(o, Exception)]
    refused = refused_for_budget(outcomes)
    assert served and refused
    spent = ledger(gateways, made["id"])
    assert spent["prompt_tokens"] + spent["completion_tokens"] <= 20_000, spent
    # Every request that reached the upstream carried the limit the gateway set: the deployment's
    # max_output_tokens at most, under the name an OpenAI-compatible server reads.
    caps = [r.body.get("max_tokens") for r in upstream.requests if r.method == "POST"]
    assert len(caps) == len(served) and all(cap and cap <= 4096 for cap in caps), caps
    assert not any("max_completion_tokens" in r.body for r in upstream.requests if r.body)


def test_a_money_budget_holds_against_many_choices(gateways: Gateways) -> None:
    made = create_key(gateways[0].url, MASTER, "money", budget_usd=0.05)
    bodies = [ask(f"q{i}", n=128 if i % 2 else 4) for i in range(12)]
    bodies += [ask("fixed", n=128, max_tokens=100), ask("fixed", n=2, max_tokens=300)]
    outcomes = spend(gateways, made["key"], bodies)
    refused_for_budget(outcomes)
    assert isinstance(outcomes[1], openai.RateLimitError)  # 128 choices: not 64 tokens each
    spent = ledger(gateways, made["id"])
    assert 0 < spent["cost_usd"] <= 0.05, spent


def test_nothing_left_is_a_clear_429_and_a_raised_budget_serves_again(
    gateways: Gateways,
) -> None:
    gw = gateways[0]
    made = create_key(gw.url, MASTER, "drained", token_budget=3_000)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=made["key"], max_retries=0)
    first = client.chat.completions.with_raw_response.create(**ask("hello"))
    assert first.parse().usage.completion_tokens <= 3_000  # capped at what the budget held
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(**ask("again"))
    assert e.value.body["code"] == "budget_exceeded"
    r = httpx2.patch(
        gw.url + f"/api/keys/{made['id']}",
        json={"token_budget": 10_000},
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 200
    assert client.chat.completions.create(**ask("more")).usage.completion_tokens > 0
    client.close()


def test_remembered_context_is_reserved_too(
    gateway_factory: Callable[..., RunningGateway], upstream: FakeServer
) -> None:
    """Memory adds the session's earlier turns after admission: they cost prompt tokens the
    admission did not see, so they are reserved when added (or the answer's room gives way)."""
    gw = gateway_factory(config(upstream.url), {"AILB_MASTER_KEY": MASTER})
    made = create_key(gw.url, MASTER, "memory", token_budget=12_000)
    session = {"extra_body": {"session_id": "long-story"}}
    fact = "The lighthouse keeper's log, kept for years. " * 60  # about 2,700 bytes
    first = spend([gw], made["key"], [ask(fact, max_tokens=10, **session)])
    assert not isinstance(first[0], Exception), first
    bodies = [
        ask(f"what did the log say, part {i}?", **session, **({"max_tokens": 100} if i % 2 else {}))
        for i in range(8)
    ]
    outcomes = spend([gw], made["key"], bodies)
    refused_for_budget(outcomes)
    spent = ledger([gw], made["id"])
    assert spent["prompt_tokens"] + spent["completion_tokens"] <= 12_000, spent
    sent = [r.body for r in upstream.requests if r.method == "POST"]
    assert any("lighthouse" in m["content"] for b in sent[1:] for m in b["messages"][:-1])
