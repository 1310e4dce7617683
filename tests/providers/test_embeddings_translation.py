"""The embeddings wire formats: OpenAI answers checked and put in order, OpenAI requests to
Ollama's /api/embed and back, the mock's vectors (pure functions, table-driven)."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from typing import Any

import pytest

from ailb.providers.base import UnsupportedFeature, UpstreamError
from ailb.providers.embeddings import (
    input_items,
    input_texts,
    mock_vector,
    ollama_request,
    read_ollama,
    read_openai,
)


@pytest.mark.parametrize(
    ("value", "items", "texts"),
    [
        ("hi", ["hi"], ["hi"]),
        (["a", "b"], ["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]], None),  # one input as its token ids
        ([[1, 2], [3]], [[1, 2], [3]], None),
        ([], [], []),
    ],
)
def test_inputs(value: Any, items: list[Any], texts: list[str] | None) -> None:
    assert input_items(value) == items
    assert input_texts(value) == texts


def row(i: int, v: Any) -> dict[str, Any]:
    return {"object": "embedding", "index": i, "embedding": v}


def b64(v: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()


@pytest.mark.parametrize(
    ("answer", "count", "vectors", "usage"),
    [
        (  # in order, with usage
            {"data": [row(0, [1.0, 0.0]), row(1, [0.0, 1.0])], "model": "m",
             "usage": {"prompt_tokens": 4, "total_tokens": 4}},
            2, [[1.0, 0.0], [0.0, 1.0]], {"prompt_tokens": 4, "total_tokens": 4},
        ),
        (  # out of order: put back by index
            {"data": [row(1, [0.0, 1.0]), row(0, [1.0, 0.0])], "model": "m"},
            2, [[1.0, 0.0], [0.0, 1.0]], None,
        ),
        (  # base64 from a server that ignored encoding_format float
            {"data": [row(0, b64([0.5, -0.25]))], "model": "m"}, 1, [[0.5, -0.25]], None,
        ),
        (  # no index at all: position
            {"data": [{"embedding": [1, 2]}], "model": "m"}, 1, [[1, 2]], None,
        ),
    ],
)  # fmt: skip
def test_openai_answers(
    answer: dict[str, Any], count: int, vectors: list[list[float]], usage: Any
) -> None:
    out = read_openai(answer, count)
    assert [d["embedding"] for d in out["data"]] == vectors
    assert [d["index"] for d in out["data"]] == list(range(count))
    assert out["object"] == "list" and out["model"] == "m"
    assert out.get("usage") == usage


@pytest.mark.parametrize(
    ("answer", "count", "problem"),
    [
        ({"error": "x"}, 1, "not an embeddings list"),
        ({"data": [row(0, [1.0])]}, 2, "1 embeddings for 2 inputs"),
        ({"data": [row(0, [1.0]), row(0, [1.0])]}, 2, "indexes"),
        ({"data": [row(0, [1.0]), row(5, [1.0])]}, 2, "indexes"),
        ({"data": [row(0, [1.0]), row(1, [1.0, 2.0])]}, 2, "differ in size"),
        ({"data": [row(0, [])]}, 1, "not a list of numbers"),
        ({"data": [row(0, ["x"])]}, 1, "other than numbers"),
        ({"data": [row(0, [math.nan])]}, 1, "other than numbers"),
        ({"data": [row(0, "%%%")]}, 1, "not valid base64"),
        ({"data": [row(0, "AAA=")]}, 1, "not float32"),
    ],
)
def test_bad_openai_answers_are_protocol_errors(
    answer: dict[str, Any], count: int, problem: str
) -> None:
    with pytest.raises(UpstreamError) as e:
        read_openai(answer, count)
    assert e.value.kind == "protocol" and problem in e.value.message


@pytest.mark.parametrize(
    ("body", "sent"),
    [
        (
            {"model": "nomic", "input": "hi", "encoding_format": "float"},
            {"model": "nomic", "input": ["hi"], "truncate": True},
        ),
        (
            {"model": "nomic", "input": ["a", "b"], "dimensions": 256, "user": "u1"},
            {"model": "nomic", "input": ["a", "b"], "truncate": True, "dimensions": 256},
        ),
        (  # Ollama's own fields pass, as on chat
            {"model": "n", "input": "x", "truncate": False, "keep_alive": "5m",
             "options": {"num_ctx": 512}},
            {"model": "n", "input": ["x"], "truncate": False, "keep_alive": "5m",
             "options": {"num_ctx": 512}},
        ),
    ],
)  # fmt: skip
def test_ollama_requests(body: dict[str, Any], sent: dict[str, Any]) -> None:
    assert ollama_request(body) == sent


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "n", "input": [1, 2, 3]}, "input"),
        ({"model": "n", "input": [[1, 2], [3]]}, "input"),
        ({"model": "n", "input": "x", "encoding_format": "base64"}, "encoding_format"),
        ({"model": "n", "input": "x", "mystery": 1}, "mystery"),
    ],
)
def test_ollama_refuses_what_it_cannot_do_naming_the_field(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(UnsupportedFeature) as e:
        ollama_request(body)
    assert e.value.param == param and e.value.status == 400
    assert "ollama" in e.value.message


@pytest.mark.parametrize(
    ("reply", "count", "dimensions", "vectors", "usage"),
    [
        (
            {"model": "n", "embeddings": [[0.1, 0.2], [0.3, 0.4]], "prompt_eval_count": 6},
            2, None, [[0.1, 0.2], [0.3, 0.4]], {"prompt_tokens": 6, "total_tokens": 6},
        ),
        ({"model": "n", "embeddings": [[1.0, 0.0]]}, 1, 2, [[1.0, 0.0]], None),
    ],
)  # fmt: skip
def test_ollama_answers(
    reply: dict[str, Any],
    count: int,
    dimensions: int | None,
    vectors: list[list[float]],
    usage: Any,
) -> None:
    out = read_ollama(reply, "public-name", count, dimensions)
    assert [(d["index"], d["embedding"]) for d in out["data"]] == list(enumerate(vectors))
    assert out["model"] == "public-name" and out.get("usage") == usage


@pytest.mark.parametrize(
    ("reply", "count", "dimensions", "error"),
    [
        ({"error": "model not found"}, 1, None, UpstreamError),
        ({"embeddings": [[0.1]]}, 2, None, UpstreamError),
        ({"embeddings": [[0.1], [0.1, 0.2]]}, 2, None, UpstreamError),
        ({"embeddings": [[0.1, 0.2, 0.3]]}, 1, 2, UnsupportedFeature),  # ignored `dimensions`
    ],
)
def test_bad_ollama_answers(
    reply: dict[str, Any], count: int, dimensions: int | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        read_ollama(reply, "n", count, dimensions)


def test_mock_vectors_are_deterministic_unit_vectors() -> None:
    a, b = mock_vector("hello"), mock_vector("hello")
    assert a == b and len(a) == 64
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-9)
    assert mock_vector("other") != a
    assert len(mock_vector([1, 2, 3], 300)) == 300


def test_anthropic_cannot_embed_and_says_which_deployment() -> None:
    from ailb.config import DeploymentConfig, Secret
    from ailb.errors import InvalidRequest
    from ailb.providers.anthropic import AnthropicProvider

    config = DeploymentConfig(name="claude", provider="anthropic", models=("c",))
    provider = AnthropicProvider(config, Secret("sk-ant-test-0123456789"))
    with pytest.raises(InvalidRequest) as e:
        asyncio.run(provider.embed({"model": "c", "input": "x"}))
    assert e.value.param == "model" and "`claude`" in e.value.message
    assert "no embeddings API" in e.value.message
