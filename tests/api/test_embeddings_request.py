"""The embeddings face's own pure parts: which bodies it takes (OpenAI's four input shapes) and
refuses naming the field, and the base64 it answers (table-driven)."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np
import pytest

from ailb.api.embeddings import encode_vectors, parse_embedding_request
from ailb.errors import InvalidRequest
from ailb.pipeline.core import embedding_needs


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": "text"},
        {"model": "m", "input": ["a", "b"], "encoding_format": "base64"},
        {"model": "m", "input": [1, 2, 3], "dimensions": 256},
        {"model": "m", "input": [[1, 2], [3]], "user": "u"},
        {"model": "m", "input": "x", "dimensions": 8.0},  # JSON Schema's integer
        {"model": "m", "input": "x", "extra": {"passed": True}},
    ],
)
def test_taken(body: dict[str, Any]) -> None:
    req, raw = parse_embedding_request(json.dumps(body).encode())
    assert req.model == "m" and raw["input"] == body["input"]
    assert raw.get("extra") == body.get("extra")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m", "input": ""}, "input", "invalid_value"),
        ({"model": "m", "input": []}, "input", "invalid_value"),
        ({"model": "m", "input": [""]}, "input", "invalid_value"),
        ({"model": "m", "input": [[1], []]}, "input", "invalid_value"),
        ({"model": "m", "input": [-1]}, "input", "invalid_value"),
        ({"model": "m", "input": [[0], [-1]]}, "input", "invalid_value"),
        ({"model": "m", "input": [True]}, "input", "invalid_value"),
        ({"model": "m", "input": ["a", 1]}, "input", "invalid_value"),
        ({"model": "m", "input": ["a"] * 2049}, "input", "invalid_value"),
        ({"model": "m", "input": None}, "input", "invalid_value"),
        ({"model": "m", "input": 7}, "input", "invalid_value"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format",
         "invalid_value"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions", "invalid_value"),
        ({"model": "m", "input": "x", "dimensions": 20000}, "dimensions", "invalid_value"),
        ({"model": "", "input": "x"}, "model", "invalid_value"),
        ({"input": "x"}, "model", "missing_required_parameter"),
        ({"model": "m"}, "input", "missing_required_parameter"),
    ],
)  # fmt: skip
def test_refused_naming_the_field(body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_embedding_request(json.dumps(body).encode())
    assert (e.value.status, e.value.param, e.value.code) == (400, param, code)


@pytest.mark.parametrize("raw", [b"{nope", b"[1]", b'"x"', b"\xff"])
def test_not_a_json_object(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_embedding_request(raw)
    assert e.value.code == "invalid_json"


@pytest.mark.parametrize(
    ("value", "tokens"),
    [("abcdefgh", 2), (["abc", "defgh"], 3), ([5, 6, 7], 3), ([[1], [2, 3]], 3)],
)
def test_routing_estimate(value: Any, tokens: int) -> None:
    needs = embedding_needs(value)
    assert needs.embedding and needs.prompt_tokens == tokens and needs.max_tokens == 0


def test_base64_is_little_endian_float32_of_lists_and_arrays() -> None:
    floats = [0.5, -1.25, 3.0]
    answer = {
        "data": [
            {"index": 0, "embedding": list(floats)},
            {"index": 1, "embedding": np.array(floats, dtype=np.float32)},
        ]
    }
    out = encode_vectors(answer, True)
    expected = base64.b64encode(struct.pack("<3f", *floats)).decode()
    assert [row["embedding"] for row in out["data"]] == [expected, expected]
    out = encode_vectors({"data": [{"embedding": np.array(floats, dtype=np.float32)}]}, False)
    assert out["data"][0]["embedding"] == floats
