"""Prices: the library's prices as AILB charges them (the same figures genai-prices computes),
the operator's overrides, the cache of looked-up prices, and the lookup's edge cases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from ailb.billing import catalog
from ailb.billing.catalog import Pricer, Query, library_version, resolve, resolve_here
from ailb.billing.prices import CONFIG, FREE, LOCAL, PARTIAL, UNPRICED, Price, Tier
from ailb.config import DeploymentConfig
from ailb.providers.mock import MockProvider
from ailb.routing.deployment import DeploymentState

# (provider, genai-prices provider id, model, input, cached read, cache written, output)
LIBRARY_CASES = [
    ("openai", "openai", "gpt-4o-mini", 1200, 0, 0, 300),
    ("openai", "openai", "gpt-4o-mini", 5000, 4096, 0, 10),  # cached input is cheaper
    ("openai", "openai", "gpt-4o-2024-08-06", 1000, 0, 0, 1000),  # a dated name matches
    ("openai", "openai", "gpt-5", 10_000, 2_000, 0, 8_000),  # reasoning is output
    ("anthropic", "anthropic", "claude-sonnet-4-5", 1000, 0, 0, 500),
    ("anthropic", "anthropic", "claude-sonnet-4-5", 10_000, 6_000, 2_000, 500),  # writes dearer
    ("anthropic", "anthropic", "claude-sonnet-4-5", 250_000, 0, 0, 1000),  # the long-context tier
    ("anthropic", "anthropic", "claude-sonnet-4-5", 250_000, 100_000, 50_000, 1000),
    ("anthropic", "anthropic", "claude-3-5-haiku-latest", 800, 0, 0, 80),
]


@pytest.fixture(scope="module")
def looked_up() -> dict[str, Price]:
    return resolve_here(Query(p, None, m) for p, _, m, *_ in LIBRARY_CASES)


@pytest.mark.parametrize("case", LIBRARY_CASES, ids=lambda c: f"{c[2]}-{c[3]}-{c[4]}-{c[5]}")
def test_a_request_costs_what_the_library_says(looked_up: dict[str, Price], case: Any) -> None:
    provider, library_id, model, prompt, cached, written, completion = case
    price = looked_up[Query(provider, None, model).key]
    assert price.known and price.source == f"genai-prices {library_version()}"
    usage = Usage(
        input_tokens=prompt,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=completion,
    )
    expected = float(calc_price(usage, model, provider_id=library_id).total_price)
    assert price.cost(prompt, completion, cached, written) == pytest.approx(expected, rel=1e-9)
    assert expected > 0


def test_an_unknown_model_or_provider_has_no_price() -> None:
    found = resolve_here(
        [Query("openai", None, "my-own-finetune-xyz"), Query("anthropic", None, "gpt-4o")]
    )
    assert all(p == UNPRICED and not p.known for p in found.values())


def test_a_url_the_library_knows_prices_as_that_provider() -> None:
    """A Groq URL prices a Groq model at Groq's rates, though the deployment type is openai."""
    groq = Query("openai", "https://api.groq.com/openai/v1", "llama-3.1-8b-instant")
    price = resolve_here([groq])[groq.key]
    expected = calc_price(
        Usage(input_tokens=1_000_000, output_tokens=1_000_000),
        "llama-3.1-8b-instant",
        provider_id="groq",
    )
    assert price.cost(1_000_000, 1_000_000) == pytest.approx(float(expected.total_price))


@pytest.mark.parametrize(
    ("url", "looked_up_as"),
    [
        ("http://127.0.0.1:4321/v1", None),
        ("http://localhost:11434", None),
        ("http://10.1.2.3:8000/v1", None),
        ("https://api.groq.com/openai/v1/", "https://api.groq.com/openai/v1"),
        ("https://api.openai.com/v1/", None),  # the type's own: looked up by type
        (None, None),
    ],
)
def test_local_addresses_are_not_looked_up_by_url(url: str | None, looked_up_as: str | None):
    assert catalog._claimable("openai", url) == looked_up_as


# --- the price itself ------------------------------------------------------------------------

TIERED = Price(1.0, 2.0, 0.1, 1.5, (Tier(100, 3.0, 4.0, 0.3, 4.5),), "lib")


@pytest.mark.parametrize(
    ("price", "args", "usd"),
    [
        (TIERED, (100, 10), (100 * 1.0 + 10 * 2.0) / 1e6),  # at the threshold: base rates
        (TIERED, (101, 10), (101 * 3.0 + 10 * 4.0) / 1e6),  # above: every token at the tier's
        (TIERED, (100, 0, 50, 20), (30 * 1.0 + 50 * 0.1 + 20 * 1.5) / 1e6),
        (TIERED, (200, 0, 150, 50), (150 * 0.3 + 50 * 4.5) / 1e6),
        (TIERED, (10, 0, 99, 99), (10 * 0.1) / 1e6),  # more cached than sent: capped
        (Price(2.0, 8.0), (1000, 100, 500), (1000 * 2.0 + 100 * 8.0) / 1e6),  # read as input
        (FREE, (10**6, 10**6), 0.0),
        (UNPRICED, (10**6, 10**6), 0.0),
    ],
)
def test_cost(price: Price, args: tuple[int, ...], usd: float) -> None:
    assert price.cost(*args) == pytest.approx(usd)


