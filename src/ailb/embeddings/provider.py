"""Embeddings from a configured provider: OpenAI's `/v1/embeddings` or Ollama's `/api/embed`.

Translation is pure functions (request bodies, answer parsers, batching), the same for both
providers but for the wire details in `Wire`. The embedder around them sends the batches of
one `embed()` concurrently (bounded), checks every answer (one finite row per input, one
dimension for all) and hands back float32 rows of unit length, like the local encoder. Any
failure raises `EmbeddingError`, whose text never holds the key: memory and RAG degrade on it.

Tokens are counted with MiniLM's WordPiece tokenizer whichever embedder is configured, so RAG
chunks are the same; they are far below the provider models' own input limits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from ailb.config import Secret, Timeouts
from ailb.embeddings.minilm import Array
from ailb.embeddings.wordpiece import WordPieceCounter
from ailb.providers.base import UpstreamError
from ailb.upstream.egress import Proxy
from ailb.upstream.http import Pool
from ailb.upstream.transport import credentials_in, encode, exchange_timeouts, status_error

# Inputs are cut to this many characters. OpenAI refuses (400) an input over its models' 8192
# tokens instead of truncating, and a refused memory turn would be retried for ever; even at two
# tokens a character this stays under the limit, and it is four times what MiniLM reads.
MAX_INPUT_CHARS = 4096
# OpenAI also refuses a request over 300,000 tokens summed across its inputs.
MAX_BATCH_CHARS = 100_000
DEFAULT_TIMEOUTS = Timeouts(connect=5.0, first_byte=30.0, idle=30.0, total=60.0)
# The probe must fail within the vector store's open timeout (15 s), or the first requests would
# only see a timeout, not the reason.
PROBE_TIMEOUT = 10.0


class EmbeddingError(Exception):
    """The embeddings provider could not give usable vectors (its message is safe to log)."""


# --- requests --------------------------------------------------------------------------------


def _inputs(texts: Sequence[str]) -> list[str]:
    # OpenAI refuses an empty string; one space embeds as "nothing" on both providers.
    return [t[:MAX_INPUT_CHARS] or " " for t in texts]


def openai_request(model: str, texts: Sequence[str], dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": _inputs(texts), "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def ollama_request(model: str, texts: Sequence[str], dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": _inputs(texts), "truncate": True}
    if dimensions is not None:  # honoured by recent Ollama versions; checked in the answer
        body["dimensions"] = dimensions
    return body


def batches(texts: Sequence[str], max_items: int, max_chars: int = MAX_BATCH_CHARS) -> list[range]:
    """Consecutive index ranges of at most `max_items` texts and about `max_chars` characters
    (a single text is never split)."""
    out: list[range] = []
    start = chars = 0
    for i, t in enumerate(texts):
        size = min(len(t), MAX_INPUT_CHARS)
        if i > start and (i - start >= max_items or chars + size > max_chars):
            out.append(range(start, i))
            start, chars = i, 0
        chars += size
    if start < len(texts):
        out.append(range(start, len(texts)))
    return out


# --- answers ---------------------------------------------------------------------------------


class _OpenAIRow(msgspec.Struct):
    index: int
    embedding: list[float]


class _OpenAIAnswer(msgspec.Struct):
    data: list[_OpenAIRow]


class _OllamaAnswer(msgspec.Struct):
    embeddings: list[list[float]]


def _convert(obj: Any, kind: type[Any]) -> Any:
    try:
        return msgspec.convert(obj, kind)
    except msgspec.ValidationError as e:
        raise EmbeddingError(f"unexpected answer: {e}") from None


def _counted(rows: list[list[float]], count: int) -> list[list[float]]:
    if len(rows) != count:
        raise EmbeddingError(f"unexpected answer: {len(rows)} vectors for {count} inputs")
    return rows


def parse_openai(obj: Any, count: int) -> list[list[float]]:
    """The rows of an OpenAI embeddings list, in input order (rows carry their index)."""
    answer: _OpenAIAnswer = _convert(obj, _OpenAIAnswer)
    by_index = {r.index: r.embedding for r in answer.data}
    if sorted(by_index) != list(range(len(answer.data))):
        raise EmbeddingError("unexpected answer: the vectors' indexes are not 0..n-1")
    return _counted([by_index[i] for i in range(len(answer.data))], count)


def parse_ollama(obj: Any, count: int) -> list[list[float]]:
    answer: _OllamaAnswer = _convert(obj, _OllamaAnswer)
    return _counted(answer.embeddings, count)


def unit_rows(rows: list[list[float]], dimensions: int | None) -> Array:
    """(n, d) float32 of unit length; refuses mixed or unexpected sizes, non-finite numbers and
    zero vectors (none has a direction to compare)."""
    sizes = {len(r) for r in rows}
    if len(sizes) > 1:
        raise EmbeddingError(f"unexpected answer: vectors of mixed sizes {sorted(sizes)}")
    size = sizes.pop() if sizes else dimensions or 0
    if size == 0:
        raise EmbeddingError("unexpected answer: empty vectors")
    if dimensions is not None and size != dimensions:
        raise EmbeddingError(
            f"unexpected answer: {size}-dimensional vectors, expected {dimensions}"
        )
    vectors = np.asarray(rows, dtype=np.float64).reshape(len(rows), size)
    if not np.isfinite(vectors).all():
        raise EmbeddingError("unexpected answer: vectors with non-finite numbers")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if len(rows) and not norms.min() > 0:
        raise EmbeddingError("unexpected answer: a zero vector")
    return (vectors / norms).astype(np.float32)  # type: ignore[no-any-return]


# --- the embedder ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wire:
    """One provider's embeddings endpoint."""

    provider: str
    path: str  # after the base URL
    max_batch: int  # most inputs in one call
    request: Callable[[str, Sequence[str], int | None], dict[str, Any]]
    parse: Callable[[Any, int], list[list[float]]]


