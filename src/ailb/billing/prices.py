"""What a request costs: a price per deployment and model, from the operator's configuration
or, where it sets none, from the `genai-prices` library (ailb.billing.catalog).

A Price is USD per million tokens of each kind: uncached input, cached input read back, input
written to a provider's cache, and output (reasoning tokens are output tokens: every provider
bills them so). Some models charge more for every token of a long request (Anthropic's and
Google's long-context rates): `tiers` hold the whole price from each threshold of input tokens
up, as genai-prices's "cliff" model has it.
"""

from __future__ import annotations

import msgspec

# Where a price came from (`ailb prices`, /api/routing/stats).
CONFIG = "config"
LOCAL = "local"  # a model the operator runs (Ollama, the mock): nothing is billed
UNKNOWN = "unknown"
PARTIAL = "config, partly"  # one rate configured, the other unknown (and $0)
LOCAL_PROVIDERS = frozenset(("ollama", "mock"))  # provider types that run where the operator is


class Tier(msgspec.Struct, frozen=True, array_like=True):
    """The rates of a request with more than `start` input tokens."""

    start: int
    input: float
    output: float
    cache_read: float
    cache_write: float


class Price(msgspec.Struct, frozen=True):
    input: float = 0.0  # USD per 1M uncached input tokens
    output: float = 0.0
    cache_read: float | None = None  # None: as input
    cache_write: float | None = None
    tiers: tuple[Tier, ...] = ()  # ascending by start
    source: str = UNKNOWN  # CONFIG, LOCAL, UNKNOWN or the library and its version
    model: str | None = None  # the library's model the name matched, when it did

    @property
    def known(self) -> bool:
        return self.source not in (UNKNOWN, PARTIAL)

    def cost(self, prompt: int, completion: int, cached: int = 0, written: int = 0) -> float:
        """USD for `prompt` input tokens (of which `cached` were read from the provider's cache
        and `written` written to it) and `completion` output tokens."""
        inp, out = self.input, self.output
        read = inp if self.cache_read is None else self.cache_read
        write = inp if self.cache_write is None else self.cache_write
        if self.tiers and prompt > self.tiers[0].start:
            for tier in reversed(self.tiers):
                if prompt > tier.start:
                    inp, out, read, write = (
                        tier.input,
                        tier.output,
                        tier.cache_read,
                        tier.cache_write,
                    )
                    break
        cached = min(cached, prompt)
        written = min(written, prompt - cached)
        uncached = prompt - cached - written
        return (uncached * inp + cached * read + written * write + completion * out) / 1_000_000

    def dearest(self) -> tuple[float, float]:
        """The most an input and an output token can cost (a budget's reservation)."""
        inputs = [self.input, self.cache_write or 0.0]
        inputs += [max(t.input, t.cache_write) for t in self.tiers]
        return max(inputs), max([self.output, *(t.output for t in self.tiers)])

    def with_overrides(self, input: float | None, output: float | None) -> Price:
        """This price with the operator's own rates where set (tiers no longer apply: the
        configured rate is the rate)."""
        if input is None and output is None:
            return self
        whole = self.known or (input is not None and output is not None)
        return Price(
            self.input if input is None else input,
            self.output if output is None else output,
            self.cache_read if input is None else None,
            self.cache_write if input is None else None,
            (),
            CONFIG if whole else PARTIAL,
            self.model,
        )

    def describe(self) -> dict[str, object]:
        """As shown by `ailb prices` and /api/routing/stats."""
        out: dict[str, object] = {
            "input_per_1m": self.input,
            "output_per_1m": self.output,
            "cache_read_per_1m": self.input if self.cache_read is None else self.cache_read,
            "cache_write_per_1m": self.input if self.cache_write is None else self.cache_write,
            "source": self.source,
        }
        if self.tiers:
            out["tiers"] = [
                {
                    "above_input_tokens": t.start,
                    "input_per_1m": t.input,
                    "output_per_1m": t.output,
                    "cache_read_per_1m": t.cache_read,
                    "cache_write_per_1m": t.cache_write,
                }
                for t in self.tiers
            ]
        if self.model is not None:
            out["matched_model"] = self.model
        return out


FREE = Price(source=LOCAL)
UNPRICED = Price()
