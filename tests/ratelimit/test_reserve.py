"""What a request reserves (ailb.ratelimit.reserve) and how a Flex grant is sized: pure
functions, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from ailb.api.schemas import ChatMessage
from ailb.config import DeploymentConfig
from ailb.providers.mock import MockProvider
from ailb.ratelimit import Flex, flex_grant
from ailb.ratelimit.reserve import (
    FLEX_FLOOR,
    IMAGE_TOKEN_CEILING,
    ModelTerms,
    Reservation,
    TermsCache,
    context_bytes,
    model_terms,
    prompt_ceiling,
    reservation,
)
from ailb.routing.deployment import DeploymentState

DATA_URL = "data:image/png;base64," + "A" * 50_000
URL = "https://x.test/a.png"


def image(url: str, kind: str = "image_url") -> dict[str, Any]:
    # Chat Completions nests the URL; the Responses API's input_image carries it as it is.
    value: Any = {"url": url} if kind == "image_url" else url
    return {"type": kind, "image_url": value}


@pytest.mark.parametrize(
    ("content", "body_size", "expected"),
    [
        ("hello", 120, 120),  # one token per byte of the body
        ("", 0, 1),  # never nothing
        ([{"type": "text", "text": "hi"}], 300, 300),
        ([image(DATA_URL)], 50_200, 50_200 - len(DATA_URL) + IMAGE_TOKEN_CEILING),
        ([image(URL)], 200, 200 - len(URL) + IMAGE_TOKEN_CEILING),
        ([image(URL, "input_image")], 200, 200 - len(URL) + IMAGE_TOKEN_CEILING),
        ([image(DATA_URL), image(DATA_URL)], 100_300, 100_300 - 2 * len(DATA_URL) + 2 * 2560),
    ],
)
def test_prompt_ceiling(content: Any, body_size: int, expected: int) -> None:
    assert prompt_ceiling([ChatMessage(role="user", content=content)], body_size) == expected


TERMS = ModelTerms(2.5e-6, 10e-6, max_output=4096, largest_window=None)


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "n", "terms", "estimate", "priced", "expected"),
    [
        # a limit: n x max_tokens reserved, priced at the dearest deployment
        (100, 50, 1, TERMS, 25, True, Reservation(150, 100 * 2.5e-6 + 50 * 10e-6, None, 1)),
        (100, 50, 8, TERMS, 25, True, Reservation(500, 100 * 2.5e-6 + 400 * 10e-6, None, 8)),
        (100, 50, 1, TERMS, 25, False, Reservation(150, 0.0, None, 1)),  # no money budget
        # no limit: the answer takes what the limits leave, max_output a choice at most
        (100, 0, 1, TERMS, 25, True, Reservation(100, 2.5e-4, Flex(4096, 64, 1, 10e-6), 1)),
        (100, 0, 3, TERMS, 25, False, Reservation(100, 0.0, Flex(3 * 4096, 3 * 64, 3, 0.0), 3)),
        # ... and what the largest context window holds after the prompt
        (
            100,
            0,
            1,
            ModelTerms(0.0, 0.0, max_output=4096, largest_window=8192),
            6000,
            False,
            Reservation(100, 0.0, Flex(2192, 64, 1, 0.0), 1),
        ),
        (
            100,
            0,
            1,
            ModelTerms(0.0, 0.0, max_output=16, largest_window=None),
            25,
            False,
            Reservation(100, 0.0, Flex(16, 16, 1, 0.0), 1),  # never more than max_output
        ),
        (100, 0, 1, None, 25, True, Reservation(100, 0.0, None, 1)),  # no such model
        # no answer at all (embeddings, choices 0): the prompt alone, never a flex answer
        (100, 0, 0, TERMS, 25, True, Reservation(100, 100 * 2.5e-6, None, 0)),
    ],
)
def test_reservation(
    prompt: int,
    max_tokens: int,
    n: int,
    terms: ModelTerms | None,
    estimate: int,
    priced: bool,
    expected: Reservation,
) -> None:
    got = reservation(prompt, max_tokens, n, terms, estimate, priced)
    assert got.tokens == expected.tokens and got.choices == expected.choices
    assert got.usd == pytest.approx(expected.usd)
    assert got.flex == expected.flex


@pytest.mark.parametrize(
    ("room", "flex", "granted"),
    [
        (10_000, Flex(4096, 64, 1, 0.0), 4096),  # at most `most`
        (1_000, Flex(4096, 64, 1, 0.0), 1_000),  # what is left
        (1_001, Flex(4096, 256, 4, 0.0), 1_000),  # in whole steps (one token a choice)
        (63, Flex(4096, 64, 1, 0.0), 64),  # below the floor: `least`, which will not fit
        (0, Flex(4096, 64, 1, 0.0), 64),
        (-500, Flex(4096, 64, 1, 0.0), 64),
    ],
)
def test_flex_grant(room: int, flex: Flex, granted: int) -> None:
    assert flex_grant(room, flex) == granted
    assert FLEX_FLOOR == 64


def deployment(name: str, **kw: Any) -> DeploymentState:
    cfg = DeploymentConfig(name=name, provider="mock", models=("m",), **kw)
    return DeploymentState(config=cfg, provider=MockProvider(cfg))


def test_model_terms_take_the_dearest_price_and_the_tightest_output() -> None:
    a = deployment("a", input_cost_per_1m=1, output_cost_per_1m=4, max_output_tokens=8192)
    b = deployment("b", input_cost_per_1m=3, output_cost_per_1m=2, context_window=32_000)
    c = deployment("c", max_output_tokens=2048, context_window=128_000)
    assert model_terms("m", [a, b, c]) == ModelTerms(3e-6, 4e-6, 2048, 128_000)
    cache = TermsCache()
    index = {"m": [a, b, c]}
    assert cache.get(index, "m") is cache.get(index, "m")
    assert cache.get(index, "nope") is None
    assert cache.get({"m": [a]}, "m") == model_terms("m", [a])  # a new index: read again


def test_context_bytes_counts_only_what_was_added() -> None:
    before = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    block = {"role": "system", "content": "remembered: é" * 10}
    after = [before[0], block, before[1]]
    assert context_bytes(before, after) == len(
        b'{"role":"system","content":"' + ("remembered: é" * 10).encode() + b'"}'
    )
    assert context_bytes(before, before) == 0
