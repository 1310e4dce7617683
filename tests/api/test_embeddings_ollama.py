"""POST /v1/embeddings to an Ollama deployment (its /api/embed, the fake), with the openai SDK;
and the mock provider's embedding models."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import openai
import pytest

from ailb.providers.embeddings import mock_vector
from tests.fakes.ollama import fake_ollama
from tests.fakes.server import FakeServer, Reply, fake_embedding


@pytest.fixture
def ollama() -> Iterator[FakeServer]:
    server = fake_ollama().start()
    yield server
    server.stop()


def config(url: str) -> str:
    return f"""
deployments:
  - name: local-ollama
    provider: ollama
    base_url: {url}
    models: [llama3.2]
    embedding_models: [nomic-embed-text]
    input_cost_per_1m: 1000
"""


def test_embeddings_through_ollama_float_and_base64_in_order(ollama, gateway_factory, client_for):
    gw = gateway_factory(config(ollama.url))
    client = client_for(gw)
    texts = ["lamp light", "tide tables", "lamp oil prices"]
    for resp in (
        client.embeddings.create(model="nomic-embed-text", input=texts),  # base64
        client.embeddings.create(model="nomic-embed-text", input=texts, encoding_format="float"),
    ):
        assert [d.index for d in resp.data] == [0, 1, 2]
        for d, t in zip(resp.data, texts, strict=True):
            assert np.allclose(d.embedding, fake_embedding(t), atol=1e-6)
        # Ollama's prompt_eval_count is the usage.
        assert resp.usage.prompt_tokens == resp.usage.total_tokens == 7
    sent = ollama.calls("/api/embed")[-1].body
    assert sent == {"model": "nomic-embed-text", "input": texts, "truncate": True}


def test_single_string_dimensions_and_user(ollama, gateway_factory, client_for):
    gw = gateway_factory(config(ollama.url))
    client = client_for(gw)
    resp = client.embeddings.create(
        model="nomic-embed-text", input="lamp", dimensions=16, user="u-1"
    )
    assert len(resp.data) == 1 and len(resp.data[0].embedding) == 16
    sent = ollama.calls("/api/embed")[-1].body
    # `user` goes to the ledger only; dimensions to Ollama, which honours it.
    assert sent == {"model": "nomic-embed-text", "input": ["lamp"], "truncate": True,
                    "dimensions": 16}  # fmt: skip


def test_what_ollama_cannot_do_is_refused_naming_the_field(ollama, gateway_factory, client_for):
    gw = gateway_factory(config(ollama.url))
    client = client_for(gw)
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="nomic-embed-text", input=[[1, 2, 3]])
    assert e.value.body["param"] == "input" and e.value.body["code"] == "unsupported_feature"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="nomic-embed-text", input="x", extra_body={"mystery": 1})
    assert e.value.body["param"] == "mystery"
    assert not ollama.calls("/api/embed")
    # An Ollama too old for `dimensions` answers full-size vectors: refused, not passed off.
    old = ollama.routes[("POST", "/api/embed")]

    async def ignores_dimensions(server, request, reply, body):  # type: ignore[no-untyped-def]
        return await old(
            server, request, reply, {k: v for k, v in body.items() if k != "dimensions"}
        )

    ollama.routes[("POST", "/api/embed")] = ignores_dimensions
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="nomic-embed-text", input="x", dimensions=8)
    assert e.value.body["param"] == "dimensions" and "newer Ollama" in e.value.body["message"]


def test_an_ollama_error_is_passed_back(ollama, gateway_factory, client_for):
    gw = gateway_factory(config(ollama.url))
    ollama.script(Reply(status=404, error={"error": 'model "nomic-embed-text" not found'}))
    with pytest.raises(openai.NotFoundError) as e:
        client_for(gw).embeddings.create(model="nomic-embed-text", input="x")
    assert "not found" in e.value.body["message"]


def test_mock_embedding_models(gateway_factory, client_for):
    gw = gateway_factory(
        "deployments:\n  - {name: m, provider: mock, models: [mock], embedding_models: [emb]}\n"
    )
    resp = client_for(gw).embeddings.create(model="emb", input=["a", "b"], dimensions=12)
    got = np.array([d.embedding for d in resp.data])
    assert np.allclose(got, [mock_vector("a", 12), mock_vector("b", 12)], atol=1e-6)
    assert resp.usage.prompt_tokens == 2


def test_token_ids_refused_by_ollama_go_to_an_openai_deployment_of_the_model(
    ollama, openai_upstream, gateway_factory, client_for
):
    gw = gateway_factory(
        f"""
deployments:
  - name: first-ollama
    provider: ollama
    base_url: {ollama.url}
    embedding_models: [emb]
    priority: 0
  - name: then-openai
    provider: openai
    base_url: {openai_upstream.url}/v1
    embedding_models: [emb]
    priority: 1
""",
        {"ROUTING_STRATEGY": "failover"},
    )
    client = client_for(gw)
    resp = client.embeddings.create(model="emb", input=[[5, 6]], encoding_format="float")
    assert resp.data[0].embedding == fake_embedding("t5 t6")
    assert not ollama.calls("/api/embed")
    assert openai_upstream.calls("/v1/embeddings")[-1].body["input"] == [[5, 6]]
    # Text goes to the first, Ollama.
    client.embeddings.create(model="emb", input="lamp")
    assert len(ollama.calls("/api/embed")) == 1
