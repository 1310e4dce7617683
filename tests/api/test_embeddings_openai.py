"""POST /v1/embeddings end to end with the official openai SDK: an OpenAI-format upstream (the
fake), failover, key scopes, usage and cost in the ledger, errors in OpenAI's shape."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx2
import numpy as np
import openai
import pytest

from tests.fakes.server import Reply, fake_embedding
from tests.gateway import create_key

SECRET = "sk-upstream-secret-123456"
ENV = {"UPSTREAM_KEY": SECRET}
MASTER = "master-key-for-tests-0123456789"


def config(*urls: str, extra: str = "") -> str:
    deps = "".join(
        f"""
  - name: up{i}
    provider: openai
    base_url: {url}/v1
    api_key_env: UPSTREAM_KEY
    models: [gpt-test]
    embedding_models: [text-embedding-3-small]
    aliases: {{small: text-embedding-3-small}}
    input_cost_per_1m: 20000
    timeouts: {{connect: 2, first_byte: 2, idle: 2, total: 10}}
{extra}"""
        for i, url in enumerate(urls)
    )
    return f"deployments:{deps}\n"


class Watched:
    """The ledger's recorder, with each record kept for the test to read."""

    def __init__(self, recorder: Any, seen: list[Any]) -> None:
        self.recorder, self.seen = recorder, seen

    def record(self, record: Any) -> bool:
        self.seen.append(record)
        return bool(self.recorder.record(record))


def watch_ledger(gw: Any) -> list[Any]:
    seen: list[Any] = []
    ledger = gw.app.chat.pipeline.ledger
    ledger.usage = Watched(ledger.usage, seen)
    return seen


