"""Embeddings in the gateway's wire format (OpenAI's create-embeddings), and the translation to
and from Ollama's `/api/embed`: pure functions, tested table-driven.

A provider's `embed(body)` takes an OpenAI embeddings body (`input`, `model`, `dimensions`,
`user`; `encoding_format` is always `float` by then: the gateway encodes base64 itself) and
returns an OpenAI `list` of `embedding` objects in input order, with float vectors, and `usage`
only when the upstream reported it.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from ailb.providers.base import UnsupportedFeature, UpstreamError

# An OpenAI embeddings input: a string, a list of strings, a list of token ids, or a list of
# lists of token ids.
Input = str | list[Any]

# Ollama's own request fields a client may send (the openai SDK's `extra_body`), passed as they
# are, as on chat.
OLLAMA_OWN = ("truncate", "keep_alive", "options")


def is_tokens(value: Any) -> bool:
    """A list of token ids (ints, not bools)."""
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def input_items(value: Input) -> list[Any]:
    """The inputs one by one: strings, or token-id lists."""
    if isinstance(value, str):
        return [value]
    if value and is_tokens(value):
        return [value]  # one input given as its tokens
    return list(value)


def input_texts(value: Input) -> list[str] | None:
    """The inputs as strings; None when they are token ids."""
    items = input_items(value)
    return items if all(isinstance(i, str) for i in items) else None


def embedding_list(
    vectors: list[list[float]], model: str, prompt_tokens: int | None
) -> dict[str, Any]:
    """The OpenAI answer for `vectors`, in input order."""
    out: dict[str, Any] = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": model,
    }
    if prompt_tokens is not None:
        out["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return out


def _vector(value: Any) -> list[float]:
    """A row's vector: floats, or base64 little-endian float32 (a server that ignored the
    `float` the gateway asked for)."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise UpstreamError("protocol", "embedding is not valid base64") from None
        if len(raw) % 4:
            raise UpstreamError("protocol", "base64 embedding is not float32")
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if not isinstance(value, list) or not value:
        raise UpstreamError("protocol", "embedding is not a list of numbers")
    for x in value:
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
            raise UpstreamError("protocol", "embedding holds something other than numbers")
    return value


def check_vectors(vectors: list[list[float]], count: int) -> None:
    if len(vectors) != count:
        raise UpstreamError(
            "protocol", f"upstream answered {len(vectors)} embeddings for {count} inputs"
        )
    if len({len(v) for v in vectors}) > 1:
        raise UpstreamError("protocol", "upstream embeddings differ in size")


def read_openai(obj: Any, count: int) -> dict[str, Any]:
    """An OpenAI embeddings answer checked (one vector per input, one size) and put in input
    order (each row carries its `index`)."""
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise UpstreamError("protocol", "upstream answer is not an embeddings list")
    rows: dict[int, list[float]] = {}
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise UpstreamError("protocol", "embedding row is not an object")
        index = row.get("index", i)
        if not isinstance(index, int) or not 0 <= index < count or index in rows:
            raise UpstreamError("protocol", "embedding rows' indexes do not match the inputs")
        rows[index] = _vector(row.get("embedding"))
    vectors = [rows[i] for i in sorted(rows)]
    check_vectors(vectors, count)
    usage = obj.get("usage")
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    model = obj.get("model")
    return embedding_list(
        vectors,
        model if isinstance(model, str) else "",
        prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else None,
    )


# --- Ollama ------------------------------------------------------------------------------------


def ollama_request(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI embeddings body -> Ollama `/api/embed` body. Token-id input and fields Ollama
    has no equivalent for are refused, naming them (another deployment may take them)."""
    texts = input_texts(body.get("input", ""))
    if texts is None:
        raise UnsupportedFeature("ollama", "Token-id input (send text)", param="input")
    out: dict[str, Any] = {"model": body.get("model"), "input": texts, "truncate": True}
    for key, value in body.items():
        if key in ("model", "input", "user"):  # `user` goes to AILB's usage ledger only
            continue
        if key == "encoding_format":
            if value not in (None, "float"):  # the gateway asks for floats and encodes itself
                raise UnsupportedFeature("ollama", f"`encoding_format` {value!r}", param=key)
        elif key == "dimensions":
            if value is not None:
                out["dimensions"] = value
        elif key in OLLAMA_OWN:
            out[key] = value
        else:
            raise UnsupportedFeature("ollama", f"The field `{key}`", param=key)
    return out


def read_ollama(reply: Any, model: str, count: int, dimensions: int | None) -> dict[str, Any]:
    """Ollama's `/api/embed` answer as OpenAI's. A server that ignored `dimensions` (Ollama
    before the field existed) answers full-size vectors: refused, not passed off as asked."""
    vectors = reply.get("embeddings") if isinstance(reply, dict) else None
    if not isinstance(vectors, list):
        raise UpstreamError("protocol", "upstream answer has no embeddings")
    vectors = [_vector(v) for v in vectors]
    check_vectors(vectors, count)
    if dimensions is not None and vectors and len(vectors[0]) != dimensions:
        raise UnsupportedFeature(
            "ollama",
            f"`dimensions` on this server (asked for {dimensions}, it answered "
            f"{len(vectors[0])}: a newer Ollama honours the field)",
            param="dimensions",
        )
    prompt = reply.get("prompt_eval_count")
    return embedding_list(
        vectors,
        model,
        prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else None,
    )


# --- the mock provider -------------------------------------------------------------------------

MOCK_DIMENSIONS = 64


def mock_vector(item: str | list[int], dimensions: int = MOCK_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for one input (the same input, the same vector)."""
    seed = item.encode() if isinstance(item, str) else repr(item).encode()
    raw = b""
    block = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.blake2b(seed, digest_size=64, salt=block.to_bytes(16, "little")).digest()
        block += 1
    ints = struct.unpack(f"<{dimensions}i", raw[: 4 * dimensions])
    vec = [x / 2**31 for x in ints]
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]
