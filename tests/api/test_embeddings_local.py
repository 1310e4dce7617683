"""AILB's own encoder on POST /v1/embeddings (model all-MiniLM-L6-v2, the local embedder of
memory and RAG): its vectors through the HTTP endpoint, float and base64, against
sentence-transformers' reference vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx2
import numpy as np
import openai
import pytest

from ailb.embeddings.wordpiece import WordPieceCounter

REFERENCE = (
    Path(__file__).resolve().parents[1] / "embeddings" / "fixtures" / "minilm_reference.json"
)
MODEL = "all-MiniLM-L6-v2"
CONFIG = "deployments:\n  - {name: m, provider: mock, models: [mock]}\n"


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    # Without the empty text: the endpoint refuses one, as OpenAI does.
    items = [i for i in json.loads(REFERENCE.read_text())["items"] if i["text"]]
    assert len(items) >= 15
    texts = [i["text"] for i in items]
    return texts, np.array([i["embedding"] for i in items], dtype=np.float64)


def cosines(got: list[list[float]], ref: np.ndarray) -> np.ndarray:
    ours = np.asarray(got, dtype=np.float64)
    return (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))


def test_local_model_matches_the_reference_vectors_float_and_base64(
    gateway_factory, client_for, reference
):
    texts, ref = reference
    gw = gateway_factory(CONFIG)  # memory on (the default): the local embedder is active
    client = client_for(gw, timeout=120)
    # The SDK's default asks for base64 and decodes it; asked explicitly, base64 is left to
    # the caller.
    for fmt in (None, "float", "base64"):
        kw = {"encoding_format": fmt} if fmt else {}
        resp = client.embeddings.create(model=MODEL, input=texts, **kw)
        assert [d.index for d in resp.data] == list(range(len(texts)))
        assert resp.model == MODEL
        vectors = [
            np.frombuffer(base64.b64decode(d.embedding), dtype="<f4")
            if fmt == "base64"
            else d.embedding
            for d in resp.data
        ]
        c = cosines(vectors, ref)
        assert c.min() >= 0.999, (fmt, texts[int(c.argmin())], c.min())
        # Usage in the model's own tokens, with its [CLS] and [SEP], as far as it reads (256).
        expected = sum(min(n + 2, 256) for n in WordPieceCounter().count_tokens(texts))
        assert resp.usage.prompt_tokens == resp.usage.total_tokens == expected
    # One text (the interactive lane) gives the same vector as in a batch.
    one = client.embeddings.create(model=MODEL, input=texts[3], encoding_format="float")
    assert cosines([one.data[0].embedding], ref[3:4])[0] >= 0.999
    # dimensions: the model's own size only.
    client.embeddings.create(model=MODEL, input="x", dimensions=384)
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input="x", dimensions=128)
    assert e.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input=[1, 2, 3])
    assert e.value.body["param"] == "input" and e.value.body["code"] == "unsupported_feature"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input="x", extra_body={"truncate": False})
    assert e.value.body["param"] == "truncate"
    # Counted in the metrics under its own name (it is served, though never routed).
    metrics = httpx2.get(f"{gw.url}/metrics").text
    lines = [line for line in metrics.splitlines() if line.startswith("ailb_requests_total{")]
    assert any(
        'api="embeddings"' in line and 'model="all-MiniLM-L6-v2"' in line for line in lines
    ), lines


def test_without_the_local_embedder_the_model_is_not_served(gateway_factory, client_for):
    gw = gateway_factory(CONFIG, {"ENABLE_MEMORY": "false", "ENABLE_RAG": "false"})
    with pytest.raises(openai.NotFoundError) as e:
        client_for(gw).embeddings.create(model=MODEL, input="x")
    assert e.value.body["code"] == "model_not_found"