def test_float_and_default_base64_give_the_same_vectors_in_order(
    openai_upstream, gateway_factory, client_for
):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    texts = ["the lamp is lit", "high tide at noon", "lamp oil"]
    # The SDK asks for base64 unless told otherwise, and decodes it into floats.
    default = client.embeddings.create(model="text-embedding-3-small", input=texts)
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )
    for resp in (default, floats):
        assert [d.index for d in resp.data] == [0, 1, 2]
        for d, t in zip(resp.data, texts, strict=True):
            # float32 on the wire for base64: equal to float32 precision
            assert np.allclose(d.embedding, fake_embedding(t), atol=1e-6)
        assert resp.usage.prompt_tokens == resp.usage.total_tokens == 10  # words
        assert resp.model == "text-embedding-3-small"
    sent = openai_upstream.calls("/v1/embeddings")
    # The upstream is always asked for floats; the gateway encodes base64 itself.
    assert [s.body["encoding_format"] for s in sent] == ["float", "float"]
    assert sent[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert sent[0].body["input"] == texts


def test_base64_is_little_endian_float32_exactly_as_openai(openai_upstream, gateway_factory):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    r = httpx2.post(
        f"{gw.url}/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "lamp", "encoding_format": "base64"},
    )
    assert r.status_code == 200, r.text
    packed = base64.b64decode(r.json()["data"][0]["embedding"])
    vector = fake_embedding("lamp")
    assert packed == struct.pack(f"<{len(vector)}f", *vector)
    # Without encoding_format, floats (OpenAI's default for the API itself).
    r = httpx2.post(
        f"{gw.url}/v1/embeddings", json={"model": "text-embedding-3-small", "input": "lamp"}
    )
    assert r.json()["data"][0]["embedding"] == vector
    # Also without the /v1 prefix (clients configured with a base URL that lacks it).
    r = httpx2.post(f"{gw.url}/embeddings", json={"model": "small", "input": "lamp"})
    assert r.status_code == 200 and r.json()["data"][0]["embedding"] == vector


def test_batch_order_dimensions_token_ids_user_and_aliases(
    openai_upstream, gateway_factory, client_for
):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    # An upstream listing the rows out of order: they come back in input order.
    openai_upstream.script(Reply(reorder=True))
    texts = [f"text number {i}" for i in range(10)]
    resp = client.embeddings.create(model="small", input=texts, dimensions=32, user="u-42")
    assert [d.index for d in resp.data] == list(range(10))
    assert all(len(d.embedding) == 32 for d in resp.data)
    assert np.allclose(resp.data[7].embedding, fake_embedding("text number 7", 32), atol=1e-6)
    sent = openai_upstream.calls("/v1/embeddings")[-1].body
    assert sent["model"] == "text-embedding-3-small"  # the alias resolved
    assert sent["dimensions"] == 32 and sent["user"] == "u-42"
    # Token ids pass through to an OpenAI-format upstream.
    resp = client.embeddings.create(model="small", input=[[5, 6], [7]], encoding_format="float")
    assert [d.embedding for d in resp.data] == [fake_embedding("t5 t6"), fake_embedding("t7")]
    assert openai_upstream.calls("/v1/embeddings")[-1].body["input"] == [[5, 6], [7]]


def test_failover_to_the_second_deployment(gateway_factory, client_for):
    from tests.fakes.openai import fake_openai

    first, second = fake_openai().start(), fake_openai().start()
    try:
        first.default = Reply(status=500, error={"error": {"message": "boom"}})
        gw = gateway_factory(
            config(first.url, second.url),
            {**ENV, "ROUTING_STRATEGY": "failover"},
        )
        resp = client_for(gw).embeddings.create(model="text-embedding-3-small", input=["a b"])
        assert np.allclose(resp.data[0].embedding, fake_embedding("a b"), atol=1e-6)
        assert len(first.calls("/v1/embeddings")) >= 1
        assert len(second.calls("/v1/embeddings")) == 1
        stats = gw.runtime.router.deployments
        assert stats["up0"].errors["http_5xx"] >= 1 and stats["up1"].successes == 1
    finally:
        first.stop()
        second.stop()


def test_wrong_kind_of_model_unknown_model_and_bad_input_are_openai_errors(
    openai_upstream, gateway_factory, client_for
):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="gpt-test", input="x")
    assert e.value.body["code"] == "model_not_supported" and e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="text-embedding-3-small", messages=[{"role": "user", "content": "hi"}]
        )
    assert e.value.body["code"] == "model_not_supported"
    assert "/v1/embeddings" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="nope", input="x")
    assert e.value.body["code"] == "model_not_found"
    for bad, param in (
        ({"model": "small", "input": ""}, "input"),
        ({"model": "small", "input": []}, "input"),
        ({"model": "small", "input": ["a", ""]}, "input"),
        ({"model": "small", "input": [1, "a"]}, "input"),
        ({"model": "small", "input": [[1], [-2]]}, "input"),
        ({"model": "small", "input": ["a"] * 2049}, "input"),
        ({"model": "small", "input": {"a": 1}}, "input"),
        ({"model": "small", "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "small", "input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a"}, "model"),
        ({"model": "small"}, "input"),
    ):
        r = httpx2.post(f"{gw.url}/v1/embeddings", json=bad)
        assert r.status_code == 400, (bad, r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == param, (bad, err)
    r = httpx2.post(f"{gw.url}/v1/embeddings", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert not openai_upstream.calls("/v1/embeddings")  # nothing bad reached the upstream


def test_upstream_refusal_is_passed_back_and_garbage_is_a_502(
    openai_upstream, gateway_factory, client_for
):
    gw = gateway_factory(config(openai_upstream.url), ENV)
    client = client_for(gw)
    openai_upstream.script(
        Reply(
            status=400,
            error={
                "error": {
                    "message": "This model does not support specifying dimensions.",
                    "type": "invalid_request_error",
                    "param": "dimensions",
                    "code": None,
                }
            },
        )
    )
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="small", input="x", dimensions=8)
    assert e.value.body["param"] == "dimensions"
    openai_upstream.script(Reply(garbage=True))
    with pytest.raises(openai.APIStatusError) as e:
        client.embeddings.create(model="small", input="x")
    assert e.value.status_code == 502


def test_key_scopes_usage_and_cost_in_the_ledger(openai_upstream, gateway_factory, client_for):
    gw = gateway_factory(config(openai_upstream.url), {**ENV, "AILB_MASTER_KEY": MASTER})
    chat_only = create_key(gw.url, MASTER, "chat-only", models=["gpt-test"])
    embedder = create_key(gw.url, MASTER, "embedder", models=["text-embedding-3-small"])
    with pytest.raises(openai.PermissionDeniedError) as e:
        client_for(gw, api_key=chat_only["key"]).embeddings.create(
            model="text-embedding-3-small", input="x"
        )
    assert e.value.body["code"] == "model_not_allowed"
    seen = watch_ledger(gw)
    client = client_for(gw, api_key=embedder["key"])
    resp = client.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    assert resp.usage.prompt_tokens == 3
    r = httpx2.get(
        f"{gw.url}/api/usage",
        params={"group_by": "key,model"},
        headers={"authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 200, r.text
    rows = [row for row in r.json()["data"] if row["key_id"] == embedder["id"]]
    (row,) = rows
    assert row["model"] == "text-embedding-3-small"
    assert row["prompt_tokens"] == 3 and row["completion_tokens"] == 0
    assert row["cost_usd"] == pytest.approx(3 * 20000 / 1e6)
    # The record says which face the request came through.
    assert [(r.api, r.status, r.prompt_tokens) for r in seen if r.key_id == embedder["id"]] == [
        ("embeddings", 200, 3)
    ]


def test_limits_and_budgets_hold_embeddings_without_an_answer_limit(
    openai_upstream, gateway_factory, client_for
):
    """A key with a budget and a tokens limit: the request reserves its prompt's ceiling only
    (no answer), is refused once the limit is spent, and no answer limit reaches the upstream."""
    gw = gateway_factory(config(openai_upstream.url), {**ENV, "AILB_MASTER_KEY": MASTER})
    key = create_key(gw.url, MASTER, "limited", budget_usd=5, tpm_limit=400)
    client = client_for(gw, api_key=key["key"])
    resp = client.embeddings.create(model="small", input="one two three")
    assert resp.usage.prompt_tokens == 3
    sent = openai_upstream.calls("/v1/embeddings")[-1].body
    assert "max_completion_tokens" not in sent and "max_tokens" not in sent
    # A body larger than what the minute's tokens allow is refused before the upstream.
    calls = len(openai_upstream.calls("/v1/embeddings"))
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="small", input=["word " * 100])
    assert len(openai_upstream.calls("/v1/embeddings")) == calls
