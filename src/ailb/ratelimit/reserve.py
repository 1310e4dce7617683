"""What a chat request reserves against its key's limits until it settles: the worst case
(DESIGN §8), so that concurrent requests cannot spend more than a budget holds.

- The prompt: one token per byte of the request body (a token is at least one byte of text in
  the tokenizers in use, byte-level BPE and SentencePiece with byte fallback), except that an
  image costs IMAGE_TOKEN_CEILING whatever the length of its URL or data. Context the gateway
  adds (memory, RAG) is reserved when it is added (`context_bytes`).
- The answer: `n` x the client's `max_tokens` (or `max_completion_tokens`, the larger). Without
  one, as many tokens as the key's limits leave room for (a `Flex` admission), at most the
  smallest `max_output_tokens` of the model's deployments a choice, and the gateway sets the
  upstream's limit to what was granted. The actual figures replace the reservation at settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ailb.ratelimit import Flex
from ailb.routing.deployment import DeploymentState

# The most one image costs a prompt: OpenAI's high-detail images of the gpt-4.1 family
# (1,536 patches x 1.62), Anthropic's 1.15-megapixel images (about 1,600), gpt-4o (765).
IMAGE_TOKEN_CEILING = 2_560
# The fewest completion tokens a choice is granted: below this a request without a limit is
# refused (429) rather than answered with a few words cut off.
FLEX_FLOOR = 64
# What the deployments' own tokens-per-minute gates count for an answer of unknown length.
COMPLETION_ESTIMATE = 256

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class ModelTerms:
    """What the deployments of one model allow and charge, at their dearest or tightest."""

    input_per_token: float  # USD
    output_per_token: float
    max_output: int  # tokens a choice may be granted: the smallest max_output_tokens
    largest_window: int | None  # the largest configured context window (None: none set)


def model_terms(model: str, deployments: Sequence[DeploymentState]) -> ModelTerms:
    windows = [d.config.context_window for d in deployments if d.config.context_window]
    dearest = [d.price(model).dearest() for d in deployments]
    return ModelTerms(
        max(i for i, _ in dearest) / 1e6,
        max(o for _, o in dearest) / 1e6,
        min(d.config.max_output_tokens for d in deployments),
        max(windows) if windows else None,
    )


class TermsCache:
    """ModelTerms by model, for the router index they were read from (a reload or discovery
    makes a new index, and then they are read again)."""

    def __init__(self) -> None:
        self._terms: dict[str, ModelTerms] = {}
        self._index: Any = None

    def get(self, index: dict[str, list[DeploymentState]], model: str) -> ModelTerms | None:
        if index is not self._index:
            self._terms, self._index = {}, index
        terms = self._terms.get(model)
        if terms is None:
            deployments = index.get(model)
            if not deployments:
                return None  # no such model: refused before any cost (and not kept)
            terms = self._terms[model] = model_terms(model, deployments)
        return terms


def prompt_ceiling(messages: Sequence[Any], body_size: int) -> int:
    """The most tokens the request's prompt can cost (see the module's notes)."""
    size = body_size
    for m in messages:
        content = m.content
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "input_image"):
                    image = part.get("image_url")
                    url = image.get("url") if isinstance(image, dict) else image
                    size += IMAGE_TOKEN_CEILING - (len(url) if isinstance(url, str) else 0)
    return max(size, 1)


def context_bytes(before: Sequence[Any], after: Sequence[Any]) -> int:
    """The size of the messages the gateway added to a request (remembered or retrieved
    context): a bound on the tokens they cost, as for the prompt."""
    kept = {id(m) for m in before}
    return sum(len(_encode(m)) for m in after if id(m) not in kept)


@dataclass(frozen=True, slots=True)
class Reservation:
    tokens: int  # the prompt's ceiling, plus n x max_tokens when the request set one
    usd: float
    flex: Flex | None  # no max_tokens: the answer takes what the limits leave room for
    choices: int


def reservation(
    prompt: int,
    max_tokens: int,
    choices: int,
    terms: ModelTerms | None,
    prompt_estimate: int,
    priced: bool,
) -> Reservation:
    """`prompt`: prompt_ceiling(); `max_tokens`: the request's limit (0: none); `choices`: n
    (0: a request answered with no tokens, as embeddings are);
    `prompt_estimate`: the routing estimate of the prompt (what a context window must hold);
    `priced`: the key has a money budget (prices are looked at only then)."""
    input_price = terms.input_per_token if priced and terms is not None else 0.0
    output_price = terms.output_per_token if priced and terms is not None else 0.0
    if max_tokens or terms is None or not choices:  # no choices: no answer (embeddings)
        completion = choices * max_tokens
        usd = input_price * prompt + output_price * completion
        return Reservation(prompt + completion, usd, None, choices)
    each = terms.max_output
    if terms.largest_window is not None:  # an answer no window can hold would be refused
        each = max(1, min(each, terms.largest_window - prompt_estimate))
    flex = Flex(choices * each, choices * min(each, FLEX_FLOOR), choices, output_price)
    return Reservation(prompt, input_price * prompt, flex, choices)