def test_the_operators_rates_override_the_library() -> None:
    both = TIERED.with_overrides(0.5, 0.7)
    assert (both.input, both.output, both.source, both.tiers) == (0.5, 0.7, CONFIG, ())
    assert both.cost(1000, 0, 500) == pytest.approx(1000 * 0.5 / 1e6)  # cached at the input rate
    one = TIERED.with_overrides(None, 9.0)
    assert (one.input, one.cache_read, one.output, one.source) == (1.0, 0.1, 9.0, CONFIG)
    assert TIERED.with_overrides(None, None) is TIERED
    partly = UNPRICED.with_overrides(0.2, None)  # the other rate is unknown: said so
    assert partly.source == PARTIAL and not partly.known
    assert UNPRICED.with_overrides(0.0, 0.0).known  # set to nothing on purpose
    assert FREE.known and FREE.source == LOCAL


def test_the_dearest_rates_bound_a_budget_reservation() -> None:
    assert TIERED.dearest() == (4.5, 4.0)
    assert Price(1.0, 2.0).dearest() == (1.0, 2.0)


def deployment(provider: str = "openai", **kw: Any) -> DeploymentState:
    config = DeploymentConfig(
        name=f"d-{provider}", provider=provider, models=("gpt-4o-mini",), **kw
    )  # type: ignore[arg-type]
    return DeploymentState(config=config, provider=MockProvider(config))


def test_a_deployment_prices_its_models_before_any_lookup_by_its_configuration() -> None:
    assert deployment().price("gpt-4o-mini") == UNPRICED
    assert deployment("mock").price("gpt-4o-mini") == FREE
    assert deployment(input_cost_per_1m=1, output_cost_per_1m=2).price("x").source == CONFIG


# --- lookups and their cache -----------------------------------------------------------------


def test_prices_are_looked_up_once_per_library_version(tmp_path: Path, monkeypatch) -> None:
    path = str(tmp_path / "data" / "prices.json")
    children: list[list[Query]] = []
    real_child = catalog._child

    async def counted(queries: list[Query]) -> dict[str, Price] | None:
        children.append(queries)
        return await real_child(queries)

    monkeypatch.setattr(catalog, "_child", counted)
    mini = Query("openai", None, "gpt-4o-mini")
    local = Query("ollama", None, "llama3.2")
    first = asyncio.run(resolve([mini, local], path))
    assert list(first) == [mini.key]  # local models are never looked up
    assert first[mini.key].known and len(children) == 1
    assert asyncio.run(resolve([mini], path)) == first and len(children) == 1  # cached
    assert (Path(path).stat().st_mode & 0o777) == 0o600
    cached = json.loads(Path(path).read_text())
    cached["version"] = "0.0.0"  # another library version: looked up again
    Path(path).write_text(json.dumps(cached))
    assert asyncio.run(resolve([mini], path)) == first and len(children) == 2


def test_a_failing_lookup_leaves_models_unpriced_and_says_so(tmp_path, monkeypatch, caplog):
    async def broken(queries: list[Query]) -> None:
        return None

    monkeypatch.setattr(catalog, "_child", broken)
    d = deployment()
    asyncio.run(Pricer(str(tmp_path / "p.json"))([d]))
    assert not d.price("gpt-4o-mini").known
    assert any(r.message == "prices_unknown" for r in caplog.records)
    assert d.snapshot()["unpriced_models"] == ["gpt-4o-mini"]


def test_the_pricer_applies_the_library_price_and_the_configured_rates(tmp_path, caplog) -> None:
    plain, cheap = deployment(), deployment("openai", input_cost_per_1m=0.01)
    caplog.set_level("INFO", "ailb.prices")
    asyncio.run(Pricer(str(tmp_path / "p.json"))([plain, cheap, deployment("mock")]))
    (loaded,) = [r for r in caplog.records if r.message == "prices_loaded"]
    assert (loaded.models, loaded.unknown, loaded.local_free, loaded.configured) == (3, 0, 1, 1)
    library = plain.price("gpt-4o-mini")
    assert library.known and library.model == "gpt-4o-mini"
    assert plain.record_usage("gpt-4o-mini", 1_000_000, 0) == pytest.approx(library.input)
    mixed = cheap.price("gpt-4o-mini")
    assert (mixed.input, mixed.output, mixed.source) == (0.01, library.output, CONFIG)


def test_ailb_prices_shows_each_models_price_and_source(tmp_path, monkeypatch, capsys):
    from ailb.cli import main

    (tmp_path / "ailb.yaml").write_text(
        """
deployments:
  - name: oa
    provider: openai
    api_key_env: PRICES_TEST_KEY
    models: [gpt-4o-mini, mystery-model]
  - name: cheap
    provider: openai
    base_url: http://127.0.0.1:9/v1
    models: [gpt-4o-mini]
    input_cost_per_1m: 0.01
    output_cost_per_1m: 0.02
  - name: local
    provider: ollama
    models: [llama3.2]
"""
    )
    monkeypatch.setenv("AILB_CONFIG", str(tmp_path / "ailb.yaml"))
    monkeypatch.setenv("AILB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PRICES_TEST_KEY", "sk-test")
    assert main(["prices", "--json"]) == 0
    rows = {
        (r["deployment"], r["model"]): r
        for r in map(json.loads, capsys.readouterr().out.splitlines())
    }
    assert rows[("oa", "gpt-4o-mini")]["source"] == f"genai-prices {library_version()}"
    assert rows[("oa", "gpt-4o-mini")]["input_per_1m"] > 0
    assert rows[("oa", "mystery-model")]["source"] == "unknown"
    assert (
        rows[("cheap", "gpt-4o-mini")]["input_per_1m"],
        rows[("cheap", "gpt-4o-mini")]["source"],
    ) == (0.01, "config")
    assert rows[("local", "llama3.2")]["source"] == "local"
    assert main(["prices", "mystery-model"]) == 0  # one model, as a table, on every deployment
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["model", "deployment"]
    assert [line.split()[1] for line in table[1:]] == ["oa", "cheap", "local"]