OPENAI = Wire("openai", "/embeddings", 256, openai_request, parse_openai)
OLLAMA = Wire("ollama", "/api/embed", 64, ollama_request, parse_ollama)
WIRES = {"openai": OPENAI, "ollama": OLLAMA}


class ProviderEmbedder:
    # The chunking limit stays MiniLM's (same tokenizer, same chunks for every embedder).
    max_tokens = 254

    def __init__(
        self,
        wire: Wire,
        base_url: str,
        model: str,
        api_key: Secret | None = None,
        dimensions: int | None = None,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        concurrency: int = 4,
        proxy: Proxy | None = None,
    ) -> None:
        self.wire = wire
        self.model = model
        self.requested_dimensions = dimensions
        # Learned from the first answer when not configured; every later answer must match.
        self.dimensions = dimensions or 0
        # Recorded by RAG collections: another model or size can never read their vectors.
        self.name = f"{wire.provider}:{model}" + (f":{dimensions}d" if dimensions else "")
        self._timeouts = timeouts
        self._key = api_key
        headers = {
            "User-Agent": "ailb",
            "Accept-Encoding": "identity",
            "Content-Type": "application/json",
        }
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._secrets = credentials_in(headers)  # scrubbed from error texts before the cut
        self._pool = Pool(
            base_url,
            name=f"embeddings-{wire.provider}",
            max_connections=concurrency,
            connect_timeout=timeouts.connect,
            proxy=proxy,
        )
        self._head = self._pool.head("POST", wire.path, headers)
        # One embed() of many texts must not take every connection from the others, and
        # ingestion (bulk) never takes the last one: a search's query always finds a slot.
        self._slots = asyncio.Semaphore(concurrency)
        self._bulk_slots = asyncio.Semaphore(max(1, concurrency - 1))
        # An ingestion turn: full calls on every connection ingestion may use.
        self.bulk_slice = wire.max_batch * max(1, concurrency - 1)
        self._counter = WordPieceCounter()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._counter.count_tokens(texts)

    def token_ends(self, text: str) -> list[int] | None:
        return self._counter.token_ends(text)

    async def warm_up(self) -> None:
        """One probe call when the store opens: proves the URL, key and model work, and learns
        the dimension, so a misconfiguration shows as degraded at once."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.embed(["AILB embeddings probe"])
        except TimeoutError:
            raise self._error(f"no answer to the probe within {PROBE_TIMEOUT:g}s") from None

    async def embed(self, texts: Sequence[str], *, bulk: bool = False) -> Array:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        ranges = batches(texts, self.wire.max_batch)
        if len(ranges) == 1:
            return await self._call(texts, bulk)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._call(texts[r.start : r.stop], bulk)) for r in ranges
                ]
        except* EmbeddingError as failed:  # the first failure; the other calls are cancelled
            raise failed.exceptions[0] from None
        return np.concatenate([t.result() for t in tasks])

    async def _call(self, texts: Sequence[str], bulk: bool = False) -> Array:
        body = encode(self.wire.request(self.model, texts, self.requested_dimensions))
        # An embeddings answer is whole, like a non-streamed chat: `total` bounds it.
        first_byte, idle, total = exchange_timeouts(self._timeouts, stream=False)
        async with self._bulk_slots if bulk else contextlib.nullcontext(), self._slots:
            try:
                resp = await self._pool.request(
                    self._head, body, first_byte=first_byte, idle=idle, total=total
                )
                try:
                    failure = None
                    if resp.status >= 300:
                        failure = await status_error(resp, self._secrets)
                    raw = b"" if failure is not None else await resp.read()
                finally:
                    resp.release()
            except UpstreamError as e:
                raise self._error(e.message) from None
        if failure is not None:
            raise self._error(failure.message)
        try:
            obj = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise self._error("the answer is not JSON") from None
        try:
            rows = self.wire.parse(obj, len(texts))
            vectors = unit_rows(rows, self.dimensions or None)
        except EmbeddingError as e:
            raise self._error(str(e)) from None
        if not self.dimensions:
            self.dimensions = vectors.shape[1]
        return vectors

    def _error(self, detail: str) -> EmbeddingError:
        # Upstream messages are scrubbed of key-like text already; a provider echoing a key of
        # another shape must not leak it either.
        if self._key:
            detail = detail.replace(self._key, "[redacted]")
        return EmbeddingError(f"{self.wire.provider} embeddings ({self.model}): {detail}")

    async def close(self) -> None:
        await self._pool.close()
