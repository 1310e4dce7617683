"""Prices out of the box, through a running gateway: deployments configured without prices are
billed at the library's, cost_optimized compares them, USD budgets stop a key, and a model no
one can price is said so."""

from __future__ import annotations

import httpx2
import openai
import pytest
from genai_prices import Usage, calc_price

from tests.gateway import create_key

MASTER = "master-key-for-price-tests-012345"


def config(url: str) -> str:
    return f"""
deployments:
  - name: priced
    provider: openai
    base_url: {url}/v1
    models: [gpt-4o-mini, mystery-model]
  - name: dear
    provider: openai
    base_url: {url}/v1
    models: [gpt-4o-mini]
    input_cost_per_1m: 50
    output_cost_per_1m: 50
  - name: local
    provider: mock
    models: [mock-a]
"""


def library_cost(prompt: int, completion: int) -> float:
    usage = Usage(input_tokens=prompt, output_tokens=completion)
    return float(calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price)


@pytest.fixture
def gw(gateway_factory, openai_upstream, tmp_path):
    env = {
        "AILB_MASTER_KEY": MASTER,
        "ROUTING_STRATEGY": "cost_optimized",
        "AILB_PRICES_CACHE": str(tmp_path / "prices.json"),
    }
    return gateway_factory(config(openai_upstream.url), env)


def admin_get(gw, path: str, **params) -> dict:
    r = httpx2.get(
        gw.url + path, params=params, headers={"authorization": f"Bearer {MASTER}"}, timeout=10
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_unconfigured_prices_come_from_the_library(gw, client_for):
    key = create_key(gw.url, MASTER, "t")
    client = client_for(gw, api_key=key["key"])
    told = [
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {i}"}]
        ).usage
        for i in range(4)
    ]
    prompt = sum(u.prompt_tokens for u in told)
    completion = sum(u.completion_tokens for u in told)
    expected = library_cost(prompt, completion)
    (row,) = admin_get(gw, "/api/usage", group_by="model")["data"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    assert row["cost_usd"] == pytest.approx(expected, rel=1e-6) and expected > 0

    stats = admin_get(gw, "/api/routing/stats")
    deployments = stats["deployments"]
    priced = deployments["priced"]
    # cost_optimized: every request to the cheaper deployment, priced by the library
    assert priced["requests"] == 4 and deployments["dear"]["requests"] == 0
    assert priced["cost_usd"] == pytest.approx(expected, abs=1e-6)
    metrics = httpx2.get(
        gw.url + "/metrics", headers={"authorization": f"Bearer {MASTER}"}, timeout=10
    ).text
    (line,) = [
        m
        for m in metrics.splitlines()
        if m.startswith("ailb_cost_usd_total{") and 'deployment="priced"' in m
    ]
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(expected, rel=1e-6)
    assert priced["prices"]["gpt-4o-mini"]["source"].startswith("genai-prices ")
    assert priced["unpriced_models"] == ["mystery-model"]  # said so, and $0
    assert deployments["dear"]["prices"]["gpt-4o-mini"]["source"] == "config"
    assert deployments["local"]["prices"]["mock-a"]["source"] == "local"


def test_a_usd_budget_stops_a_key_at_library_prices(gateway_factory, openai_upstream, client_for):
    """Unpriced, every request cost $0 and a USD budget never stopped anyone."""
    only_priced = config(openai_upstream.url).split("  - name: dear")[0]
    gw = gateway_factory(only_priced, {"AILB_MASTER_KEY": MASTER})
    key = create_key(gw.url, MASTER, "small", budget_usd=0.00003)
    client = client_for(gw, api_key=key["key"])
    answered = 0
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(30):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "spend something"}],
                max_tokens=5,
            )
            answered += 1
    assert e.value.body["code"] == "budget_exceeded"
    assert answered >= 1
    spent = admin_get(gw, "/api/usage", group_by="key")["data"][0]["cost_usd"]
    assert 0 < spent <= 0.00003
